"""A day's traffic through the scaled-out stack, with nothing lost and nothing repeated.

Two `checkin serve` processes (gunicorn, 2 workers each, on different ports) and two
`checkin scheduler` processes share one PostgreSQL; Twilio is the fake API on loopback, reached
through the official client. 520 patients in eight time zones (more than one scheduler claim
batch of 500, so both schedulers must claim) get their daily 09:00 check-in: every process
clock starts at 17:00 UTC, after 09:00 and before 21:00 in every one of those zones, so each
patient's check-in from earlier that local day is due at once (the catch-up a scheduler does
when it starts mid-day).

Then every patient answers fatigue, pain and mood with signed webhooks, sent like a load
balancer would: round-robin over the two web processes (one patient's answers land on both),
signed against CHECKIN_PUBLIC_URL. Some messages are delivered twice by "Twilio" (to the other
web process, after the first answer or at the same moment), some answers are severe, a few
patients text crisis language afterwards and one texts STOP.
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from checkin.db import Database
from checkin.models import (
    Alert,
    AlertNotification,
    Answer,
    CheckIn,
    ConsentEvent,
    Message,
    Patient,
    StaffUser,
)
from checkin.programs import default_program
from tests.conftest import BOB, PUBLIC_URL, T0, twilio_env
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio
from tests.procs import Process, free_port, healthy, wait_until

pytestmark = pytest.mark.slow

PATIENTS = 520  # more than one claim batch (scheduler.BATCH = 500), so both schedulers claim
CLOCK_START = "2026-03-10T17:00:00+00:00"
# Local time at CLOCK_START: 13:00, 12:00, 11:00, 10:00, 10:00, 14:30, 17:00 and 18:00.
ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/St_Johns",
    "Europe/London",
    "Europe/Berlin",
)
ON_CALL = (BOB, "+16175550197")
STOPPER = 100  # the patient who texts STOP after the check-in
CRISIS_TEXT = "some days I want to end it all"
CLIENTS = 8  # patients texting at the same moment
TICK = 'Running job "tick'  # APScheduler's log line for each tick

NEXT_PROMPT = ("How much pain", "How is your mood", "Thank you, your answers are saved")
CRISIS_REPLY = "Call or text 988"
STOP_REPLY = "you are unsubscribed"


@dataclass(frozen=True)
class Person:
    """One patient's day: what they answer, whether it is severe, and what they text after."""

    index: int
    phone: str
    zone: str
    answers: tuple[str, str, str]
    values: tuple[int, int, int]
    severe: bool
    after: str | None  # a crisis text or STOP, once the check-in is done


def people() -> list[Person]:
    day = []
    for i in range(PATIENTS):
        fatigue, pain, mood = i % 9, (i * 7) % 9, 2 + i % 9
        if i % 40 == 7:
            pain = 9
        elif i % 40 == 19:
            fatigue, pain = 9, 10  # two severe readings: still one alert, one page each
        elif i % 40 == 31:
            mood = 1
        answers = (f"{fatigue}/10" if i % 5 == 0 else str(fatigue), str(pain), str(mood))
        severe = fatigue >= 9 or pain >= 9 or mood <= 1
        after = CRISIS_TEXT if i % 100 == 42 else "STOP" if i == STOPPER else None
        phone = f"+1617{3000000 + i}"
        day.append(
            Person(i, phone, ZONES[i % len(ZONES)], answers, (fatigue, pain, mood), severe, after)
        )
    return day


def enrol(url: str, day: list[Person]) -> None:
    enrolled = T0 - timedelta(days=7)
    db = Database(url)
    with db.session() as session:
        program = default_program(session, enrolled)
        session.add_all(
            Patient(
                program_id=program.id,
                phone=p.phone,
                name=f"Patient {p.index}",
                timezone=p.zone,
                language="en",
                status="active",
                consented_at=enrolled,
                enrolled_at=enrolled,
            )
            for p in day
        )
        session.add_all(
            StaffUser(
                program_id=program.id,
                email=f"oncall{n}@example.org",
                name=f"On call {n}",
                role="clinician",
                phone=phone,
                on_call=True,
                password_hash="x",
                created_at=enrolled,
            )
            for n, phone in enumerate(ON_CALL)
        )
    db.dispose()


