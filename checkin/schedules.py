"""Schedules as data, and the local-time arithmetic that turns them into due instants.

zoneinfo does the calendar math in each patient's own zone (see `local_instant` for why not
APScheduler's CronTrigger here; APScheduler remains the scheduler's clock). Pure helpers
first; the few functions that touch the database come last.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from checkin import audit, flows
from checkin.models import CheckIn, Patient, Program, Schedule, TreatmentEvent
from checkin.quiet import check_schedule_time, next_allowed

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_OFFSET_DAYS = 365


class ScheduleError(ValueError):
    """A one-line reason a schedule cannot be accepted."""


def parse_time(text: str) -> time:
    try:
        return datetime.strptime(text.strip(), "%H:%M").time()
    except ValueError:
        raise ScheduleError(f"time must be HH:MM (24-hour), got {text!r}") from None


def parse_days(text: str | None) -> str:
    if not text:
        return ",".join(DAY_NAMES)
    days = [d.strip().lower()[:3] for d in text.split(",") if d.strip()]
    bad = [d for d in days if d not in DAY_NAMES]
    if bad or not days:
        raise ScheduleError(f"days must be a comma list of {','.join(DAY_NAMES)}, got {text!r}")
    return ",".join(d for d in DAY_NAMES if d in days)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock `at` on `day` in `zone`.

    A time that does not exist (the spring-forward gap) moves forward by the gap: 02:30 on the
    day New York skips 02:00-03:00 becomes 03:30 EDT. A time that happens twice (fall back)
    is its first occurrence, so it fires once. zoneinfo's fold=0 gives both for free.
    APScheduler 3's CronTrigger was not used here: on a fall-back day it returns the repeated
    time again and again (seen with 3.11.3), which would send twice and stall the planner.
    """
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Due:
    """One send a schedule asks for: when, on which local day and slot, after which infusion."""

    at: datetime  # UTC
    local_date: date
    slot: str  # "HH:MM", part of the check-in's idempotency key
    infusion_id: int | None = None


def dues(
    schedule: Schedule,
    zone: ZoneInfo,
    start: datetime,
    end: datetime,
    infusions: Sequence[tuple[int, date]] = (),
) -> list[Due]:
    """The sends `schedule` asks for in [start, end), at most one per local day.

    Recurring schedules fire on their weekdays; infusion schedules fire `day_offsets` days
    after each infusion in `infusions` (id, date). Two infusions landing on one day send once.
    """
    days: dict[date, int | None]
    if schedule.kind == "infusion":
        days = {
            infusion_day + timedelta(days=k): event_id
            # Oldest first, so when two infusions land on one day the most recent one wins.
            for event_id, infusion_day in sorted(infusions, key=lambda e: e[1])
            for k in parse_offsets(schedule.day_offsets or "")
        }
    else:
        wanted = {DAY_NAMES.index(d) for d in schedule.days.split(",")}
        first = start.astimezone(zone).date() - timedelta(days=1)
        span = (end.astimezone(zone).date() - first).days + 2
        candidates = (first + timedelta(days=n) for n in range(span))
        days = {day: None for day in candidates if day.weekday() in wanted}
    slot = f"{schedule.local_time:%H:%M}"
    found = []
    for day, event_id in sorted(days.items()):
        instant = local_instant(day, schedule.local_time, zone)
        if _within(schedule, day) and start <= instant < end:
            found.append(Due(instant, day, slot, event_id))
    return found


