"""Alert webhooks against a real HTTP receiver on loopback, on SQLite and PostgreSQL.

The receiver checks every request the way docs/webhooks.md tells a real one to (a fresh
Checkin-Timestamp and a v1 HMAC-SHA256 signature over the raw body, with
`alert_webhooks.verify`), records what it got, and answers what each test scripts: a 500 then
a 200, a 400 for good, a redirect. The scheduler is driven tick by tick with a frozen clock,
as in test_scheduler.py; the admin pages through the test client with their CSRF tokens.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import func, select

from checkin import alert_webhooks, alerts, scheduler, webhook_delivery
from checkin.alert_webhooks import SignatureError, WebhookError
from checkin.clock import FrozenClock
from checkin.context import Context
from checkin.models import AuditEvent, Patient, StaffUser, WebhookDelivery, WebhookEndpoint
from tests.conftest import ALICE, PUBLIC_URL, T0, World
from tests.fake_twilio import FROM_NUMBER
from tests.test_web import give_dave_a_password, login, token

PAGER = alerts.Pager(PUBLIC_URL, FROM_NUMBER)
CAROL = "carol@example.org"
DAVE = "dave@example.org"
SECRET_ON_PAGE = re.compile(r'<code class="secret" id="webhook-secret">([^<]+)</code>')
# What must never leave in an event: alice's name and number, and words she texted.
PATIENT_DATA = ("Alice", "Example", ALICE, ALICE[2:], "kill myself", "legs numb")


# --- a receiver on loopback -------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verdict: str  # "ok", or why the signature check refused it
    status: int  # what the receiver answered

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """Verifies each request with the documented check, records it, answers as scripted."""

    clock: FrozenClock
    secrets: dict[str, str] = field(default_factory=dict)  # path -> the endpoint's secret
    script: list[Answer] = field(default_factory=list)  # the next answers, then 200s
    delay: float = 0.0  # seconds before answering, to overlap concurrent workers
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def answer_next(self, answer: Answer, times: int = 1) -> None:
        with self.lock:
            self.script.extend([answer] * times)

    def accepted(self) -> list[str]:
        """The event ids the receiver took (verified and answered 2xx), in order."""
        with self.lock:
            return [r.event["event_id"] for r in self.received if r.status < 300]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        verdict = "ok"
        try:
            alert_webhooks.verify(
                self.secrets.get(request.path, ""),
                body,
                request.headers.get("Checkin-Timestamp"),
                request.headers.get("Checkin-Signature"),
                self.clock(),
            )
        except SignatureError as exc:
            verdict = str(exc)
        time.sleep(self.delay)
        with self.lock:
            answer = self.script.pop(0) if self.script else Answer(200, b"thanks")
            if verdict != "ok":
                answer = Answer(401, b"bad signature")
            received = Received(request.path, dict(request.headers), body, verdict, answer.status)
            self.received.append(received)
        request.send_response(answer.status)
        for name, value in answer.headers:
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(answer.body)))
        request.end_headers()
        request.wfile.write(answer.body)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                receiver.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver(clock: FrozenClock) -> Iterator[Receiver]:
    started = Receiver(clock).start()
    yield started
    started.stop()


@pytest.fixture
def dead_url() -> str:
    """A loopback port nobody listens on: every connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# --- helpers ------------------------------------------------------------------------------


def add_endpoint(
    ctx: Context, world: World, url: str, receiver: Receiver | None = None, readings: bool = False
) -> int:
    with ctx.db.session() as session:
        endpoint = alert_webhooks.register(
            session,
            world.program_id,
            url=url,
            description="EHR inbox",
            include_readings=readings,
            actor=CAROL,
            now=ctx.clock(),
        )
        if receiver is not None:
            receiver.secrets[urlsplit(url).path] = endpoint.secret
        return endpoint.id


