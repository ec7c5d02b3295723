"""Faults a deployment meets, and what patients and staff would notice after each.

1. PostgreSQL goes down while patients are answering. A test-owned PostgreSQL (tests/pgcluster.py)
   under a real `checkin serve`; replies come as signed webhooks from a sender that behaves like
   Twilio (a 5xx or a refused connection is retried with the same MessageSid after a short
   delay, up to a bound). One reply is mid-transaction when the database goes, some arrive
   while it shuts down, others while it is down. Meanwhile every webhook answers 5xx (so Twilio
   keeps retrying) and /healthz 503; afterwards every reply is stored once and every check-in
   finished, by the same server processes, which also survive a restart nobody noticed.
2. Twilio's API fails for ten minutes (5xx, one 429 with Retry-After, and a stretch where it
   refuses connections) while the scheduler dispatches the 09:00 check-ins and the outbox sends
   a crisis page. In-process, with a frozen clock the test moves in 5-second ticks (the backoff
   is minutes): sends are retried with growing gaps, nothing is lost or sent twice, and a text
   that kept failing past the retry limit is a dead letter in `export messages --status failed`.
   A first question still being retried is dropped once its check-in closes (crisis language,
   midnight): no scripted question after a 988 reply.
3. Status callbacks arriving twice and in any order leave each message at its most advanced
   status (a hypothesis test over Twilio's lifecycles).

Covered elsewhere: a scheduler killed mid-batch (tests/test_schedules_delivery.py, SIGKILL on a
real worker), one redelivered inbound text and one late status callback (tests/test_webhooks.py).
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import socket
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import hypothesis
import psycopg
import pytest
import requests
from click.testing import CliRunner
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from sqlalchemy import func, select

from checkin import outbox, schedules
from checkin.catalog import render
from checkin.cli import cli
from checkin.clock import FrozenClock
from checkin.config import Settings, load_settings
from checkin.context import Context, make_context
from checkin.db import Database
from checkin.models import Alert, Answer, CheckIn, Message, Patient
from checkin.patients import NewPatient, enrol
from checkin.programs import default_program
from checkin.scheduler import tick
from checkin.simulate import sign, twilio_inbound_params
from checkin.transports import SendResult, TransportError, sms_transport
from tests.conftest import ALICE, BOB, T0, World, enrol_many, signed_post, twilio_env
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio
from tests.pgcluster import TemporaryPostgres, temporary_postgres
from tests.procs import Process, free_port, healthy, run, wait_until

NEW_YORK = ZoneInfo("America/New_York")
ASK_FATIGUE = render("ask_fatigue", "en")
ASK_PAIN = render("ask_pain", "en")
ASK_MOOD = render("ask_mood", "en")
THANKS = render("thanks", "en")


# --- 1. PostgreSQL goes down while patients answer --------------------------------------------

OUTAGE_PATIENTS = 16
# The Twilio-like sender: a 5xx or a connection error is retried after this delay, this often.
RETRY_DELAY = 0.25
RETRY_BOUND = 120  # 30 s of retries: far longer than the outage, still bounded
TWILIO_TIMEOUT = 15  # Twilio waits 15 s for a webhook's answer
# The database stays down at least this long, and until every patient held back for the
# outage has been refused at least once.
OUTAGE_SECONDS = 3.0


@dataclass(frozen=True)
class Attempt:
    """One HTTP request of the sender: when it went, when its answer came, and the answer."""

    sid: str
    sent: float  # time.monotonic()
    answered: float
    outcome: int | str  # the HTTP status, or the connection error's name


@dataclass
class TwilioLikeSender:
    """Posts inbound webhooks as Twilio does, signed against CHECKIN_PUBLIC_URL. A 5xx or a
    connection error is retried with the same MessageSid after RETRY_DELAY, at most RETRY_BOUND
    times; a 2xx or a 4xx is final (Twilio gives up on a 4xx)."""

    url: str
    settings: Settings
    attempts: list[Attempt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def text(self, phone: str, body: str) -> tuple[str, list[str]]:
        """The patient texts `body`; returns the MessageSid and the replies in the TwiML."""
        sid = "SM" + secrets.token_hex(16)
        params = twilio_inbound_params(self.settings, phone, body, sid)
        signed_url = f"{self.settings.public_url}/twilio/sms"
        signature = sign(AUTH_TOKEN, signed_url, params)
        for _ in range(RETRY_BOUND):
            sent = time.monotonic()
            try:
                response = requests.post(
                    f"{self.url}/twilio/sms",
                    data=params,
                    headers={"X-Twilio-Signature": signature},
                    timeout=TWILIO_TIMEOUT,
                )
                outcome: int | str = response.status_code
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            with self.lock:
                self.attempts.append(Attempt(sid, sent, time.monotonic(), outcome))
            if outcome == 200:
                return sid, _twiml(response.text)
            if isinstance(outcome, int) and outcome < 500:
                raise AssertionError(f"{body!r} from {phone} got a final {outcome}")
            time.sleep(RETRY_DELAY)
        raise AssertionError(f"{body!r} from {phone} still refused after {RETRY_BOUND} tries")

    def refused_since(self, since: float) -> set[str]:
        with self.lock:
            return {a.sid for a in self.attempts if a.sent >= since and a.outcome != 200}


def _twiml(body: str) -> list[str]:
    root = ElementTree.fromstring(body)
    assert root.tag == "Response"
    return [child.text or "" for child in root]


@dataclass
class Replier:
    """One patient of the outage test, answering fatigue, pain and mood in turn. The pain
    answer waits for the fault, as `when` says:
    - "in flight": sent before the stop, its transaction held on a row lock until the
      database goes away under it;
    - "shutdown": sent `stagger` seconds after the stop begins;
    - "outage": sent once the database is down."""

    phone: str
    values: tuple[int, int, int]
    when: str
    stagger: float = 0.0
    sids: list[str] = field(default_factory=list)
    replies: list[list[str]] = field(default_factory=list)
    error: BaseException | None = None


@dataclass
class Fault:
    """The moments the repliers wait for."""

    in_flight: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    down: threading.Event = field(default_factory=threading.Event)

    def moment(self, when: str) -> threading.Event:
        return {"in flight": self.in_flight, "shutdown": self.stopping, "outage": self.down}[when]


def _answer_through_the_outage(patient: Replier, sender: TwilioLikeSender, fault: Fault) -> None:
    try:
        for n, value in enumerate(patient.values):
            if n == 1:
                if not fault.moment(patient.when).wait(60):
                    raise AssertionError(f"the moment {patient.when!r} never came")
                time.sleep(patient.stagger)  # spread over the shutdown, not an assertion
            sid, replies = sender.text(patient.phone, str(value))
            patient.sids.append(sid)
            patient.replies.append(replies)
    except BaseException as exc:  # noqa: BLE001 - reported by the test thread
        patient.error = exc


def _healthz(url: str) -> int:
    try:
        return requests.get(f"{url}/healthz", timeout=5).status_code
    except requests.RequestException:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_replies_during_a_postgresql_outage_get_5xx_until_it_returns_then_are_stored_once(
    tmp_path: Path, fake_twilio: FakeTwilio, mode: str
) -> None:
    with temporary_postgres(tmp_path) as postgres:
        _outage_during_replies(postgres, fake_twilio, tmp_path, mode)


def _outage_during_replies(
    postgres: TemporaryPostgres, fake: FakeTwilio, tmp_path: Path, mode: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = twilio_env(postgres.url, fake, CHECKIN_PUBLIC_URL=url, CHECKIN_CLOCK_START=T0.isoformat())
    migrated = run(["db", "upgrade"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    phones = sorted(enrol_many(postgres.url, OUTAGE_PATIENTS, first=4000000))
    _open_daily_check_ins(load_settings(env), fake, phones)
    patients = [
        Replier(
            phone,
            (1 + i % 5, i % 5, 6 + i % 4),  # nothing severe: no page is part of this story
            when="in flight" if i == 0 else ("shutdown", "outage")[i % 2],
            stagger=0.05 * i if i % 2 == 0 else 0.0,
        )
        for i, phone in enumerate(phones)
    ]
    in_flight = patients[0]
    sender = TwilioLikeSender(url, load_settings(env))
    fault = Fault()
    web = Process(["serve", "--port", str(port), "--workers", "2"], env, tmp_path, "web")
    threads = [
        threading.Thread(target=_answer_through_the_outage, args=(p, sender, fault), daemon=True)
        for p in patients
    ]
    lock = None
    try:
        wait_until(lambda: healthy(url), 30, "checkin serve to answer /healthz")
        for thread in threads:
            thread.start()
        wait_until(
            lambda: all(p.sids or p.error for p in patients), 30, "every patient's first answer"
        )
        # One reply is mid-transaction when the database goes: its inbound row is written and
        # it waits for its check-in's row lock, which the test holds.
        lock = _hold_check_in_lock(postgres.url, in_flight.phone)
        fault.in_flight.set()
        wait_until(lambda: _waiting_on_a_lock(lock), 10, "the reply to wait on the row lock")

        fault.stopping.set()  # the "shutdown" patients answer while PostgreSQL shuts down
        stop_began = time.monotonic()
        postgres.stop(mode)
        down_at = time.monotonic()
        fault.down.set()  # the "outage" patients answer now, with the database down
        health_while_down = _healthz(url)
        outage = [p for p in patients if p.when == "outage"]
        wait_until(
            lambda: (
                len(sender.refused_since(down_at)) >= len(outage)
                and time.monotonic() - down_at >= OUTAGE_SECONDS
            ),
            30,
            "every reply sent during the outage to be refused",
        )
        up_at = time.monotonic()
        postgres.start()
        started_at = time.monotonic()

        deadline = time.monotonic() + RETRY_BOUND * RETRY_DELAY + TWILIO_TIMEOUT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not [t for t in threads if t.is_alive()], "a patient's sender never finished"
        errors = [f"{p.phone}: {p.error!r}" for p in patients if p.error is not None]
        assert errors == [], "\n".join(errors)
        wait_until(lambda: _healthz(url) == 200, 30, "/healthz to answer 200 again")
        _assert_each_reply_stored_once(postgres.url, patients)

        # A quiet restart: no request sees the database go and come back, so every pooled
        # connection is stale; pool_pre_ping replaces them before a request gets one.
        postgres.stop(mode)
        postgres.start()
        quiet = [sender.text(p.phone, "HELP")[0] for p in patients[:6]]
        server_alive = web.proc.poll() is None
    finally:
        if lock is not None:
            lock.close()
        web.stop()
    log = web.log()

    # While the database was down: 5xx and nothing else (Twilio retries a 5xx; it gives up on
    # a 4xx, and a 200 would claim a reply stored that was not).
    during = [a for a in sender.attempts if a.sent >= down_at and a.answered <= up_at]
    assert len({a.sid for a in during}) >= len(outage)
    assert {a.outcome for a in during} <= set(range(500, 600)), Counter(a.outcome for a in during)
    assert {a.outcome for a in sender.attempts} - {200} <= set(range(500, 600))  # no 4xx, ever
    assert health_while_down == 503
    # Once PostgreSQL was back every request succeeded: stale pooled connections were noticed
    # (pool_pre_ping) and replaced, never handed to a request.
    after = Counter(a.outcome for a in sender.attempts if a.sent >= started_at)
    assert set(after) == {200}, after
    # The reply caught mid-transaction was refused, not answered, and stored on its retry.
    caught = [a for a in sender.attempts if a.sid == in_flight.sids[1]]
    assert caught[0].sent < stop_began and caught[0].outcome != 200
    assert caught[-1].outcome == 200 and caught[-1].sent > up_at
    # Each patient read the next question after each answer, and the thanks at the end.
    for p in patients:
        assert [r[0] for r in p.replies[:2]] == [ASK_PAIN, ASK_MOOD], p.phone
        assert p.replies[2] == [THANKS], p.phone
    retried = {a.sid for a in sender.attempts if a.outcome != 200}
    print(
        f"\nPostgreSQL stopped ({mode}) for {up_at - down_at:.1f} s: {len(during)} webhook "
        f"attempts answered 5xx meanwhile; {len(retried)} replies retried, each stored once"
    )
    assert [a.outcome for a in sender.attempts if a.sid in quiet] == [200] * len(quiet)
    # The same processes recovered (pool_pre_ping): nothing restarted or replaced a worker.
    assert server_alive
    assert log.count("Booting worker") == 2, log


def _hold_check_in_lock(url: str, phone: str) -> psycopg.Connection[Any]:
    """A connection holding the row lock on `phone`'s open check-in (until it is closed)."""
    conn = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
    conn.execute(
        "SELECT c.id FROM checkins c JOIN patients p ON p.id = c.patient_id "
        "WHERE p.phone = %s AND c.status = 'open' FOR UPDATE",
        (phone,),
    ).fetchone()
    return conn


