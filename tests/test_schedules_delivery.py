"""Schedules admins configure, delivered exactly once, on time, within quiet hours.

Each test says what an admin or a patient would notice: a text at 10:00 their time on the days
after an infusion and on no other day, one text a day whatever the clocks do, nothing before the
clinic's texting hours, missed days recorded as missed, a rate limit that holds across workers,
texts Twilio drops rather than delivers in the night, and no patient lost or texted twice when
the fake Twilio misbehaves or a worker is killed mid-batch.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import signal
import time as _time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from checkin import outbox, schedules
from checkin.catalog import render
from checkin.cli import cli
from checkin.clock import FrozenClock
from checkin.config import load_settings
from checkin.context import Context, make_context
from checkin.conversations import Inbound, handle_inbound
from checkin.db import Database
from checkin.models import (
    Alert,
    CheckIn,
    ConsentEvent,
    Message,
    Patient,
    Program,
    Schedule,
    SendRateSlot,
)
from checkin.patients import NewPatient, add_infusion, enrol
from checkin.programs import default_program
from checkin.ratelimit import SendRateLimiter
from checkin.scheduler import tick
from checkin.schedules import ScheduleError
from checkin.transports import sms_transport
from tests.conftest import (
    ALICE,
    BOB,
    PUBLIC_URL,
    T0,
    World,
    enrol_many,
    signed_post,
    twilio_env,
)
from tests.fake_twilio import ACCOUNT_SID, FROM_NUMBER, Failure, FakeTwilio, _reply
from tests.procs import Process, wait_until

NEW_YORK = ZoneInfo("America/New_York")
EVERY_DAY = "mon,tue,wed,thu,fri,sat,sun"
ASK_FATIGUE = render("ask_fatigue", "en")
ASK_PHQ2 = render("ask_phq2_interest", "en")


# --- helpers -----------------------------------------------------------------------------


def ny(d: int, hh: int, mm: int = 0, m: int = 3) -> datetime:
    """A wall-clock time in New York in 2026, as the UTC instant the frozen clock holds."""
    return datetime(2026, m, d, hh, mm, tzinfo=NEW_YORK).astimezone(UTC)


def march(*days: int) -> list[date]:
    return [date(2026, 3, d) for d in days]


def tick_at(ctx: Context, clock: FrozenClock, at: datetime) -> None:
    clock.at = at
    counts = tick(ctx)
    assert -1 not in counts.values(), f"a scheduler step failed: {counts}"


def ticks_sending(
    ctx: Context, clock: FrozenClock, fake: FakeTwilio, days: Sequence[date], at: Sequence[time]
) -> list[datetime]:
    """Tick at each New York time of each day; the local (naive) times a new text went out."""
    sent: list[datetime] = []
    for day in days:
        for hhmm in at:
            before = len(fake.sent)
            tick_at(ctx, clock, datetime.combine(day, hhmm, tzinfo=NEW_YORK).astimezone(UTC))
            sent += [datetime.combine(day, hhmm)] * (len(fake.sent) - before)
    return sent


def cli_env(db_url: str, fake: FakeTwilio, at: datetime) -> dict[str, str]:
    """CLI verbs read their own clock: start it at `at` so schedules exist before the ticks."""
    return twilio_env(db_url, fake, CHECKIN_CLOCK_START=at.isoformat())


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def one_line_error(result: Result, *expected: str) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for word in expected:
        assert word in lines[0], lines[0]
    return lines[0]


def remove_program_default(env: dict[str, str], ctx: Context) -> None:
    """The clinic drops the built-in 09:00 daily check-in (so only what a test adds is sent)."""
    with ctx.db.session() as session:
        default_id = session.scalars(select(Schedule.id).where(Schedule.patient_id.is_(None))).one()
    ok(invoke(env, "schedules", "remove", str(default_id)))


def checkins_of(ctx: Context, patient_id: int) -> list[CheckIn]:
    with ctx.db.session() as session:
        stmt = select(CheckIn).where(CheckIn.patient_id == patient_id).order_by(CheckIn.due_at)
        return list(session.scalars(stmt))


def reply(ctx: Context, phone: str, body: str) -> None:
    handle_inbound(ctx, Inbound("SM" + secrets.token_hex(16), phone, FROM_NUMBER, body))


def schedule_for(
    ctx: Context, patient_id: int | None, flow: str, at: time, days: str = EVERY_DAY
) -> None:
    with ctx.db.session() as session:
        patient = session.get_one(Patient, patient_id) if patient_id else None
        schedules.add(
            session,
            default_program(session, T0),
            flow=flow,
            local_time=at,
            days=days,
            patient=patient,
            now=T0 - timedelta(days=1),
            actor="test",
        )


@dataclass
class ScriptedTwilio(FakeTwilio):
    """The fake Twilio, plus failures aimed at one number and a delay on every request."""

    by_number: dict[str, list[Failure]] = field(default_factory=dict)
    tried: Counter[str] = field(default_factory=Counter)
    delay: float = 0.0

    def fail_number(self, number: str, http_status: int, code: int, times: int) -> None:
        with self.lock:
            failures = self.by_number.setdefault(number, [])
            failures.extend(Failure(http_status, code, f"error {code}") for _ in range(times))

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length)
        to = dict(urllib.parse.parse_qsl(raw.decode())).get("To", "")
        if self.delay:
            _time.sleep(self.delay)
        with self.lock:
            self.tried[to] += 1
            queued = self.by_number.get(to)
            failure = queued.pop(0) if queued else None
            if failure is not None:
                self.requests += 1
        if failure is not None:
            body = {"code": failure.code, "message": failure.message, "status": failure.http_status}
            return _reply(request, failure.http_status, body)
        connection = request.rfile
        request.rfile = io.BytesIO(raw)
        try:
            super().handle(request)
        finally:
            request.rfile = connection  # keep-alive: the next request reads the socket


# --- 1. local time: one send per local day, whatever the clocks do --------------------------


def daily(at: time) -> Schedule:
    return Schedule(flow="daily_symptoms", local_time=at, days=EVERY_DAY, kind="recurring")


# (zone, the local day of the change, where that day's gap starts, how long it is)
CHANGES = [
    pytest.param("America/New_York", date(2026, 3, 8), time(2, 0), 60, id="new-york-spring"),
    pytest.param("America/New_York", date(2026, 11, 1), None, 0, id="new-york-fall"),
    pytest.param("Europe/London", date(2026, 3, 29), time(1, 0), 60, id="london-spring"),
    pytest.param("Europe/London", date(2026, 10, 25), None, 0, id="london-fall"),
    pytest.param("Australia/Lord_Howe", date(2026, 10, 4), time(2, 0), 30, id="lord-howe-spring"),
    pytest.param("Australia/Lord_Howe", date(2026, 4, 5), None, 0, id="lord-howe-fall"),
    pytest.param("Asia/Kolkata", date(2026, 3, 8), None, 0, id="kolkata-no-dst"),
    pytest.param("America/Phoenix", date(2026, 11, 1), None, 0, id="phoenix-no-dst"),
]


@pytest.mark.parametrize(("zone_name", "change", "gap_start", "gap_minutes"), CHANGES)
def test_every_time_of_day_is_sent_exactly_once_per_local_day_through_a_week_with_a_clock_change(
    zone_name: str, change: date, gap_start: time | None, gap_minutes: int
) -> None:
    zone = ZoneInfo(zone_name)
    week = [change + timedelta(days=n) for n in range(-3, 4)]
    start = datetime.combine(week[0], time(0), tzinfo=zone)
    end = datetime.combine(week[-1] + timedelta(days=1), time(0), tzinfo=zone)
    gap = timedelta(minutes=gap_minutes)
    for minute in range(0, 24 * 60, 15):
        at = time(minute // 60, minute % 60)
        found = [f.astimezone(zone) for f in schedules.occurrences(daily(at), zone, start, end)]
        assert [f.date() for f in found] == week, (zone_name, at)
        for sent in found:
            wall = datetime.combine(sent.date(), at)
            in_gap = (
                gap_start is not None
                and sent.date() == change
                and gap_start <= at < (datetime.combine(change, gap_start) + gap).time()
            )
            # Only a time the clocks skip moves (forward by the gap); every other stays put.
            assert sent.replace(tzinfo=None) == (wall + gap if in_gap else wall), (zone_name, at)


@pytest.mark.parametrize(
    ("zone_name", "day", "at", "expected_utc", "expected_local"),
    [
        # Spring forward: the skipped time moves forward by the gap.
        ("America/New_York", date(2026, 3, 8), time(2, 30), "2026-03-08T07:30", "03:30-04:00"),
        ("Europe/London", date(2026, 3, 29), time(1, 30), "2026-03-29T01:30", "02:30+01:00"),
        ("Australia/Lord_Howe", date(2026, 10, 4), time(2, 15), "2026-10-03T15:45", "02:45+11:00"),
        # Fall back: the repeated time fires once, at its first occurrence.
        ("America/New_York", date(2026, 11, 1), time(1, 30), "2026-11-01T05:30", "01:30-04:00"),
        ("Europe/London", date(2026, 10, 25), time(1, 30), "2026-10-25T00:30", "01:30+01:00"),
        ("Australia/Lord_Howe", date(2026, 4, 5), time(1, 45), "2026-04-04T14:45", "01:45+11:00"),
    ],
)
def test_a_skipped_time_moves_forward_and_a_repeated_time_fires_once_at_its_first_occurrence(
    zone_name: str, day: date, at: time, expected_utc: str, expected_local: str
) -> None:
    zone = ZoneInfo(zone_name)
    instant = schedules.local_instant(day, at, zone)
    assert instant == datetime.fromisoformat(expected_utc).replace(tzinfo=UTC)
    assert (
        instant.astimezone(zone).isoformat()[11:] == expected_local[:5] + ":00" + expected_local[5:]
    )
    whole_day = schedules.occurrences(
        daily(at),
        zone,
        datetime.combine(day, time(0), tzinfo=zone),
        datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone),
    )
    assert whole_day == [instant]


def test_nine_oclock_in_a_zone_without_dst_is_the_same_utc_instant_every_day() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    start = datetime(2026, 3, 5, tzinfo=kolkata)
    found = schedules.occurrences(daily(time(9, 0)), kolkata, start, start + timedelta(days=7))
    assert [(f.hour, f.minute) for f in found] == [(3, 30)] * 7


def test_infusion_follow_ups_fire_at_ten_local_on_days_1_3_7_14_across_the_dst_change() -> None:
    post = Schedule(
        flow="post_infusion",
        local_time=time(10, 0),
        days=EVERY_DAY,
        kind="infusion",
        day_offsets="1,3,7,14",
    )
    start = datetime(2026, 3, 1, tzinfo=NEW_YORK)
    found = schedules.dues(
        post, NEW_YORK, start, start + timedelta(days=40), [(5, date(2026, 3, 7))]
    )
    assert [(d.at.astimezone(NEW_YORK).isoformat(), d.infusion_id) for d in found] == [
        ("2026-03-08T10:00:00-04:00", 5),  # the day the clocks sprang forward
        ("2026-03-10T10:00:00-04:00", 5),
        ("2026-03-14T10:00:00-04:00", 5),
        ("2026-03-21T10:00:00-04:00", 5),
    ]
    both = schedules.dues(
        post,
        NEW_YORK,
        start,
        start + timedelta(days=40),
        [(5, date(2026, 3, 7)), (6, date(2026, 3, 9))],
    )
    days = [d.local_date for d in both]
    assert days == march(8, 10, 12, 14, 16, 21, 23)  # the 10th is day 3 of one, day 1 of other


@pytest.mark.parametrize("offsets", ["1,x", "-1", "400", "", " , "])
def test_days_after_an_infusion_outside_0_to_365_or_not_numbers_are_refused(offsets: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        schedules.parse_offsets(offsets)
    assert "days after infusion" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert schedules.parse_offsets("14, 1,7,3,3") == [1, 3, 7, 14]


# --- 2. infusion-relative schedules, end to end ------------------------------------------------


def test_post_infusion_check_ins_go_out_at_ten_local_on_days_1_3_7_and_14_and_on_no_other_day(
    db_url: str, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    env = cli_env(db_url, fake_twilio, ny(9, 12))
    remove_program_default(env, ctx)
    added = ok(
        invoke(
            env,
            *("schedules", "add", "--flow", "post_infusion", "--time", "10:00"),
            *("--after-infusion", "14,7,3,1"),
        )
    )
    assert "days 1,3,7,14 after each infusion" in added
    ok(invoke(env, "infusions", "add", "--phone", ALICE, "--date", "2026-03-10"))
    preview = ok(
        invoke(
            env, "schedules", "preview", "--phone", ALICE, "--from", "2026-03-09", "--days", "30"
        )
    )
    assert preview.splitlines() == [
        "phone,flow,local_time,utc_time",
        f"{ALICE},post_infusion,2026-03-11T10:00:00-04:00,2026-03-11T14:00:00+00:00",
        f"{ALICE},post_infusion,2026-03-13T10:00:00-04:00,2026-03-13T14:00:00+00:00",
        f"{ALICE},post_infusion,2026-03-17T10:00:00-04:00,2026-03-17T14:00:00+00:00",
        f"{ALICE},post_infusion,2026-03-24T10:00:00-04:00,2026-03-24T14:00:00+00:00",
    ]

    days = [date(2026, 3, 10) + timedelta(days=n) for n in range(18)]
    sent = ticks_sending(ctx, clock, fake_twilio, days, (time(9, 59), time(10, 0), time(10, 1)))

    assert sent == [datetime.combine(d, time(10, 0)) for d in march(11, 13, 17, 24)]
    assert {s.to for s in fake_twilio.sent} == {ALICE}
    with ctx.db.session() as session:
        infusion_id = session.scalars(select(CheckIn.treatment_event_id).distinct()).one()
    runs = checkins_of(ctx, world.alice_id)
    assert [(r.flow, r.local_date, r.treatment_event_id) for r in runs] == [
        ("post_infusion", day, infusion_id) for day in march(11, 13, 17, 24)
    ]
    assert infusion_id is not None
    assert [r.due_at for r in runs] == [ny(d, 10) for d in (11, 13, 17, 24)]


def test_two_infusions_whose_follow_ups_land_on_one_day_send_one_check_in_that_day(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    with ctx.db.session() as session:
        session.execute(update(Schedule).values(active=False))  # no daily check-in
        schedules.add(
            session,
            session.get_one(Program, world.program_id),
            flow="post_infusion",
            local_time=time(10, 0),
            days=EVERY_DAY,
            patient=None,
            now=T0 - timedelta(days=1),
            actor="test",
            day_offsets="1,3,7,14",
        )
        alice = session.get_one(Patient, world.alice_id)
        first = add_infusion(session, alice, date(2026, 3, 10), T0, actor="test")
        second = add_infusion(session, alice, date(2026, 3, 12), T0, actor="test")
        session.flush()
        first_id, second_id = first.id, second.id

    days = [date(2026, 3, 10) + timedelta(days=n) for n in range(18)]
    sent = ticks_sending(ctx, clock, fake_twilio, days, (time(10, 0), time(10, 1)))

    # 10th + 1, 3, 7, 14 and 12th + 1, 3, 7, 14: the 13th is day 3 of one and day 1 of the other.
    wanted = march(11, 13, 15, 17, 19, 24, 26)
    assert sent == [datetime.combine(d, time(10, 0)) for d in wanted]
    runs = {r.local_date: r.treatment_event_id for r in checkins_of(ctx, world.alice_id)}
    assert list(runs) == wanted
    only_first, only_second = march(11, 17, 24), march(15, 19, 26)
    assert {runs[d] for d in only_first} == {first_id}
    assert {runs[d] for d in only_second} == {second_id}
    assert runs[date(2026, 3, 13)] == second_id  # the shared day follows the latest infusion


@pytest.mark.parametrize("offsets", ["1,x", "-1", "400"])
def test_schedules_add_refuses_bad_days_after_infusion_in_one_line(
    db_url: str, fake_twilio: FakeTwilio, world: World, ctx: Context, offsets: str
) -> None:
    env = cli_env(db_url, fake_twilio, T0)
    refused = invoke(
        env,
        *("schedules", "add", "--flow", "post_infusion", "--time", "10:00"),
        f"--after-infusion={offsets}",
    )
    one_line_error(refused, "days after infusion", offsets)
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Schedule)) == 1  # the default


def test_schedules_add_refuses_days_of_the_week_together_with_days_after_infusion(
    db_url: str, fake_twilio: FakeTwilio, world: World, ctx: Context
) -> None:
    env = cli_env(db_url, fake_twilio, T0)
    refused = invoke(
        env,
        *("schedules", "add", "--flow", "post_infusion", "--time", "10:00"),
        *("--days", "mon", "--after-infusion", "1,3"),
    )
    one_line_error(refused, "--days", "--after-infusion")
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Schedule)) == 1


# --- 3. dates, several times a day, overrides per flow -----------------------------------------


def test_a_schedule_with_start_and_end_dates_sends_only_on_the_days_between_them(
    db_url: str, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    env = cli_env(db_url, fake_twilio, ny(9, 12))
    remove_program_default(env, ctx)
    ok(
        invoke(
            env,
            *("schedules", "add", "--flow", "daily_symptoms", "--time", "10:00"),
            *("--start", "2026-03-12", "--end", "2026-03-14"),
        )
    )
    one_line_error(
        invoke(
            env,
            *("schedules", "add", "--flow", "daily_symptoms", "--time", "11:00"),
            *("--start", "2026-03-14", "--end", "2026-03-12"),
        ),
        "before",
    )

    sent = ticks_sending(ctx, clock, fake_twilio, march(*range(10, 18)), (time(10, 0),))

    assert sent == [datetime.combine(d, time(10, 0)) for d in march(12, 13, 14)]


def test_two_times_make_two_schedules_and_a_patient_who_answers_gets_two_check_ins_a_day(
    db_url: str, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    env = cli_env(db_url, fake_twilio, ny(9, 12))
    out = ok(
        invoke(
            env,
            *("schedules", "add", "--flow", "daily_symptoms", "--time", "10:00,18:00"),
            *("--phone", ALICE),
        )
    )
    assert len([line for line in out.splitlines() if line.startswith("schedule ")]) == 2
    listed = ok(invoke(env, "schedules", "list")).splitlines()[1:]
    assert len([line for line in listed if ALICE in line]) == 2

    sent: list[datetime] = []
    for day in march(10, 11):
        # Her own times replace the program's 09:00 for this flow.
        sent += ticks_sending(ctx, clock, fake_twilio, [day], (time(9, 0), time(10, 0)))
        clock.advance(minutes=5)
        reply(ctx, ALICE, "5 5 5")
        sent += ticks_sending(ctx, clock, fake_twilio, [day], (time(17, 59), time(18, 0)))
        clock.advance(minutes=5)
        reply(ctx, ALICE, "4 4 4")

    assert sent == [
        datetime.combine(d, t) for d in march(10, 11) for t in (time(10, 0), time(18, 0))
    ]
    assert [s.body for s in fake_twilio.to(ALICE)] == [ASK_FATIGUE] * 4
    assert [r.status for r in checkins_of(ctx, world.alice_id)] == ["completed"] * 4


def test_a_patients_own_weekly_mood_schedule_leaves_the_programs_daily_check_in_in_place(
    db_url: str, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    env = cli_env(db_url, fake_twilio, ny(9, 12))
    ok(
        invoke(
            env,
            *("schedules", "add", "--flow", "weekly_mood", "--time", "11:00"),
            *("--days", "tue", "--phone", ALICE),
        )
    )

    tick_at(ctx, clock, ny(10, 9, 0))  # Tuesday
    clock.advance(minutes=5)
    reply(ctx, ALICE, "5 5 5")
    tick_at(ctx, clock, ny(10, 11, 0))
    tick_at(ctx, clock, ny(11, 9, 0))  # Wednesday: the daily only
    tick_at(ctx, clock, ny(11, 11, 0))

    assert [s.body for s in fake_twilio.to(ALICE)] == [ASK_FATIGUE, ASK_PHQ2, ASK_FATIGUE]
    runs = checkins_of(ctx, world.alice_id)
    assert [(r.local_date, r.flow, r.due_at) for r in runs] == [
        (date(2026, 3, 10), "daily_symptoms", ny(10, 9)),
        (date(2026, 3, 10), "weekly_mood", ny(10, 11)),
        (date(2026, 3, 11), "daily_symptoms", ny(11, 9)),
    ]


# --- 4. quiet hours per program, narrower only -----------------------------------------------


def test_texting_hours_from_ten_defer_the_nine_oclock_check_in_to_ten_and_refuse_earlier_times(
    db_url: str, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    env = cli_env(db_url, fake_twilio, ny(9, 12))
    out = ok(invoke(env, "programs", "texting-hours", "--from", "10:00", "--until", "20:00"))
    assert "10:00" in out and "20:00" in out

    for at in (ny(10, 9, 0), ny(10, 9, 30), ny(10, 9, 59)):
        tick_at(ctx, clock, at)
    assert fake_twilio.sent == []
    tick_at(ctx, clock, ny(10, 10, 0))
    assert [s.body for s in fake_twilio.to(ALICE)] == [ASK_FATIGUE]
    (run,) = checkins_of(ctx, world.alice_id)
    assert (run.status, run.sent_at) == ("open", ny(10, 10, 0))

    for hhmm in ("09:30", "20:30"):
        refused = invoke(env, "schedules", "add", "--flow", "weekly_mood", "--time", hhmm)
        one_line_error(refused, hhmm, "quiet hours", "20:00-10:00")
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Schedule)) == 1


@pytest.mark.parametrize(
    ("start", "until", "named"),
    [("07:00", "20:00", "08:00"), ("10:00", "22:00", "21:00"), ("07:59", "21:01", "08:00")],
)
def test_texting_hours_can_be_narrowed_but_never_widened_past_eight_to_nine(
    db_url: str,
    ctx: Context,
    world: World,
    fake_twilio: FakeTwilio,
    start: str,
    until: str,
    named: str,
) -> None:
    env = cli_env(db_url, fake_twilio, T0)
    refused = invoke(env, "programs", "texting-hours", "--from", start, "--until", until)
    one_line_error(refused, named)
    with ctx.db.session() as session:
        program = session.get_one(Program, world.program_id)
        assert (program.quiet_end, program.quiet_start) == (time(8, 0), time(21, 0))


# --- 5. outage catch-up ---------------------------------------------------------------------


def test_days_the_scheduler_was_down_are_recorded_as_missed_with_a_reason_and_never_sent(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    tick_at(ctx, clock, ny(10, 9, 0))
    tick_at(ctx, clock, ny(10, 9, 1))  # then the scheduler is down for two whole days

    tick_at(ctx, clock, ny(13, 11, 0))

    runs = checkins_of(ctx, world.alice_id)
    assert [(r.local_date, r.status) for r in runs] == [
        (date(2026, 3, 10), "expired"),
        (date(2026, 3, 11), "missed"),
        (date(2026, 3, 12), "missed"),
        (date(2026, 3, 13), "open"),
    ]
    assert all("scheduler was not running" in r.state["reason"] for r in runs[1:3])
    assert all(r.sent_at is None for r in runs[1:3])
    assert [s.body for s in fake_twilio.to(ALICE)] == [ASK_FATIGUE, ASK_FATIGUE]
    with ctx.db.session() as session:
        sent_for = session.scalars(
            select(CheckIn.local_date).join(Message, Message.checkin_id == CheckIn.id)
        )
        assert sorted(sent_for) == march(10, 13)


def test_the_first_tick_of_a_brand_new_deployment_records_no_missed_days_before_it(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    tick_at(ctx, clock, ny(13, 11, 0))  # alice was enrolled two weeks earlier

    runs = checkins_of(ctx, world.alice_id)
    assert [(r.local_date, r.status) for r in runs] == [(date(2026, 3, 13), "open")]
    assert [s.body for s in fake_twilio.to(ALICE)] == [ASK_FATIGUE]


# --- 6. the send rate limit -----------------------------------------------------------------


def advancing(clock: FrozenClock) -> Callable[[float], None]:
    """A sleep that moves the frozen clock instead of waiting."""

    def sleep(seconds: float) -> None:
        clock.advance(seconds=seconds)

    return sleep


def test_two_sends_a_second_means_five_sends_take_three_windows_never_three_in_one(
    ctx: Context, clock: FrozenClock
) -> None:
    limiter = SendRateLimiter(ctx.db, 2, clock, sleep=advancing(clock))
    allowed = []
    for _ in range(5):
        limiter.acquire()
        allowed.append(clock())
    second = timedelta(seconds=1)
    assert allowed == [T0, T0, T0 + second, T0 + second, T0 + 2 * second]


def test_two_workers_sharing_one_database_share_one_send_rate_budget(
    ctx: Context, clock: FrozenClock
) -> None:
    other_db = Database(ctx.settings.database_url)  # a second worker: its own engine
    try:
        workers = [
            SendRateLimiter(ctx.db, 2, clock, sleep=advancing(clock)),
            SendRateLimiter(other_db, 2, clock, sleep=advancing(clock)),
        ]
        allowed = []
        for n in range(6):
            workers[n % 2].acquire()
            allowed.append(clock())
    finally:
        other_db.dispose()
    per_second = Counter(int(at.timestamp()) for at in allowed)
    assert sorted(per_second.values()) == [2, 2, 2]
    assert allowed[-1] == T0 + timedelta(seconds=2)


def test_half_a_send_a_second_allows_one_send_every_two_seconds(
    ctx: Context, clock: FrozenClock
) -> None:
    limiter = SendRateLimiter(ctx.db, 0.5, clock, sleep=advancing(clock))
    allowed = []
    for _ in range(3):
        limiter.acquire()
        allowed.append(clock() - T0)
    assert allowed == [timedelta(0), timedelta(seconds=2), timedelta(seconds=4)]


def test_seven_check_ins_due_at_once_go_out_at_most_three_a_second_when_the_rate_is_three(
    db_url: str, fake_twilio: FakeTwilio
) -> None:
    rated = make_context(
        load_settings(twilio_env(db_url, fake_twilio, CHECKIN_SEND_RATE_PER_SECOND="3"))
    )
    clock = FrozenClock(ny(10, 9, 0))
    rated.clock = clock
    assert rated.limiter is not None
    rated.limiter.sleep = advancing(clock)
    phones = [f"+1617555{1100 + n}" for n in range(7)]
    try:
        with rated.db.session() as session:
            for phone in phones:
                enrol(
                    session,
                    NewPatient(phone, f"Patient {phone[-2:]}", "America/New_York"),
                    T0 - timedelta(days=7),
                    actor="test",
                    sender=FROM_NUMBER,
                    welcome=False,
                )
        assert -1 not in tick(rated).values()
        with rated.db.session() as session:
            windows = {s.window_start: s.used for s in session.scalars(select(SendRateSlot))}
    finally:
        rated.db.dispose()

    assert sorted(s.to for s in fake_twilio.sent) == phones
    assert sum(windows.values()) == 7
    assert max(windows.values()) <= 3
    assert len(windows) >= 3
    assert clock() >= ny(10, 9, 0) + timedelta(seconds=2)


def test_a_page_to_staff_never_waits_for_the_send_rate_while_a_check_in_does(
    db_url: str, fake_twilio: FakeTwilio
) -> None:
    rated = make_context(
        load_settings(twilio_env(db_url, fake_twilio, CHECKIN_SEND_RATE_PER_SECOND="1"))
    )
    clock = FrozenClock(ny(10, 9, 0))
    rated.clock = clock
    waited: list[float] = []
    assert rated.limiter is not None
    rated.limiter.sleep = lambda seconds: (waited.append(seconds), clock.advance(seconds=seconds))
    try:
        rated.limiter.acquire()  # this second's one slot is taken (the morning's check-ins)
        with rated.db.session() as session:
            common = {"from_number": FROM_NUMBER, "now": clock()}
            page = outbox.queue(session, to=BOB, body="page", purpose="alert", **common)
            welcome = outbox.queue(session, to=BOB, body="welcome", purpose="welcome", **common)
            page_id, welcome_id = page.id, welcome.id
        assert outbox.deliver(rated, page_id) == "queued"
        assert waited == [] and clock() == ny(10, 9, 0)  # the page left at once
        assert outbox.deliver(rated, welcome_id) == "queued"
        assert waited and clock() >= ny(10, 9, 0) + timedelta(seconds=1)  # this one waited
    finally:
        rated.db.dispose()
    assert [s.body for s in fake_twilio.sent] == ["page", "welcome"]


def test_a_rate_limited_batch_still_waiting_at_nine_pm_sends_nothing_after_nine(
    db_url: str, fake_twilio: FakeTwilio
) -> None:
    rated = make_context(
        load_settings(twilio_env(db_url, fake_twilio, CHECKIN_SEND_RATE_PER_SECOND="1"))
    )
    clock = FrozenClock(ny(10, 20, 59) + timedelta(seconds=58))
    rated.clock = clock
    assert rated.limiter is not None
    rated.limiter.sleep = advancing(clock)
    try:
        with rated.db.session() as session:
            for n in range(4):
                enrol(
                    session,
                    NewPatient(f"+1617555{1300 + n}", f"Patient {n}", "America/New_York"),
                    T0 - timedelta(days=7),
                    actor="test",
                    sender=FROM_NUMBER,
                    welcome=False,
                )
        # The scheduler comes back at 20:59:58: four of today's check-ins are due, one a second.
        assert -1 not in tick(rated).values()
    finally:
        rated.db.dispose()
    assert len(fake_twilio.sent) <= 2  # 20:59:58 and 20:59:59; 21:00:00 is quiet hours


# --- 7. ValidityPeriod ------------------------------------------------------------------------


def test_a_first_question_may_wait_at_twilio_at_most_two_hours_and_never_into_quiet_hours(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    schedule_for(ctx, world.alice_id, "weekly_mood", time(20, 0))

    tick_at(ctx, clock, ny(10, 9, 0))
    clock.advance(minutes=5)
    reply(ctx, ALICE, "4 9 6")  # pain 9: a severe reading pages bob at once
    tick_at(ctx, clock, ny(10, 20, 0))
    tick_at(ctx, clock, ny(11, 20, 30))  # the next day the scheduler was late

    to_alice = fake_twilio.to(ALICE)
    assert [s.body for s in to_alice] == [ASK_FATIGUE, ASK_PHQ2, ASK_FATIGUE]
    # 09:00: two hours; 20:00: one hour to 21:00; the day-late 09:00 sent at 20:30: half an hour.
    assert [s.form["ValidityPeriod"] for s in to_alice] == ["7200", "3600", "1800"]
    (page,) = fake_twilio.to(BOB)
    assert "ValidityPeriod" not in page.form


# --- 8. a storm of Twilio errors --------------------------------------------------------------


def test_a_storm_of_twilio_errors_ends_with_one_first_question_each_and_the_failures_exported(
    db_url: str, ctx: Context, clock: FrozenClock
) -> None:
    fake = ScriptedTwilio()
    fake.start()
    ctx.sms = sms_transport(load_settings(twilio_env(db_url, fake)))
    try:
        _storm(db_url, ctx, clock, fake)
    finally:
        fake.stop()


def _storm(db_url: str, ctx: Context, clock: FrozenClock, fake: ScriptedTwilio) -> None:
    phones = [f"+1617555{1200 + n}" for n in range(20)]
    stopped, invalid, dead = phones[3], phones[11], phones[17]
    good = [p for p in phones if p not in (stopped, invalid, dead)]
    with ctx.db.session() as session:
        ids = {
            phone: enrol(
                session,
                NewPatient(phone, f"Patient {phone[-2:]}", "America/New_York"),
                T0 - timedelta(days=7),
                actor="test",
                sender=FROM_NUMBER,
                welcome=False,
            ).id
            for phone in phones
        }
    fake.fail_next(429, 20429, "Too Many Requests", times=5)
    fake.fail_next(500, None, "Internal Server Error", times=5)
    fake.fail_number(stopped, 400, 21610, times=10)
    fake.fail_number(invalid, 400, 21211, times=10)
    fake.fail_number(dead, 429, 20429, times=100)  # never gets through

    for n in range(41):  # every 30 s from 09:00 to 09:20
        tick_at(ctx, clock, ny(10, 9, 0) + timedelta(seconds=30 * n))

    per_phone = Counter(s.to for s in fake.sent)
    assert sorted(per_phone) == sorted(good)
    assert set(per_phone.values()) == {1}  # nobody texted twice
    assert all(s.body == ASK_FATIGUE for s in fake.sent)
    assert fake.failures == []  # the ten transient errors were all met, and retried
    assert (fake.tried[stopped], fake.tried[invalid], fake.tried[dead]) == (
        1,
        1,
        outbox.MAX_ATTEMPTS,
    )

    with ctx.db.session() as session:
        status = {p: session.get_one(Patient, ids[p]).status for p in phones}
        runs = {
            p: session.scalars(select(CheckIn).where(CheckIn.patient_id == ids[p])).one()
            for p in phones
        }
        consent = session.scalars(
            select(ConsentEvent.source).where(
                ConsentEvent.patient_id == ids[stopped], ConsentEvent.kind == "opted_out"
            )
        ).all()
        alerts = [(a.patient_id, a.kind, a.severity) for a in session.scalars(select(Alert))]
    assert status == {
        **{p: "active" for p in phones},
        stopped: "opted_out",
        invalid: "number_invalid",
    }
    assert consent == ["twilio_error_21610"]
    assert alerts == [(ids[invalid], "delivery_failure", "routine")]
    assert {runs[p].status for p in good} == {"open"}
    assert runs[invalid].status == runs[dead].status == "failed"
    assert "not delivered" in runs[dead].state["reason"]
    assert runs[stopped].status != "open"  # no reminder will chase a patient who said STOP

    exported = ok(invoke(twilio_env(db_url, fake), "export", "messages", "--status", "failed"))
    failed = {
        row["phone"]: (row["error_code"], row["attempts"])
        for row in csv.DictReader(io.StringIO(exported))
    }
    assert failed == {
        stopped: ("21610", "1"),
        invalid: ("21211", "1"),
        dead: ("20429", str(outbox.MAX_ATTEMPTS)),
    }


# --- 9. an undelivered first question ---------------------------------------------------------


def test_an_undelivered_first_question_fails_its_check_in_instead_of_expiring_as_ignored(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    tick_at(ctx, clock, ny(10, 9, 0))
    (sent,) = fake_twilio.sent
    assert sent.status_callback is not None
    clock.advance(minutes=1)
    params = {
        "MessageSid": sent.sid,
        "SmsSid": sent.sid,
        "MessageStatus": "undelivered",
        "SmsStatus": "undelivered",
        "ErrorCode": "30003",
        "AccountSid": ACCOUNT_SID,
        "To": ALICE,
        "From": FROM_NUMBER,
        "ApiVersion": "2010-04-01",
    }
    assert signed_post(client, sent.status_callback[len(PUBLIC_URL) :], params).status_code == 200

    (run,) = checkins_of(ctx, world.alice_id)
    assert run.status == "failed"
    assert "not delivered" in run.state["reason"] and "30003" in run.state["reason"]
    tick_at(ctx, clock, ny(10, 12, 30))  # past the reminder time: nothing chases it
    tick_at(ctx, clock, ny(11, 0, 0))  # midnight: not closed as 'expired'
    (run,) = [r for r in checkins_of(ctx, world.alice_id) if r.local_date == date(2026, 3, 10)]
    assert run.status == "failed"
    assert len(fake_twilio.sent) == 1


# --- 10. a worker killed mid-batch ------------------------------------------------------------

CRASH_PATIENTS = 300


@pytest.mark.slow
def test_a_scheduler_killed_mid_batch_loses_no_patient_and_duplicates_only_its_in_flight_sends(
    postgres_url: str, tmp_path: Path
) -> None:
    phones = enrol_many(postgres_url, CRASH_PATIENTS, first=3000000)
    fake = ScriptedTwilio(delay=0.02)  # 20 ms a send: the batch takes about a second
    fake.start()
    first = second = None
    try:
        env = twilio_env(postgres_url, fake, CHECKIN_SCHEDULER_TICK_SECONDS="0.2")
        first = Process(
            ["scheduler"],
            {**env, "CHECKIN_CLOCK_START": "2026-03-10T09:00:00-04:00"},
            tmp_path,
            "w1",
        )
        wait_until(lambda: len(fake.sent) >= 20, 60, "the first sends", 0.005)
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        _time.sleep(0.5)  # requests already on the wire finish at the fake
        sent_before = {s.sid for s in fake.sent}
        db = Database(postgres_url)
        with db.session() as session:
            recorded = set(session.scalars(select(Message.twilio_sid)))
        db.dispose()
        in_flight = len(sent_before - recorded)  # reached Twilio, SID not recorded: resent
        assert 20 <= len(sent_before) < CRASH_PATIENTS, "the kill must land mid-batch"

        # Six minutes later by its clock: past the dead worker's claim and send leases.
        second = Process(
            ["scheduler"],
            {**env, "CHECKIN_CLOCK_START": "2026-03-10T09:06:00-04:00"},
            tmp_path,
            "w2",
        )
        wait_until(lambda: {s.to for s in fake.sent} >= phones, 60, "every patient texted", 0.2)
        settled = len(fake.sent)
        marks = second.log().count('Running job "tick')
        wait_until(lambda: second.log().count('Running job "tick') >= marks + 5, 20, "more ticks")
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
        fake.stop()

    per_phone = Counter(s.to for s in fake.sent)
    duplicates = sum(n - 1 for n in per_phone.values())
    print(
        f"\nSIGKILL after {len(sent_before)} sends: {in_flight} sent but unrecorded, "
        f"{duplicates} patient(s) texted twice"
    )
    assert set(per_phone) == phones
    assert len(fake.sent) == settled  # nothing more once everyone had theirs
    assert max(per_phone.values()) <= 2
    assert duplicates == in_flight
    assert duplicates <= outbox.SEND_CONCURRENCY * 2
    assert "Traceback" not in second.log()
