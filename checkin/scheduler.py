"""The scheduler worker: APScheduler is only a clock; the database is the schedule.

Each tick (1) plans due CheckIn rows from schedules, idempotently (a unique key per patient,
flow, local date and slot); (2) claims due rows and sends their first question; (3) sends
pending outbound messages (retries, deferred welcomes); (4) closes check-ins whose day ended;
(5) sends due alert webhook deliveries (webhook_delivery), last, so that an endpoint that is
slow to answer never holds up a text to a patient or a page.
Claims are conditional UPDATEs tagged with this tick's token, plus SELECT ... FOR UPDATE SKIP
LOCKED on PostgreSQL, so any number of workers on one PostgreSQL never double-send. SQLite runs
one worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import FrameType
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from checkin import alerts, evaluation, flows, outbox, schedules, webhook_delivery
from checkin.catalog import render
from checkin.context import Context
from checkin.conversations import expire
from checkin.flows import engine
from checkin.models import (
    Alert,
    CheckIn,
    Message,
    Patient,
    Program,
    Schedule,
    SchedulerHeartbeat,
    StaffUser,
    TreatmentEvent,
)
from checkin.patients import is_paused
from checkin.quiet import next_allowed

log = logging.getLogger(__name__)

# How far ahead a tick plans rows; anything due sooner than this is in the table already.
PLAN_AHEAD = timedelta(minutes=10)
PLAN_EVERY = timedelta(minutes=1)
# After an outage, planning looks back at most this far to record what was missed.
MISFIRE_LOOKBACK = timedelta(days=7)
# Rows per INSERT: well inside SQLite's and PostgreSQL's bound-parameter limits.
INSERT_CHUNK = 500
# A worker that claimed a check-in and died is presumed gone after this; another takes over.
CLAIM_LEASE = timedelta(minutes=5)
# When a different flow is still open for the patient, try this one again after this long.
REQUEUE_DELAY = timedelta(minutes=15)
BATCH = 500
# Issue 4: one reminder when a check-in has had no reply for this long (quiet hours apply).
# CLINICAL.md "Engagement targets": one reminder helps a little (Keding 2016); more do not.
REMINDER_AFTER = timedelta(hours=3)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def tick(ctx: Context) -> dict[str, int]:
    """One pass of all the scheduler's work; each step is safe to run in several workers."""
    counts = {}
    for name, step in (
        ("planned", plan_if_due),
        ("dispatched", dispatch),
        ("reminded", remind),
        ("escalated", escalate_overdue),
        ("digested", send_digests),
        ("delivered", outbox.deliver_due),
        ("closed", close_expired),
        ("webhooks", webhook_delivery.deliver_due),
    ):
        try:
            counts[name] = step(ctx)
        except Exception:  # one failing step must not stop the others or the clock
            log.exception("scheduler step %s failed", name)
            counts[name] = -1
    return counts


def plan_if_due(ctx: Context) -> int:
    """Plan at most once per PLAN_EVERY in this process: planning looks PLAN_AHEAD forward,
    so nothing is late, and a tick with 100,000 patients stays cheap."""
    now = ctx.clock()
    last = ctx.last_planned
    if last is not None and last <= now < last + PLAN_EVERY:
        return 0
    ctx.last_planned = now
    return plan(ctx)


def plan(ctx: Context) -> int:
    """Insert the CheckIn rows that fall due from the start of each patient's day (or from the
    last tick, after an outage) to a little ahead; returns how many rows were considered."""
    now = ctx.clock()
    planned = 0
    rows: list[dict[str, object]] = []
    with ctx.db.session() as session:
        last_tick = _beat(session, now)
        defaults = _program_schedules(session)
        own = _patient_schedules(session)
        infusions = _recent_infusions(session, now)
        # Streamed, and inserted a chunk at a time: memory stays flat with 100,000 patients.
        active = select(Patient).where(Patient.status.in_(("active", "paused")))
        for patient in session.scalars(active.execution_options(yield_per=INSERT_CHUNK)):
            zone = ZoneInfo(patient.timezone)
            _end_finished_pause(patient, now.astimezone(zone).date())
            plan_for = schedules.effective(
                own.get(patient.id, []), defaults.get(patient.program_id, [])
            )
            for schedule in plan_for:
                rows += _rows_for(
                    patient, schedule, zone, now, infusions.get(patient.id, []), last_tick
                )
            if len(rows) >= INSERT_CHUNK:
                planned += _insert_ignoring_duplicates(session, rows)
                rows = []
        planned += _insert_ignoring_duplicates(session, rows)
    return planned