def raise_alert(
    ctx: Context,
    world: World,
    kind: str = "severe",
    severity: str = "high",
    evidence: dict[str, Any] | None = None,
) -> str:
    with ctx.db.session() as session:
        alert, _ = alerts.raise_alert(
            session,
            session.get_one(Patient, world.alice_id),
            kind,
            severity,
            evidence or {"rule": "severe_single_reading", "measure": "pain"},
            ctx.clock(),
            PAGER,
        )
        return alert.ref


def tick_at(ctx: Context, clock: FrozenClock, at: datetime) -> dict[str, int]:
    clock.at = at
    counts = scheduler.tick(ctx)
    assert -1 not in counts.values(), f"a scheduler step failed: {counts}"
    return counts


def deliveries(ctx: Context, endpoint_id: int) -> list[WebhookDelivery]:
    with ctx.db.session() as session:
        stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        return list(session.scalars(stmt.order_by(WebhookDelivery.id)))


def only_delivery(ctx: Context, endpoint_id: int) -> WebhookDelivery:
    (delivery,) = deliveries(ctx, endpoint_id)
    return delivery


def audit_actions(ctx: Context, prefix: str = "webhook.") -> list[AuditEvent]:
    with ctx.db.session() as session:
        stmt = select(AuditEvent).where(AuditEvent.action.startswith(prefix))
        return list(session.scalars(stmt.order_by(AuditEvent.id)))


def submit(client: FlaskClient, path: str, page: str, **form: str) -> Any:
    return client.post(path, data={"csrf_token": token(client, page), **form})


def log_rows(html: str) -> list[dict[str, str]]:
    """The delivery log's rows, newest first: status, attempts, code and error cells."""
    rows = []
    for row in re.findall(r'<tr class="delivery-row"(.*?)</tr>', html, re.S):
        cells = dict(re.findall(r'<td class="([a-z -]+)">(.*?)</td>', row, re.S))
        rows.append({k.split()[0]: " ".join(v.split()) for k, v in cells.items()})
    return rows


# --- delivery, retries, dead letters ------------------------------------------------------------


def test_a_failed_delivery_is_retried_after_the_backoff_and_accepted_exactly_once(
    ctx: Context, clock: FrozenClock, world: World, receiver: Receiver, client: FlaskClient
) -> None:
    endpoint_id = add_endpoint(ctx, world, receiver.url(), receiver)
    receiver.answer_next(Answer(500, b"database is down\n  try later"))
    ref = raise_alert(ctx, world)

    tick_at(ctx, clock, T0)
    first = only_delivery(ctx, endpoint_id)
    assert (first.status, first.attempts, first.last_status_code) == ("pending", 1, 500)
    assert first.last_error == "HTTP 500: database is down try later"
    wait = first.next_attempt_at - T0
    assert timedelta(seconds=24) <= wait <= timedelta(seconds=36)  # 30 s with jitter
    login(client, email=CAROL)
    page = f"/admin/webhooks/{endpoint_id}"
    (row,) = log_rows(client.get(page).text)
    assert (row["status"], row["attempts"], row["code"]) == ("pending", "1", "500")
    assert row["note"] == "HTTP 500: database is down try later"

    tick_at(ctx, clock, T0 + timedelta(seconds=20))  # inside the backoff: nothing is sent
    assert len(receiver.all()) == 1
    tick_at(ctx, clock, T0 + timedelta(seconds=40))

    delivered = only_delivery(ctx, endpoint_id)
    assert (delivered.status, delivered.attempts, delivered.last_status_code) == (
        "delivered",
        2,
        200,
    )
    assert delivered.delivered_at == T0 + timedelta(seconds=40)
    assert receiver.accepted() == [f"alert.opened:{ref}"]
    failed, accepted = receiver.all()
    assert failed.verdict == accepted.verdict == "ok"  # both signed, each with its own time
    assert failed.body == accepted.body  # the same event, byte for byte
    assert failed.headers["Checkin-Event-Id"] == accepted.headers["Checkin-Event-Id"]
    assert int(accepted.headers["Checkin-Timestamp"]) == int(T0.timestamp()) + 40
    (row,) = log_rows(client.get(page).text)
    assert (row["status"], row["attempts"], row["code"]) == ("delivered", "2", "200")
    assert row["note"] == "before: HTTP 500: database is down try later"