class Twilio:
    """Signed webhooks, as Twilio sends them, spread over the web processes by the caller."""

    def __init__(self, bases: list[str]) -> None:
        self.bases = bases
        self.hits: Counter[tuple[int, str]] = Counter()  # (web process, path) -> requests
        self.lock = threading.Lock()

    def post(self, web: int, url: str, params: dict[str, str]) -> requests.Response:
        """POST to web process `web`, signed over the public `url` Twilio was given."""
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        parts = urlsplit(url)
        target = self.bases[web] + parts.path + (f"?{parts.query}" if parts.query else "")
        response = requests.post(
            target, data=params, headers={"X-Twilio-Signature": signature}, timeout=30
        )
        assert response.status_code == 200, (target, response.status_code, response.text)
        with self.lock:
            self.hits[(web, parts.path)] += 1
        return response

    def sms(self, web: int, sid: str, sender: str, body: str) -> list[str]:
        params = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": sender,
            "To": FROM_NUMBER,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
        }
        response = self.post(web, f"{PUBLIC_URL}/twilio/sms", params)
        return [m.text or "" for m in ET.fromstring(response.text).iter("Message")]

    def delivered(self, web: int, sid: str, to: str, callback: str) -> None:
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": "delivered",
            "SmsStatus": "delivered",
            "AccountSid": ACCOUNT_SID,
            "To": to,
            "From": FROM_NUMBER,
            "ApiVersion": "2010-04-01",
        }
        self.post(web, callback, params)


@dataclass
class Texted:
    sids: list[str]  # every MessageSid this patient sent, once each
    redelivered: int  # of them, how many were delivered twice


def live_a_day(twilio: Twilio, person: Person, first_sid: str, callback: str) -> Texted:
    """The patient's phone reports the first question delivered, then they answer it all."""
    i = person.index
    twilio.delivered(i % 2, first_sid, person.phone, callback)
    texted = Texted([], 0)
    texts = [(body, (prompt,)) for body, prompt in zip(person.answers, NEXT_PROMPT, strict=True)]
    if person.after is not None:
        texts.append((person.after, (CRISIS_REPLY if person.after != "STOP" else STOP_REPLY,)))
    for q, (body, expected) in enumerate(texts):
        sid = "SM" + secrets.token_hex(16)
        web, other = (i + q) % 2, (i + q + 1) % 2
        texted.sids.append(sid)
        if q == 1 and i % 60 == 11:
            # Twilio retried while the first delivery was still in flight: one of the two is
            # answered, the other may get an empty response, and the message is stored once.
            with ThreadPoolExecutor(2) as pool:
                calls = [pool.submit(twilio.sms, w, sid, person.phone, body) for w in (web, other)]
                both = [call.result() for call in calls]
            assert all(_says(r, expected) or r == [] for r in both), both
            assert any(_says(r, expected) for r in both), both
            texted.redelivered += 1
            continue
        replies = twilio.sms(web, sid, person.phone, body)
        assert _says(replies, expected), (person, body, replies)
        if (i + q) % 15 == 0 or (person.after is not None and q == 3):
            # Twilio did not see our answer in time and delivers again, to the other process:
            # the same reply, and nothing recorded twice.
            assert twilio.sms(other, sid, person.phone, body) == replies
            texted.redelivered += 1
    return texted


def _says(replies: list[str], expected: tuple[str, ...]) -> bool:
    return len(replies) == len(expected) and all(
        e in r for e, r in zip(expected, replies, strict=True)
    )


