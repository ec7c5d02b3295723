"""The security review, as tests: forged webhooks on every Twilio endpoint, logs that keep no
secret and no patient data (in-process and in a real `checkin serve`), database errors that
carry no patient data into a logged traceback, and the browser protections on every staff page.

The threat model these tests back is docs/security.md.
"""

from __future__ import annotations

import base64
import http.client
import logging
import re
import secrets
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from twilio.request_validator import RequestValidator

from checkin import outbox, scheduler, sendnow
from checkin.config import DEMO_AUTH_TOKEN, Settings, load_settings
from checkin.context import Context
from checkin.models import Message, Patient
from checkin.patients import NewPatient, enrol
from checkin.simulate import twilio_inbound_params
from tests import test_web_routes
from tests.browser import serve
from tests.conftest import ALICE, BOB, PUBLIC_URL, T0, World, signed_post, twilio_env
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio
from tests.procs import free_port, wait_until
from tests.test_alerts import Inbox
from tests.test_web import BOB_EMAIL, PASSWORD, alert_status, login, post, raise_alert
from tests.test_web_routes import CAROL_EMAIL, staff_rules, url
from tests.test_webhook_fuzz import snapshot

ids = test_web_routes.ids  # the fixture: real values for every URL variable
SECRET_KEY = "test-secret-key"  # conftest.twilio_env's CHECKIN_SECRET_KEY
SMTP_USER = "checkin-mailer"
SMTP_PASSWORD = "smtp-password-5b9e1c7d"
ZELDA, ZELDA_NAME = "+16175550142", "Zelda Quixote"  # enrolled, texts in crisis
YUSUF, YUSUF_NAME = "+16175550143", "Yusuf Okonkwo"  # enrolled, Twilio says 21211
# What patients text in the flows below: each must be in the database and nowhere in a log.
ALICE_WORDS = ["6 - legs numb since Sunday", "9 - burning pain in both feet"]
ZELDA_WORDS = "I want to kill myself tonight"


# --- a mail server that wants a password ------------------------------------------------------