def test_every_change_of_an_alert_is_one_event_with_a_stable_id(
    ctx: Context, clock: FrozenClock, world: World, receiver: Receiver
) -> None:
    add_endpoint(ctx, world, receiver.url(), receiver)
    ref = raise_alert(ctx, world, "worsening", "routine")
    tick_at(ctx, clock, T0)
    raise_alert(ctx, world, "worsening", "high")
    raise_alert(ctx, world, "worsening", "high")  # more evidence, same severity: no event
    tick_at(ctx, clock, T0)
    raise_alert(ctx, world, "worsening", "urgent")
    tick_at(ctx, clock, T0 + timedelta(minutes=16))  # urgent, unacknowledged: escalated
    with ctx.db.session() as session:
        bob = session.get_one(StaffUser, world.bob_id)
        alert = alerts.by_ref(session, ref)
        alerts.acknowledge(session, alert, bob, clock(), via="web")
        alerts.resolve(session, alert, bob, "called her; seen in clinic", clock(), via="web")
    tick_at(ctx, clock, T0 + timedelta(minutes=17))

    assert receiver.accepted() == [
        f"alert.opened:{ref}",
        f"alert.severity_raised:{ref}:high",
        f"alert.severity_raised:{ref}:urgent",
        f"alert.escalated:{ref}",
        f"alert.acknowledged:{ref}",
        f"alert.resolved:{ref}",
    ]
    for request in receiver.all():
        assert request.headers["Checkin-Event-Id"] == request.event["event_id"]
    resolved = receiver.all()[-1].event
    assert resolved["event"] == "alert.resolved"
    assert resolved["alert"]["status"] == "resolved"
    assert resolved["alert"]["severity"] == "urgent"
    assert resolved["occurred_at"] == "2026-03-10T14:16:00Z"
    assert resolved["alert"]["opened_at"] == "2026-03-10T14:00:00Z"


def test_an_endpoint_that_refuses_with_a_400_fails_at_once_and_is_not_retried(
    ctx: Context, clock: FrozenClock, world: World, receiver: Receiver
) -> None:
    endpoint_id = add_endpoint(ctx, world, receiver.url(), receiver)
    receiver.answer_next(Answer(400, b'{"error": "unknown field alert"}' + b"x" * 2000), times=9)
    raise_alert(ctx, world)
    tick_at(ctx, clock, T0)
    tick_at(ctx, clock, T0 + timedelta(hours=2))

    delivery = only_delivery(ctx, endpoint_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 400)
    assert delivery.last_error is not None
    assert delivery.last_error.startswith('HTTP 400: {"error": "unknown field alert"}xxx')
    assert len(delivery.last_error) <= 10 + webhook_delivery.EXCERPT_CHARS  # no more is kept
    assert len(receiver.all()) == 1


def test_a_redirect_is_never_followed_and_fails_the_delivery(
    ctx: Context, clock: FrozenClock, world: World, receiver: Receiver
) -> None:
    endpoint_id = add_endpoint(ctx, world, receiver.url(), receiver)
    elsewhere = receiver.url("/elsewhere")
    receiver.answer_next(Answer(307, headers=(("Location", elsewhere),)))
    raise_alert(ctx, world)
    tick_at(ctx, clock, T0)

    delivery = only_delivery(ctx, endpoint_id)
    assert (delivery.status, delivery.last_status_code) == ("failed", 307)
    assert delivery.last_error == f"HTTP 307: redirect to {elsewhere!r} not followed"
    assert [r.path for r in receiver.all()] == ["/hook"]