def _waiting_on_a_lock(conn: psycopg.Connection[Any]) -> bool:
    waiting = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database()"
    ).fetchone()
    return waiting is not None and waiting[0] >= 1


def _open_daily_check_ins(settings: Settings, fake: FakeTwilio, phones: list[str]) -> None:
    """The scheduler sends every patient the 09:00 daily check-in (it is 10:00 in New York)."""
    ctx = make_context(settings)
    ctx.clock = FrozenClock(T0)
    try:
        counts = tick(ctx)
    finally:
        ctx.db.dispose()
    assert -1 not in counts.values(), counts
    assert sorted(s.to for s in fake.sent if s.body == ASK_FATIGUE) == phones


def _assert_each_reply_stored_once(url: str, patients: list[Replier]) -> None:
    db = Database(url)
    try:
        with db.session() as session:
            inbound = Counter(
                session.scalars(select(Message.twilio_sid).where(Message.direction == "inbound"))
            )
            replies = Counter(
                key.split(":")[1]
                for key in session.scalars(
                    select(Message.idempotency_key).where(Message.purpose == "reply")
                )
            )
            sent_sids = [sid for p in patients for sid in p.sids]
            assert inbound == Counter(sent_sids)  # one inbound Message per MessageSid, no other
            assert replies == Counter(sent_sids)  # one reply stored for each
            for p in patients:
                checkin = session.scalars(
                    select(CheckIn).join(Patient).where(Patient.phone == p.phone)
                ).one()
                assert checkin.status == "completed", (p.phone, checkin.status, checkin.state)
                stored = session.execute(
                    select(Answer.measure, Answer.value, Message.twilio_sid)
                    .join(Message, Message.id == Answer.message_id)
                    .where(Answer.checkin_id == checkin.id)
                )
                assert sorted(stored) == sorted(
                    zip(("fatigue", "pain", "mood"), p.values, p.sids, strict=True)
                ), p.phone
    finally:
        db.dispose()


