"""The `checkin` command as staff use it: the real click group, real databases, a fake Twilio.

CLI verbs read the real system clock, so tests that send texts enrol their patient in a time
zone where it is daytime right now (quiet hours would otherwise defer the text).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, func, inspect, select
from werkzeug.security import check_password_hash

from checkin.catalog import render
from checkin.cli import cli
from checkin.clock import FrozenClock
from checkin.consent import opt_out
from checkin.context import Context
from checkin.conversations import Inbound, handle_inbound
from checkin.models import (
    CheckIn,
    ConsentEvent,
    Message,
    Patient,
    Schedule,
    StaffUser,
    TreatmentEvent,
)
from checkin.scheduler import tick
from tests.conftest import ALICE, World, twilio_env
from tests.fake_twilio import FROM_NUMBER, FakeTwilio

CHECKIN_SCRIPT = Path(sys.executable).with_name("checkin")
FRANK = "+16175550103"
GRACE = "+16175550104"
HEIDI = "+16175550105"
NOBODY = "+16175550177"
FIRST_QUESTION = render("ask_fatigue", "en")
STRONG_PASSWORD = "correct horse battery staple"

# One zone for every hour of the day, so some zone is always in texting hours.
ZONES = (
    "Pacific/Kiritimati",
    "Pacific/Tongatapu",
    "Pacific/Auckland",
    "Pacific/Noumea",
    "Australia/Brisbane",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Bangkok",
    "Asia/Dhaka",
    "Asia/Karachi",
    "Asia/Dubai",
    "Europe/Moscow",
    "Europe/Athens",
    "Europe/Paris",
    "Europe/London",
    "Atlantic/Azores",
    "America/Noronha",
    "America/Sao_Paulo",
    "America/Halifax",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "Pacific/Pago_Pago",
)


# --- helpers ---------------------------------------------------------------------------------


def daytime_zone() -> str:
    """The zone where it is closest to 13:30 right now (always between 10:00 and 17:00)."""
    now = datetime.now(UTC)

    def distance(name: str) -> float:
        local = now.astimezone(ZoneInfo(name))
        return abs(local.hour + local.minute / 60 - 13.5)

    zone = min(ZONES, key=distance)
    assert 10 <= now.astimezone(ZoneInfo(zone)).hour < 17, zone
    return zone


def invoke(env: dict[str, str], args: Sequence[str], stdin: str | None = None) -> Result:
    # catch_exceptions=False: an unexpected exception fails the test with its traceback
    # instead of hiding inside the Result.
    return CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def one_line_error(result: Result, *expected: str) -> str:
    """The command failed with exactly one non-empty line naming the problem."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for word in expected:
        assert word in lines[0], lines[0]
    return lines[0]


def count(db_url: str, model: type) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        engine.dispose()


