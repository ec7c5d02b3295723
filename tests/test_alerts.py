"""Alerts as the care team meets them: pages by text and by real email, dedupe, cooldown,
acknowledge and resolve (CLI and SMS), escalation to the admins, and the daily digest.

Real parts only: email goes through a real SMTP server (aiosmtpd) on loopback, texts through the
fake Twilio over HTTP, inbound texts through the signed webhook, on SQLite and on PostgreSQL,
with a frozen clock. This module's `settings` fixture adds the SMTP server to conftest's
settings, so conftest's `ctx`, `app`, `client` and `world` all send email for real.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import re
import secrets
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner, Result
from flask.testing import FlaskClient
from sqlalchemy import func, select

from checkin import alerts, outbox, scheduler, sendnow
from checkin.catalog import render
from checkin.cli import cli
from checkin.clock import FrozenClock
from checkin.config import Settings, load_settings
from checkin.context import Context, make_context
from checkin.models import (
    Alert,
    AlertNotification,
    Answer,
    AuditEvent,
    CheckIn,
    Message,
    Patient,
    StaffUser,
)
from checkin.simulate import twilio_inbound_params
from tests.conftest import ALICE, BOB, DAVE, ERIN, PUBLIC_URL, T0, World, signed_post, twilio_env
from tests.fake_twilio import FakeTwilio

MAIL_FROM = "alerts@clinic.example"
BOB_EMAIL = "bob@example.org"
CAROL_EMAIL = "carol@example.org"
DAVE_EMAIL = "dave@example.org"
GRACE_EMAIL = "grace@example.org"  # the other program's admin, for the tests that add her
CAROL = "+16175550197"  # carol's phone, for the tests that give her one
NEW_YORK = ZoneInfo("America/New_York")

ASK_PAIN = "How much pain have you had today? Reply 0 (none) to 10 (worst)."
ASK_MOOD = "How is your mood today? Reply 0 (very low) to 10 (very good)."
CRISIS_WORDS = "I want to kill myself"
HOW_TO_ACK = "Not acknowledged: send ACK and the alert reference, e.g. ACK K7Q2X9."
# Words that would tell a reader of a page what is wrong with whom (HIPAA minimum necessary).
HEALTH_WORDS = (
    "alice",
    "sclerosis",
    "multiple",
    "ketamine",
    "infusion",
    "depress",
    "suicid",
    "kill",
    "pain",
    "fatigue",
    "mood",
    "bladder",
    "urine",
)


# --- a real SMTP server on loopback ---------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return str(self.message.get_content())


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps every message it is handed."""

    received: list[Mail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.received.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"

    def to(self, address: str) -> list[Mail]:
        with self.lock:
            return [m for m in self.received if address in m.rcpt_tos]

    def all(self) -> list[Mail]:
        with self.lock:
            return list(self.received)


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox = field(default_factory=Inbox)
    controller: Controller | None = None

    def start(self) -> SmtpServer:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port()).start()
    yield server
    server.stop()


def mail_env(db_url: str, fake: FakeTwilio, port: int, **extra: str) -> dict[str, str]:
    return twilio_env(
        db_url,
        fake,
        CHECKIN_SMTP_HOST="127.0.0.1",
        CHECKIN_SMTP_PORT=str(port),
        CHECKIN_SMTP_FROM=MAIL_FROM,
        CHECKIN_DIGEST_TIME="08:00",
        CHECKIN_DIGEST_TIMEZONE="America/New_York",
        **extra,
    )


@pytest.fixture
def settings(db_url: str, fake_twilio: FakeTwilio, smtp: SmtpServer) -> Settings:
    """conftest's settings plus the loopback SMTP server (overrides conftest's fixture)."""
    return load_settings(mail_env(db_url, fake_twilio, smtp.port))


# --- helpers --------------------------------------------------------------------------------


