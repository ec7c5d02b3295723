"""Outbound SMS: save the row first, send, then record the SID or the error.

A Message row is the unit of work. `queue` writes it (status 'pending'); `deliver` claims it
('claimed') with a conditional UPDATE, sends it through the transport outside any transaction,
and records the SID and Twilio's status ('queued', 'sent', 'delivered'...). Our own two words,
'pending' and 'claimed', never collide with Twilio's. Transient failures go back to 'pending'
with a backoff; permanent ones end as 'failed' and have consequences (21610 opts the patient
out; 21211/21614 flag the number).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from checkin import consent
from checkin.context import Context
from checkin.models import CheckIn, Message, Patient, Program
from checkin.quiet import next_allowed
from checkin.transports import SendResult, TransportError

# Texts that quiet hours hold back. Replies, keyword answers, crisis replies and staff alerts
# are exempt (CLINICAL.md: replies to the patient's own message and crisis replies).
QUIET_HOURS_APPLY_TO = frozenset({"checkin", "welcome", "reminder"})
# Pages to staff never wait for a slot of CHECKIN_SEND_RATE_PER_SECOND: behind a morning's
# thousands of check-ins a crisis page would wait minutes. The limit exists to keep Twilio's
# own queue short, so a page sent past it still leaves at once; a few pages over the rate
# cost nothing.
UNLIMITED_PURPOSES = frozenset({"alert"})
# After this many attempts a transiently failing send is given up and marked failed.
MAX_ATTEMPTS = 5
# A claim older than this belongs to a worker that died mid-send; another may take it over.
# The cost is at most one duplicate text per crash (the send may have reached Twilio).
SEND_LEASE = timedelta(minutes=5)
# Sends in flight at once per worker: Twilio calls are I/O, so threads overlap them.
SEND_CONCURRENCY = 8
# ValidityPeriod: a check-in Twilio could not hand over within 2 hours is stale; Twilio takes
# 1 to 36,000 seconds (error 21624 / 90007 outside that).
MAX_STALENESS = timedelta(hours=2)
MIN_VALIDITY_SECONDS = 60
MAX_VALIDITY_SECONDS = 36_000
INVALID_NUMBER_CODES = frozenset({21211, 21614})
OPTED_OUT_CODE = 21610


def queue(
    session: Session,
    *,
    to: str,
    from_number: str,
    body: str,
    purpose: str,
    now: datetime,
    patient_id: int | None = None,
    staff_id: int | None = None,
    checkin_id: int | None = None,
    send_after: datetime | None = None,
    idempotency_key: str | None = None,
    channel: str = "sms",
) -> Message:
    message = Message(
        channel=channel,
        direction="outbound",
        to_number=to,
        from_number=from_number,
        body=body,
        purpose=purpose,
        status="pending",
        patient_id=patient_id,
        staff_id=staff_id,
        checkin_id=checkin_id,
        send_after=send_after,
        idempotency_key=idempotency_key,
        created_at=now,
        attempts=0,
    )
    session.add(message)
    session.flush()
    return message


def deliver(ctx: Context, message_id: int) -> str:
    """Send one pending message now if it is still pending and allowed; return its status."""
    return deliver_many(ctx, [message_id])[message_id]


@dataclass(frozen=True)
class _Send:
    message_id: int
    to: str
    body: str
    validity_seconds: int | None
    quiet: tuple[ZoneInfo, time, time] | None  # the patient's quiet hours, for scheduled texts
    channel: str = "sms"
    purpose: str = "checkin"


@dataclass(frozen=True)
class _Deferred:
    """Quiet hours began while the send waited for the rate limit: try again at `until`."""

    until: datetime


def deliver_many(ctx: Context, message_ids: Sequence[int]) -> dict[int, str]:
    """Claim, check and send many messages: one transaction before, then rounds of parallel
    sends (under the shared rate limit), each recorded in one transaction before the next.
    Returns each message's new status."""
    results: dict[int, str] = {}
    sends: list[_Send] = []
    with ctx.db.session() as session:
        now = ctx.clock()
        claimed = _claim_many(session, message_ids, now)
        results.update({i: "taken" for i in message_ids if i not in claimed})
        loaded = _preload(session, claimed)  # held: the identity map only keeps live objects
        for message_id in claimed:
            message = session.get_one(Message, message_id)
            held = _hold_reason(session, message, now)
            if held is not None:
                results[message_id] = held
                continue
            validity = _validity_seconds(session, message, now)
            quiet = _quiet_hours(session, message)
            sends.append(
                _Send(
                    message_id,
                    message.to_number,
                    message.body,
                    validity,
                    quiet,
                    message.channel,
                    message.purpose,
                )
            )
        del loaded
    unexpected: BaseException | None = None
    # One round of parallel sends is recorded before the next starts: a worker killed mid-batch
    # leaves at most one round (SEND_CONCURRENCY) sent but unrecorded, to be sent again.
    for first in range(0, len(sends), SEND_CONCURRENCY):
        chunk = sends[first : first + SEND_CONCURRENCY]
        outcomes = _send_all(ctx, chunk)
        with ctx.db.session() as session:
            now = ctx.clock()
            loaded = _preload(session, [send.message_id for send in chunk])
            for send, outcome in zip(chunk, outcomes, strict=True):
                message_id = send.message_id
                if isinstance(outcome, SendResult):
                    results[message_id] = _record_sent(session, message_id, outcome, now)
                elif isinstance(outcome, _Deferred):
                    results[message_id] = _record_deferred(session, message_id, outcome.until)
                elif isinstance(outcome, TransportError):
                    results[message_id] = _record_failure(session, message_id, outcome, now)
                elif isinstance(outcome, BaseException):
                    # A bug, not a delivery problem: the claim's lease will expire and retry it.
                    unexpected = unexpected or outcome
            del loaded
    if unexpected is not None:
        raise unexpected
    return results