def test_an_endpoint_down_for_good_ends_as_a_dead_letter_after_eight_tries(
    ctx: Context, clock: FrozenClock, world: World, dead_url: str
) -> None:
    endpoint_id = add_endpoint(ctx, world, dead_url)
    raise_alert(ctx, world)
    waits = []
    at = T0
    for _ in range(webhook_delivery.MAX_ATTEMPTS):
        tick_at(ctx, clock, at)
        delivery = only_delivery(ctx, endpoint_id)
        if delivery.status == "pending":
            waits.append((delivery.next_attempt_at - at).total_seconds())
            at = delivery.next_attempt_at
    tick_at(ctx, clock, at + timedelta(days=1))  # nothing more is tried

    delivery = only_delivery(ctx, endpoint_id)
    assert (delivery.status, delivery.attempts) == ("failed", webhook_delivery.MAX_ATTEMPTS)
    assert delivery.last_status_code is None
    assert delivery.last_error == "could not connect: Connection refused; gave up after 8 attempts"
    # 30 s, 1, 2, 4, 8, 16, 32 min between the eight tries, each within 20% jitter.
    assert len(waits) == 7
    for attempt, wait in enumerate(waits, start=1):
        assert 0.8 * 30 * 2 ** (attempt - 1) <= wait <= 1.2 * 30 * 2 ** (attempt - 1), waits


def test_while_an_endpoint_fails_its_other_events_wait_untried_for_its_retry(
    ctx: Context, clock: FrozenClock, world: World, receiver: Receiver
) -> None:
    endpoint_id = add_endpoint(ctx, world, receiver.url(), receiver)
    receiver.answer_next(Answer(503, headers=(("Retry-After", "600"),)))
    raise_alert(ctx, world, "severe")
    raise_alert(ctx, world, "side_effect")
    tick_at(ctx, clock, T0)

    first, second = deliveries(ctx, endpoint_id)
    assert len(receiver.all()) == 1  # one request to a failing endpoint per tick
    assert (first.status, first.attempts, second.status, second.attempts) == (
        "pending",
        1,
        "pending",
        0,
    )
    assert first.next_attempt_at == second.next_attempt_at == T0 + timedelta(seconds=600)
    tick_at(ctx, clock, T0 + timedelta(seconds=600))
    assert len(receiver.accepted()) == 2


def test_a_claim_of_a_worker_that_died_is_taken_over_when_its_lease_runs_out(
    ctx: Context, clock: FrozenClock, world: World, receiver: Receiver
) -> None:
    endpoint_id = add_endpoint(ctx, world, receiver.url(), receiver)
    raise_alert(ctx, world)
    with ctx.db.session() as session:  # claimed at T0 by a worker that then died
        delivery = session.scalars(select(WebhookDelivery)).one()
        delivery.status, delivery.attempts = "sending", 1
        delivery.next_attempt_at = T0 + webhook_delivery.LEASE
    tick_at(ctx, clock, T0 + timedelta(minutes=4))
    assert receiver.all() == []
    tick_at(ctx, clock, T0 + timedelta(minutes=5, seconds=1))
    assert receiver.accepted() == [only_delivery(ctx, endpoint_id).event_id]
    assert only_delivery(ctx, endpoint_id).attempts == 2