@dataclass
class MailServer:
    """aiosmtpd on loopback, accepting only SMTP_USER / SMTP_PASSWORD (AUTH without TLS is
    fine on loopback), keeping every message in `inbox`."""

    port: int = field(default_factory=free_port)
    inbox: Inbox = field(default_factory=Inbox)
    logins: list[bytes] = field(default_factory=list)
    controller: Controller | None = None

    def authenticate(self, *args: Any) -> AuthResult:
        data = args[-1]
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        if ok:
            self.logins.append(data.login)
        return AuthResult(success=ok)

    def start(self) -> MailServer:
        self.controller = Controller(
            self.inbox,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self.authenticate,
            auth_require_tls=False,
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()


@pytest.fixture
def mail() -> Iterator[MailServer]:
    server = MailServer().start()
    yield server
    server.stop()


def mail_env(port: int) -> dict[str, str]:
    return {
        "CHECKIN_SMTP_HOST": "127.0.0.1",
        "CHECKIN_SMTP_PORT": str(port),
        "CHECKIN_SMTP_FROM": "checkin@clinic.example.org",
        "CHECKIN_SMTP_USERNAME": SMTP_USER,
        "CHECKIN_SMTP_PASSWORD": SMTP_PASSWORD,
    }


@pytest.fixture
def settings(db_url: str, fake_twilio: FakeTwilio, mail: MailServer) -> Settings:
    """conftest's settings plus a mail server with a password (overrides conftest's)."""
    return load_settings(twilio_env(db_url, fake_twilio, **mail_env(mail.port)))


# --- forged webhooks ----------------------------------------------------------------------------


def webhook_routes(app: Flask) -> list[tuple[str, str]]:
    """(path, method) of every route of the webhooks blueprint, from the URL map."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] != "webhooks":
            continue
        assert not rule.arguments, f"{rule.rule} takes URL variables: extend this test for it"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((rule.rule, method))
    return routes


@dataclass(frozen=True)
class Sent:
    """The first question of alice's check-in, as sent: its row id and Twilio's SID."""

    message_id: int
    sid: str


@pytest.fixture
def sent(ctx: Context, world: World, fake_twilio: FakeTwilio) -> Sent:
    sendnow.start_now(ctx, ALICE, "daily_symptoms", actor="test")
    (question,) = fake_twilio.sent
    with ctx.db.session() as session:
        message_id = session.scalars(
            select(Message.id).where(Message.twilio_sid == question.sid)
        ).one()
    return Sent(message_id, question.sid)


def harmful(sent: Sent) -> dict[str, str]:
    """A request each door would act on if it believed it: alice texts STOP (inbound), and
    her question 'failed' with 21610, which opts her out (status). Both doors' fields."""
    return {
        "SmsMessageSid": "SM" + secrets.token_hex(16),  # the inbound door reads this one
        "SmsSid": sent.sid,  # the status door reads this one
        "AccountSid": ACCOUNT_SID,
        "From": ALICE,
        "To": FROM_NUMBER,
        "Body": "STOP",
        "MessageStatus": "failed",
        "ErrorCode": "21610",
    }


def forged_signature(
    how: str, path: str, message_id: int, params: dict[str, str], other: str
) -> str:
    """An X-Twilio-Signature that is wrong for PUBLIC_URL + path?message=<message_id> in the
    way `how` says; `other` is another webhook path."""
    query = f"?message={message_id}"
    if how in ("wrong token", "demo token"):  # the demo token is never accepted outside demo
        token = "not-the-auth-token" if how == "wrong token" else DEMO_AUTH_TOKEN
        return RequestValidator(token).compute_signature(PUBLIC_URL + path + query, params)
    # Replays: Twilio really signed these params, but for another URL.
    signed_for = {
        "replayed from another endpoint": PUBLIC_URL + other + query,
        "replayed from another host": "https://evil.example.org" + path + query,
        "replayed from another message's callback": f"{PUBLIC_URL}{path}?message={message_id + 1}",
    }[how]
    return RequestValidator(AUTH_TOKEN).compute_signature(signed_for, params)


FORGERIES = [
    "missing",
    "wrong token",
    "demo token",
    "replayed from another endpoint",
    "replayed from another host",
    "replayed from another message's callback",
]


def test_the_walk_finds_both_twilio_endpoints(app: Flask) -> None:
    assert {("/twilio/sms", "POST"), ("/twilio/status", "POST")} <= set(webhook_routes(app))


@pytest.mark.parametrize("how", FORGERIES)
def test_every_twilio_endpoint_refuses_a_forged_signature_and_writes_nothing(
    app: Flask,
    client: FlaskClient,
    ctx: Context,
    sent: Sent,
    fake_twilio: FakeTwilio,
    how: str,
) -> None:
    routes = webhook_routes(app)
    paths = [path for path, _ in routes]
    before, requests_before = snapshot(ctx), fake_twilio.requests
    for path, method in routes:
        params = harmful(sent)
        other = next((p for p in paths if p != path), "/twilio/other")
        headers = {}
        if how != "missing":
            signature = forged_signature(how, path, sent.message_id, params, other)
            headers["X-Twilio-Signature"] = signature

        response = client.open(
            f"{path}?message={sent.message_id}", method=method, data=params, headers=headers
        )

        assert response.status_code == 403, (path, how, response.status_code)
    assert snapshot(ctx) == before
    assert fake_twilio.requests == requests_before  # no text went out either
    with ctx.db.session() as session:
        assert session.scalars(select(Patient.status).where(Patient.phone == ALICE)).one() == (
            "active"
        )


def test_the_same_requests_signed_by_twilio_are_acted_on(
    app: Flask, client: FlaskClient, ctx: Context, sent: Sent
) -> None:
    """The control for the test above: its refusals are the signature's doing."""
    for path, method in webhook_routes(app):
        before = snapshot(ctx)
        target = f"{path}?message={sent.message_id}"
        params = harmful(sent)
        signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + target, params)

        response = client.open(
            target, method=method, data=params, headers={"X-Twilio-Signature": signature}
        )

        assert response.status_code == 200, (path, response.status_code)
        assert snapshot(ctx) != before, path
    with ctx.db.session() as session:
        assert session.get_one(Message, sent.message_id).status == "failed"
        assert session.scalars(select(Patient.status).where(Patient.phone == ALICE)).one() == (
            "opted_out"
        )


# --- no secret and no patient data in the logs -------------------------------------------------