# --- 2. Twilio's API fails for ten minutes ---------------------------------------------------


def ny(hh: int, mm: int, ss: int = 0) -> datetime:
    """A wall-clock time in New York on Tuesday 10 March 2026, as a UTC instant."""
    return datetime(2026, 3, 10, hh, mm, ss, tzinfo=NEW_YORK).astimezone(UTC)


TICK = timedelta(seconds=5)
OUTAGE_START, OUTAGE_END = ny(8, 55), ny(9, 5)
REFUSING = (ny(9, 1), ny(9, 3))  # the API refuses connections: it is not even listening
RETRY_AFTER_SECONDS = 20  # the one 429: the first request after the refusals end
CRISIS_AT = ny(9, 0, 30)
GRACE = "+16175550111"  # texts crisis language while her first question is still retrying
FRANK = "+16175550116"  # enrolled at 08:55: his welcome text fails five times and is given up
OTHERS = ["+16175550112", "+16175550113", "+16175550114", "+16175550115"]


@dataclass
class FlakyTwilio(FakeTwilio):
    """The fake Twilio API with an outage on the test's clock: 5xx (Twilio's 20500 and 20503)
    from OUTAGE_START to OUTAGE_END, except while REFUSING (the listening socket is closed and
    open keep-alive connections are cut) and one 429 with Retry-After right after that."""

    clock: Callable[[], datetime] = field(default_factory=lambda: FrozenClock(T0))
    refused: bool = False
    errors: list[tuple[datetime, int]] = field(default_factory=list)
    accepted: list[tuple[datetime, str]] = field(default_factory=list)  # (when, StatusCallback)
    connections: set[socket.socket] = field(default_factory=set)
    said_429: bool = False
    port: int = 0  # kept while refusing, to listen on the same port again
    handler: Any = None

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.connections.add(request.connection)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length)
        form = dict(urllib.parse.parse_qsl(raw.decode()))
        now = self.clock()
        if OUTAGE_START <= now < OUTAGE_END:
            with self.lock:
                first_after_refusals = now >= REFUSING[1] and not self.said_429
                self.said_429 = self.said_429 or first_after_refusals
                status = 429 if first_after_refusals else (500, 503)[len(self.errors) % 2]
                self.errors.append((now, status))
            code = {429: 20429, 500: 20500, 503: 20503}[status]
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 429 else {}
            return _error(request, status, code, headers)
        with self.lock:
            self.accepted.append((now, form.get("StatusCallback", "")))
        connection = request.rfile
        request.rfile = io.BytesIO(raw)
        try:
            super().handle(request)
        finally:
            request.rfile = connection  # keep-alive: the next request reads the socket

    def follow(self, now: datetime) -> None:
        """Stop or start listening as the outage's timetable says for `now`."""
        refusing = REFUSING[0] <= now < REFUSING[1]
        if refusing and not self.refused:
            assert self.server is not None
            self.port = int(self.server.server_address[1])
            self.handler = self.server.RequestHandlerClass
            self.server.shutdown()
            self.server.server_close()
            with self.lock:
                for connection in self.connections:
                    try:
                        connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                self.connections.clear()
            self.refused = True
        elif not refusing and self.refused:
            # The same port again, as a restarted API behind the same address.
            self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
            self.server.daemon_threads = True
            threading.Thread(
                target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            ).start()
            self.refused = False

    def stop(self) -> None:
        if not self.refused:
            super().stop()


