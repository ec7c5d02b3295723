"""The data set for bench/inbound.py: patients mid-conversation, with weeks of history.

Every patient has an open daily_symptoms check-in whose first question went out twenty
minutes ago (state exactly as scheduler._open leaves it: engine.start's state), and a history
of daily check-ins before it (most completed, three answers each, the texts both ways; some
expired unanswered) plus an infusion every four weeks, so the trend rules and the
loss-of-response rule read real rows through their indexes. Loaded with COPY, ids chosen
here, sequences moved past them, then VACUUM ANALYZE, as bench/dashboard.py does.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import select

from bench.copyload import Batch, copy_batch, finish_load, plain
from checkin import flows
from checkin.catalog import render
from checkin.db import Database
from checkin.flows import engine
from checkin.models import Schedule, StaffUser
from checkin.programs import default_program

MEASURES = ("fatigue", "pain", "mood")
QUESTION_KEY = {"fatigue": "ask_fatigue", "pain": "ask_pain", "mood": "ask_mood"}
FOLLOWING = {"fatigue": "ask_pain", "pain": "ask_mood", "mood": "thanks"}  # the TwiML reply
SENDER = "+15005550006"  # checkin's sender when TWILIO_FROM_NUMBER is unset
ON_CALL_PHONE = "+16175550199"
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
AREA_CODES = ("617", "508", "781", "978", "413")
CHUNK = 500  # patients per COPY round: memory stays flat, round trips stay few
COMPLETED_SHARE = 0.9  # the rest of the history's check-ins expired unanswered
SENT_AGO = timedelta(minutes=20)  # the open check-in's first question went out this long ago
# Whatever the hour the bench runs, no open check-in may expire while it runs.
OPEN_FOR = timedelta(hours=12)

# Explicit column lists: COPY fills only these, so a column another branch adds (nullable or
# with a default) does not break the load.
COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": (
        "id",
        "program_id",
        "phone",
        "name",
        "timezone",
        "language",
        "status",
        "consented_at",
        "enrolled_at",
    ),
    "treatment_events": ("id", "patient_id", "kind", "occurred_on", "recorded_by", "created_at"),
    "checkins": (
        "id",
        "patient_id",
        "schedule_id",
        "flow",
        "flow_version",
        "idempotency_key",
        "local_date",
        "due_at",
        "expires_at",
        "status",
        "state",
        "sent_at",
        "completed_at",
        "created_at",
    ),
    "messages": (
        "id",
        "direction",
        "patient_id",
        "checkin_id",
        "to_number",
        "from_number",
        "body",
        "purpose",
        "status",
        "twilio_sid",
        "idempotency_key",
        "attempts",
        "created_at",
        "sent_at",
    ),
    "answers": (
        "id",
        "checkin_id",
        "patient_id",
        "measure",
        "value",
        "status",
        "raw_text",
        "message_id",
        "recorded_at",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Person:
    """One patient's fixed traits; their history and their replies are drawn from these."""

    id: int
    phone: str
    zone: ZoneInfo
    centre: dict[str, int]  # the patient's usual fatigue, pain and mood
    infusion_phase: int

    def answer(self, measure: str, rng: random.Random) -> int:
        """A reply near the patient's usual: alerts stay as occasional as in a clinic."""
        return min(10, max(0, self.centre[measure] + rng.choice((-2, -1, 0, 0, 0, 1, 2))))


@dataclass(frozen=True)
class Setting:
    now: datetime
    program_id: int
    schedule_id: int
    history_days: int


def phone_for(index: int) -> str:
    # 7919 is prime to 100,000: unique numbers, valid for phonenumbers, not in patient order.
    return f"+1{AREA_CODES[index % len(AREA_CODES)]}55{index * 7919 % 100_000:05d}"


def people(count: int, rng: random.Random) -> list[Person]:
    return [
        Person(
            id=i + 1,
            phone=phone_for(i),
            zone=ZoneInfo(rng.choice(ZONES)),
            centre={
                "fatigue": rng.randint(2, 7),
                "pain": rng.randint(1, 7),
                "mood": rng.randint(3, 8),
            },
            infusion_phase=rng.randrange(28),
        )
        for i in range(count)
    ]


# --- one patient -----------------------------------------------------------------------------


def add_person(batch: Batch, p: Person, s: Setting, rng: random.Random) -> None:
    enrolled = s.now - timedelta(days=s.history_days + 7)
    batch.add(
        "patients",
        program_id=s.program_id,
        phone=p.phone,
        name=f"Bench Patient {p.id}",
        timezone=p.zone.key,
        language="en",
        status="active",
        consented_at=enrolled,
        enrolled_at=enrolled,
    )
    today = s.now.astimezone(p.zone).date()
    add_infusions(batch, p, s, today)
    for days_ago in range(s.history_days, 0, -1):
        add_past_checkin(batch, p, s, today - timedelta(days=days_ago), rng)
    add_open_checkin(batch, p, s, today)


def add_infusions(batch: Batch, p: Person, s: Setting, today: date) -> None:
    """Every 28 days, so each patient had one in the 30 days loss of response looks at."""
    day = today - timedelta(days=p.infusion_phase)
    while day >= today - timedelta(days=s.history_days):
        batch.add(
            "treatment_events",
            patient_id=p.id,
            kind="infusion",
            occurred_on=day,
            recorded_by="bench",
            created_at=datetime.combine(day, time(15), tzinfo=p.zone),
        )
        day -= timedelta(days=28)


