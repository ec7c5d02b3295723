"""The scheduler ticks, driven by a frozen clock against real databases and a fake Twilio.

Each test says what a patient (or the clinic) would notice: a text at 09:00 their time, no text
at night, no text twice, yesterday's check-in not sent today.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from checkin import outbox, schedules
from checkin.catalog import render
from checkin.clock import FrozenClock
from checkin.consent import opt_out
from checkin.context import Context, make_context
from checkin.conversations import Inbound, handle_inbound
from checkin.models import Answer, CheckIn, Message, Patient, Program, Schedule
from checkin.patients import NewPatient, enrol, pause, program_of, resume
from checkin.scheduler import close_expired, dispatch, plan, tick
from checkin.schedules import ScheduleError
from tests.conftest import ALICE, ERIN, T0, World
from tests.fake_twilio import FROM_NUMBER, FakeTwilio

NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
FIRST_QUESTION = render("ask_fatigue", "en")
EVERY_DAY = "mon,tue,wed,thu,fri,sat,sun"


# --- helpers ---------------------------------------------------------------------------------


def local(zone: ZoneInfo, y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    """A wall-clock time in `zone`, as the UTC instant the frozen clock holds."""
    return datetime(y, m, d, hh, mm, tzinfo=zone).astimezone(UTC)


def ny(d: int, hh: int, mm: int = 0, m: int = 3) -> datetime:
    return local(NEW_YORK, 2026, m, d, hh, mm)


def checkins(ctx: Context, patient_id: int) -> list[CheckIn]:
    with ctx.db.session() as session:
        stmt = select(CheckIn).where(CheckIn.patient_id == patient_id).order_by(CheckIn.due_at)
        return list(session.scalars(stmt))


def statuses(ctx: Context, patient_id: int) -> list[tuple[date, str]]:
    return [(c.local_date, c.status) for c in checkins(ctx, patient_id)]


def first_questions(fake: FakeTwilio, number: str) -> list[str]:
    return [s.body for s in fake.to(number) if s.body == FIRST_QUESTION]


def give_other_program_a_nine_oclock_checkin(ctx: Context, world: World) -> None:
    """Erin's clinic has no built-in schedule; it adds the same 09:00 daily check-in."""
    with ctx.db.session() as session:
        other = session.get_one(Program, world.other_program_id)
        schedules.add(
            session,
            other,
            flow="daily_symptoms",
            local_time=time(9, 0),
            days=EVERY_DAY,
            patient=None,
            now=T0 - timedelta(days=14),
            actor="test",
        )


def tick_at(ctx: Context, clock: FrozenClock, at: datetime) -> dict[str, int]:
    clock.at = at
    counts = tick(ctx)
    assert -1 not in counts.values(), f"a scheduler step failed: {counts}"
    return counts


# --- once a day at 09:00 in the patient's own zone ---------------------------------------------