def _rows_for(
    patient: Patient,
    schedule: Schedule,
    zone: ZoneInfo,
    now: datetime,
    infusions: list[tuple[int, date]],
    last_tick: datetime | None,
) -> list[dict[str, object]]:
    # Catch-up policy: a slot missed earlier today (scheduler down) is still sent today.
    # After a longer outage the slots since the last tick are recorded as 'missed' (not as
    # the patient ignoring them). Slots before the patient enrolled or the schedule existed
    # are never planned.
    start = datetime.combine(now.astimezone(zone).date(), time(0), tzinfo=zone)
    if last_tick is not None and last_tick < start:
        start = max(last_tick, now - MISFIRE_LOOKBACK)
    start = max(start, patient.enrolled_at, schedule.created_at)
    flow = flows.current(schedule.flow)
    rows: list[dict[str, object]] = []
    for due in schedules.dues(schedule, zone, start, now + PLAN_AHEAD, infusions):
        expires = schedules.end_of_local_day(due.at, zone)
        rows.append(
            {
                "patient_id": patient.id,
                "schedule_id": schedule.id,
                "treatment_event_id": due.infusion_id,
                "flow": flow.name,
                "flow_version": flow.version,
                "local_date": due.local_date,
                "due_at": due.at,
                "expires_at": expires,
                "status": "pending" if expires > now else "missed",
                "state": {} if expires > now else {"reason": "the scheduler was not running"},
                "created_at": now,
                "idempotency_key": f"{patient.id}:{flow.name}:{due.local_date}:{due.slot}",
            }
        )
    return rows


def _beat(session: Session, now: datetime) -> datetime | None:
    """Record this worker's tick; return the newest tick before it (any worker), if any."""
    last = session.scalar(select(func.max(SchedulerHeartbeat.last_tick_at)))
    me = worker_name()
    beat = session.get(SchedulerHeartbeat, me)
    if beat is None:
        session.add(SchedulerHeartbeat(worker=me, last_tick_at=now))
        # Each process start is a new worker name; forget the long-gone ones.
        session.execute(
            delete(SchedulerHeartbeat).where(
                SchedulerHeartbeat.last_tick_at < now - MISFIRE_LOOKBACK
            )
        )
    else:
        beat.last_tick_at = max(beat.last_tick_at, now)
    return last


def _recent_infusions(session: Session, now: datetime) -> dict[int, list[tuple[int, date]]]:
    """Infusions recent enough for any infusion-relative schedule to still fire."""
    since = now.date() - timedelta(days=schedules.MAX_OFFSET_DAYS + 2)
    grouped: dict[int, list[tuple[int, date]]] = {}
    stmt = select(TreatmentEvent).where(
        TreatmentEvent.kind == "infusion", TreatmentEvent.occurred_on >= since
    )
    for event in session.scalars(stmt):
        grouped.setdefault(event.patient_id, []).append((event.id, event.occurred_on))
    return grouped


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, object]]) -> int:
    # One statement executed over many parameter sets (SQLAlchemy batches it): compiling a
    # 500-row VALUES clause instead cost 0.14 s a chunk, most of a 10,000-patient plan.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = CheckIn.__table__
    stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=["idempotency_key"])
    if rows:
        session.connection().execute(stmt, rows)
    return len(rows)


def _program_schedules(session: Session) -> dict[int, list[Schedule]]:
    grouped: dict[int, list[Schedule]] = {}
    for s in session.scalars(select(Schedule).where(Schedule.patient_id.is_(None))):
        grouped.setdefault(s.program_id, []).append(s)
    return grouped


def _patient_schedules(session: Session) -> dict[int, list[Schedule]]:
    grouped: dict[int, list[Schedule]] = {}
    for s in session.scalars(select(Schedule).where(Schedule.patient_id.is_not(None))):
        assert s.patient_id is not None
        grouped.setdefault(s.patient_id, []).append(s)
    return grouped


def _end_finished_pause(patient: Patient, local_today: date) -> None:
    if patient.status == "paused" and not is_paused(patient, local_today):
        patient.status, patient.paused_until = "active", None