def test_two_web_and_two_scheduler_processes_carry_a_days_traffic_without_loss_or_repeats(
    postgres_url: str, fake_twilio: FakeTwilio, tmp_path: Path
) -> None:
    day = people()
    enrol(postgres_url, day)
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    env = twilio_env(
        postgres_url,
        fake_twilio,
        CHECKIN_SCHEDULER_TICK_SECONDS="0.5",
        CHECKIN_CLOCK_START=CLOCK_START,
    )
    webs = [
        Process(["serve", "--port", str(port), "--workers", "2"], env, tmp_path, f"web{n}")
        for n, port in enumerate(ports)
    ]
    schedulers = [Process(["scheduler"], env, tmp_path, f"scheduler{n}") for n in (0, 1)]
    processes = webs + schedulers
    twilio = Twilio(bases)
    try:
        wait_until(lambda: all(healthy(base) for base in bases), 30, "both web processes")
        wait_until(
            lambda: len(fake_twilio.sent) >= PATIENTS, 60, f"{PATIENTS} first questions", 0.2
        )
        firsts = {s.to: s for s in fake_twilio.sent}
        assert set(firsts) == {p.phone for p in day}

        with ThreadPoolExecutor(CLIENTS) as pool:
            texted = list(
                pool.map(
                    lambda p: live_a_day(
                        twilio, p, firsts[p.phone].sid, firsts[p.phone].status_callback or ""
                    ),
                    day,
                )
            )

        alerts = sum(p.severe for p in day) + sum(p.after == CRISIS_TEXT for p in day)
        wait_until(
            lambda: all(len(fake_twilio.to(phone)) >= alerts for phone in ON_CALL),
            30,
            f"{alerts} pages to each on-call clinician",
        )
        # Both schedulers tick a few more times: nothing more may go out.
        sent_then = len(fake_twilio.sent)
        _let_each_tick(schedulers, 3)
    finally:
        for process in processes:
            process.stop()
    for process in processes:
        assert "Traceback" not in process.log(), process.log_path

    # Twilio saw each first question once, and one page per on-call clinician per alert.
    assert len(fake_twilio.sent) == sent_then == PATIENTS + alerts * len(ON_CALL)
    per_phone = Counter(s.to for s in fake_twilio.sent)
    assert {per_phone[p.phone] for p in day} == {1}
    assert all("How tired" in firsts[p.phone].body for p in day)

    # Both web processes took part: each saw exactly the requests sent to it.
    for web in (0, 1):
        log = webs[web].log()
        for path in ("/twilio/sms", "/twilio/status"):
            # Access log lines: `"POST /twilio/sms HTTP/1.1"` or `"POST /twilio/sms"`.
            logged = len(re.findall(rf'"POST {path}[ "?]', log))
            assert logged == twilio.hits[(web, path)] > 0, (web, path)
    assert sum(t.redelivered for t in texted) > 0

    db = Database(postgres_url)
    try:
        with db.session() as session:
            _assert_check_ins(session, day, schedulers)
            _assert_messages(session, day, texted, fake_twilio)
            _assert_alerts(session, day, fake_twilio)
    finally:
        db.dispose()


def _let_each_tick(schedulers: list[Process], ticks: int) -> None:
    marks = [s.log().count(TICK) for s in schedulers]

    def ticked() -> bool:
        return all(s.log().count(TICK) >= m + ticks for s, m in zip(schedulers, marks, strict=True))

    wait_until(
        ticked,
        20,
        f"{ticks} more ticks per scheduler",
    )