def test_two_workers_at_once_send_each_event_once(
    ctx: Context, world: World, receiver: Receiver
) -> None:
    receiver.delay = 0.02
    endpoint_ids = [add_endpoint(ctx, world, receiver.url(f"/hook{i}"), receiver) for i in (1, 2)]
    with ctx.db.session() as session:
        for endpoint_id in endpoint_ids:
            endpoint = session.get_one(WebhookEndpoint, endpoint_id)
            for _ in range(15):
                alert_webhooks.queue_ping(session, endpoint, CAROL, T0)
    workers = [threading.Thread(target=webhook_delivery.deliver_due, args=(ctx,)) for _ in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    sent = Counter((r.path, r.event["event_id"]) for r in receiver.all())
    assert len(sent) == 30 and set(sent.values()) == {1}
    assert {d.status for i in endpoint_ids for d in deliveries(ctx, i)} == {"delivered"}


# --- minimum necessary ---------------------------------------------------------------------------


def test_events_carry_a_reference_and_a_link_but_nothing_that_names_the_patient(
    ctx: Context, clock: FrozenClock, world: World, receiver: Receiver
) -> None:
    add_endpoint(ctx, world, receiver.url("/plain"), receiver)
    add_endpoint(ctx, world, receiver.url("/readings"), receiver, readings=True)
    reading = {"value": 9, "at": T0.isoformat(), "checkin_id": 7}
    severe = {
        "rule": "severe_single_reading",
        "measure": "pain",
        "judged": [reading],
        "thresholds": {"severe": ">= 9"},
        "note": "legs numb",  # her own words, as a reply's note keeps them
    }
    ref = raise_alert(ctx, world, "severe", "high", severe)
    crisis = {"matched": "kill myself", "message_id": 3, "phrase_list": "2026-01"}
    crisis_ref = raise_alert(ctx, world, "crisis", "urgent", crisis)
    tick_at(ctx, clock, T0)

    events = {(r.path, r.event["alert"]["ref"]): r for r in receiver.all()}
    assert len(events) == 4 and all(r.verdict == "ok" for r in events.values())
    for request in events.values():
        for data in PATIENT_DATA:
            assert data.encode() not in request.body, (request.path, data)
            assert data not in json.dumps(request.headers), (request.path, data)
    plain = events["/plain", ref].event
    assert plain == {
        "event": "alert.opened",
        "event_id": f"alert.opened:{ref}",
        "occurred_at": "2026-03-10T14:00:00Z",
        "program": "Care Team",
        "alert": {
            "ref": ref,
            "kind": "severe",
            "severity": "high",
            "status": "open",
            "opened_at": "2026-03-10T14:00:00Z",
            "url": f"{PUBLIC_URL}/alerts/{ref}",
        },
    }
    (evidence,) = events["/readings", ref].event["alert"]["evidence"]
    assert evidence == {"at": T0.isoformat(), **{k: v for k, v in severe.items() if k != "note"}}
    assert events["/readings", crisis_ref].event["alert"]["evidence"] == [{"at": T0.isoformat()}]


# --- signatures ---------------------------------------------------------------------------


def test_a_captured_request_replayed_later_or_altered_is_refused_by_the_receivers_check(
    ctx: Context, clock: FrozenClock, world: World, receiver: Receiver
) -> None:
    add_endpoint(ctx, world, receiver.url(), receiver)
    raise_alert(ctx, world)
    tick_at(ctx, clock, T0)
    (captured,) = receiver.all()
    secret = receiver.secrets["/hook"]
    stamp, signature = captured.headers["Checkin-Timestamp"], captured.headers["Checkin-Signature"]
    assert re.fullmatch(r"v1=[0-9a-f]{64}", signature)

    alert_webhooks.verify(secret, captured.body, stamp, signature, T0 + timedelta(minutes=5))
    refusals = {
        "timestamp outside the tolerance: stale or replayed": (
            captured.body,
            stamp,
            T0 + timedelta(minutes=5, seconds=1),
        ),
        "signature does not match": (captured.body.replace(b"high", b"routine"), stamp, T0),
        "missing or malformed Checkin-Timestamp": (captured.body, "", T0),
    }
    for reason, (body, at_stamp, now) in refusals.items():
        with pytest.raises(SignatureError, match=reason):
            alert_webhooks.verify(secret, body, at_stamp, signature, now)
    with pytest.raises(SignatureError, match="does not match"):
        alert_webhooks.verify("another-secret", captured.body, stamp, signature, T0)

    clock.advance(minutes=6)  # the same request replayed to the receiver: refused
    replay = {k: v for k, v in captured.headers.items() if k.startswith("Checkin-")}
    answer = requests.post(receiver.url(), data=captured.body, headers=replay, timeout=10)
    assert answer.status_code == 401
    assert receiver.all()[-1].verdict == "timestamp outside the tolerance: stale or replayed"


def test_the_documented_verification_snippet_accepts_a_real_delivery(
    ctx: Context, clock: FrozenClock, world: World, receiver: Receiver
) -> None:
    """docs/webhooks.md's receiver code, run as written, on what checkin sent."""
    add_endpoint(ctx, world, receiver.url(), receiver)
    raise_alert(ctx, world)
    tick_at(ctx, clock, T0)
    (captured,) = receiver.all()
    docs = (Path(__file__).parent.parent / "docs" / "webhooks.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", docs, re.S)
    assert snippet is not None
    namespace: dict[str, Any] = {}
    exec(snippet.group(1), namespace)
    secret = receiver.secrets["/hook"]
    ok = namespace["verify"](secret, captured.headers, captured.body, now=T0.timestamp())
    assert ok is True
    stale = T0.timestamp() + 301
    assert namespace["verify"](secret, captured.headers, captured.body, now=stale) is False


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://ehr.example.org/in", "must use https://"),
        ("http://10.0.0.5/in", "must use https://"),
        ("http://127.0.0.1.example.org/in", "must use https://"),
        ("ftp://ehr.example.org/in", "must start with https://"),
        ("https:///in", "must start with https://"),
        ("https://user:pw@ehr.example.org/in", "user name or password"),
        ("https://ehr.example.org:99999/in", "port"),
        ("https://ehr.example.org/in#x", "fragment"),
        ("https://ehr.example.org/a b", "spaces"),
        ("", "required"),
        ("https://ehr.example.org/" + "a" * 500, "longer than 500"),
    ],
)
def test_a_url_that_is_not_https_or_loopback_is_refused(url: str, problem: str) -> None:
    with pytest.raises(WebhookError, match=problem):
        alert_webhooks.check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example.org/in",
        "https://hooks.chat.example/services/T0/B0/abc?x=1",
        "http://127.0.0.1:8080/in",
        "http://[::1]:8080/in",
        "http://localhost/in",
    ],
)
def test_https_urls_and_plain_http_to_this_machine_are_accepted(url: str) -> None:
    assert alert_webhooks.check_url(f"  {url} ") == url