def dispatch(ctx: Context, limit: int = BATCH) -> int:
    """Claim due check-ins and start them; returns how many this worker claimed."""
    now = ctx.clock()
    token = f"{worker_name()}:{uuid.uuid4().hex[:8]}"
    due = or_(
        and_(CheckIn.status == "pending", CheckIn.due_at <= now),
        and_(CheckIn.status == "sending", CheckIn.lease_until < now),  # a dead worker's claim
    )
    with ctx.db.session() as session:
        pick = select(CheckIn.id).where(due).order_by(CheckIn.due_at).limit(limit)
        if ctx.db.is_postgres:
            pick = pick.with_for_update(skip_locked=True)
        ids = list(session.scalars(pick))
        if not ids:
            return 0
        # The conditional UPDATE is the safety net: a row another worker took no longer matches.
        session.execute(
            update(CheckIn)
            .where(CheckIn.id.in_(ids), due)
            .values(status="sending", claimed_by=token, lease_until=now + CLAIM_LEASE)
        )
        claimed = list(
            session.scalars(
                select(CheckIn.id).where(
                    CheckIn.id.in_(ids), CheckIn.claimed_by == token, CheckIn.status == "sending"
                )
            )
        )
    try:
        start_checkins(ctx, claimed, token)
    except Exception:
        log.exception("starting %d check-ins failed; their leases will expire", len(claimed))
    return len(claimed)


def start_checkin(ctx: Context, checkin_id: int, token: str) -> str:
    """Send a claimed check-in's first question, or settle why it is not sent."""
    return start_checkins(ctx, [checkin_id], token).get(checkin_id, "taken")


def start_checkins(ctx: Context, checkin_ids: list[int], token: str) -> dict[int, str]:
    """Start claimed check-ins in one transaction, then send their first questions together."""
    results: dict[int, str] = {}
    queued: dict[int, int] = {}  # check-in id -> message id
    with ctx.db.session() as session:
        now = ctx.clock()
        batch = _Batch.load(session, checkin_ids)
        for checkin in batch.checkins:
            if checkin.status != "sending" or checkin.claimed_by != token:
                results[checkin.id] = "taken"
                continue
            verdict = _verdict(session, checkin, now, batch)
            if verdict != "send":
                results[checkin.id] = verdict
                continue
            queued[checkin.id] = _open(ctx, session, checkin, now).id
            batch.open_by_patient.setdefault(checkin.patient_id, []).append(checkin)
    sent = outbox.deliver_many(ctx, list(queued.values()))
    results.update({checkin_id: sent[message_id] for checkin_id, message_id in queued.items()})
    return results


@dataclass
class _Batch:
    """What the verdicts of a batch of check-ins read, loaded in a few queries."""

    checkins: list[CheckIn]
    in_crisis: set[int]
    open_by_patient: dict[int, list[CheckIn]]
    programs: list[Program]  # held so session.get finds them without a query

    @classmethod
    def load(cls, session: Session, checkin_ids: list[int]) -> _Batch:
        checkins = list(
            session.scalars(
                select(CheckIn)
                .where(CheckIn.id.in_(checkin_ids))
                .options(selectinload(CheckIn.patient))
                .order_by(CheckIn.due_at, CheckIn.id)
            )
        )
        patient_ids = {c.patient_id for c in checkins}
        in_crisis = set(
            session.scalars(
                select(Alert.patient_id).where(
                    Alert.patient_id.in_(patient_ids),
                    Alert.kind == "crisis",
                    Alert.status != "resolved",
                )
            )
        )
        open_by_patient: dict[int, list[CheckIn]] = {}
        for other in session.scalars(
            select(CheckIn).where(CheckIn.patient_id.in_(patient_ids), CheckIn.status == "open")
        ):
            open_by_patient.setdefault(other.patient_id, []).append(other)
        program_ids = {c.patient.program_id for c in checkins}
        programs = list(session.scalars(select(Program).where(Program.id.in_(program_ids))))
        return cls(checkins, in_crisis, open_by_patient, programs)


def _open(ctx: Context, session: Session, checkin: CheckIn, now: datetime) -> Message:
    flow = flows.version(checkin.flow, checkin.flow_version)
    outcome = engine.start(flow)
    patient = checkin.patient
    body = " ".join(render(t.key, patient.language, t.params) for t in outcome.texts)
    message = _queue_to_patient(ctx, session, checkin, body, "checkin", now)
    checkin.status, checkin.state, checkin.sent_at = "open", outcome.state.to_dict(), now
    checkin.lease_until = None
    return message