def occurrences(
    schedule: Schedule, zone: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """The UTC instants in [start, end) of a recurring schedule; one per local day."""
    return [due.at for due in dues(schedule, zone, start, end)]


def parse_offsets(text: str) -> list[int]:
    """'1,3,7,14' -> [1, 3, 7, 14]; days after an infusion, 0 (the day itself) to 365."""
    try:
        offsets = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        offsets = []
    if not offsets or offsets[0] < 0 or offsets[-1] > MAX_OFFSET_DAYS:
        raise ScheduleError(
            f"days after infusion must be a comma list of 0-{MAX_OFFSET_DAYS}, got {text!r}"
        )
    return offsets


def _within(schedule: Schedule, day: date) -> bool:
    if schedule.start_date is not None and day < schedule.start_date:
        return False
    return schedule.end_date is None or day <= schedule.end_date


def end_of_local_day(at: datetime, zone: ZoneInfo) -> datetime:
    """The patient's next local midnight after `at`: when a day's check-in window closes."""
    local_day = at.astimezone(zone).date()
    return datetime.combine(local_day + timedelta(days=1), time(0), tzinfo=zone).astimezone(
        ZoneInfo("UTC")
    )


def effective(
    patient_schedules: Iterable[Schedule], program_schedules: Iterable[Schedule]
) -> list[Schedule]:
    """A patient's own schedule for a flow replaces the program default for that flow."""
    own = [s for s in patient_schedules if s.active]
    own_flows = {s.flow for s in own}
    return own + [s for s in program_schedules if s.active and s.flow not in own_flows]


@dataclass(frozen=True)
class PlannedSend:
    flow: str
    local_time: datetime
    utc_time: datetime


def preview(
    patient: Patient,
    program: Program,
    schedules: list[Schedule],
    start: datetime,
    days: int,
    infusions: Sequence[tuple[int, date]] = (),
) -> list[PlannedSend]:
    """The sends to come in [start, start + days): zone, DST, quiet hours, pause and the
    one-per-flow-per-day rule applied, exactly as the scheduler will plan them."""
    zone = ZoneInfo(patient.timezone)
    if patient.status in ("opted_out", "number_invalid"):
        return []
    sends: dict[tuple[str, date, str], PlannedSend] = {}
    for schedule in schedules:
        for due in dues(schedule, zone, start, start + timedelta(days=days), infusions):
            if patient.paused_until is not None and due.local_date <= patient.paused_until:
                continue
            at = next_allowed(due.at, zone, program.quiet_start, program.quiet_end)
            if at < end_of_local_day(due.at, zone):
                key = (schedule.flow, due.local_date, due.slot)
                sends.setdefault(key, PlannedSend(schedule.flow, at.astimezone(zone), at))
    return sorted(sends.values(), key=lambda s: (s.utc_time, s.flow))


@dataclass(frozen=True)
class ScheduleSpec:
    """What an admin asks for: a flow at a local time, on weekdays or days after infusions."""

    flow: str
    local_time: time
    days: str = ",".join(DAY_NAMES)
    day_offsets: str | None = None  # "1,3,7" makes it infusion-relative
    start_date: date | None = None
    end_date: date | None = None

    def checked(self, program: Program) -> ScheduleSpec:
        """The same spec, normalised, or ScheduleError with a one-line reason."""
        try:
            flows.current(self.flow)
        except flows.UnknownFlow as exc:
            raise ScheduleError(str(exc)) from None
        reason = check_schedule_time(self.local_time, program.quiet_start, program.quiet_end)
        if reason:
            raise ScheduleError(reason)
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ScheduleError(f"end date {self.end_date} is before start date {self.start_date}")
        offsets = ",".join(map(str, parse_offsets(self.day_offsets))) if self.day_offsets else None
        return ScheduleSpec(
            self.flow,
            self.local_time,
            parse_days(self.days),
            offsets,
            self.start_date,
            self.end_date,
        )

    def draft(self, program: Program, patient: Patient | None, now: datetime) -> Schedule:
        """An unsaved Schedule row (for previews and for `add`)."""
        return Schedule(
            program_id=program.id,
            patient_id=patient.id if patient else None,
            flow=self.flow,
            local_time=self.local_time,
            days=self.days,
            kind="infusion" if self.day_offsets else "recurring",
            day_offsets=self.day_offsets,
            start_date=self.start_date,
            end_date=self.end_date,
            active=True,
            created_at=now,
        )


def add(
    session: Session,
    program: Program,
    *,
    flow: str,
    local_time: time,
    days: str,
    patient: Patient | None,
    now: datetime,
    actor: str,
    start_date: date | None = None,
    end_date: date | None = None,
    day_offsets: str | None = None,
) -> Schedule:
    spec = ScheduleSpec(flow, local_time, days, day_offsets, start_date, end_date)
    return add_spec(session, program, spec, patient, now=now, actor=actor)


def add_spec(
    session: Session,
    program: Program,
    spec: ScheduleSpec,
    patient: Patient | None,
    *,
    now: datetime,
    actor: str,
) -> Schedule:
    spec = spec.checked(program)
    schedule = spec.draft(program, patient, now)
    session.add(schedule)
    session.flush()
    if patient is not None:
        # The program's default for this flow no longer applies to this patient.
        forget_planned(session, patient_id=patient.id, flow=spec.flow)
    audit.record(
        session,
        now,
        actor,
        "schedule.add",
        f"schedule:{schedule.id}",
        flow=spec.flow,
        time=f"{spec.local_time:%H:%M}",
        days=spec.days,
        after_infusion=spec.day_offsets,
        start=str(spec.start_date) if spec.start_date else None,
        end=str(spec.end_date) if spec.end_date else None,
        patient=patient.id if patient else None,
    )
    return schedule


def retire(session: Session, schedule: Schedule, now: datetime, *, actor: str) -> None:
    """Stop a schedule (its rows stay: past check-ins point at it) and drop what it planned
    but has not sent."""
    if not schedule.active:
        raise ScheduleError(f"schedule {schedule.id} was already removed")
    schedule.active = False
    forget_planned(session, schedule_id=schedule.id)
    audit.record(session, now, actor, "schedule.remove", f"schedule:{schedule.id}")


def replace(
    session: Session,
    old: Schedule,
    program: Program,
    spec: ScheduleSpec,
    patient: Patient | None,
    *,
    now: datetime,
    actor: str,
) -> Schedule:
    """An edit is a new schedule in place of the old one, so history keeps what was asked
    when, and the new one never plans slots from before the edit (its `created_at`)."""
    spec = spec.checked(program)  # refuse before retiring anything
    retire(session, old, now, actor=actor)
    new = add_spec(session, program, spec, patient, now=now, actor=actor)
    audit.record(session, now, actor, "schedule.replace", f"schedule:{new.id}", replaces=old.id)
    return new


def forget_planned(
    session: Session,
    *,
    schedule_id: int | None = None,
    patient_id: int | None = None,
    flow: str | None = None,
) -> int:
    """Delete check-ins planned (status pending: never sent, never claimed) by a schedule or
    for a patient, so a changed schedule or time zone is planned afresh by the next tick."""
    stmt = delete(CheckIn).where(CheckIn.status == "pending")
    if schedule_id is not None:
        stmt = stmt.where(CheckIn.schedule_id == schedule_id)
    if patient_id is not None:
        stmt = stmt.where(CheckIn.patient_id == patient_id)
    if flow is not None:
        stmt = stmt.where(CheckIn.flow == flow)
    if schedule_id is None and patient_id is None:
        raise ValueError("forget_planned needs a schedule or a patient")
    return session.execute(stmt).rowcount  # type: ignore[attr-defined, no-any-return]


def for_patient(session: Session, patient: Patient) -> list[Schedule]:
    own = session.scalars(select(Schedule).where(Schedule.patient_id == patient.id))
    default = session.scalars(
        select(Schedule).where(
            Schedule.program_id == patient.program_id, Schedule.patient_id.is_(None)
        )
    )
    return effective(own, default)


def infusions_of(session: Session, patient_id: int) -> list[tuple[int, date]]:
    stmt = select(TreatmentEvent.id, TreatmentEvent.occurred_on).where(
        TreatmentEvent.patient_id == patient_id, TreatmentEvent.kind == "infusion"
    )
    return [(event_id, day) for event_id, day in session.execute(stmt)]