def test_no_event_is_queued_for_a_program_without_endpoints_or_for_another_program(
    ctx: Context, world: World, receiver: Receiver
) -> None:
    raise_alert(ctx, world)  # nobody to tell yet
    with ctx.db.session() as session:  # dave's program has an endpoint; alice is not theirs
        alert_webhooks.register(
            session,
            world.other_program_id,
            url=receiver.url(),
            description="",
            include_readings=True,
            actor=DAVE,
            now=T0,
        )
    raise_alert(ctx, world, "side_effect")
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


# --- the admin pages ---------------------------------------------------------------------


def test_an_admin_adds_an_endpoint_and_sees_its_secret_once(
    client: FlaskClient, ctx: Context, world: World, receiver: Receiver
) -> None:
    login(client, email=CAROL)
    assert 'href="/admin/webhooks"' in client.get("/admin").text
    response = submit(
        client,
        "/admin/webhooks/new",
        "/admin/webhooks/new",
        url=receiver.url(),
        description="EHR inbox, IT on-call",
        include_readings="yes",
    )
    assert response.status_code == 200
    shown = SECRET_ON_PAGE.search(response.text)
    assert shown is not None
    with ctx.db.session() as session:
        endpoint = session.scalars(select(WebhookEndpoint)).one()
    assert shown.group(1) == endpoint.secret and len(endpoint.secret) >= 43
    assert (endpoint.program_id, endpoint.include_readings, endpoint.created_by) == (
        world.program_id,
        True,
        CAROL,
    )
    listing = client.get("/admin/webhooks").text
    assert receiver.url() in listing and "EHR inbox, IT on-call" in listing
    for page in ("/admin/webhooks", f"/admin/webhooks/{endpoint.id}", "/admin/audit"):
        assert endpoint.secret not in client.get(page).text, page
    (added,) = audit_actions(ctx)
    assert (added.action, added.actor, added.target) == (
        "webhook.add",
        CAROL,
        f"webhook:{endpoint.id}",
    )
    assert added.program_id == world.program_id
    assert added.detail["host"] == "127.0.0.1" and added.detail["include_readings"] is True