def _send_all(ctx: Context, sends: list[_Send]) -> list[object]:
    def send_one(send: _Send) -> object:
        try:
            if send.channel == "email":
                if ctx.email is None:
                    raise TransportError(
                        "email is not configured (CHECKIN_SMTP_HOST)", permanent=True
                    )
                return ctx.email.send_email(send.to, send.body)
            if ctx.limiter is not None and send.purpose not in UNLIMITED_PURPOSES:
                ctx.limiter.acquire()
                # The wait for a slot may have run into quiet hours: check again.
                if send.quiet is not None:
                    now = ctx.clock()
                    allowed = next_allowed(now, *send.quiet)
                    if allowed > now:
                        return _Deferred(allowed)
            # The row's id rides on the callback URL, so a callback that beats us to
            # recording the SID still finds its message.
            callback = f"{ctx.status_callback_url}?message={send.message_id}"
            return ctx.sms.send_sms(
                send.to, send.body, status_callback=callback, validity_seconds=send.validity_seconds
            )
        except Exception as exc:  # noqa: BLE001 - sorted out by the caller
            return exc

    if len(sends) <= 1:
        return [send_one(send) for send in sends]
    with ThreadPoolExecutor(max_workers=min(SEND_CONCURRENCY, len(sends))) as pool:
        return list(pool.map(send_one, sends))


def _record_sent(session: Session, message_id: int, result: SendResult, now: datetime) -> str:
    message = session.get_one(Message, message_id)
    message.twilio_sid = message.twilio_sid or result.sid
    message.sent_at = now
    if message.status == "claimed":  # else a status callback already moved it on
        message.status, message.status_updated_at = result.status, now
    return message.status


def _record_deferred(session: Session, message_id: int, until: datetime) -> str:
    message = session.get_one(Message, message_id)
    message.status, message.send_after = "pending", until
    message.attempts -= 1  # not an attempt: nothing was sent
    return "deferred"


def _quiet_hours(session: Session, message: Message) -> tuple[ZoneInfo, time, time] | None:
    if message.purpose not in QUIET_HOURS_APPLY_TO or message.patient_id is None:
        return None
    patient = session.get_one(Patient, message.patient_id)
    program = session.get_one(Program, patient.program_id)
    return ZoneInfo(patient.timezone), program.quiet_start, program.quiet_end