def _verdict(session: Session, checkin: CheckIn, now: datetime, batch: _Batch) -> str:
    """'send', or the status the check-in was settled with instead."""
    patient = checkin.patient
    zone = ZoneInfo(patient.timezone)
    if now >= checkin.expires_at:
        return _settle(checkin, "missed", "the day's window ended before it could be sent")
    if patient.status in ("opted_out", "number_invalid"):
        return _settle(checkin, "skipped", f"patient {patient.status.replace('_', ' ')}")
    if is_paused(patient, now.astimezone(zone).date()):
        return _settle(checkin, "skipped", "patient paused")
    if patient.id in batch.in_crisis:
        return _settle(checkin, "skipped", "crisis alert open: scripted questions paused")
    for other in batch.open_by_patient.get(patient.id, []):
        if other.status != "open":
            continue
        if other.expires_at <= now:
            expire(session, other, now)
        elif other.flow == checkin.flow:
            return _settle(checkin, "skipped", f"check-in {other.id} of this flow still open")
        else:
            return _requeue(checkin, now + REQUEUE_DELAY, f"check-in {other.id} still open")
    program = session.get_one(Program, patient.program_id)
    allowed = next_allowed(now, zone, program.quiet_start, program.quiet_end)
    if allowed > now:
        quiet = (
            f"{now.astimezone(zone):%H:%M} in {patient.timezone} is inside quiet hours "
            f"({program.quiet_start:%H:%M}-{program.quiet_end:%H:%M})"
        )
        if allowed >= checkin.expires_at:
            return _settle(checkin, "missed", f"{quiet} until the day's window closed")
        return _requeue(checkin, allowed, quiet)
    return "send"


def _settle(checkin: CheckIn, status: str, reason: str) -> str:
    checkin.status, checkin.lease_until = status, None
    checkin.state = {**checkin.state, "reason": reason}
    return status


def _requeue(checkin: CheckIn, at: datetime, reason: str) -> str:
    checkin.status, checkin.due_at, checkin.lease_until = "pending", at, None
    checkin.state = {**checkin.state, "deferred": reason}
    return "deferred"