def _error(
    request: BaseHTTPRequestHandler, status: int, code: int, headers: dict[str, str]
) -> None:
    data = json.dumps({"code": code, "message": f"error {code}", "status": status}).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    for name, value in headers.items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(data)


@dataclass
class RecordingSms:
    """The real transport, noting the clock and the outcome of every attempt per message
    (refused connections never reach the fake, so the fake alone cannot count them)."""

    inner: Any
    clock: Callable[[], datetime]
    name: str = "twilio"
    tries: dict[int, list[tuple[datetime, str]]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send_sms(
        self,
        to: str,
        body: str,
        *,
        status_callback: str | None,
        validity_seconds: int | None = None,
    ) -> SendResult:
        assert status_callback is not None
        message_id = _message_id(status_callback)
        now = self.clock()
        try:
            result: SendResult = self.inner.send_sms(
                to, body, status_callback=status_callback, validity_seconds=validity_seconds
            )
        except TransportError as exc:
            with self.lock:
                self.tries[message_id].append((now, f"{exc.code or 'no code'}: {exc.message}"))
            raise
        with self.lock:
            self.tries[message_id].append((now, "accepted"))
        return result


def _message_id(status_callback: str) -> int:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(status_callback).query)
    return int(query["message"][0])


@pytest.mark.usefixtures("world")  # alice, and bob on call
def test_a_ten_minute_twilio_outage_delays_texts_with_growing_retries_but_loses_or_repeats_none(
    db_url: str, ctx: Context, clock: FrozenClock, client: FlaskClient
) -> None:
    fake = FlakyTwilio(clock=clock)
    fake.start()
    recorder = RecordingSms(sms_transport(load_settings(twilio_env(db_url, fake))), clock)
    ctx.sms = recorder
    try:
        _twilio_outage(db_url, ctx, clock, client, fake, recorder)
    finally:
        fake.stop()