def _assert_check_ins(session: Session, day: list[Person], schedulers: list[Process]) -> None:
    rows = session.execute(select(CheckIn, Patient).join(Patient)).all()
    assert len(rows) == PATIENTS
    by_phone = {patient.phone: checkin for checkin, patient in rows}
    for person in day:
        checkin = by_phone[person.phone]
        assert checkin.status == "completed"
        assert checkin.completed_at is not None
        # The 09:00 of that local day, in the patient's own zone.
        zone = ZoneInfo(person.zone)
        local_day = datetime.fromisoformat(CLOCK_START).astimezone(zone).date()
        assert checkin.due_at == datetime.combine(local_day, time(9), zone)

    # Exactly three answers per check-in, the values the patient sent.
    answers: dict[int, dict[str, int | None]] = {}
    for answer in session.scalars(select(Answer)):
        assert answer.status == "answered"
        answers.setdefault(answer.checkin_id, {})[answer.measure] = answer.value
    for person in day:
        got = answers[by_phone[person.phone].id]
        assert got == dict(zip(("fatigue", "pain", "mood"), person.values, strict=True))

    # Both schedulers claimed part of the work: claims are tagged host:pid:token.
    claimers = Counter(c.claimed_by.rsplit(":", 1)[0] for c, _ in rows if c.claimed_by)
    host = socket.gethostname()
    assert set(claimers) == {f"{host}:{s.proc.pid}" for s in schedulers}, claimers
    assert sum(claimers.values()) == PATIENTS


def _assert_messages(
    session: Session, day: list[Person], texted: list[Texted], fake: FakeTwilio
) -> None:
    # Every text the patients sent is stored once, under its MessageSid.
    sids = [sid for t in texted for sid in t.sids]
    assert len(sids) == len(set(sids)) == 3 * PATIENTS + sum(p.after is not None for p in day)
    inbound = Counter(
        session.scalars(select(Message.twilio_sid).where(Message.direction == "inbound"))
    )
    assert inbound == Counter(sids)

    # One TwiML reply per stored text: re-deliveries replayed the reply, never made another.
    replies = session.scalar(
        select(func.count()).select_from(Message).where(Message.status == "twiml")
    )
    assert replies == len(sids)
    thanks = Counter(
        session.scalars(
            select(Message.checkin_id).where(
                Message.status == "twiml", Message.body.like("Thank you, your answers%")
            )
        )
    )
    assert len(thanks) == PATIENTS and set(thanks.values()) == {1}

    # Every first question: one row, sent through Twilio once, delivered.
    firsts = session.scalars(select(Message).where(Message.purpose == "checkin")).all()
    assert len(firsts) == PATIENTS
    assert {m.twilio_sid for m in firsts} == {s.sid for s in fake.sent if s.to not in ON_CALL}
    assert {m.status for m in firsts} == {"delivered"}

    stopper = next(p for p in day if p.after == "STOP")
    patient = session.scalars(select(Patient).where(Patient.phone == stopper.phone)).one()
    assert patient.status == "opted_out"
    kinds = session.scalars(
        select(ConsentEvent.kind).where(ConsentEvent.patient_id == patient.id)
    ).all()
    assert kinds == ["opted_out"]  # once, though STOP was delivered twice


def _assert_alerts(session: Session, day: list[Person], fake: FakeTwilio) -> None:
    rows = session.execute(select(Alert, Patient.phone).join(Patient)).all()
    opened = Counter((phone, alert.kind) for alert, phone in rows)
    expected = {(p.phone, "severe") for p in day if p.severe} | {
        (p.phone, "crisis") for p in day if p.after == CRISIS_TEXT
    }
    assert set(opened) == expected
    assert set(opened.values()) == {1}
    assert {(a.kind, a.severity) for a, _ in rows} == {("severe", "high"), ("crisis", "urgent")}

    # Each alert paged each on-call clinician exactly once, and the page names only the ref.
    notified = Counter(session.scalars(select(AlertNotification.alert_id)))
    assert notified == Counter({a.id: len(ON_CALL) for a, _ in rows})
    refs = {a.ref for a, _ in rows}
    for phone in ON_CALL:
        paged = Counter(s.body.split()[3].rstrip(":") for s in fake.to(phone))
        assert paged == Counter(dict.fromkeys(refs, 1)), phone