def text(client: FlaskClient, ctx: Context, body: str, *, sender: str = ALICE) -> list[str]:
    """`sender` texts `body` through the signed webhook; returns the replies in the TwiML."""
    sid = "SM" + secrets.token_hex(16)
    response = signed_post(
        client, "/twilio/sms", twilio_inbound_params(ctx.settings, sender, body, sid)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    root = ElementTree.fromstring(response.get_data(as_text=True))
    return [child.text or "" for child in root]


def at(clock: FrozenClock, day: int, hour: int, minute: int = 0) -> datetime:
    """Set the frozen clock to a New York wall-clock time in March 2026."""
    clock.at = datetime(2026, 3, day, hour, minute, tzinfo=NEW_YORK).astimezone(UTC)
    return clock.at


def start(ctx: Context, flow: str = "daily_symptoms") -> None:
    assert sendnow.start_now(ctx, ALICE, flow, actor="test") == f"{flow} for {ALICE}: sent"


def daily(client: FlaskClient, ctx: Context, fatigue: str, pain: str, mood: str) -> None:
    """Alice answers a whole daily check-in started now."""
    start(ctx)
    assert text(client, ctx, fatigue) == [ASK_PAIN]
    assert text(client, ctx, pain) == [ASK_MOOD]
    (thanks,) = text(client, ctx, mood)
    assert thanks.startswith("Thank you")


def alerts_of(ctx: Context, patient_id: int) -> list[Alert]:
    with ctx.db.session() as session:
        stmt = select(Alert).where(Alert.patient_id == patient_id).order_by(Alert.id)
        return list(session.scalars(stmt))


def alert_by_ref(ctx: Context, ref: str) -> Alert:
    with ctx.db.session() as session:
        found = session.scalar(select(Alert).where(Alert.ref == ref))
        assert found is not None, ref
        return found


def audit_trail(ctx: Context, ref: str) -> list[AuditEvent]:
    with ctx.db.session() as session:
        stmt = select(AuditEvent).where(AuditEvent.target == f"alert:{ref}")
        return list(session.scalars(stmt.order_by(AuditEvent.id)))


def notifications(ctx: Context, ref: str) -> list[tuple[int, str, int]]:
    """(staff id, channel, tier) of every page sent about the alert, in order."""
    with ctx.db.session() as session:
        stmt = (
            select(AlertNotification.staff_id, AlertNotification.channel, AlertNotification.tier)
            .join(Alert, Alert.id == AlertNotification.alert_id)
            .where(Alert.ref == ref)
            .order_by(AlertNotification.id)
        )
        return [(s, c, t) for s, c, t in session.execute(stmt)]


def count(ctx: Context, table: type[Any]) -> int:
    with ctx.db.session() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def raise_now(
    ctx: Context, patient_id: int, kind: str, severity: str, **evidence: Any
) -> tuple[str, int]:
    """Open (or add to) an alert as the product does, deliver its pages after the commit;
    returns the alert's ref and how many pages were sent."""
    with ctx.db.session() as session:
        patient = session.get_one(Patient, patient_id)
        alert, pages = alerts.raise_alert(
            session, patient, kind, severity, evidence, ctx.clock(), alerts.Pager.of(ctx)
        )
        ref, ids = alert.ref, [page.id for page in pages]
    outbox.deliver_many(ctx, ids)
    return ref, len(ids)


def sms_to(fake: FakeTwilio, number: str) -> list[str]:
    return [sent.body for sent in fake.to(number)]


def assert_minimum_necessary(body: str, ref: str) -> None:
    """A page says which alert, how bad and where to look: never who, what or how much."""
    lowered = body.lower()
    for word in HEALTH_WORDS:
        assert word not in lowered, f"{word!r} in a staff page: {body!r}"
    assert "6175550101" not in re.sub(r"\D", "", body), f"alice's number in {body!r}"
    assert not re.search(r"\d", body.replace(ref, "")), f"a number (a score?) in {body!r}"
    assert " ms " not in f" {lowered} "


def invoke(env: dict[str, str], args: Sequence[str]) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def one_line_error(result: Result, expected: str) -> None:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert expected in lines[0], lines[0]


def set_phone(ctx: Context, staff_id: int, phone: str) -> None:
    with ctx.db.session() as session:
        session.get_one(StaffUser, staff_id).phone = phone


# --- 1. pages by text and by real email -----------------------------------------------------


def test_a_severe_answer_pages_the_on_call_clinician_by_text_and_by_real_email_without_details(
    client: FlaskClient,
    ctx: Context,
    world: World,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    start(ctx)
    assert text(client, ctx, "5") == [ASK_PAIN]
    assert text(client, ctx, "9") == [ASK_MOOD]

    (alert,) = alerts_of(ctx, world.alice_id)
    ref, link = alert.ref, f"{PUBLIC_URL}/alerts/{alert.ref}"
    assert (alert.kind, alert.severity, alert.status) == ("severe", "high", "open")

    (sms,) = sms_to(fake_twilio, BOB)
    assert f"HIGH alert {ref}: severe" in sms and link in sms and f"ACK {ref}" in sms
    assert_minimum_necessary(sms, ref)

    (mail,) = smtp.inbox.all()
    assert (mail.mail_from, mail.rcpt_tos) == (MAIL_FROM, [BOB_EMAIL])
    assert (mail.message["From"], mail.message["To"]) == (MAIL_FROM, BOB_EMAIL)
    assert mail.subject == f"checkin HIGH alert {ref}: severe"
    assert link in mail.body and f"ACK {ref}" in mail.body
    assert_minimum_necessary(mail.subject, ref)
    assert_minimum_necessary(mail.body, ref)

    assert sms_to(fake_twilio, DAVE) == [] and smtp.inbox.to(DAVE_EMAIL) == []
    assert smtp.inbox.to(CAROL_EMAIL) == []  # the admin is not on call: not woken
    assert notifications(ctx, ref) == [(world.bob_id, "sms", 1), (world.bob_id, "email", 1)]
    with ctx.db.session() as session:
        (stored,) = session.scalars(select(Message).where(Message.channel == "email"))
        assert (stored.to_number, stored.status, stored.purpose) == (BOB_EMAIL, "sent", "alert")


# --- 2. dedupe ------------------------------------------------------------------------------


def test_a_second_severe_answer_while_the_alert_is_open_adds_evidence_and_pages_nobody(
    client: FlaskClient,
    ctx: Context,
    world: World,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    daily(client, ctx, "5", "9", "1")  # pain 9, then mood 1: two severe readings

    (alert,) = alerts_of(ctx, world.alice_id)
    assert len(alert.evidence) == 2
    assert [item["measure"] for item in alert.evidence] == ["pain", "mood"]
    assert len(sms_to(fake_twilio, BOB)) == 1
    assert len(smtp.inbox.to(BOB_EMAIL)) == 1
    assert len(notifications(ctx, alert.ref)) == 2


def test_a_more_severe_finding_of_the_same_kind_raises_the_severity_and_pages_again(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio, smtp: SmtpServer
) -> None:
    ref, paged = raise_now(ctx, world.alice_id, "worsening", "routine", rule="test")
    assert paged == 0
    assert sms_to(fake_twilio, BOB) == [] and smtp.inbox.all() == []

    clock.advance(hours=2)
    again, paged = raise_now(ctx, world.alice_id, "worsening", "high", rule="test")

    assert (again, paged) == (ref, 2)
    alert = alert_by_ref(ctx, ref)
    assert (alert.severity, alert.status, len(alert.evidence)) == ("high", "open", 2)
    (sms,) = sms_to(fake_twilio, BOB)
    assert f"HIGH alert {ref}: worsening" in sms
    (mail,) = smtp.inbox.to(BOB_EMAIL)
    assert mail.subject == f"checkin HIGH alert {ref}: worsening"
    raised = [e for e in audit_trail(ctx, ref) if e.action == "alert.severity_raised"]
    assert [(e.detail["was"], e.detail["now"]) for e in raised] == [("routine", "high")]

    _, paged = raise_now(ctx, world.alice_id, "worsening", "high", rule="test")  # as bad: quiet
    assert paged == 0 and len(sms_to(fake_twilio, BOB)) == 1
    assert len(alert_by_ref(ctx, ref).evidence) == 3


# --- 3. lifecycle through the CLI, with its audit trail ---------------------------------------


def test_bob_acknowledges_then_resolves_with_a_note_and_each_step_is_audited(
    client: FlaskClient,
    ctx: Context,
    world: World,
    db_url: str,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    start(ctx)
    text(client, ctx, "5")
    text(client, ctx, "9")
    (alert,) = alerts_of(ctx, world.alice_id)
    ref = alert.ref
    assert alert.status == "open" and alert.acknowledged_at is None

    acked_from = T0 + timedelta(minutes=10)
    env = mail_env(db_url, fake_twilio, smtp.port, CHECKIN_CLOCK_START=acked_from.isoformat())
    assert invoke(env, ["alerts", "ack", ref, "--email", BOB_EMAIL]).output == (
        f"acknowledged {ref}\n"
    )
    acked = alert_by_ref(ctx, ref)
    assert (acked.status, acked.acknowledged_by_id) == ("acknowledged", world.bob_id)
    assert acked.acknowledged_at is not None
    assert acked_from <= acked.acknowledged_at < acked_from + timedelta(minutes=1)

    for blank in ("", "   "):
        refused = invoke(env, ["alerts", "resolve", ref, "--email", BOB_EMAIL, "--note", blank])
        one_line_error(refused, "a resolution note is required")
    assert alert_by_ref(ctx, ref).status == "acknowledged"

    # Each command reads a clock that starts at CHECKIN_CLOCK_START: bob resolves 20 min later.
    resolved_from = acked_from + timedelta(minutes=20)
    env = mail_env(db_url, fake_twilio, smtp.port, CHECKIN_CLOCK_START=resolved_from.isoformat())
    resolve = ["alerts", "resolve", ref, "--email", BOB_EMAIL, "--note", "called patient"]
    assert invoke(env, resolve).output == f"resolved {ref}\n"
    done = alert_by_ref(ctx, ref)
    assert (done.status, done.resolved_by_id, done.resolution_note) == (
        "resolved",
        world.bob_id,
        "called patient",
    )
    assert done.resolved_at is not None
    assert resolved_from <= done.resolved_at < resolved_from + timedelta(minutes=1)
    assert done.acknowledged_at == acked.acknowledged_at  # resolving keeps who looked first

    trail = [(e.action, e.actor, e.detail.get("via")) for e in audit_trail(ctx, ref)]
    assert trail == [
        ("alert.open", "system", None),
        ("alert.acknowledge", BOB_EMAIL, "cli"),
        ("alert.resolve", BOB_EMAIL, "cli"),
    ]
    one_line_error(invoke(env, resolve), f"alert {ref} is already resolved")


def test_dave_from_another_program_cannot_ack_or_resolve_alices_alert(
    client: FlaskClient,
    ctx: Context,
    world: World,
    db_url: str,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    ref, _ = raise_now(ctx, world.alice_id, "severe", "high", measure="pain", value=9)
    env = mail_env(db_url, fake_twilio, smtp.port)

    one_line_error(invoke(env, ["alerts", "ack", ref, "--email", DAVE_EMAIL]), f"no alert {ref}")
    one_line_error(
        invoke(env, ["alerts", "resolve", ref, "--email", DAVE_EMAIL, "--note", "closed it"]),
        f"no alert {ref}",
    )
    one_line_error(invoke(env, ["alerts", "ack", "AAAAAA", "--email", BOB_EMAIL]), "no alert")
    one_line_error(
        invoke(env, ["alerts", "ack", ref, "--email", "mallory@example.org"]), "no staff member"
    )

    alert = alert_by_ref(ctx, ref)
    assert (alert.status, alert.acknowledged_by_id, alert.resolved_by_id) == ("open", None, None)
    assert [e.action for e in audit_trail(ctx, ref)] == ["alert.open"]


def test_alerts_list_puts_urgent_before_high_before_routine_then_oldest_first(
    ctx: Context,
    clock: FrozenClock,
    world: World,
    db_url: str,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    refs = {}
    for minute, kind, severity in (
        (0, "phq2_positive", "routine"),
        (1, "severe", "high"),
        (2, "non_response", "routine"),
        (3, "crisis", "urgent"),
        (4, "side_effect", "high"),
    ):
        clock.at = T0 + timedelta(minutes=minute)
        refs[kind], _ = raise_now(ctx, world.alice_id, kind, severity, rule="test")

    result = invoke(mail_env(db_url, fake_twilio, smtp.port), ["alerts", "list"])

    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["ref"], r["severity"]) for r in rows] == [
        (refs["crisis"], "urgent"),
        (refs["severe"], "high"),
        (refs["side_effect"], "high"),
        (refs["phq2_positive"], "routine"),
        (refs["non_response"], "routine"),
    ]
    assert {r["status"] for r in rows} == {"open"}


# --- 4. cooldown ----------------------------------------------------------------------------


def test_after_a_severe_alert_is_resolved_another_within_24_hours_pages_nobody_but_after_does(
    client: FlaskClient,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    daily(client, ctx, "5", "9", "5")
    (first,) = alerts_of(ctx, world.alice_id)
    resolved_at = at(clock, 10, 11, 0)
    with ctx.db.session() as session:
        alert = session.get_one(Alert, first.id)
        bob = session.get_one(StaffUser, world.bob_id)
        alerts.resolve(session, alert, bob, "called patient", resolved_at, via="test")

    at(clock, 11, 10, 59)  # 23 h 59 min after resolution
    daily(client, ctx, "5", "9", "5")

    (same,) = alerts_of(ctx, world.alice_id)
    assert (same.id, same.status, len(same.evidence)) == (first.id, "resolved", 2)
    assert same.evidence[1]["during_cooldown"] is True
    # The second day's pain reading, kept on the resolved alert for whoever reopens the story.
    assert same.evidence[1]["measure"] == "pain"
    assert same.evidence[1]["checkin_id"] != same.evidence[0]["checkin_id"]
    assert len(sms_to(fake_twilio, BOB)) == 1 and len(smtp.inbox.to(BOB_EMAIL)) == 1
    assert "alert.cooldown_evidence" in [e.action for e in audit_trail(ctx, first.ref)]

    at(clock, 11, 11, 0)  # 24 h after resolution: the cooldown is over
    daily(client, ctx, "5", "9", "5")

    old, new = alerts_of(ctx, world.alice_id)
    assert (old.id, old.status) == (first.id, "resolved")
    assert (new.kind, new.severity, new.status, len(new.evidence)) == ("severe", "high", "open", 1)
    pages = sms_to(fake_twilio, BOB)
    assert len(pages) == 2 and new.ref in pages[1]
    mails = smtp.inbox.to(BOB_EMAIL)
    assert len(mails) == 2 and new.ref in mails[1].subject


def test_a_more_severe_finding_during_the_cooldown_of_a_milder_resolved_alert_pages(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio, smtp: SmtpServer
) -> None:
    """Resolving a routine drift must not hide a high worsening for the next 7 days."""
    drift, paged = raise_now(ctx, world.alice_id, "worsening", "routine", rule="ewma_drift")
    assert paged == 0
    with ctx.db.session() as session:
        alert = session.get_one(Alert, alert_by_ref(ctx, drift).id)
        bob = session.get_one(StaffUser, world.bob_id)
        alerts.resolve(session, alert, bob, "reviewed the trend", clock.advance(hours=1), via="t")

    clock.advance(days=1)
    _, paged = raise_now(ctx, world.alice_id, "worsening", "routine", rule="ewma_drift")
    assert paged == 0 and len(alerts_of(ctx, world.alice_id)) == 1  # as mild: folded in
    clock.advance(days=1)
    ref, paged = raise_now(ctx, world.alice_id, "worsening", "high", rule="worsening_vs_baseline")

    assert ref != drift and paged == 2
    new = alert_by_ref(ctx, ref)
    assert (new.kind, new.severity, new.status) == ("worsening", "high", "open")
    (sms,) = sms_to(fake_twilio, BOB)
    assert f"HIGH alert {ref}: worsening" in sms
    assert [m.subject for m in smtp.inbox.to(BOB_EMAIL)] == [f"checkin HIGH alert {ref}: worsening"]


def test_a_crisis_right_after_a_resolved_crisis_always_opens_a_new_alert_and_pages(
    client: FlaskClient,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    crisis_reply = render("crisis", "en")
    assert text(client, ctx, CRISIS_WORDS) == [crisis_reply]
    (first,) = alerts_of(ctx, world.alice_id)
    with ctx.db.session() as session:
        alert = session.get_one(Alert, first.id)
        bob = session.get_one(StaffUser, world.bob_id)
        now = clock.advance(minutes=5)
        alerts.resolve(session, alert, bob, "spoke with her, safe", now, via="test")

    clock.advance(minutes=1)
    assert text(client, ctx, CRISIS_WORDS) == [crisis_reply]

    old, new = alerts_of(ctx, world.alice_id)
    assert old.status == "resolved" and len(old.evidence) == 1
    assert (new.kind, new.severity, new.status) == ("crisis", "urgent", "open")
    pages = sms_to(fake_twilio, BOB)
    assert len(pages) == 2 and f"URGENT alert {new.ref}: crisis" in pages[1]
    mails = smtp.inbox.to(BOB_EMAIL)
    assert len(mails) == 2 and mails[1].subject == f"checkin URGENT alert {new.ref}: crisis"
    for page in pages:
        assert_minimum_necessary(page, old.ref if old.ref in page else new.ref)


# --- 5. ACK by text -------------------------------------------------------------------------


def test_bob_texting_ack_and_the_ref_acknowledges_the_alert_in_his_name(
    client: FlaskClient,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fake_twilio: FakeTwilio,
) -> None:
    ref, _ = raise_now(ctx, world.alice_id, "severe", "high", measure="pain", value=9)
    acked_at = clock.advance(minutes=3)

    assert text(client, ctx, f"ACK {ref}", sender=BOB) == [
        f"Acknowledged {ref}. Resolve it with a note on the dashboard."
    ]

    alert = alert_by_ref(ctx, ref)
    assert (alert.status, alert.acknowledged_by_id, alert.acknowledged_at) == (
        "acknowledged",
        world.bob_id,
        acked_at,
    )
    (ack,) = [e for e in audit_trail(ctx, ref) if e.action == "alert.acknowledge"]
    assert (ack.actor, ack.detail["via"], ack.at) == (BOB_EMAIL, "sms", acked_at)
    assert text(client, ctx, f"ACK {ref}", sender=BOB) == [
        f"Not acknowledged: alert {ref} is already acknowledged."
    ]


def test_ack_in_lower_case_with_a_full_stop_acknowledges_too(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    ref, _ = raise_now(ctx, world.alice_id, "side_effect", "high", rule="test")

    assert text(client, ctx, f"ack {ref.lower()}.", sender=BOB) == [
        f"Acknowledged {ref}. Resolve it with a note on the dashboard."
    ]
    assert alert_by_ref(ctx, ref).acknowledged_by_id == world.bob_id


def test_an_ack_for_an_unknown_ref_says_there_is_no_such_alert(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    ref, _ = raise_now(ctx, world.alice_id, "severe", "high", measure="pain", value=9)

    # Refs alternate letter and digit, so AAAAAA can never be one.
    assert text(client, ctx, "ACK AAAAAA", sender=BOB) == ["Not acknowledged: no alert AAAAAA."]
    assert alert_by_ref(ctx, ref).status == "open"


def test_dave_texting_ack_for_alices_alert_is_refused_as_if_it_did_not_exist(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    ref, _ = raise_now(ctx, world.alice_id, "severe", "high", measure="pain", value=9)

    assert text(client, ctx, f"ACK {ref}", sender=DAVE) == [f"Not acknowledged: no alert {ref}."]

    alert = alert_by_ref(ctx, ref)
    assert (alert.status, alert.acknowledged_by_id) == ("open", None)
    assert [e.action for e in audit_trail(ctx, ref)] == ["alert.open"]


def test_a_staff_text_is_never_patient_data_and_anything_but_ack_gets_the_how_to(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    start(ctx)
    assert text(client, ctx, "5") == [ASK_PAIN]  # alice's check-in waits for her pain score
    ref, _ = raise_now(ctx, world.alice_id, "side_effect", "high", rule="test")
    answers, alert_count = count(ctx, Answer), count(ctx, Alert)

    assert text(client, ctx, "9", sender=BOB) == [HOW_TO_ACK]
    assert text(client, ctx, "hello, what is this?", sender=BOB) == [HOW_TO_ACK]
    assert text(client, ctx, f"ACK {ref}", sender=BOB)[0].startswith(f"Acknowledged {ref}")

    assert (count(ctx, Answer), count(ctx, Alert)) == (answers, alert_count)
    with ctx.db.session() as session:
        stmt = select(Message).where(Message.direction == "inbound", Message.from_number == BOB)
        inbound = list(session.scalars(stmt))
        assert {(m.purpose, m.staff_id, m.patient_id, m.checkin_id) for m in inbound} == {
            ("staff", world.bob_id, None, None)
        }
        (open_run,) = session.scalars(select(CheckIn).where(CheckIn.status == "open"))
        assert open_run.patient_id == world.alice_id
    assert text(client, ctx, "4") == [ASK_MOOD]  # alice's own answer still goes to her run


# --- 6. escalation --------------------------------------------------------------------------


def test_an_urgent_crisis_nobody_acknowledges_pages_the_admin_at_15_minutes_and_only_once(
    client: FlaskClient,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    set_phone(ctx, world.carol_id, CAROL)
    text(client, ctx, CRISIS_WORDS)
    (alert,) = alerts_of(ctx, world.alice_id)
    ref = alert.ref
    assert len(sms_to(fake_twilio, BOB)) == 1 and len(smtp.inbox.to(BOB_EMAIL)) == 1

    clock.advance(minutes=14)
    assert scheduler.escalate_overdue(ctx) == 0
    assert sms_to(fake_twilio, CAROL) == [] and smtp.inbox.to(CAROL_EMAIL) == []
    assert alert_by_ref(ctx, ref).escalated_at is None

    escalated_at = clock.advance(minutes=1)
    assert scheduler.escalate_overdue(ctx) == 2

    (sms,) = sms_to(fake_twilio, CAROL)
    assert f"URGENT alert {ref}: crisis" in sms
    assert_minimum_necessary(sms, ref)
    (mail,) = smtp.inbox.to(CAROL_EMAIL)
    assert (mail.mail_from, mail.subject) == (MAIL_FROM, f"checkin URGENT alert {ref}: crisis")
    assert_minimum_necessary(mail.body, ref)
    assert alert_by_ref(ctx, ref).escalated_at == escalated_at
    assert [n for n in notifications(ctx, ref) if n[2] == 2] == [
        (world.carol_id, "sms", 2),
        (world.carol_id, "email", 2),
    ]
    (event,) = [e for e in audit_trail(ctx, ref) if e.action == "alert.escalate"]
    assert (event.at, event.detail["tier"], event.detail["to"]) == (escalated_at, 2, [CAROL_EMAIL])

    for minutes in (1, 60, 24 * 60):
        clock.advance(minutes=minutes)
        assert scheduler.escalate_overdue(ctx) == 0
    assert len(sms_to(fake_twilio, CAROL)) == 1 and len(smtp.inbox.to(CAROL_EMAIL)) == 1
    assert len(sms_to(fake_twilio, BOB)) == 1  # bob is not paged again
    assert sms_to(fake_twilio, DAVE) == [] and smtp.inbox.to(DAVE_EMAIL) == []


def test_escalation_pages_each_programs_own_admins_about_their_own_patients_only(
    client: FlaskClient,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    with ctx.db.session() as session:
        grace = StaffUser(
            program_id=world.other_program_id,
            email=GRACE_EMAIL,
            name="Grace",
            role="admin",
            on_call=False,
            password_hash="x",
            created_at=T0,
        )
        session.add(grace)
    text(client, ctx, CRISIS_WORDS)
    text(client, ctx, CRISIS_WORDS, sender=ERIN)
    (alices,) = alerts_of(ctx, world.alice_id)
    (erins,) = alerts_of(ctx, world.erin_id)
    assert [erins.ref in body for body in sms_to(fake_twilio, DAVE)] == [True]

    clock.advance(minutes=15)
    assert scheduler.escalate_overdue(ctx) == 2  # one email each: neither admin has a phone

    (to_carol,) = smtp.inbox.to(CAROL_EMAIL)
    (to_grace,) = smtp.inbox.to(GRACE_EMAIL)
    assert alices.ref in to_carol.subject and erins.ref not in to_carol.body
    assert erins.ref in to_grace.subject and alices.ref not in to_grace.body
    assert alert_by_ref(ctx, alices.ref).escalated_at == clock()
    assert alert_by_ref(ctx, erins.ref).escalated_at == clock()


def test_an_urgent_alert_acknowledged_within_15_minutes_never_escalates(
    client: FlaskClient,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    text(client, ctx, CRISIS_WORDS)
    (alert,) = alerts_of(ctx, world.alice_id)
    clock.advance(minutes=10)
    assert text(client, ctx, f"ACK {alert.ref}", sender=BOB)[0].startswith("Acknowledged")

    for minutes in (5, 60, 24 * 60):
        clock.advance(minutes=minutes)
        assert scheduler.escalate_overdue(ctx) == 0

    assert smtp.inbox.to(CAROL_EMAIL) == []
    assert alert_by_ref(ctx, alert.ref).escalated_at is None
    assert [n[2] for n in notifications(ctx, alert.ref)] == [1, 1]


def test_checkin_escalate_after_minutes_5_escalates_after_five_minutes_by_email(
    client: FlaskClient,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    db_url: str,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    five = make_context(
        load_settings(mail_env(db_url, fake_twilio, smtp.port, CHECKIN_ESCALATE_AFTER_MINUTES="5"))
    )
    five.clock = clock
    try:
        text(client, ctx, CRISIS_WORDS)
        (alert,) = alerts_of(ctx, world.alice_id)

        clock.advance(minutes=4)
        assert scheduler.escalate_overdue(five) == 0
        clock.advance(minutes=1)
        assert scheduler.escalate_overdue(five) == 1  # carol has no phone: email only
    finally:
        five.db.dispose()

    (mail,) = smtp.inbox.to(CAROL_EMAIL)
    assert mail.subject == f"checkin URGENT alert {alert.ref}: crisis"
    assert [n for n in notifications(ctx, alert.ref) if n[2] == 2] == [(world.carol_id, "email", 2)]


# --- 7. the daily digest --------------------------------------------------------------------


def test_routine_alerts_are_not_paged_and_arrive_once_in_the_next_mornings_digest(
    client: FlaskClient,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    with ctx.db.session() as session:
        frank = StaffUser(
            program_id=world.program_id,
            email="frank@example.org",
            name="Frank",
            role="clinician",
            on_call=False,
            active=False,
            password_hash="x",
            created_at=T0,
        )
        session.add(frank)
    at(clock, 8, 10, 0)  # two days earlier: outside the digest's 24 hours
    stale, _ = raise_now(ctx, world.alice_id, "non_response", "routine", rule="test")

    at(clock, 10, 10, 0)
    start(ctx, "weekly_mood")
    text(client, ctx, "3")
    text(client, ctx, "nearly every day")  # PHQ-2 total 6: positive, a routine alert
    phq2 = next(a for a in alerts_of(ctx, world.alice_id) if a.kind == "phq2_positive")
    assert phq2.severity == "routine"
    at(clock, 10, 15, 0)
    stop, _ = raise_now(ctx, world.alice_id, "stop_request", "routine", rule="test")
    erins, _ = raise_now(ctx, world.erin_id, "phq2_positive", "routine", rule="test")

    assert sms_to(fake_twilio, BOB) == [] and sms_to(fake_twilio, DAVE) == []
    assert smtp.inbox.all() == [] and count(ctx, AlertNotification) == 0
    assert scheduler.send_digests(ctx) == 0  # today's digest covered yesterday: nothing

    at(clock, 11, 7, 59)
    assert scheduler.send_digests(ctx) == 0
    assert smtp.inbox.all() == []

    at(clock, 11, 8, 0)
    assert scheduler.send_digests(ctx) == 3  # bob, carol, dave; never frank (inactive)

    for address in (BOB_EMAIL, CAROL_EMAIL):
        (digest,) = smtp.inbox.to(address)
        assert digest.mail_from == MAIL_FROM
        assert digest.subject == "checkin daily digest: 2 routine alert(s)"
        for ref in (phq2.ref, stop):
            assert ref in digest.body and f"{PUBLIC_URL}/alerts/{ref}" in digest.body
        assert stale not in digest.body and erins not in digest.body
        assert "alice" not in digest.body.lower() and "6175550101" not in digest.body
    (daves,) = smtp.inbox.to(DAVE_EMAIL)
    assert daves.subject == "checkin daily digest: 1 routine alert(s)"
    assert erins in daves.body and phq2.ref not in daves.body and stop not in daves.body
    assert smtp.inbox.to("frank@example.org") == []
    assert sms_to(fake_twilio, BOB) == [] and sms_to(fake_twilio, DAVE) == []

    at(clock, 11, 14, 0)
    assert scheduler.send_digests(ctx) == 0
    assert len(smtp.inbox.all()) == 3


def test_no_digest_goes_out_on_a_morning_after_no_routine_alerts(
    client: FlaskClient,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    daily(client, ctx, "5", "9", "5")  # a high alert: paged at once, not a digest item
    paged = smtp.inbox.all()
    assert len(paged) == 1

    at(clock, 11, 8, 0)
    assert scheduler.send_digests(ctx) == 0
    assert smtp.inbox.all() == paged
    with ctx.db.session() as session:
        assert session.scalar(select(Message.id).where(Message.purpose == "digest")) is None


# --- 8. an email page survives a mail server outage -----------------------------------------


def test_an_email_page_the_mail_server_refused_is_kept_and_delivered_when_it_is_back(
    client: FlaskClient,
    ctx: Context,
    clock: FrozenClock,
    world: World,
    fake_twilio: FakeTwilio,
    smtp: SmtpServer,
) -> None:
    smtp.stop()
    start(ctx)
    text(client, ctx, "5")
    text(client, ctx, "9")
    (alert,) = alerts_of(ctx, world.alice_id)

    (sms,) = sms_to(fake_twilio, BOB)  # the text page is not held up by the email one
    assert alert.ref in sms
    with ctx.db.session() as session:
        (page,) = session.scalars(select(Message).where(Message.channel == "email"))
    assert (page.to_number, page.status, page.attempts) == (BOB_EMAIL, "pending", 1)
    assert page.send_after is not None and page.send_after > clock()
    assert page.error_message is not None and "SMTP" in page.error_message
    assert outbox.deliver_due(ctx) == 0  # not before its retry time
    assert smtp.inbox.all() == []

    smtp.start()
    clock.advance(minutes=2)
    assert outbox.deliver_due(ctx) == 1

    (mail,) = smtp.inbox.all()
    assert (mail.rcpt_tos, mail.subject) == ([BOB_EMAIL], f"checkin HIGH alert {alert.ref}: severe")
    with ctx.db.session() as session:
        delivered = session.get_one(Message, page.id)
        assert (delivered.status, delivered.attempts) == ("sent", 2)
    assert len(sms_to(fake_twilio, BOB)) == 1  # no second text
