"""Two real `checkin scheduler` processes on one PostgreSQL never send a check-in twice.

Both plan and dispatch the same 1,000 due check-ins at once; every patient gets exactly one
first question, and both workers did part of the work.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from checkin.db import Database
from checkin.models import CheckIn, Message
from tests.conftest import enrol_many, twilio_env
from tests.fake_twilio import FakeTwilio
from tests.procs import Process, wait_until

pytestmark = pytest.mark.slow

PATIENTS = 1000
# 09:00:00 in New York on T0's day: every patient's default check-in is due at once.
CLOCK_START = "2026-03-10T09:00:00-04:00"
TICK = 'Running job "tick'  # APScheduler's log line for each tick


def test_two_scheduler_processes_send_each_check_in_exactly_once(
    postgres_url: str, fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    phones = enrol_many(postgres_url, PATIENTS, first=2000000)
    env = twilio_env(
        postgres_url,
        fake_twilio,
        CHECKIN_SCHEDULER_TICK_SECONDS="0.3",
        CHECKIN_CLOCK_START=CLOCK_START,
    )
    workers = [Process(["scheduler"], env, tmp_path, f"scheduler{i}") for i in (1, 2)]
    try:
        wait_until(lambda: len(fake_twilio.sent) >= PATIENTS, 120, "1,000 sends", 0.2)
        # Let both workers tick a few more times: nothing more may go out.
        sent_then = len(fake_twilio.sent)
        marks = [w.log().count(TICK) for w in workers]
        wait_until(
            lambda: all(w.log().count(TICK) >= m + 3 for w, m in zip(workers, marks, strict=True)),
            20,
            "three more ticks per worker",
        )
    finally:
        for worker in workers:
            worker.stop()
    logs = "".join(w.log() for w in workers)
    assert "Traceback" not in logs

    per_phone = Counter(s.to for s in fake_twilio.sent)
    assert len(fake_twilio.sent) == sent_then == PATIENTS
    assert set(per_phone) == phones
    assert max(per_phone.values()) == 1
    db = Database(postgres_url)
    with db.session() as session:
        statuses = dict(
            session.execute(select(CheckIn.status, func.count()).group_by(CheckIn.status)).all()
        )
        claimers = {c.rsplit(":", 1)[0] for c in session.scalars(select(CheckIn.claimed_by))}
        outbound = session.scalar(select(func.count()).select_from(Message))
    db.dispose()
    assert statuses == {"open": PATIENTS}
    assert outbound == PATIENTS
    assert len(claimers) == 2, f"both workers should have claimed rows, got {claimers}"