def _claim_many(session: Session, message_ids: Sequence[int], now: datetime) -> list[int]:
    # The conditional UPDATE is the lock: a row another worker took no longer matches.
    stmt = (
        update(Message)
        .where(Message.id.in_(message_ids), Message.status == "pending")
        .values(status="claimed", attempts=Message.attempts + 1, send_after=now + SEND_LEASE)
        .returning(Message.id)
    )
    return sorted(session.scalars(stmt))


def _preload(session: Session, message_ids: list[int]) -> list[object]:
    """Load the messages and the rows their checks read in four queries instead of four per
    message. The caller keeps the returned list alive so `session.get` finds them."""
    if not message_ids:
        return []
    messages = list(session.scalars(select(Message).where(Message.id.in_(message_ids))))
    patient_ids = {m.patient_id for m in messages if m.patient_id is not None}
    checkin_ids = {m.checkin_id for m in messages if m.checkin_id is not None}
    patients = list(session.scalars(select(Patient).where(Patient.id.in_(patient_ids))))
    program_ids = {p.program_id for p in patients}
    programs = list(session.scalars(select(Program).where(Program.id.in_(program_ids))))
    checkins = list(session.scalars(select(CheckIn).where(CheckIn.id.in_(checkin_ids))))
    return [*messages, *patients, *programs, *checkins]


def _validity_seconds(session: Session, message: Message, now: datetime) -> int | None:
    """How long Twilio may hold a scheduled text before dropping it: never past the start of
    quiet hours, the end of its check-in, or MAX_STALENESS (a late check-in is a stale one)."""
    if message.purpose not in QUIET_HOURS_APPLY_TO or message.patient_id is None:
        return None
    patient = session.get_one(Patient, message.patient_id)
    program = session.get_one(Program, patient.program_id)
    zone = ZoneInfo(patient.timezone)
    local = now.astimezone(zone)
    quiet = datetime.combine(local.date(), program.quiet_start, tzinfo=zone)
    deadline = min(quiet.astimezone(UTC), now + MAX_STALENESS)
    if message.checkin_id is not None:
        deadline = min(deadline, session.get_one(CheckIn, message.checkin_id).expires_at)
    seconds = int((deadline - now).total_seconds())
    return max(MIN_VALIDITY_SECONDS, min(seconds, MAX_VALIDITY_SECONDS))


def deliver_due(ctx: Context, limit: int = 200) -> int:
    """Claim and send pending messages whose time has come; returns how many were tried."""
    now = ctx.clock()
    stmt = (
        select(Message.id)
        .where(
            or_(
                (Message.status == "pending")
                & or_(Message.send_after.is_(None), Message.send_after <= now),
                (Message.status == "claimed") & (Message.send_after < now),  # expired lease
            )
        )
        .order_by(Message.id)
        .limit(limit)
    )
    with ctx.db.session() as session:
        if ctx.db.is_postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        ids = list(session.scalars(stmt))
        # Stale claims go back to 'pending' so `deliver` can take them like any other.
        session.execute(
            update(Message)
            .where(Message.id.in_(ids), Message.status == "claimed")
            .values(status="pending")
        )
    deliver_many(ctx, ids)
    return len(ids)


def _hold_reason(session: Session, message: Message, now: datetime) -> str | None:
    """Why the message must not go now ('suppressed' / 'deferred'), or None to send it."""
    if message.patient_id is None:
        return None
    if message.purpose in ("checkin", "reminder") and message.checkin_id is not None:
        checkin = session.get_one(CheckIn, message.checkin_id)
        if checkin.status != "open" or checkin.expires_at <= now:
            # Answered, expired or interrupted (crisis language) while the text waited out
            # quiet hours or Twilio retries: a scripted question must not follow a 988 reply.
            message.status, message.error_message = "suppressed", f"check-in {checkin.status}"
            return "suppressed"
    patient = session.get_one(Patient, message.patient_id)
    if patient.status in ("opted_out", "number_invalid"):
        message.status = "suppressed"
        message.error_message = f"patient {patient.status.replace('_', ' ')}"
        _fail_checkin(session, message)
        return "suppressed"
    if message.purpose in QUIET_HOURS_APPLY_TO:
        program = session.get_one(Program, patient.program_id)
        zone = ZoneInfo(patient.timezone)
        allowed = next_allowed(now, zone, program.quiet_start, program.quiet_end)
        if allowed > now:
            message.status, message.send_after = "pending", allowed
            message.attempts -= 1
            return "deferred"
    return None