def _twilio_outage(
    db_url: str,
    ctx: Context,
    clock: FrozenClock,
    client: FlaskClient,
    fake: FlakyTwilio,
    recorder: RecordingSms,
) -> None:
    with ctx.db.session() as session:
        for phone in [GRACE, *OTHERS]:
            enrol(
                session,
                NewPatient(phone, f"Patient {phone[-2:]}", "America/New_York"),
                T0 - timedelta(days=7),
                actor="test",
                sender=FROM_NUMBER,
                welcome=False,
            )
    clock.at = OUTAGE_START
    with ctx.db.session() as session:  # enrolled as the outage begins: the welcome is queued
        enrol(
            session,
            NewPatient(FRANK, "Frank Example", "America/New_York"),
            clock(),
            actor="test",
            sender=FROM_NUMBER,
        )

    at = OUTAGE_START
    while at <= ny(9, 12):
        fake.follow(at)
        clock.at = at
        if at == CRISIS_AT:
            (reply,) = _text(client, ctx, GRACE, "I want to kill myself")
            assert "988" in reply
        _tick(ctx)
        at = _next_tick(ctx, at)
    sent_by_then = len(fake.sent)
    while at <= ny(9, 14):  # a couple more minutes: nothing further goes out
        clock.at = at
        _tick(ctx)
        at += TICK

    assert len(fake.sent) == sent_by_then
    assert all(when >= OUTAGE_END for when, _ in fake.accepted)  # nothing got through before
    assert [s for _, s in fake.errors].count(429) == 1
    with ctx.db.session() as session:
        messages = {
            m.id: m for m in session.scalars(select(Message).where(Message.direction == "outbound"))
        }
        checkins = {c.patient.phone: c for c in session.scalars(select(CheckIn))}
        crisis = session.scalars(select(Alert).where(Alert.kind == "crisis")).one()

    # None lost, none repeated: one accepted request per message (one per idempotency key).
    accepted_ids = Counter(_message_id(callback) for _, callback in fake.accepted)
    assert set(accepted_ids.values()) == {1}
    keys = Counter(messages[i].idempotency_key for i in accepted_ids)
    assert set(keys.values()) == {1}
    to = Counter((s.to, s.body) for s in fake.sent)
    assert set(to.values()) == {1}
    # Every check-in still open got its first question once the outage ended ...
    still_open = sorted(phone for phone, c in checkins.items() if c.status == "open")
    assert still_open == sorted([ALICE, FRANK, *OTHERS])
    assert sorted(s.to for s in fake.sent if s.body == ASK_FATIGUE) == still_open
    # ... and bob his crisis page, once; grace, who texted crisis language while her first
    # question was still retrying, never got it after the 988 reply.
    (page,) = fake.to(BOB)
    assert crisis.ref in page.body and "URGENT" in page.body
    assert checkins[GRACE].status == "interrupted"
    assert fake.to(GRACE) == []

    # Retried with backoff: every attempt counted, the gaps between them growing, each gap at
    # least the backoff's lower bound (30 s, 1, 2, 4 min, less 20% jitter).
    first_questions = [m for m in messages.values() if m.purpose == "checkin"]
    for message in [*first_questions, next(m for m in messages.values() if m.to_number == BOB)]:
        tries = recorder.tries[message.id]
        if message.to_number != GRACE:  # hers: the tries, and the claim that suppressed it
            assert message.attempts == len(tries), message.purpose
        times = [when for when, _ in tries]
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        assert gaps == sorted(gaps) and len(set(gaps)) == len(gaps), (message.purpose, gaps)
        assert all(gap >= 0.8 * 30 * 2**n for n, gap in enumerate(gaps)), gaps
        if message.to_number == GRACE:
            assert message.status == "suppressed"
            continue
        assert [outcome for _, outcome in tries][-1] == "accepted"
        assert message.status == "queued"
    for message in first_questions:
        if message.to_number != GRACE:  # due at 09:00: four failures, the fifth try gets through
            assert message.attempts == outbox.MAX_ATTEMPTS
    outcomes = {outcome for tries in recorder.tries.values() for _, outcome in tries}
    assert {o.split(":")[0] for o in outcomes} >= {"20500", "20503", "20429", "no code"}
    # The 429's Retry-After was respected, though checkin does not read it (the official
    # client does not expose response headers): the backoff, at least 24 s, is longer.
    for tries in recorder.tries.values():
        for (when, outcome), (next_try, _) in zip(tries, tries[1:], strict=False):
            if outcome.startswith("20429"):
                assert next_try - when >= timedelta(seconds=RETRY_AFTER_SECONDS)

    # Frank's welcome, first tried as the outage began, failed five times: a dead letter.
    welcome = next(m for m in messages.values() if m.purpose == "welcome")
    assert (welcome.status, welcome.attempts) == ("failed", outbox.MAX_ATTEMPTS)
    assert [s for s in fake.to(FRANK) if s.body != ASK_FATIGUE] == []
    exported = CliRunner().invoke(
        cli,
        ["export", "messages", "--status", "failed"],
        env=twilio_env(db_url, fake),
        catch_exceptions=False,
    )
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    assert [(r["phone"], r["purpose"], r["attempts"]) for r in rows] == [
        (FRANK, "welcome", str(outbox.MAX_ATTEMPTS))
    ]
    assert rows[0]["error_message"]


