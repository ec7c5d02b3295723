"""The whole loop on the real stack: `checkin serve` (gunicorn) and `checkin scheduler` as real
processes on PostgreSQL, Twilio through the official client against the fake API over HTTP.

A check-in goes out at its due time, answers arrive by signed webhook (`checkin text`), the
observations are exported, and a severe answer texts the on-call clinician.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from checkin.db import Database
from checkin.models import Alert, CheckIn, Message
from tests.conftest import ALICE, BOB, twilio_env
from tests.fake_twilio import FakeTwilio
from tests.procs import Process, free_port, healthy, run, wait_until

pytestmark = pytest.mark.slow

# 3 s before alice's 09:00 check-in, New York local time (EDT, -04:00).
CLOCK_START = "2026-03-10T08:59:57-04:00"


def test_a_daily_check_in_runs_end_to_end(
    postgres_url: str, fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = twilio_env(
        postgres_url,
        fake_twilio,
        CHECKIN_PUBLIC_URL=url,
        CHECKIN_SCHEDULER_TICK_SECONDS="0.5",
        CHECKIN_CLOCK_START=CLOCK_START,
    )
    setup = [
        (["db", "upgrade"], None),
        (
            [
                "patients",
                "add",
                "--phone",
                ALICE,
                "--name",
                "Alice Example",
                "--timezone",
                "America/New_York",
            ],
            None,
        ),
        (
            [
                "staff",
                "add",
                "--email",
                "bob@example.org",
                "--name",
                "Bob",
                "--role",
                "clinician",
                "--phone",
                BOB,
                "--on-call",
                "--password-stdin",
            ],
            "a-long-password\n",
        ),
    ]
    for args, stdin in setup:
        done = run(args, env, tmp_path, stdin)
        assert done.returncode == 0, done.stderr
    web = Process(["serve", "--port", str(port), "--workers", "2"], env, tmp_path, "web")
    worker = Process(["scheduler"], env, tmp_path, "scheduler")
    try:
        wait_until(lambda: healthy(url), 20, "checkin serve to answer /healthz")
        first = wait_until(
            lambda: [m for m in fake_twilio.to(ALICE) if "tired" in m.body],
            20,
            "the 09:00 check-in to reach Twilio",
        )
        _assert_sent_on_time(postgres_url)
        assert fake_twilio.callback(first[0].sid, "delivered") == 200  # type: ignore[index]

        replies = [_text(env, tmp_path, body) for body in ("6", "9", "7")]
        assert "pain" in replies[0]
        assert "mood" in replies[1]
        assert "Thank you" in replies[2]

        pages = wait_until(lambda: fake_twilio.to(BOB), 10, "the on-call page")
        exported = run(["export", "observations", "--format", "csv"], env, tmp_path)
    finally:
        web.stop()
        worker.stop()
    assert "Traceback" not in web.log() + worker.log()

    # The page is exactly a reference, the kind, the severity and a link: no name, no number,
    # no score.
    ref = _alert_ref(postgres_url)
    assert [p.body for p in pages] == [  # type: ignore[attr-defined]
        f"checkin HIGH alert {ref}: severe. Details: {url}/alerts/{ref} "
        f"Reply ACK {ref} to acknowledge."
    ]
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert {(r["phone"], r["measure"], r["value"]) for r in rows} == {
        (ALICE, "fatigue", "6"),
        (ALICE, "pain", "9"),
        (ALICE, "mood", "7"),
    }
    assert len({r["checkin_id"] for r in rows}) == 1
    _assert_database_state(postgres_url, first[0].sid)  # type: ignore[index]


def _text(env: dict[str, str], cwd: Path, body: str) -> str:
    done = run(["text", "--phone", ALICE, body], env, cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _alert_ref(url: str) -> str:
    db = Database(url)
    with db.session() as session:
        ref = session.scalars(select(Alert.ref)).one()
    db.dispose()
    return ref


def _assert_sent_on_time(url: str) -> None:
    db = Database(url)
    with db.session() as session:
        checkin = session.scalars(select(CheckIn)).one()
        message = session.scalars(select(Message).where(Message.purpose == "checkin")).one()
        assert message.sent_at is not None
        assert checkin.due_at <= message.sent_at < checkin.due_at + timedelta(seconds=5)
        assert checkin.due_at.isoformat() == "2026-03-10T13:00:00+00:00"  # 09:00 EDT
    db.dispose()


def _assert_database_state(url: str, first_sid: str) -> None:
    db = Database(url)
    with db.session() as session:
        checkin = session.scalars(select(CheckIn)).one()
        assert checkin.status == "completed"
        first = session.scalars(select(Message).where(Message.twilio_sid == first_sid)).one()
        assert first.status == "delivered"
        alert = session.scalars(select(Alert)).one()
        assert (alert.kind, alert.severity, alert.status) == ("severe", "high", "open")
        inbound = session.scalars(select(Message).where(Message.direction == "inbound")).all()
        assert [m.body for m in inbound] == ["6", "9", "7"]
    db.dispose()