def _record_failure(session: Session, message_id: int, exc: TransportError, now: datetime) -> str:
    message = session.get_one(Message, message_id)
    message.error_code, message.error_message = exc.code, exc.message
    message.status_updated_at = now
    if not exc.permanent and message.attempts < MAX_ATTEMPTS:
        message.status = "pending"
        message.send_after = now + _backoff(message.attempts)
        return "retrying"
    message.status = "failed"
    _fail_checkin(session, message)
    if message.patient_id is not None:
        _apply_permanent_error(session, message.patient_id, exc.code, now)
    return "failed"


def _backoff(attempts: int) -> timedelta:
    # 30 s, 1 min, 2 min, 4 min... with jitter so a burst of 429s does not retry in lockstep.
    base = 30 * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def _apply_permanent_error(
    session: Session, patient_id: int, code: int | None, now: datetime
) -> None:
    patient = session.get_one(Patient, patient_id)
    if code == OPTED_OUT_CODE and patient.status != "opted_out":
        consent.opt_out(session, patient, now, source="twilio_error_21610", actor="twilio")
    elif code in INVALID_NUMBER_CODES and patient.status != "number_invalid":
        patient.status = "number_invalid"
        from checkin import alerts, audit  # alerts queues pages through this module

        audit.record(
            session,
            now,
            "twilio",
            "patient.number_invalid",
            f"patient:{patient.id}",
            error_code=code,
        )
        # Staff must fix the number: nothing more will be sent until they do.
        evidence = {"error_code": code, "rule": "Twilio reports the number invalid or not mobile"}
        alerts.raise_alert(session, patient, "delivery_failure", "routine", evidence, now)


def _fail_checkin(session: Session, message: Message) -> None:
    """A check-in whose first question never reached the phone is 'failed': not delivered,
    which the non-response rules must not count as the patient ignoring it."""
    if message.checkin_id is None or message.purpose != "checkin":
        return
    checkin = session.get_one(CheckIn, message.checkin_id)
    if checkin.status == "open" and not checkin.state.get("done"):
        checkin.status = "failed"
        reason = f"first question not delivered ({message.status}"
        reason += f", error {message.error_code})" if message.error_code else ")"
        checkin.state = {**checkin.state, "reason": reason}


def record_status(
    session: Session,
    sid: str,
    status: str,
    error_code: int | None,
    now: datetime,
    message_id: int | None = None,
) -> bool:
    """Apply a Twilio status callback; never move a message backwards. True if it changed."""
    message = session.scalar(select(Message).where(Message.twilio_sid == sid))
    if message is None and message_id is not None:
        candidate = session.get(Message, message_id)
        if candidate is not None and candidate.twilio_sid in (None, sid):
            message = candidate
            message.twilio_sid = sid
    if message is None or message.direction == "inbound":  # a patient's text has no delivery
        return False
    if STATUS_RANK.get(status, -1) <= STATUS_RANK.get(message.status, -1):
        return False
    message.status, message.status_updated_at = status, now
    if error_code is not None:
        message.error_code = error_code
    if status in ("undelivered", "failed"):
        _fail_checkin(session, message)
        if message.patient_id is not None:
            _apply_permanent_error(session, message.patient_id, error_code, now)
    return True


# Twilio's message lifecycle; a late 'sent' never overwrites 'delivered'.
STATUS_RANK = {
    "pending": -1,
    "claimed": -1,
    "queued": 0,
    "accepted": 0,
    "scheduled": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "undelivered": 3,
    "failed": 3,
    "read": 4,
}