def test_each_patient_gets_the_daily_checkin_at_nine_in_their_own_time_zone(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    give_other_program_a_nine_oclock_checkin(ctx, world)

    tick_at(ctx, clock, ny(10, 8, 59))  # 12:59 UTC: 08:59 in New York, 07:59 in Chicago
    assert fake_twilio.sent == []

    tick_at(ctx, clock, datetime(2026, 3, 10, 13, 0, tzinfo=UTC))  # 09:00 EDT
    assert first_questions(fake_twilio, ALICE) == [FIRST_QUESTION]
    assert fake_twilio.to(ERIN) == []  # 08:00 in Chicago

    tick_at(ctx, clock, datetime(2026, 3, 10, 13, 59, tzinfo=UTC))
    assert fake_twilio.to(ERIN) == []

    tick_at(ctx, clock, datetime(2026, 3, 10, 14, 0, tzinfo=UTC))  # 09:00 CDT
    assert first_questions(fake_twilio, ERIN) == [FIRST_QUESTION]
    assert len(fake_twilio.to(ALICE)) == 1
    (alice_run,) = checkins(ctx, world.alice_id)
    assert alice_run.status == "open"
    assert alice_run.due_at == datetime(2026, 3, 10, 13, 0, tzinfo=UTC)
    (erin_run,) = checkins(ctx, world.erin_id)
    assert erin_run.due_at == local(CHICAGO, 2026, 3, 10, 9, 0)


def test_the_nine_oclock_send_follows_new_york_across_the_dst_change(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    # Saturday 2026-03-07 is still EST (UTC-5): 09:00 local is 14:00 UTC.
    tick_at(ctx, clock, datetime(2026, 3, 7, 13, 59, tzinfo=UTC))
    assert fake_twilio.to(ALICE) == []
    tick_at(ctx, clock, datetime(2026, 3, 7, 14, 0, tzinfo=UTC))
    assert len(fake_twilio.to(ALICE)) == 1
    # Sunday 2026-03-08, clocks sprang forward: 09:00 EDT is 13:00 UTC.
    tick_at(ctx, clock, datetime(2026, 3, 8, 12, 59, tzinfo=UTC))
    assert len(fake_twilio.to(ALICE)) == 1
    tick_at(ctx, clock, datetime(2026, 3, 8, 13, 0, tzinfo=UTC))
    assert len(fake_twilio.to(ALICE)) == 2
    dues = [c.due_at for c in checkins(ctx, world.alice_id)]
    assert dues == [
        datetime(2026, 3, 7, 14, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 13, 0, tzinfo=UTC),
    ]


def test_repeated_ticks_the_same_day_send_nothing_more_and_the_next_day_sends_again(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    tick_at(ctx, clock, ny(10, 9, 0))
    for minutes in (1, 5, 30, 120, 600):  # ticks through the rest of the day
        tick_at(ctx, clock, ny(10, 9, 0) + timedelta(minutes=minutes))
    # One first question, and (after 3 quiet hours) exactly one reminder, never more.
    assert first_questions(fake_twilio, ALICE) == [FIRST_QUESTION]
    assert [s.body.startswith("Reminder:") for s in fake_twilio.to(ALICE)] == [False, True]

    tick_at(ctx, clock, ny(11, 8, 59))
    assert len(fake_twilio.to(ALICE)) == 2
    tick_at(ctx, clock, ny(11, 9, 0))
    tick_at(ctx, clock, ny(11, 9, 1))
    assert first_questions(fake_twilio, ALICE) == [FIRST_QUESTION, FIRST_QUESTION]
    # Yesterday's unanswered run was closed at midnight; today's is the one open.
    assert statuses(ctx, world.alice_id) == [
        (date(2026, 3, 10), "expired"),
        (date(2026, 3, 11), "open"),
    ]


def test_planning_twice_creates_no_duplicate_checkins(
    ctx: Context, clock: FrozenClock, world: World
) -> None:
    clock.at = ny(10, 8, 55)  # inside the planning horizon of the 09:00 slot
    assert plan(ctx) >= 1
    plan(ctx)
    # A second scheduler process (its own engine) planning the same slot adds nothing either.
    other = make_context(ctx.settings)
    other.clock = clock
    try:
        plan(other)
    finally:
        other.db.dispose()
    with ctx.db.session() as session:
        count = session.scalar(
            select(func.count()).select_from(CheckIn).where(CheckIn.patient_id == world.alice_id)
        )
        assert count == 1
        key = session.scalars(select(CheckIn.idempotency_key)).one()
    # The database itself refuses a second row for the same patient, flow, day and slot.
    with pytest.raises(IntegrityError), ctx.db.session() as session:
        existing = session.scalars(select(CheckIn)).one()
        session.add(
            CheckIn(
                patient_id=existing.patient_id,
                flow=existing.flow,
                idempotency_key=key,
                local_date=existing.local_date,
                due_at=existing.due_at,
                expires_at=existing.expires_at,
                status="pending",
                state={},
                created_at=clock(),
            )
        )


def test_a_patients_own_schedule_replaces_the_program_default_for_that_flow(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    clock.at = ny(10, 8, 0)
    with ctx.db.session() as session:
        alice = session.get_one(Patient, world.alice_id)
        own = schedules.add(
            session,
            program_of(session, alice),
            flow="daily_symptoms",
            local_time=time(11, 30),
            days=EVERY_DAY,
            patient=alice,
            now=clock(),
            actor="test",
        )
        own_id = own.id

    tick_at(ctx, clock, ny(10, 9, 0))  # the program default's time: nothing for alice
    tick_at(ctx, clock, ny(10, 11, 29))
    assert fake_twilio.to(ALICE) == []
    tick_at(ctx, clock, ny(10, 11, 30))
    assert first_questions(fake_twilio, ALICE) == [FIRST_QUESTION]
    tick_at(ctx, clock, ny(10, 14, 0))
    (run,) = checkins(ctx, world.alice_id)
    assert run.schedule_id == own_id
    assert run.due_at == ny(10, 11, 30)
    assert len(fake_twilio.to(ALICE)) == 1


def test_a_paused_patient_gets_nothing_until_the_pause_date_has_passed(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    clock.at = ny(10, 8, 0)
    with ctx.db.session() as session:
        alice = session.get_one(Patient, world.alice_id)
        pause(session, alice, date(2026, 3, 11), clock(), actor="staff")

    tick_at(ctx, clock, ny(10, 9, 0))
    tick_at(ctx, clock, ny(11, 9, 0))
    assert fake_twilio.to(ALICE) == []
    assert statuses(ctx, world.alice_id) == [
        (date(2026, 3, 10), "skipped"),
        (date(2026, 3, 11), "skipped"),
    ]

    tick_at(ctx, clock, ny(12, 9, 0))  # the day after the last paused day
    assert first_questions(fake_twilio, ALICE) == [FIRST_QUESTION]
    assert statuses(ctx, world.alice_id)[-1] == (date(2026, 3, 12), "open")
    with ctx.db.session() as session:
        alice = session.get_one(Patient, world.alice_id)
        assert (alice.status, alice.paused_until) == ("active", None)


def test_a_resumed_patient_gets_texts_again_the_same_day(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    clock.at = ny(10, 8, 0)
    with ctx.db.session() as session:
        pause(
            session, session.get_one(Patient, world.alice_id), date(2026, 3, 31), clock(), actor="s"
        )
    tick_at(ctx, clock, ny(10, 9, 0))
    assert fake_twilio.to(ALICE) == []

    clock.at = ny(11, 7, 0)
    with ctx.db.session() as session:
        resume(session, session.get_one(Patient, world.alice_id), clock(), actor="staff")
    tick_at(ctx, clock, ny(11, 9, 0))
    assert first_questions(fake_twilio, ALICE) == [FIRST_QUESTION]
    assert statuses(ctx, world.alice_id) == [
        (date(2026, 3, 10), "skipped"),
        (date(2026, 3, 11), "open"),
    ]


def test_an_opted_out_patient_gets_nothing(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    tick_at(ctx, clock, ny(10, 8, 55))  # today's 09:00 run is already planned
    assert statuses(ctx, world.alice_id) == [(date(2026, 3, 10), "pending")]
    with ctx.db.session() as session:
        alice = session.get_one(Patient, world.alice_id)
        opt_out(session, alice, clock(), source="sms_keyword", actor="patient")

    for at in (ny(10, 9, 0), ny(10, 12, 0), ny(11, 9, 0), ny(12, 9, 0)):
        tick_at(ctx, clock, at)
    assert fake_twilio.to(ALICE) == []
    assert statuses(ctx, world.alice_id) == [(date(2026, 3, 10), "skipped")]


# --- quiet hours ------------------------------------------------------------------------------


@pytest.mark.parametrize("hhmm", [time(21, 0), time(22, 30), time(3, 0), time(7, 59)])
def test_a_schedule_time_inside_quiet_hours_is_refused_with_a_clear_message(
    ctx: Context, world: World, hhmm: time
) -> None:
    with ctx.db.session() as session:
        program = session.get_one(Program, world.program_id)
        with pytest.raises(ScheduleError) as refused:
            schedules.add(
                session,
                program,
                flow="daily_symptoms",
                local_time=hhmm,
                days=EVERY_DAY,
                patient=None,
                now=T0,
                actor="test",
            )
    message = str(refused.value)
    assert "quiet hours" in message and "21:00-08:00" in message
    assert f"{hhmm:%H:%M}" in message
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Schedule)) == 1  # the default


def test_the_edges_of_texting_hours_are_accepted_as_schedule_times(
    ctx: Context, world: World
) -> None:
    with ctx.db.session() as session:
        program = session.get_one(Program, world.program_id)
        for hhmm in (time(8, 0), time(20, 59)):
            schedules.add(
                session,
                program,
                flow="daily_symptoms",
                local_time=hhmm,
                days="mon",
                patient=None,
                now=T0,
                actor="test",
            )


def test_a_checkin_the_scheduler_finds_at_ten_at_night_is_never_sent_in_quiet_hours(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    # The scheduler was down all day and comes back at 22:00 New York time.
    for at in (ny(10, 22, 0), ny(10, 23, 30), ny(11, 3, 0), ny(11, 7, 59)):
        tick_at(ctx, clock, at)
    assert fake_twilio.sent == []
    (run,) = checkins(ctx, world.alice_id)
    assert (run.local_date, run.status) == (date(2026, 3, 10), "missed")
    assert "quiet hours" in run.state["reason"]

    tick_at(ctx, clock, ny(11, 9, 0))  # the next day's own check-in goes out as usual
    assert first_questions(fake_twilio, ALICE) == [FIRST_QUESTION]


def test_a_checkin_due_inside_a_clinics_narrower_quiet_hours_is_deferred_to_their_end(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    # The clinic moved the start of texting hours to 10:00 after the 09:00 schedule existed.
    with ctx.db.session() as session:
        session.get_one(Program, world.program_id).quiet_end = time(10, 0)

    tick_at(ctx, clock, ny(10, 9, 0))
    tick_at(ctx, clock, ny(10, 9, 59))
    assert fake_twilio.sent == []
    (run,) = checkins(ctx, world.alice_id)
    assert (run.status, run.due_at) == ("pending", ny(10, 10, 0))

    tick_at(ctx, clock, ny(10, 10, 0))
    assert first_questions(fake_twilio, ALICE) == [FIRST_QUESTION]


# --- catch-up and expiry ----------------------------------------------------------------------


def test_a_checkin_missed_while_the_scheduler_was_down_still_goes_out_later_that_day(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    tick_at(ctx, clock, ny(10, 11, 0))  # first tick since before 09:00
    assert first_questions(fake_twilio, ALICE) == [FIRST_QUESTION]
    (run,) = checkins(ctx, world.alice_id)
    assert run.status == "open"
    assert run.due_at == ny(10, 9, 0)
    assert run.sent_at == ny(10, 11, 0)


def test_yesterdays_checkin_is_missed_not_sent_when_the_scheduler_returns_the_next_day(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    tick_at(ctx, clock, ny(10, 8, 55))  # planned, then the scheduler died before 09:00
    assert statuses(ctx, world.alice_id) == [(date(2026, 3, 10), "pending")]

    tick_at(ctx, clock, ny(11, 11, 0))
    assert statuses(ctx, world.alice_id) == [
        (date(2026, 3, 10), "missed"),
        (date(2026, 3, 11), "open"),
    ]
    assert first_questions(fake_twilio, ALICE) == [FIRST_QUESTION]  # today's only


def test_an_unfinished_checkin_expires_at_local_midnight_with_unanswered_questions_missing(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    tick_at(ctx, clock, ny(10, 9, 0))
    clock.at = ny(10, 9, 5)
    handle_inbound(ctx, Inbound("SM" + "a" * 32, ALICE, FROM_NUMBER, "4"))  # fatigue only

    clock.at = ny(10, 23, 59)
    assert close_expired(ctx) == 0
    (run,) = checkins(ctx, world.alice_id)
    assert run.status == "open"

    clock.at = ny(11, 0, 0)
    assert close_expired(ctx) == 1
    (run,) = checkins(ctx, world.alice_id)
    assert run.status == "expired"
    with ctx.db.session() as session:
        answers = {
            a.measure: (a.status, a.value)
            for a in session.scalars(select(Answer).where(Answer.checkin_id == run.id))
        }
    assert answers == {
        "fatigue": ("answered", 4),
        "pain": ("missing", None),
        "mood": ("missing", None),
    }
    assert close_expired(ctx) == 0  # closing is done once


# --- claims, retries, deferred welcomes -------------------------------------------------------


def test_a_dead_workers_claim_is_taken_over_after_its_lease_and_sent_exactly_once(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    clock.at = ny(10, 8, 55)
    plan(ctx)
    # A worker claimed it at 09:00 and died before sending: its lease runs to 09:05.
    with ctx.db.session() as session:
        session.execute(
            update(CheckIn).values(
                status="sending", claimed_by="dead-host:4242:deadbeef", lease_until=ny(10, 9, 5)
            )
        )

    clock.at = ny(10, 9, 1)
    assert dispatch(ctx) == 0  # the lease still holds: not taken from a live worker
    assert fake_twilio.sent == []

    clock.at = ny(10, 9, 6)
    assert dispatch(ctx) == 1
    assert dispatch(ctx) == 0
    tick_at(ctx, clock, ny(10, 9, 10))
    assert first_questions(fake_twilio, ALICE) == [FIRST_QUESTION]
    (run,) = checkins(ctx, world.alice_id)
    assert run.status == "open"
    assert run.claimed_by != "dead-host:4242:deadbeef"
    with ctx.db.session() as session:
        sent = session.scalar(
            select(func.count()).select_from(Message).where(Message.checkin_id == run.id)
        )
    assert sent == 1


def test_a_first_question_that_got_a_twilio_500_is_retried_after_backoff_and_delivered(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.fail_next(500, message="internal error")
    tick_at(ctx, clock, ny(10, 9, 0))
    assert fake_twilio.requests == 1
    assert fake_twilio.sent == []
    with ctx.db.session() as session:
        message = session.scalars(select(Message).where(Message.purpose == "checkin")).one()
        assert (message.status, message.attempts) == ("pending", 1)
        assert message.send_after is not None and message.send_after > clock()

    clock.advance(seconds=10)  # inside the backoff: not tried again yet
    assert outbox.deliver_due(ctx) == 0
    assert fake_twilio.requests == 1

    clock.advance(minutes=1)
    assert outbox.deliver_due(ctx) == 1
    assert first_questions(fake_twilio, ALICE) == [FIRST_QUESTION]
    with ctx.db.session() as session:
        message = session.scalars(select(Message).where(Message.purpose == "checkin")).one()
        assert (message.status, message.attempts) == ("queued", 2)
        assert message.twilio_sid == fake_twilio.sent[0].sid
    (run,) = checkins(ctx, world.alice_id)
    assert run.status == "open"
    tick_at(ctx, clock, ny(10, 10, 0))
    assert len(fake_twilio.to(ALICE)) == 1


def test_a_welcome_queued_at_night_goes_out_at_eight_local_not_before(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    frank = "+16175550103"
    clock.at = ny(9, 22, 0)  # staff enrol frank late in the evening
    with ctx.db.session() as session:
        enrol(
            session,
            NewPatient(frank, "Frank", "America/New_York"),
            clock(),
            actor="staff",
            sender=FROM_NUMBER,
        )

    for at in (ny(9, 22, 0), ny(9, 23, 59), ny(10, 3, 0), ny(10, 7, 59)):
        clock.at = at
        outbox.deliver_due(ctx)
    assert fake_twilio.to(frank) == []

    clock.at = ny(10, 8, 0)
    assert outbox.deliver_due(ctx) == 1
    (welcome,) = fake_twilio.to(frank)
    assert "STOP" in welcome.body and "HELP" in welcome.body
    with ctx.db.session() as session:
        message = session.scalars(select(Message).where(Message.purpose == "welcome")).one()
        assert message.sent_at == ny(10, 8, 0)


# --- the pure arithmetic ----------------------------------------------------------------------


def test_nine_local_stays_nine_local_across_the_spring_forward_change() -> None:
    daily = Schedule(flow="daily_symptoms", local_time=time(9, 0), days=EVERY_DAY)
    start = datetime(2026, 3, 7, tzinfo=NEW_YORK)
    found = schedules.occurrences(daily, NEW_YORK, start, start + timedelta(days=3))
    assert found == [
        datetime(2026, 3, 7, 14, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 13, 0, tzinfo=UTC),
        datetime(2026, 3, 9, 13, 0, tzinfo=UTC),
    ]
    assert {f.astimezone(NEW_YORK).time() for f in found} == {time(9, 0)}


def test_nine_local_stays_nine_local_across_the_fall_back_change() -> None:
    daily = Schedule(flow="daily_symptoms", local_time=time(9, 0), days=EVERY_DAY)
    start = datetime(2026, 10, 31, tzinfo=NEW_YORK)
    found = schedules.occurrences(daily, NEW_YORK, start, start + timedelta(days=2))
    assert found == [
        datetime(2026, 10, 31, 13, 0, tzinfo=UTC),
        datetime(2026, 11, 1, 14, 0, tzinfo=UTC),
    ]


def test_the_preview_shows_local_nine_with_the_offset_of_each_day(
    ctx: Context, world: World
) -> None:
    with ctx.db.session() as session:
        alice = session.get_one(Patient, world.alice_id)
        sends = schedules.preview(
            alice,
            program_of(session, alice),
            schedules.for_patient(session, alice),
            datetime(2026, 3, 7, tzinfo=NEW_YORK),
            3,
        )
    assert [(s.local_time.isoformat(), s.utc_time) for s in sends] == [
        ("2026-03-07T09:00:00-05:00", datetime(2026, 3, 7, 14, 0, tzinfo=UTC)),
        ("2026-03-08T09:00:00-04:00", datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
        ("2026-03-09T09:00:00-04:00", datetime(2026, 3, 9, 13, 0, tzinfo=UTC)),
    ]
    assert {s.flow for s in sends} == {"daily_symptoms"}


def test_the_preview_leaves_out_paused_days(ctx: Context, world: World) -> None:
    with ctx.db.session() as session:
        alice = session.get_one(Patient, world.alice_id)
        pause(session, alice, date(2026, 3, 11), T0, actor="staff")
        sends = schedules.preview(
            alice,
            program_of(session, alice),
            schedules.for_patient(session, alice),
            datetime(2026, 3, 10, tzinfo=NEW_YORK),
            4,
        )
    assert [s.local_time.date() for s in sends] == [date(2026, 3, 12), date(2026, 3, 13)]