def close_expired(ctx: Context) -> int:
    """End check-ins whose window passed: open ones expire, never-sent ones are missed."""
    now = ctx.clock()
    with ctx.db.session() as session:
        stale = list(
            session.scalars(
                select(CheckIn)
                .where(
                    CheckIn.status.in_(("open", "pending")),
                    CheckIn.expires_at <= now,
                )
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for checkin in stale:
            if checkin.status == "open":
                expire(session, checkin, now)
            else:
                _settle(checkin, "missed", "the day's window ended before it could be sent")
        session.flush()
        pages = _judge_engagement(ctx, session, {c.patient for c in stale}, now)
    outbox.deliver_many(ctx, pages)
    return len(stale)


def _judge_engagement(
    ctx: Context, session: Session, patients: set[Patient], now: datetime
) -> list[int]:
    """Non-response is judged when check-ins close, the only time it can change."""
    pages: list[int] = []
    for patient in sorted(patients, key=lambda p: p.id):
        for finding in evaluation.non_response(session, patient):
            _, queued = alerts.raise_alert(
                session,
                patient,
                finding.kind,
                finding.severity,
                {**finding.evidence, "rule": finding.rule},
                now,
                alerts.Pager.of(ctx),
            )
            pages += [m.id for m in queued]
    return pages


def run(ctx: Context) -> None:
    """Block, ticking every CHECKIN_SCHEDULER_TICK_SECONDS, until SIGTERM or Ctrl-C."""
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    clock = BlockingScheduler(timezone="UTC")
    clock.add_job(
        tick,
        IntervalTrigger(seconds=ctx.settings.scheduler_tick_seconds),
        args=[ctx],
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
        misfire_grace_time=None,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        clock.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    log.info("scheduler %s ticking every %ss", worker_name(), ctx.settings.scheduler_tick_seconds)
    try:
        clock.start()
    except (KeyboardInterrupt, SystemExit):
        pass


def remind(ctx: Context) -> int:
    """Queue the one reminder for open check-ins that have gone quiet; returns how many."""
    now = ctx.clock()
    queued = []
    with ctx.db.session() as session:
        quiet_since = now - REMINDER_AFTER
        candidates = session.scalars(
            select(CheckIn)
            .where(
                CheckIn.status == "open",
                CheckIn.sent_at <= quiet_since,
                CheckIn.expires_at > now,
            )
            .order_by(CheckIn.sent_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        for checkin in candidates:
            if checkin.state.get("reminded") or _replied_since(checkin, quiet_since):
                continue
            queued.append(_queue_reminder(ctx, session, checkin, now).id)
    for message_id in queued:
        outbox.deliver(ctx, message_id)
    return len(queued)


def _replied_since(checkin: CheckIn, since: datetime) -> bool:
    last = checkin.state.get("last_reply_at")
    return last is not None and datetime.fromisoformat(last) > since


def _queue_reminder(ctx: Context, session: Session, checkin: CheckIn, now: datetime) -> Message:
    flow = flows.version(checkin.flow, checkin.flow_version)
    question = engine.remaining(flow, engine.RunState.from_dict(checkin.state))[0]
    patient = checkin.patient
    body = " ".join(render(key, patient.language) for key in ("reminder", question.prompt))
    checkin.state = {**checkin.state, "reminded": True}
    return _queue_to_patient(ctx, session, checkin, body, "reminder", now)


def _queue_to_patient(
    ctx: Context, session: Session, checkin: CheckIn, body: str, purpose: str, now: datetime
) -> Message:
    """A check-in's text to its patient; the key makes a second queueing of it impossible."""
    return outbox.queue(
        session,
        to=checkin.patient.phone,
        from_number=ctx.settings.sender,
        body=body,
        purpose=purpose,
        patient_id=checkin.patient_id,
        checkin_id=checkin.id,
        now=now,
        idempotency_key=f"checkin:{checkin.id}:{purpose}",
    )


def escalate_overdue(ctx: Context) -> int:
    """Page admins about urgent alerts not acknowledged within the escalation interval."""
    after = timedelta(minutes=ctx.settings.escalate_after_minutes)
    with ctx.db.session() as session:
        pages = alerts.escalate(session, ctx.clock(), after, alerts.Pager.of(ctx))
        ids = [page.id for page in pages]
    outbox.deliver_many(ctx, ids)
    return len(ids)


def send_digests(ctx: Context) -> int:
    """Once a day, after CHECKIN_DIGEST_TIME, email each staff member the routine alerts of
    the past 24 hours (routine alerts are never paged by SMS)."""
    if ctx.email is None:
        return 0
    now = ctx.clock()
    zone = ZoneInfo(ctx.settings.digest_timezone)
    local = now.astimezone(zone)
    due = datetime.combine(local.date(), time.fromisoformat(ctx.settings.digest_time), zone)
    if local < due:
        return 0
    ids = []
    with ctx.db.session() as session:
        for program_id, lines in _routine_alert_lines(ctx, session, due).items():
            ids += _queue_digests(ctx, session, program_id, lines, local.date(), now)
    outbox.deliver_many(ctx, ids)
    return len(ids)


def _routine_alert_lines(ctx: Context, session: Session, due: datetime) -> dict[int, list[str]]:
    stmt = (
        select(Alert, Patient.program_id)
        .join(Patient, Patient.id == Alert.patient_id)
        .where(
            Alert.severity == "routine",
            Alert.created_at >= due - timedelta(days=1),
            Alert.created_at < due,
        )
        .order_by(Alert.created_at)
    )
    lines: dict[int, list[str]] = {}
    for alert, program_id in session.execute(stmt):
        link = f"{ctx.settings.public_url}/alerts/{alert.ref}"
        lines.setdefault(program_id, []).append(
            f"{alert.ref}  {alert.kind.replace('_', ' ')}  ({alert.status})  {link}"
        )
    return lines


def _queue_digests(
    ctx: Context, session: Session, program_id: int, lines: list[str], day: date, now: datetime
) -> list[int]:
    body = render("staff_digest", "en", {"count": len(lines), "lines": "\n".join(lines)})
    staff = session.scalars(
        select(StaffUser).where(StaffUser.program_id == program_id, StaffUser.active.is_(True))
    )
    ids = []
    for member in staff:
        key = f"digest:{member.id}:{day}"
        if session.scalar(select(Message.id).where(Message.idempotency_key == key)):
            continue
        assert ctx.settings.smtp_from
        ids.append(
            outbox.queue(
                session,
                to=member.email,
                from_number=ctx.settings.smtp_from,
                body=body,
                purpose="digest",
                staff_id=member.id,
                now=now,
                channel="email",
                idempotency_key=key,
            ).id
        )
    return ids