def test_the_form_refuses_plain_http_to_another_host_and_stores_nothing(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    response = submit(
        client, "/admin/webhooks/new", "/admin/webhooks/new", url="http://ehr.example.org/in"
    )
    assert response.status_code == 400
    assert "Not saved: the URL must use https://" in response.text
    assert 'value="http://ehr.example.org/in"' in response.text  # kept for correcting
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0
    assert audit_actions(ctx) == []


def test_the_test_event_button_sends_a_signed_ping_and_the_log_shows_it(
    client: FlaskClient, ctx: Context, world: World, receiver: Receiver
) -> None:
    endpoint_id = add_endpoint(ctx, world, receiver.url(), receiver)
    login(client, email=CAROL)
    page = f"/admin/webhooks/{endpoint_id}"
    response = submit(client, f"{page}/ping", page)
    assert response.status_code == 303

    (ping,) = receiver.all()
    assert ping.verdict == "ok" and ping.status == 200
    assert ping.event == {
        "event": "ping",
        "event_id": "ping:1",
        "occurred_at": "2026-03-10T14:00:00Z",
        "program": "Care Team",
    }
    html = client.get(page).text
    assert "ping:1" in html
    assert [(r["status"], r["attempts"], r["code"]) for r in log_rows(html)] == [
        ("delivered", "1", "200")
    ]
    counts = client.get("/admin/webhooks").text
    assert '<td class="count-delivered">1</td>' in counts
    assert [a.action for a in audit_actions(ctx)] == ["webhook.add", "webhook.ping"]


def test_rotating_the_secret_shows_the_new_one_once_and_signs_with_it(
    client: FlaskClient, ctx: Context, world: World, receiver: Receiver
) -> None:
    endpoint_id = add_endpoint(ctx, world, receiver.url(), receiver)
    old = receiver.secrets["/hook"]
    login(client, email=CAROL)
    page = f"/admin/webhooks/{endpoint_id}"
    response = submit(client, f"{page}/rotate", page)
    assert response.status_code == 200
    shown = SECRET_ON_PAGE.search(response.text)
    assert shown is not None and shown.group(1) != old
    new = shown.group(1)

    submit(client, f"{page}/ping", page)  # the receiver still has the old secret: refused
    assert receiver.all()[-1].verdict == "signature does not match"
    failed = only_delivery(ctx, endpoint_id)
    assert (failed.status, failed.last_status_code) == ("failed", 401)
    receiver.secrets["/hook"] = new  # its operators install the new one; the admin retries
    retried = submit(client, f"{page}/deliveries/{failed.id}/retry", page)
    assert retried.status_code == 303
    assert receiver.accepted() == ["ping:1"] and receiver.all()[-1].verdict == "ok"
    assert new not in client.get(page).text
    actions = [a.action for a in audit_actions(ctx)]
    assert actions == ["webhook.add", "webhook.rotate_secret", "webhook.ping", "webhook.retry"]


def test_a_disabled_endpoint_gets_nothing_and_its_queued_events_fail_until_retried(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World, receiver: Receiver
) -> None:
    endpoint_id = add_endpoint(ctx, world, receiver.url(), receiver)
    ref = raise_alert(ctx, world)  # queued, not sent yet
    login(client, email=CAROL)
    page = f"/admin/webhooks/{endpoint_id}"
    assert submit(client, f"{page}/disable", page).status_code == 303
    raise_alert(ctx, world, "side_effect")  # no event for a disabled endpoint
    tick_at(ctx, clock, T0)

    assert receiver.all() == []
    queued = only_delivery(ctx, endpoint_id)
    assert (queued.status, queued.attempts) == ("failed", 0)
    assert queued.last_error == "not sent: the endpoint was disabled"
    html = client.get(page).text
    assert "Retry now" not in html  # not while it is disabled
    assert "Send a test event" not in html
    assert submit(client, f"{page}/ping", page).status_code == 303
    assert "No test event sent: the endpoint is disabled: enable it first." in client.get(page).text

    assert submit(client, f"{page}/enable", page).status_code == 303
    submit(client, f"{page}/deliveries/{queued.id}/retry", page)
    assert receiver.accepted() == [f"alert.opened:{ref}"]
    actions = [a.action for a in audit_actions(ctx)]
    assert actions == ["webhook.add", "webhook.disable", "webhook.enable", "webhook.retry"]


def test_only_a_failed_delivery_can_be_retried(
    client: FlaskClient, ctx: Context, world: World, receiver: Receiver
) -> None:
    endpoint_id = add_endpoint(ctx, world, receiver.url(), receiver)
    raise_alert(ctx, world)
    login(client, email=CAROL)
    page = f"/admin/webhooks/{endpoint_id}"
    pending = only_delivery(ctx, endpoint_id)
    submit(client, f"{page}/deliveries/{pending.id}/retry", page)
    assert "Not retried: only a failed delivery can be retried; this one is pending." in (
        client.get(page).text
    )
    assert receiver.all() == []


def test_the_delivery_log_is_newest_first_fifty_a_page(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World, receiver: Receiver
) -> None:
    endpoint_id = add_endpoint(ctx, world, receiver.url(), receiver)
    with ctx.db.session() as session:
        endpoint = session.get_one(WebhookEndpoint, endpoint_id)
        for minute in range(55):
            alert_webhooks.queue_ping(session, endpoint, CAROL, T0 + timedelta(minutes=minute))
    login(client, email=CAROL)
    first = client.get(f"/admin/webhooks/{endpoint_id}").text
    second = client.get(f"/admin/webhooks/{endpoint_id}?page=2").text
    assert "55 deliveries, newest first, page 1 of 2" in first
    assert re.findall(r"ping:\d+", first)[:2] == ["ping:55", "ping:54"]
    assert re.findall(r"ping:\d+", second) == [f"ping:{n}" for n in range(5, 0, -1)]


def test_an_admin_of_another_program_gets_404_for_the_endpoint_and_its_deliveries(
    client: FlaskClient, ctx: Context, world: World, receiver: Receiver
) -> None:
    endpoint_id = add_endpoint(ctx, world, receiver.url(), receiver)
    raise_alert(ctx, world)
    delivery_id = only_delivery(ctx, endpoint_id).id
    give_dave_a_password(ctx, world)
    with ctx.db.session() as session:
        session.get_one(StaffUser, world.dave_id).role = "admin"
    login(client, email=DAVE)
    page = f"/admin/webhooks/{endpoint_id}"
    assert client.get(page).status_code == 404
    for action in ("disable", "enable", "rotate", "ping", f"deliveries/{delivery_id}/retry"):
        response = submit(client, f"{page}/{action}", "/admin/webhooks")
        assert response.status_code == 404, action
    assert receiver.url() not in client.get("/admin/webhooks").text
    with ctx.db.session() as session:
        endpoint = session.get_one(WebhookEndpoint, endpoint_id)
        assert endpoint.active and endpoint.secret == receiver.secrets["/hook"]
    assert [a.action for a in audit_actions(ctx)] == ["webhook.add"]