def forbidden(fake: FakeTwilio, mail: MailServer) -> dict[str, str]:
    """What no log line may hold, by what it is."""
    plain_auth = base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()).decode()
    found = {
        "Twilio auth token": AUTH_TOKEN,
        "Flask secret key": SECRET_KEY,
        "SMTP password": SMTP_PASSWORD,
        "SMTP password (AUTH LOGIN)": base64.b64encode(SMTP_PASSWORD.encode()).decode(),
        "SMTP password (AUTH PLAIN)": plain_auth,
    }
    for phone in (ALICE, ZELDA, YUSUF):
        area, exchange, line = phone[2:5], phone[5:8], phone[8:]
        found[f"{phone} (E.164)"] = phone
        found[f"{phone} (digits)"] = phone[1:]
        found[f"{phone} (national digits)"] = phone[2:]
        found[f"{phone} (written)"] = f"({area}) {exchange}-{line}"
        found[f"{phone} (dashes)"] = f"{area}-{exchange}-{line}"
    for name in ("Alice Example", "Alice", *ZELDA_NAME.split(), *YUSUF_NAME.split()):
        found[f"name {name}"] = name
    for words in [*ALICE_WORDS, ZELDA_WORDS]:
        found[f"patient's text {words!r}"] = words
    for index, sms in enumerate(fake.sent):  # every text sent: questions, replies, pages
        found[f"sent text {index} to {sms.to}"] = sms.body
    for index, email in enumerate(mail.inbox.all()):
        found[f"email {index}"] = email.body.strip()
    return found


def assert_clean(log: str, fake: FakeTwilio, mail: MailServer) -> None:
    leaks = [what for what, value in forbidden(fake, mail).items() if value in log]
    assert leaks == [], leaks


def inbound(ctx: Context, client: FlaskClient, sender: str, body: str) -> None:
    params = twilio_inbound_params(ctx.settings, sender, body)
    assert signed_post(client, "/twilio/sms", params).status_code == 200


def status(client: FlaskClient, sms: Any, state: str) -> None:
    """Twilio calls back about a text it was given, at its StatusCallback URL."""
    params = {"MessageSid": sms.sid, "MessageStatus": state, "AccountSid": ACCOUNT_SID}
    assert sms.status_callback.startswith(PUBLIC_URL)
    assert signed_post(client, sms.status_callback[len(PUBLIC_URL) :], params).status_code == 200


def a_days_work(ctx: Context, client: FlaskClient, fake: FakeTwilio, mail: MailServer) -> None:
    """Enrolment, a scheduled check-in, answers that page staff, a crisis, a STOP, a number
    Twilio refuses, delivery callbacks, a forged request, a sign-in and a failed one."""
    now = ctx.clock()
    with ctx.db.session() as session:
        zelda = enrol(
            session,
            NewPatient(ZELDA, ZELDA_NAME, "America/New_York"),
            now,
            actor=CAROL_EMAIL,
            sender=FROM_NUMBER,
        )
        zelda_id = zelda.id
    outbox.deliver_due(ctx)  # her welcome text
    fake.fail_next(400, 21211, f"The 'To' number {YUSUF} is not a valid phone number.")
    with ctx.db.session() as session:
        enrol(
            session,
            NewPatient(YUSUF, YUSUF_NAME, "America/New_York"),
            now,
            actor=CAROL_EMAIL,
            sender=FROM_NUMBER,
        )
    outbox.deliver_due(ctx)  # his welcome: Twilio says 21211
    scheduler.tick(ctx)  # alice's daily check-in is due at 09:00 New York time
    assert len(fake.to(ALICE)) == 1 and len(fake.to(ZELDA)) == 1 and fake.to(YUSUF) == []

    for words in ALICE_WORDS:  # the second answer is severe: bob is paged
        inbound(ctx, client, ALICE, words)
    inbound(ctx, client, ZELDA, ZELDA_WORDS)  # 988 at once, bob paged again
    inbound(ctx, client, ALICE, "STOP")
    for sms in list(fake.sent):
        status(client, sms, "delivered")
    assert client.post("/twilio/sms", data={"From": ALICE, "Body": "forged"}).status_code == 403

    assert login(client).status_code == 303
    assert client.get(f"/patients/{zelda_id}").status_code == 200
    assert client.get("/patients?q=Zelda").status_code == 200
    post(client, "/logout", "/")
    assert login(client, password="not-the-password").status_code == 401

    with ctx.db.session() as session:  # it all happened
        statuses = dict(session.execute(select(Patient.phone, Patient.status)).all())
        assert statuses == {
            ALICE: "opted_out",
            ZELDA: "active",
            YUSUF: "number_invalid",
            "+16175550102": "active",  # erin, in the other program
        }
    assert len(mail.inbox.to(BOB_EMAIL)) == 2 and mail.logins  # the pages, by email too