def _next_tick(ctx: Context, at: datetime) -> datetime:
    """The scheduler ticks every TICK; a tick with nothing due does nothing, so skip to the
    next tick at which a send or a check-in falls due, the crisis text or the API's next change
    comes, or a minute has passed (planning runs once a minute)."""
    with ctx.db.session() as session:
        waiting = session.execute(
            select(Message.status, Message.send_after).where(
                Message.status.in_(("pending", "claimed"))
            )
        ).all()
        due_checkin = session.scalar(
            select(func.min(CheckIn.due_at)).where(CheckIn.status == "pending")
        )
    due = [send_after or at for _, send_after in waiting]
    due += [due_checkin] if due_checkin is not None else []
    changes = [e for e in (CRISIS_AT, *REFUSING, OUTAGE_END) if e > at]
    # Anything due already goes at the next tick.
    soonest = min([at + timedelta(minutes=1), *changes, *(max(d, at + TICK) for d in due)])
    ticks = -(-(soonest - OUTAGE_START) // TICK)  # the first tick at or after it
    return OUTAGE_START + ticks * TICK


def _tick(ctx: Context) -> None:
    counts = tick(ctx)
    assert -1 not in counts.values(), f"a scheduler step failed: {counts}"


def _text(client: FlaskClient, ctx: Context, phone: str, body: str) -> list[str]:
    params = twilio_inbound_params(ctx.settings, phone, body, "SM" + secrets.token_hex(16))
    response = signed_post(client, "/twilio/sms", params)
    assert response.status_code == 200
    return _twiml(response.get_data(as_text=True))


@pytest.mark.parametrize("closed_by", ["crisis language", "midnight"])
def test_a_first_question_still_being_retried_is_never_sent_once_its_check_in_has_closed(
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fake_twilio: FakeTwilio,
    client: FlaskClient,
    closed_by: str,
) -> None:
    if closed_by == "crisis language":
        fake_twilio.fail_next(503, 20503, "Service Unavailable")
        clock.at = ny(9, 0)
        _tick(ctx)  # the 09:00 question: Twilio is down, it is retried in about 30 s
        clock.advance(seconds=10)
        (reply,) = _text(client, ctx, ALICE, "I want to kill myself")
        assert "988" in reply
        ticks = [ny(9, 0, 10) + timedelta(seconds=30 * n) for n in range(1, 20)]
    else:
        with ctx.db.session() as session:  # alice's own check-in at 20:55, five before quiet
            schedules.add(
                session,
                default_program(session, T0),
                flow="daily_symptoms",
                local_time=clock_time(20, 55),
                days="mon,tue,wed,thu,fri,sat,sun",
                patient=session.get_one(Patient, world.alice_id),
                now=T0,
                actor="test",
            )
        # Twilio is down from 20:55 until 21:00: a retry falls in quiet hours and waits for
        # 08:00, but the check-in closes at midnight.
        fake_twilio.fail_next(503, 20503, "Service Unavailable", times=outbox.MAX_ATTEMPTS)
        for n in range(24):
            clock.at = ny(20, 55) + timedelta(seconds=30 * n)
            _tick(ctx)
        with ctx.db.session() as session:
            waiting = session.scalars(select(Message).where(Message.purpose == "checkin")).one()
            assert (waiting.status, waiting.send_after) == ("pending", ny(8, 0) + timedelta(days=1))
        with fake_twilio.lock:
            fake_twilio.failures.clear()  # Twilio is back
        ticks = [ny(23, 59, 30), ny(0, 0, 30) + timedelta(days=1)]
        ticks += [ny(8, 0) + timedelta(days=1, seconds=30 * n) for n in range(4)]
    for at in ticks:
        clock.at = at
        _tick(ctx)

    assert fake_twilio.to(ALICE) == []
    assert fake_twilio.failures == []
    with ctx.db.session() as session:
        checkin = session.scalars(select(CheckIn)).one()
        question = session.scalars(select(Message).where(Message.purpose == "checkin")).one()
        assert checkin.status == ("interrupted" if closed_by == "crisis language" else "expired")
        assert (question.status, question.error_message) == (
            "suppressed",
            f"check-in {checkin.status}",
        )
    if closed_by == "crisis language":
        assert len(fake_twilio.to(BOB)) == 1  # the page went; only the question was held


# --- 3. status callbacks, duplicated and out of order ------------------------------------------

# The paths a message takes through Twilio (https://www.twilio.com/docs/messaging/api/message-
# resource#message-status-values); 'read' follows 'delivered' on channels that report it.
LIFECYCLES = [
    ("queued", "sent", "delivered"),
    ("queued", "sending", "sent", "delivered", "read"),
    ("queued", "sent", "undelivered"),
    ("queued", "failed"),
    ("queued", "sending", "sent", "failed"),
]
FAILED_DELIVERY = 30003  # Twilio: unreachable destination handset


@st.composite
def callbacks(draw: st.DrawFn) -> tuple[tuple[str, ...], list[str]]:
    """A lifecycle, and the callbacks that arrive for it: any earlier status may be lost, the
    last always comes, each may come up to three times, and in any order."""
    path = draw(st.sampled_from(LIFECYCLES))
    arrived = [status for status in path[:-1] if draw(st.booleans())] + [path[-1]]
    copies = [status for status in arrived for _ in range(draw(st.integers(1, 3)))]
    return path, draw(st.permutations(copies))


@hypothesis.settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(story=callbacks())
def test_duplicate_and_out_of_order_status_callbacks_leave_the_most_advanced_status(
    client: FlaskClient, ctx: Context, world: World, story: tuple[tuple[str, ...], list[str]]
) -> None:
    path, arrivals = story
    checkin_id, message_id, sid = _first_question_sent(ctx, world)
    rank = outbox.STATUS_RANK
    seen = []

    for status in arrivals:
        code = FAILED_DELIVERY if status in ("undelivered", "failed") else None
        assert _callback(client, message_id, sid, status, code) == 200
        seen.append(_message_row(ctx, message_id).status)

    assert [rank[s] for s in seen] == sorted(rank[s] for s in seen)  # never moved backwards
    final = _message_row(ctx, message_id)
    assert final.status == path[-1] == max(arrivals, key=lambda s: rank[s])
    failed = path[-1] in ("undelivered", "failed")
    assert final.error_code == (FAILED_DELIVERY if failed else None)
    with ctx.db.session() as session:
        checkin = session.get_one(CheckIn, checkin_id)
        # An undelivered first question fails its check-in: not the patient ignoring it.
        assert checkin.status == ("failed" if failed else "open")


def _first_question_sent(ctx: Context, world: World) -> tuple[int, int, str]:
    """A new open check-in for alice whose first question Twilio accepted as `sid`."""
    now = ctx.clock()
    sid = "SM" + secrets.token_hex(16)
    with ctx.db.session() as session:
        # Each example's own check-in; the one before it is settled so only this one is open.
        for other in session.scalars(select(CheckIn).where(CheckIn.status == "open")):
            other.status = "expired"
        checkin = CheckIn(
            patient_id=world.alice_id,
            flow="daily_symptoms",
            flow_version=1,
            idempotency_key=f"faults:{sid}",
            local_date=date(2026, 3, 10),
            due_at=now,
            expires_at=now + timedelta(hours=12),
            status="open",
            state={"step": 0},
            sent_at=now,
            created_at=now,
        )
        session.add(checkin)
        session.flush()
        message = outbox.queue(
            session,
            to=ALICE,
            from_number=FROM_NUMBER,
            body=ASK_FATIGUE,
            purpose="checkin",
            now=now,
            patient_id=world.alice_id,
            checkin_id=checkin.id,
            idempotency_key=f"checkin:{checkin.id}:checkin",
        )
        message.status, message.twilio_sid, message.attempts, message.sent_at = (
            "queued",
            sid,
            1,
            now,
        )
        return checkin.id, message.id, sid


def _callback(client: FlaskClient, message_id: int, sid: str, status: str, code: int | None) -> int:
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": ACCOUNT_SID,
        "To": ALICE,
        "From": FROM_NUMBER,
        "ApiVersion": "2010-04-01",
    }
    if code is not None:
        params["ErrorCode"] = str(code)
    response = signed_post(client, f"/twilio/status?message={message_id}", params)
    return int(response.status_code)


def _message_row(ctx: Context, message_id: int) -> Message:
    with ctx.db.session() as session:
        return session.get_one(Message, message_id)