def script(
    args: Sequence[str], env: dict[str, str], cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a deployment would: another directory, env only."""
    assert CHECKIN_SCRIPT.exists(), f"console script not installed at {CHECKIN_SCRIPT}"
    return subprocess.run(
        [str(CHECKIN_SCRIPT), *args],
        env={**os.environ, **env},
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


# --- db upgrade and the console script ------------------------------------------------------


def test_db_upgrade_creates_the_schema_from_another_directory(tmp_path: Path) -> None:
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    env = {"CHECKIN_DATABASE_URL": url}

    first = script(["db", "upgrade"], env, workdir)
    assert first.returncode == 0, first.stderr
    assert "up to date" in first.stdout
    again = script(["db", "upgrade"], env, workdir)
    assert again.returncode == 0, again.stderr

    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"patients", "checkins", "answers", "messages", "alerts", "consent_events"} <= tables
    assert "alembic_version" in tables


def test_db_upgrade_on_a_current_database_changes_nothing(
    db_url: str, fake_twilio: FakeTwilio
) -> None:
    out = ok(invoke(twilio_env(db_url, fake_twilio), ["db", "upgrade"]))
    assert "up to date" in out


def test_the_console_script_enrols_a_patient_and_texts_them_from_another_directory(
    db_url: str, fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    env = twilio_env(db_url, fake_twilio)
    done = script(
        ["patients", "add", "--phone", FRANK, "--name", "Frank", "--timezone", daytime_zone()],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert f"enrolled {FRANK}" in done.stdout
    assert len(fake_twilio.to(FRANK)) == 1


def test_the_console_script_reports_a_bad_time_zone_in_one_line_without_a_traceback(
    db_url: str, fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    done = script(
        ["patients", "add", "--phone", FRANK, "--name", "Frank", "--timezone", "Mars/Olympus"],
        twilio_env(db_url, fake_twilio),
        tmp_path,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Mars/Olympus" in lines[0], done.stderr
    assert count(db_url, Patient) == 0


# --- patients add -----------------------------------------------------------------------------


def test_patients_add_enrols_records_consent_and_sends_one_welcome_text(
    db_url: str, fake_twilio: FakeTwilio
) -> None:
    env = twilio_env(db_url, fake_twilio, CHECKIN_PROGRAM_NAME="Riverside Care Team")
    out = ok(
        invoke(
            env,
            [
                "patients",
                "add",
                "--phone",
                "(617) 555-0103",
                "--name",
                "Frank Example",
                "--timezone",
                daytime_zone(),
            ],
        )
    )
    assert f"enrolled {FRANK}" in out

    (welcome,) = fake_twilio.to(FRANK)
    assert welcome.from_ == FROM_NUMBER
    assert "Riverside Care Team" in welcome.body
    assert "a day" in welcome.body  # how often
    assert "Msg & data rates may apply" in welcome.body
    assert "HELP" in welcome.body and "STOP" in welcome.body
    assert fake_twilio.sent == [welcome]

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            patient = conn.execute(select(Patient).where(Patient.phone == FRANK)).one()
            assert patient.status == "active" and patient.consented_at is not None
            events = conn.execute(
                select(ConsentEvent.kind, ConsentEvent.source).where(
                    ConsentEvent.patient_id == patient.id
                )
            ).all()
            message = conn.execute(select(Message).where(Message.purpose == "welcome")).one()
    finally:
        engine.dispose()
    assert [tuple(e) for e in events] == [("consent_given", "staff_enrolment")]
    assert message.twilio_sid == welcome.sid


def test_patients_add_in_spanish_sends_the_spanish_welcome(
    db_url: str, fake_twilio: FakeTwilio
) -> None:
    env = twilio_env(db_url, fake_twilio)
    ok(
        invoke(
            env,
            [
                "patients",
                "add",
                "--phone",
                FRANK,
                "--name",
                "Frank",
                "--timezone",
                daytime_zone(),
                "--language",
                "es",
            ],
        )
    )
    (welcome,) = fake_twilio.to(FRANK)
    assert "STOP" in welcome.body and "AYUDA" in welcome.body


# --- bad input: one line, non-zero, nothing changed -------------------------------------------


BAD_INPUT = [
    pytest.param(
        ["patients", "add", "--phone", FRANK, "--name", "F", "--timezone", "Mars/Olympus"],
        ["Mars/Olympus"],
        id="unknown-timezone",
    ),
    pytest.param(
        ["patients", "add", "--phone", "12345", "--name", "F", "--timezone", "America/Chicago"],
        ["12345"],
        id="invalid-phone",
    ),
    pytest.param(
        ["patients", "add", "--phone", ALICE, "--name", "A", "--timezone", "America/New_York"],
        [ALICE, "already exists"],
        id="duplicate-patient",
    ),
    pytest.param(
        ["patients", "pause", "--phone", ALICE, "--until", "2026-13-45"],
        ["--until", "2026-13-45"],
        id="bad-until-date",
    ),
    pytest.param(
        ["patients", "pause", "--phone", ALICE, "--until", "2020-01-01"],
        ["2020-01-01", "past"],
        id="until-in-the-past",
    ),
    pytest.param(
        ["patients", "pause", "--phone", NOBODY, "--until", "2099-01-01"],
        [NOBODY],
        id="pause-unknown-patient",
    ),
    pytest.param(
        ["patients", "resume", "--phone", NOBODY],
        [NOBODY],
        id="resume-unknown-patient",
    ),
    pytest.param(
        ["send-now", "--phone", ALICE, "--flow", "bedtime_story"],
        ["bedtime_story"],
        id="send-now-unknown-flow",
    ),
    pytest.param(
        ["send-now", "--phone", NOBODY, "--flow", "daily_symptoms"],
        [NOBODY],
        id="send-now-unknown-number",
    ),
    pytest.param(
        ["schedules", "add", "--flow", "bedtime_story", "--time", "10:00"],
        ["bedtime_story"],
        id="schedule-unknown-flow",
    ),
    pytest.param(
        ["schedules", "add", "--flow", "daily_symptoms", "--time", "25:00"],
        ["25:00"],
        id="schedule-bad-time",
    ),
    pytest.param(
        ["schedules", "add", "--flow", "daily_symptoms", "--time", "10:00", "--days", "funday"],
        ["funday"],
        id="schedule-bad-days",
    ),
    pytest.param(
        ["infusions", "add", "--phone", ALICE, "--date", "yesterday"],
        ["--date", "yesterday"],
        id="infusion-bad-date",
    ),
    pytest.param(
        ["schedules", "preview", "--phone", ALICE, "--from", "07/03/2026"],
        ["--from", "07/03/2026"],
        id="preview-bad-date",
    ),
]


@pytest.mark.parametrize(("args", "expected"), BAD_INPUT)
def test_bad_input_exits_non_zero_with_one_line_naming_the_problem(
    db_url: str, fake_twilio: FakeTwilio, world: World, args: list[str], expected: list[str]
) -> None:
    before = {m: count(db_url, m) for m in (Patient, Schedule, CheckIn, TreatmentEvent)}
    one_line_error(invoke(twilio_env(db_url, fake_twilio), args), *expected)
    assert {m: count(db_url, m) for m in before} == before
    assert fake_twilio.sent == []


def test_a_bad_environment_variable_is_named_in_one_line(
    db_url: str, fake_twilio: FakeTwilio
) -> None:
    env = twilio_env(db_url, fake_twilio, CHECKIN_SEND_RATE_PER_SECOND="fast")
    one_line_error(
        invoke(
            env,
            ["patients", "add", "--phone", FRANK, "--name", "F", "--timezone", "America/Chicago"],
        ),
        "CHECKIN_SEND_RATE_PER_SECOND",
        "fast",
    )
    assert count(db_url, Patient) == 0


def test_send_now_refuses_a_patient_who_opted_out(
    db_url: str, fake_twilio: FakeTwilio, ctx: Context, world: World
) -> None:
    with ctx.db.session() as session:
        opt_out(
            session,
            session.get_one(Patient, world.alice_id),
            ctx.clock(),
            source="sms_keyword",
            actor="patient",
        )
    one_line_error(
        invoke(
            twilio_env(db_url, fake_twilio),
            ["send-now", "--phone", ALICE, "--flow", "daily_symptoms"],
        ),
        ALICE,
        "opted out",
    )
    assert fake_twilio.sent == []
    assert count(db_url, CheckIn) == 0


# --- send-now ---------------------------------------------------------------------------------


def test_send_now_texts_the_first_question_at_once(db_url: str, fake_twilio: FakeTwilio) -> None:
    env = twilio_env(db_url, fake_twilio)
    ok(
        invoke(
            env,
            ["patients", "add", "--phone", FRANK, "--name", "Frank", "--timezone", daytime_zone()],
        )
    )
    out = ok(invoke(env, ["send-now", "--phone", FRANK, "--flow", "daily_symptoms"]))
    assert "sent" in out
    bodies = [s.body for s in fake_twilio.to(FRANK)]
    assert len(bodies) == 2 and bodies[-1] == FIRST_QUESTION  # the welcome, then the question

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            status = conn.scalar(select(CheckIn.status))
    finally:
        engine.dispose()
    assert status == "open"


# --- patients import --------------------------------------------------------------------------


@pytest.mark.parametrize("welcome", [True, False], ids=["welcome", "no-welcome"])
def test_patients_import_enrols_every_row_of_a_good_file(
    db_url: str, fake_twilio: FakeTwilio, tmp_path: Path, welcome: bool
) -> None:
    zone = daytime_zone()
    path = write_csv(
        tmp_path / "patients.csv",
        [
            "phone,name,timezone,language",
            f"{FRANK},Frank,{zone},en",
            f"(617) 555-0104,Grace,{zone},es",
            f"{HEIDI},Heidi,{zone},",
        ],
    )
    args = ["patients", "import", str(path)] + ([] if welcome else ["--no-welcome"])
    out = ok(invoke(twilio_env(db_url, fake_twilio), args))
    assert "imported 3 patient(s)" in out

    assert count(db_url, Patient) == 3
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            sources = conn.scalars(select(ConsentEvent.source)).all()
            languages = dict(conn.execute(select(Patient.phone, Patient.language)).all())
    finally:
        engine.dispose()
    assert sources == ["csv_import"] * 3
    assert languages == {FRANK: "en", GRACE: "es", HEIDI: "en"}
    if welcome:
        assert sorted(s.to for s in fake_twilio.sent) == [FRANK, GRACE, HEIDI]
        assert count(db_url, Message) == 3
    else:
        assert fake_twilio.sent == []
        assert count(db_url, Message) == 0


def test_patients_import_of_a_file_with_bad_rows_imports_nothing_and_names_every_bad_line(
    db_url: str, fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "patients.csv",
        [
            "phone,name,timezone",
            f"{FRANK},Frank,America/New_York",  # line 2: good
            "12345,Bad Phone,America/New_York",  # line 3
            f"{GRACE},Grace,America/Chicago",  # line 4: good
            f"{HEIDI},Heidi,Mars/Olympus",  # line 5
            f"{FRANK},Frank Again,America/New_York",  # line 6: repeats line 2
        ],
    )
    result = invoke(twilio_env(db_url, fake_twilio), ["patients", "import", str(path)])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    by_line = {n: [line for line in lines if f"line {n}:" in line] for n in range(1, 8)}
    assert "12345" in by_line[3][0]
    assert "Mars/Olympus" in by_line[5][0]
    assert FRANK in by_line[6][0] and "line 2" in by_line[6][0]
    assert by_line[2] == by_line[4] == []
    assert "nothing was imported" in lines[-1]
    assert count(db_url, Patient) == 0
    assert count(db_url, ConsentEvent) == 0
    assert fake_twilio.sent == []


def test_patients_import_names_the_line_of_a_phone_that_is_already_enrolled(
    db_url: str, fake_twilio: FakeTwilio, world: World, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "patients.csv",
        [
            "phone,name,timezone",
            f"{FRANK},Frank,America/New_York",
            f"{ALICE},Alice Again,America/New_York",  # line 3: alice is enrolled already
        ],
    )
    result = invoke(twilio_env(db_url, fake_twilio), ["patients", "import", str(path)])
    assert result.exit_code != 0
    assert any("line 3" in line and ALICE in line for line in result.output.splitlines())
    assert count(db_url, Patient) == 2  # alice and erin, no frank
    assert fake_twilio.sent == []


# --- pause, resume, infusions -----------------------------------------------------------------


def test_patients_pause_and_resume_change_what_the_patient_is_sent(
    db_url: str, fake_twilio: FakeTwilio, world: World
) -> None:
    env = twilio_env(db_url, fake_twilio)
    until = (datetime.now(UTC) + timedelta(days=7)).date()
    out = ok(invoke(env, ["patients", "pause", "--phone", ALICE, "--until", until.isoformat()]))
    assert f"paused {ALICE}" in out

    def alice() -> tuple[str, date | None]:
        engine = create_engine(db_url)
        try:
            with engine.connect() as conn:
                row = conn.execute(
                    select(Patient.status, Patient.paused_until).where(Patient.phone == ALICE)
                ).one()
        finally:
            engine.dispose()
        return row.status, row.paused_until

    assert alice() == ("paused", until)
    one_line_error(
        invoke(env, ["send-now", "--phone", ALICE, "--flow", "daily_symptoms"]), "paused"
    )
    out = ok(invoke(env, ["patients", "resume", "--phone", ALICE]))
    assert f"resumed {ALICE}" in out
    assert alice() == ("active", None)
    assert fake_twilio.sent == []


def test_infusions_add_records_the_date_once(
    db_url: str, fake_twilio: FakeTwilio, world: World
) -> None:
    env = twilio_env(db_url, fake_twilio)
    out = ok(invoke(env, ["infusions", "add", "--phone", ALICE, "--date", "2026-03-02"]))
    assert "2026-03-02" in out
    one_line_error(
        invoke(env, ["infusions", "add", "--phone", ALICE, "--date", "2026-03-02"]),
        "2026-03-02",
        "already",
    )
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            events = conn.execute(select(TreatmentEvent.kind, TreatmentEvent.occurred_on)).all()
    finally:
        engine.dispose()
    assert [tuple(e) for e in events] == [("infusion", date(2026, 3, 2))]


# --- staff add --------------------------------------------------------------------------------


def test_staff_add_stores_a_scrypt_hash_never_the_password(
    db_url: str, fake_twilio: FakeTwilio
) -> None:
    out = ok(
        invoke(
            twilio_env(db_url, fake_twilio),
            [
                "staff",
                "add",
                "--email",
                "Ivy@Example.org",
                "--name",
                "Ivy",
                "--role",
                "clinician",
                "--phone",
                "617-555-0190",
                "--on-call",
                "--password-stdin",
            ],
            stdin=STRONG_PASSWORD + "\n",
        )
    )
    assert STRONG_PASSWORD not in out
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            ivy = conn.execute(select(StaffUser)).one()
    finally:
        engine.dispose()
    assert (ivy.email, ivy.role, ivy.phone, ivy.on_call) == (
        "ivy@example.org",
        "clinician",
        "+16175550190",
        True,
    )
    assert ivy.password_hash.startswith("scrypt:")
    assert STRONG_PASSWORD not in ivy.password_hash
    assert check_password_hash(ivy.password_hash, STRONG_PASSWORD)


def test_staff_add_refuses_a_short_password(db_url: str, fake_twilio: FakeTwilio) -> None:
    one_line_error(
        invoke(
            twilio_env(db_url, fake_twilio),
            [
                "staff",
                "add",
                "--email",
                "ivy@example.org",
                "--name",
                "Ivy",
                "--role",
                "admin",
                "--password-stdin",
            ],
            stdin="hunter2\n",
        ),
        "password",
        "12",
    )
    assert count(db_url, StaffUser) == 0


def test_staff_add_refuses_on_call_without_a_phone(db_url: str, fake_twilio: FakeTwilio) -> None:
    one_line_error(
        invoke(
            twilio_env(db_url, fake_twilio),
            [
                "staff",
                "add",
                "--email",
                "ivy@example.org",
                "--name",
                "Ivy",
                "--role",
                "clinician",
                "--on-call",
                "--password-stdin",
            ],
            stdin=STRONG_PASSWORD + "\n",
        ),
        "--on-call",
        "--phone",
    )
    assert count(db_url, StaffUser) == 0


# --- schedules --------------------------------------------------------------------------------


def test_schedules_add_refuses_a_time_inside_quiet_hours(
    db_url: str, fake_twilio: FakeTwilio, world: World
) -> None:
    env = twilio_env(db_url, fake_twilio)
    for at in ("22:00", "06:30"):
        one_line_error(
            invoke(env, ["schedules", "add", "--flow", "daily_symptoms", "--time", at]),
            at,
            "quiet hours",
        )
    assert count(db_url, Schedule) == 1  # the program default only


def test_schedules_add_for_one_patient_on_chosen_days(
    db_url: str, fake_twilio: FakeTwilio, world: World
) -> None:
    env = twilio_env(db_url, fake_twilio)
    out = ok(
        invoke(
            env,
            [
                "schedules",
                "add",
                "--flow",
                "daily_symptoms",
                "--time",
                "10:30",
                "--days",
                "wed,mon",
                "--phone",
                ALICE,
            ],
        )
    )
    assert ALICE in out
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            own = conn.execute(select(Schedule).where(Schedule.patient_id.is_not(None))).one()
    finally:
        engine.dispose()
    assert (own.patient_id, own.days, f"{own.local_time:%H:%M}") == (
        world.alice_id,
        "mon,wed",
        "10:30",
    )
    listed = ok(invoke(env, ["schedules", "list"])).splitlines()
    assert listed[0] == "id,flow,local_time,days,after_infusion,start,end,phone,active"
    assert any(ALICE in line and "10:30" in line for line in listed[1:])


def test_schedules_preview_prints_local_and_utc_times_across_the_dst_change(
    db_url: str, fake_twilio: FakeTwilio, world: World
) -> None:
    out = ok(
        invoke(
            twilio_env(db_url, fake_twilio),
            ["schedules", "preview", "--phone", ALICE, "--from", "2026-03-07", "--days", "3"],
        )
    )
    assert out.splitlines() == [
        "phone,flow,local_time,utc_time",
        f"{ALICE},daily_symptoms,2026-03-07T09:00:00-05:00,2026-03-07T14:00:00+00:00",
        f"{ALICE},daily_symptoms,2026-03-08T09:00:00-04:00,2026-03-08T13:00:00+00:00",
        f"{ALICE},daily_symptoms,2026-03-09T09:00:00-04:00,2026-03-09T13:00:00+00:00",
    ]
    rows = list(csv.DictReader(io.StringIO(out)))
    for row in rows:
        assert datetime.fromisoformat(row["local_time"]) == datetime.fromisoformat(row["utc_time"])


# --- export -----------------------------------------------------------------------------------


def alice_answers_a_checkin(ctx: Context, clock: FrozenClock) -> None:
    """Alice's 09:00 check-in goes out; she answers fatigue 4, pain 9 (severe), mood 6."""
    assert tick(ctx)["dispatched"] == 1
    for n, reply in enumerate(("4", "9", "6")):
        clock.advance(minutes=2)
        handle_inbound(ctx, Inbound(f"SM{n:032d}", ALICE, FROM_NUMBER, reply))


def parse(out: str, fmt: str) -> list[dict[str, object]]:
    if fmt == "json":
        data = json.loads(out)
        assert isinstance(data, list) and all(isinstance(row, dict) for row in data)
        return data
    return list(csv.DictReader(io.StringIO(out)))


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_observations_lists_every_answer_with_its_checkin(
    db_url: str,
    fake_twilio: FakeTwilio,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fmt: str,
) -> None:
    alice_answers_a_checkin(ctx, clock)
    out = ok(invoke(twilio_env(db_url, fake_twilio), ["export", "observations", "--format", fmt]))
    rows = parse(out, fmt)
    assert {"phone", "measure", "value", "recorded_at", "checkin_id"} <= set(rows[0])
    with ctx.db.session() as session:
        checkin_id = session.scalars(select(CheckIn.id)).one()
    got = [(r["phone"], r["measure"], str(r["value"]), str(r["checkin_id"])) for r in rows]
    assert got == [
        (ALICE, "fatigue", "4", str(checkin_id)),
        (ALICE, "pain", "9", str(checkin_id)),
        (ALICE, "mood", "6", str(checkin_id)),
    ]
    for row in rows:
        assert datetime.fromisoformat(str(row["recorded_at"])).tzinfo is not None


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_alerts_lists_the_alert_a_severe_answer_raised(
    db_url: str,
    fake_twilio: FakeTwilio,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fmt: str,
) -> None:
    alice_answers_a_checkin(ctx, clock)
    rows = parse(
        ok(invoke(twilio_env(db_url, fake_twilio), ["export", "alerts", "--format", fmt])), fmt
    )
    assert len(rows) == 1
    (alert,) = rows
    assert {"phone", "kind", "severity", "status", "created_at"} <= set(alert)
    assert (alert["phone"], alert["kind"], alert["status"]) == (ALICE, "severe", "open")
    assert alert["severity"] in ("urgent", "high", "routine")
    assert datetime.fromisoformat(str(alert["created_at"])).tzinfo is not None


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_messages_lists_texts_in_and_out(
    db_url: str,
    fake_twilio: FakeTwilio,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fmt: str,
) -> None:
    alice_answers_a_checkin(ctx, clock)
    rows = parse(
        ok(invoke(twilio_env(db_url, fake_twilio), ["export", "messages", "--format", fmt])), fmt
    )
    alices = [r for r in rows if r["phone"] == ALICE]
    assert {r["direction"] for r in alices} == {"inbound", "outbound"}
    assert [r["body"] for r in alices if r["direction"] == "inbound"] == ["4", "9", "6"]
    assert any(r["body"] == FIRST_QUESTION for r in alices)


def test_export_of_an_empty_database_is_a_header_or_an_empty_list(
    db_url: str, fake_twilio: FakeTwilio
) -> None:
    env = twilio_env(db_url, fake_twilio)
    header = ok(invoke(env, ["export", "alerts", "--format", "csv"])).splitlines()
    assert len(header) == 1 and header[0].startswith("phone,")
    assert json.loads(ok(invoke(env, ["export", "observations", "--format", "json"]))) == []