def test_a_days_work_logs_no_secret_and_no_patients_number_name_or_words(
    client: FlaskClient,
    ctx: Context,
    world: World,
    fake_twilio: FakeTwilio,
    mail: MailServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="checkin")

    a_days_work(ctx, client, fake_twilio, mail)

    # Everything logged, by checkin and by every library, tracebacks included.
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    log = "\n".join(formatter.format(r) for r in caplog.records)
    assert "rejected unsigned or mis-signed request to /twilio/sms" in log  # checkin's own
    assert "twilio.http_client" in log  # and the libraries', at DEBUG
    assert_clean(log, fake_twilio, mail)


# --- the same, from a real server's log file ----------------------------------------------------


class Visitor:
    """A plain HTTP client with its own cookies (the session cookie is Secure, which cookie
    jars will not send over http to 127.0.0.1; the server does not care)."""

    def __init__(self, base: str) -> None:
        parts = urllib.parse.urlsplit(base)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        sending = dict(headers or {})
        body = urllib.parse.urlencode(form) if form is not None else None
        if body is not None:
            sending["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            sending["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        try:
            conn.request(method, path, body, sending)
            response = conn.getresponse()
            text = response.read().decode()
            for header in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(header).items():
                    self.cookies[name] = morsel.value
            return response.status, text
        finally:
            conn.close()

    def sign_in(self, email: str, password: str) -> int:
        _, page = self.request("GET", "/login")
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, page
        form = {"csrf_token": match.group(1), "email": email, "password": password}
        return self.request("POST", "/login", form)[0]


def twilio_post(visitor: Visitor, base: str, target: str, params: dict[str, str]) -> int:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(base + target, params)
    return visitor.request("POST", target, params, {"X-Twilio-Signature": signature})[0]


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_running_server_logs_no_secret_and_no_patients_number_name_or_words(
    ctx: Context,
    world: World,
    fake_twilio: FakeTwilio,
    mail: MailServer,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    with ctx.db.session() as session:
        zelda_id = enrol(
            session,
            NewPatient(ZELDA, ZELDA_NAME, "America/New_York"),
            ctx.clock(),
            actor=CAROL_EMAIL,
            sender=FROM_NUMBER,
            welcome=False,
        ).id
    sendnow.start_now(ctx, ALICE, "daily_symptoms", actor=CAROL_EMAIL)
    (question,) = fake_twilio.sent
    with ctx.db.session() as session:
        question_id = session.scalars(
            select(Message.id).where(Message.twilio_sid == question.sid)
        ).one()

    for base in serve(postgres_url, fake_twilio, tmp_path, **mail_env(mail.port)):
        twilio = Visitor(base)
        for sender, words in [*((ALICE, w) for w in ALICE_WORDS), (ZELDA, ZELDA_WORDS)]:
            params = twilio_inbound_params(ctx.settings, sender, words)
            assert twilio_post(twilio, base, "/twilio/sms", params) == 200
        callback = {"MessageSid": question.sid, "MessageStatus": "delivered"}
        assert twilio_post(twilio, base, f"/twilio/status?message={question_id}", callback) == 200
        forged = {"From": ALICE, "Body": "forged"}
        assert twilio.request("POST", "/twilio/sms", forged)[0] == 403

        bob = Visitor(base)
        assert bob.sign_in(BOB_EMAIL, PASSWORD) == 303
        assert bob.request("GET", f"/patients/{zelda_id}")[0] == 200
        assert bob.request("GET", "/patients?q=Zelda")[0] == 200
        assert bob.request("GET", f"/admin/audit?actor={urllib.parse.quote(ALICE)}")[0] == 403
        assert Visitor(base).sign_in(BOB_EMAIL, "not-the-password") == 401
        # The pages went out from the server after its replies: by text and by email.
        wait_until(lambda: len(mail.inbox.to(BOB_EMAIL)) == 2, 10, "bob's two emailed pages")
    log = (tmp_path / "web.log").read_text()

    assert "rejected unsigned or mis-signed request to /twilio/sms" in log
    assert "POST /twilio/sms" in log  # the access log is in there too
    assert len(mail.inbox.to(BOB_EMAIL)) == 2 and mail.logins
    assert_clean(log, fake_twilio, mail)


# --- database errors -----------------------------------------------------------------------------


def refused_writes(world: World) -> dict[str, Any]:
    """Writes the database refuses, each carrying a patient's data."""
    return {
        # Two admins enrolling the same number at once: the second insert breaks uniqueness.
        "a duplicate patient": Patient(
            program_id=world.program_id,
            phone=ALICE,
            name=ZELDA_NAME,
            timezone="America/New_York",
            status="active",
            enrolled_at=T0,
        ),
        # Any row a CHECK constraint refuses.
        "a bad message": Message(
            direction="sideways",
            patient_id=world.alice_id,
            to_number=FROM_NUMBER,
            from_number=ALICE,
            body=ALICE_WORDS[1],
            purpose="patient",
            status="received",
            created_at=T0,
        ),
    }


@pytest.mark.parametrize("write", ["a duplicate patient", "a bad message"])
def test_a_refused_write_names_no_patients_data_so_a_logged_traceback_cannot_either(
    ctx: Context, world: World, write: str
) -> None:
    """Flask logs an unhandled error with its traceback, the scheduler a failed step: the
    message ends the traceback, so it must not carry the values the database was given."""
    with pytest.raises(DBAPIError) as refused, ctx.db.session() as session:
        session.add(refused_writes(world)[write])

    message = str(refused.value)
    assert "INSERT INTO" in message  # the statement and the constraint, to debug with
    assert "phone" in message or "direction" in message
    leaked = [v for v in (ALICE, ALICE[2:], ZELDA_NAME, ALICE_WORDS[1]) if v in message]
    assert leaked == [], message


# --- browser protections on every staff page ---------------------------------------------------


def assert_protected(response: Any, where: object) -> None:
    policy = response.headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, where
    assert response.headers.get("X-Content-Type-Options") == "nosniff", where
    assert response.headers.get("Referrer-Policy") == "same-origin", where
    assert "no-store" in response.headers.get("Cache-Control", ""), where


def test_every_staff_page_forbids_framing_sniffing_caching_and_leaking_its_url_to_anyone(
    app: Flask, ctx: Context, world: World, ids: dict[str, Any]
) -> None:
    """Whoever asks and whatever the answer: the page, a redirect to sign in, a 403 for a
    clinician, a 404 for another program's row, a form refused for want of its CSRF token."""
    checked = 0
    for who in (None, BOB_EMAIL, CAROL_EMAIL):
        visitor = app.test_client()
        if who is not None:
            assert login(visitor, email=who).status_code == 303
        for endpoint, _, method in staff_rules(app):
            path = url(app, endpoint, ids)
            # POST without the CSRF token: refused before it can change anything.
            response = visitor.get(path) if method == "GET" else visitor.post(path, data={})
            assert_protected(response, (who, method, path, response.status_code))
            checked += 1
        for path in ("/login", f"/patients/{world.erin_id}", "/alerts/NOSUCH"):
            response = visitor.get(path)
            assert_protected(response, (who, path, response.status_code))
    assert checked >= 100
    with ctx.db.session() as session:  # the refused forms changed nothing
        assert session.get_one(Patient, world.alice_id).status == "active"


# --- a departed staff member -------------------------------------------------------------------


def test_a_staff_member_made_inactive_is_signed_out_at_once_and_their_phone_acks_nothing(
    app: Flask, ctx: Context, world: World
) -> None:
    ref = raise_alert(ctx, world.alice_id, "severe", "high", T0)
    bob, carol = app.test_client(), app.test_client()
    assert login(bob).status_code == 303 and bob.get("/").status_code == 200
    assert login(carol, email=CAROL_EMAIL).status_code == 303
    page = f"/admin/staff/{world.bob_id}"
    form = {"name": "Bob", "role": "clinician", "phone": BOB, "on_call": "", "active": ""}

    assert post(carol, page, page, **form).status_code == 303  # bob has left the clinic

    assert bob.get("/").status_code == 302  # his open session ends with his next click
    assert login(app.test_client()).status_code == 401  # and his password opens nothing
    acked = signed_post(
        app.test_client(), "/twilio/sms", twilio_inbound_params(ctx.settings, BOB, f"ACK {ref}")
    )
    assert acked.status_code == 200 and "did not recognise yours" in acked.text
    assert alert_status(ctx, ref) == "open"  # his old phone is a stranger's now