def checkin_row(p: Person, s: Setting, day: date, due: datetime, **values: Any) -> dict[str, Any]:
    return {
        "patient_id": p.id,
        "schedule_id": s.schedule_id,
        "flow": "daily_symptoms",
        "flow_version": 1,
        "idempotency_key": f"{p.id}:daily_symptoms:{day}:09:00",
        "local_date": day,
        "due_at": due,
        "sent_at": due,
        "created_at": due - timedelta(days=1),
        **values,
    }


def add_past_checkin(batch: Batch, p: Person, s: Setting, day: date, rng: random.Random) -> None:
    due = datetime.combine(day, time(9), tzinfo=p.zone).astimezone(UTC)
    expires = datetime.combine(day + timedelta(days=1), time(0), tzinfo=p.zone).astimezone(UTC)
    completed = rng.random() < COMPLETED_SHARE
    replied = [due + timedelta(minutes=rng.randint(2, 120) + 3 * n) for n in range(3)]
    values = {m: p.answer(m, rng) for m in MEASURES}
    state = {
        "done": list(MEASURES) if completed else [],
        "failed_tries": 0,
        "values": values if completed else {},
        "step": 3 if completed else 0,
    }
    checkin_id = batch.add(
        "checkins",
        **checkin_row(p, s, day, due, expires_at=expires, state=json.dumps(state)),
        status="completed" if completed else "expired",
        completed_at=replied[-1] if completed else None,
    )
    add_question(batch, p, checkin_id, "fatigue", due)
    for n, measure in enumerate(MEASURES):
        if not completed:
            add_answer(batch, p, checkin_id, measure, None, None, expires)
            continue
        sid = batch.twilio_sid()
        reply = add_text(batch, p, checkin_id, "inbound", str(values[measure]), replied[n], sid)
        following = render(FOLLOWING[measure], "en", {})  # the TwiML reply, as the app keys it
        add_text(batch, p, checkin_id, "outbound", following, replied[n], None, f"reply:{sid}:0")
        add_answer(batch, p, checkin_id, measure, values[measure], reply, replied[n])


def add_open_checkin(batch: Batch, p: Person, s: Setting, today: date) -> None:
    sent = s.now - SENT_AGO
    state = engine.start(flows.current("daily_symptoms")).state.to_dict()  # as scheduler._open
    checkin_id = batch.add(
        "checkins",
        **checkin_row(p, s, today, sent, expires_at=s.now + OPEN_FOR, state=json.dumps(state)),
        status="open",
    )
    add_question(batch, p, checkin_id, "fatigue", sent)


def add_question(batch: Batch, p: Person, checkin_id: int, measure: str, at: datetime) -> None:
    body = render(QUESTION_KEY[measure], "en", {})
    add_text(batch, p, checkin_id, "outbound", body, at, batch.twilio_sid(), purpose="checkin")


def add_text(
    batch: Batch,
    p: Person,
    checkin_id: int,
    direction: str,
    body: str,
    at: datetime,
    sid: str | None,
    idempotency_key: str | None = None,
    purpose: str | None = None,
) -> int:
    inbound = direction == "inbound"
    return batch.add(
        "messages",
        direction=direction,
        patient_id=p.id,
        checkin_id=checkin_id,
        to_number=SENDER if inbound else p.phone,
        from_number=p.phone if inbound else SENDER,
        body=body,
        purpose=purpose or ("patient" if inbound else "reply"),
        status="received" if inbound else ("delivered" if sid else "twiml"),
        twilio_sid=sid,
        idempotency_key=idempotency_key,
        attempts=0 if inbound or not sid else 1,
        created_at=at,
        sent_at=None if inbound else at,
    )


def add_answer(
    batch: Batch,
    p: Person,
    checkin_id: int,
    measure: str,
    value: int | None,
    message_id: int | None,
    at: datetime,
) -> None:
    batch.add(
        "answers",
        checkin_id=checkin_id,
        patient_id=p.id,
        measure=measure,
        value=value,
        status="answered" if value is not None else "missing",
        raw_text=str(value) if value is not None else None,
        message_id=message_id,
        recorded_at=at,
    )


# --- the database ----------------------------------------------------------------------------


def set_up_program(url: str, now: datetime, history_days: int) -> Setting:
    """The program with its daily schedule, and a clinician on call (alerts page someone)."""
    db = Database(url)
    try:
        with db.session() as session:
            program = default_program(session, now)
            session.add(
                StaffUser(
                    program_id=program.id,
                    email="bench.oncall@example.org",
                    name="Bench On Call",
                    role="clinician",
                    phone=ON_CALL_PHONE,
                    on_call=True,
                    password_hash="!",  # never signs in
                    created_at=now,
                )
            )
            schedule = session.scalar(select(Schedule.id).where(Schedule.flow == "daily_symptoms"))
            assert schedule is not None  # default_program creates it
            return Setting(now, program.id, schedule, history_days)
    finally:
        db.dispose()


def load(url: str, everyone: list[Person], setting: Setting, rng: random.Random) -> dict[str, int]:
    """COPY every table a chunk of patients at a time; returns rows per table."""
    ids: dict[str, Iterator[int]] = {table: itertools.count(1) for table in COLUMNS}
    sids = itertools.count(1)
    totals = dict.fromkeys(COLUMNS, 0)
    with psycopg.connect(plain(url)) as conn:
        for start in range(0, len(everyone), CHUNK):
            batch = Batch(COLUMNS, ids, sids, "SMh{:031x}")  # h: history, never a request
            for person in everyone[start : start + CHUNK]:
                add_person(batch, person, setting, rng)
            copy_batch(conn, batch, totals)
            done = min(start + CHUNK, len(everyone))
            print(f"  loaded {done:,}/{len(everyone):,} patients", file=sys.stderr, flush=True)
        conn.commit()
    finish_load(url, COLUMNS)
    return totals
