"""Twilio's two doors, driven over HTTP exactly as Twilio drives them.

Every inbound request carries every field Twilio sends (`twilio_inbound_params`) and a real
X-Twilio-Signature computed against CHECKIN_PUBLIC_URL; pages to staff and check-in questions
go through the official Twilio client to the fake Twilio on loopback.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from twilio.request_validator import RequestValidator

from checkin import create_app, outbox, scheduler, sendnow
from checkin.clock import FrozenClock
from checkin.config import load_settings
from checkin.context import Context
from checkin.models import (
    Alert,
    AlertNotification,
    Answer,
    AuditEvent,
    CheckIn,
    ConsentEvent,
    Message,
    Patient,
)
from checkin.patients import PatientError
from checkin.simulate import twilio_inbound_params
from tests.conftest import (
    ALICE,
    BOB,
    DAVE,
    ERIN,
    PG_URL,
    PUBLIC_URL,
    World,
    signed_post,
    twilio_env,
)
from tests.fake_twilio import AUTH_TOKEN, FakeTwilio

# --- helpers ------------------------------------------------------------------------------


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)


def inbound(
    ctx: Context, body: str, *, sid: str | None = None, sender: str = ALICE, **extra: str
) -> dict[str, str]:
    """Every field Twilio sends with an inbound SMS, plus any extra (OptOutType...)."""
    return {**twilio_inbound_params(ctx.settings, sender, body, sid or new_sid()), **extra}


def text(
    client: FlaskClient,
    ctx: Context,
    body: str,
    *,
    sid: str | None = None,
    sender: str = ALICE,
    **extra: str,
) -> list[str]:
    """The patient texts `body`; returns the replies in the TwiML (asserting a 200 TwiML)."""
    response = signed_post(
        client, "/twilio/sms", inbound(ctx, body, sid=sid, sender=sender, **extra)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return twiml_messages(response)


def twiml_messages(response: Any) -> list[str]:
    assert response.mimetype == "text/xml"
    root = ElementTree.fromstring(response.get_data(as_text=True))
    assert root.tag == "Response"
    assert all(child.tag == "Message" for child in root)
    return [child.text or "" for child in root]


def counts(ctx: Context) -> dict[str, int]:
    tables = (Message, Answer, Alert, AlertNotification, ConsentEvent, AuditEvent, CheckIn)
    with ctx.db.session() as session:
        return {
            t.__tablename__: session.scalar(select(func.count()).select_from(t)) or 0
            for t in tables
        }


def patient_status(ctx: Context, patient_id: int) -> str:
    with ctx.db.session() as session:
        return session.get_one(Patient, patient_id).status


def checkins(ctx: Context, patient_id: int) -> list[CheckIn]:
    with ctx.db.session() as session:
        stmt = select(CheckIn).where(CheckIn.patient_id == patient_id).order_by(CheckIn.id)
        return list(session.scalars(stmt))


def answers(ctx: Context, checkin_id: int) -> dict[str, Answer]:
    with ctx.db.session() as session:
        rows = session.scalars(select(Answer).where(Answer.checkin_id == checkin_id))
        return {a.measure: a for a in rows}


def alerts_of(ctx: Context, patient_id: int) -> list[Alert]:
    with ctx.db.session() as session:
        stmt = select(Alert).where(Alert.patient_id == patient_id).order_by(Alert.id)
        return list(session.scalars(stmt))


def consent_events(ctx: Context, patient_id: int) -> list[ConsentEvent]:
    with ctx.db.session() as session:
        stmt = select(ConsentEvent).where(ConsentEvent.patient_id == patient_id)
        return list(session.scalars(stmt.order_by(ConsentEvent.id)))


def start_daily(ctx: Context) -> CheckIn:
    """Open alice's daily_symptoms now through send-now; returns the open check-in."""
    result = sendnow.start_now(ctx, ALICE, "daily_symptoms", actor="test")
    assert result == "daily_symptoms for +16175550101: sent"
    open_ = [c for c in checkins(ctx, _alice_id(ctx)) if c.status == "open"]
    assert len(open_) == 1
    return open_[0]


def _alice_id(ctx: Context) -> int:
    with ctx.db.session() as session:
        patient_id = session.scalar(select(Patient.id).where(Patient.phone == ALICE))
        assert patient_id is not None
        return patient_id


def scheduler_tick_sends_nothing_to_alice(ctx: Context, fake_twilio: FakeTwilio) -> None:
    before = len(fake_twilio.to(ALICE))
    scheduler.plan(ctx)
    scheduler.dispatch(ctx)
    outbox.deliver_due(ctx)
    assert len(fake_twilio.to(ALICE)) == before
    assert not [c for c in checkins(ctx, _alice_id(ctx)) if c.status == "open"]


ASK_FATIGUE = "How tired have you felt today? Reply 0 (none) to 10 (worst)."
ASK_PAIN = "How much pain have you had today? Reply 0 (none) to 10 (worst)."
ASK_MOOD = "How is your mood today? Reply 0 (very low) to 10 (very good)."
REASK = "Sorry, please reply with a number from 0 to 10."


# --- the inbound door -----------------------------------------------------------------------


def test_a_signed_inbound_text_is_stored_and_answered_with_twiml(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    sid = new_sid()
    response = signed_post(client, "/twilio/sms", inbound(ctx, "hello there", sid=sid))

    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<Response><Message>" in body
    assert twiml_messages(response) == [
        "Thanks for your message. There is no check-in open now. Reply HELP for help. "
        "In an emergency call 911."
    ]
    with ctx.db.session() as session:
        row = session.scalars(select(Message).where(Message.twilio_sid == sid)).one()
        assert (row.direction, row.body, row.status) == ("inbound", "hello there", "received")
        assert (row.patient_id, row.from_number, row.to_number) == (
            world.alice_id,
            ALICE,
            ctx.settings.sender,
        )
        reply = session.scalars(select(Message).where(Message.direction == "outbound")).one()
        assert (reply.to_number, reply.purpose, reply.status) == (ALICE, "reply", "twiml")


def _forged(client: FlaskClient, ctx: Context, how: str) -> Any:
    params = inbound(ctx, "STOP")
    good = RequestValidator(AUTH_TOKEN)
    if how == "missing":
        return client.post("/twilio/sms", data=params)
    if how == "garbage":
        return client.post("/twilio/sms", data=params, headers={"X-Twilio-Signature": "bm9wZQ=="})
    if how == "wrong token":
        return signed_post(client, "/twilio/sms", params, token="not-the-auth-token")
    if how == "other url":
        signature = good.compute_signature("https://evil.example.org/twilio/sms", params)
        return client.post("/twilio/sms", data=params, headers={"X-Twilio-Signature": signature})
    if how == "other path":
        signature = good.compute_signature(PUBLIC_URL + "/twilio/status", params)
        return client.post("/twilio/sms", data=params, headers={"X-Twilio-Signature": signature})
    if how == "tampered body":
        signature = good.compute_signature(PUBLIC_URL + "/twilio/sms", {**params, "Body": "hi"})
        return client.post("/twilio/sms", data=params, headers={"X-Twilio-Signature": signature})
    if how == "tampered sender":
        signature = good.compute_signature(PUBLIC_URL + "/twilio/sms", {**params, "From": ERIN})
        return client.post("/twilio/sms", data=params, headers={"X-Twilio-Signature": signature})
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "missing",
        "garbage",
        "wrong token",
        "other url",
        "other path",
        "tampered body",
        "tampered sender",
    ],
)
def test_an_inbound_text_without_a_valid_signature_is_refused_and_nothing_is_stored(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio, how: str
) -> None:
    before = counts(ctx)

    response = _forged(client, ctx, how)

    assert response.status_code == 403
    assert counts(ctx) == before
    assert patient_status(ctx, world.alice_id) == "active"  # the forged STOP did nothing
    assert fake_twilio.requests == 0


def test_a_redelivered_message_sid_is_stored_once(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    checkin = start_daily(ctx)
    sid = new_sid()
    assert text(client, ctx, "6", sid=sid) == [ASK_PAIN]
    after_first = counts(ctx)

    response = signed_post(client, "/twilio/sms", inbound(ctx, "6", sid=sid))

    assert response.status_code == 200
    twiml_messages(response)
    assert counts(ctx) == after_first
    with ctx.db.session() as session:
        rows = session.scalars(select(Message).where(Message.twilio_sid == sid)).all()
        assert len(rows) == 1
        assert session.get_one(CheckIn, checkin.id).state["step"] == 1  # not advanced twice
    assert {m: a.value for m, a in answers(ctx, checkin.id).items()} == {"fatigue": 6}


def test_a_message_from_an_opted_out_patient_gets_an_empty_response(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    assert len(text(client, ctx, "STOP")) == 1

    response = signed_post(client, "/twilio/sms", inbound(ctx, "how are you"))

    assert response.status_code == 200
    assert twiml_messages(response) == []
    root = ElementTree.fromstring(response.get_data(as_text=True))
    assert root.tag == "Response" and len(root) == 0
    with ctx.db.session() as session:
        stored = session.scalar(select(Message).where(Message.body == "how are you"))
        assert stored is not None and stored.direction == "inbound"  # still kept on record
    assert fake_twilio.sent == []


def test_a_text_from_an_unknown_number_gets_one_generic_reply_a_day_and_is_never_enrolled(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World
) -> None:
    stranger = "+16175550177"
    (reply,) = text(client, ctx, "who is this", sender=stranger)
    assert "did not recognise" in reply and "911" in reply
    assert "Alice" not in reply and "Care Team" not in reply  # no patient or program data
    assert text(client, ctx, "hello??", sender=stranger) == []  # once a day at most
    clock.advance(hours=25)
    assert len(text(client, ctx, "hello again", sender=stranger)) == 1
    with ctx.db.session() as session:
        row = session.scalars(select(Message).where(Message.body == "who is this")).one()
        assert (row.patient_id, row.purpose) == (None, "unknown_sender")
        assert session.scalar(select(Patient).where(Patient.phone == stranger)) is None


# --- a daily_symptoms conversation ------------------------------------------------------------


def test_a_scheduled_daily_check_in_is_answered_through_the_webhook(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    # T0 is 10:00 in New York: the program's 09:00 daily check-in is due today.
    scheduler.plan(ctx)
    assert scheduler.dispatch(ctx) == 1
    assert [s.body for s in fake_twilio.to(ALICE)] == [ASK_FATIGUE]
    (checkin,) = checkins(ctx, world.alice_id)
    assert (checkin.flow, checkin.status) == ("daily_symptoms", "open")

    assert text(client, ctx, "6") == [ASK_PAIN]
    assert text(client, ctx, "4") == [ASK_MOOD]
    (thanks,) = text(client, ctx, "7")

    assert thanks.startswith("Thank you, your answers are saved.")
    stored = answers(ctx, checkin.id)
    assert {m: (a.value, a.status) for m, a in stored.items()} == {
        "fatigue": (6, "answered"),
        "pain": (4, "answered"),
        "mood": (7, "answered"),
    }
    assert {a.raw_text for a in stored.values()} == {"6", "4", "7"}
    (done,) = checkins(ctx, world.alice_id)
    assert done.status == "completed" and done.completed_at == ctx.clock()
    assert alerts_of(ctx, world.alice_id) == []
    assert [s.body for s in fake_twilio.to(ALICE)] == [ASK_FATIGUE]  # replies ride on TwiML
    assert fake_twilio.to(BOB) == []


def test_a_reply_that_is_not_a_number_is_asked_again_naming_the_range(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    checkin = start_daily(ctx)

    assert text(client, ctx, "pretty tired") == [f"{REASK} {ASK_FATIGUE}"]
    assert text(client, ctx, "11") == [
        f"No problem, we will skip that one. {ASK_PAIN}"
    ]  # second failed try: skipped
    assert text(client, ctx, "3") == [ASK_MOOD]

    stored = answers(ctx, checkin.id)
    assert (stored["fatigue"].status, stored["fatigue"].value) == ("missing", None)
    assert (stored["pain"].status, stored["pain"].value) == ("answered", 3)
    assert "mood" not in stored


def test_a_question_skipped_after_two_failed_tries_is_stored_missing_never_zero(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    checkin = start_daily(ctx)
    assert text(client, ctx, "5") == [ASK_PAIN]

    assert text(client, ctx, "not sure") == [f"{REASK} {ASK_PAIN}"]
    assert text(client, ctx, "lots") == [f"No problem, we will skip that one. {ASK_MOOD}"]
    (thanks,) = text(client, ctx, "8")

    assert thanks.startswith("Thank you")
    stored = answers(ctx, checkin.id)
    assert {m: (a.value, a.status) for m, a in stored.items()} == {
        "fatigue": (5, "answered"),
        "pain": (None, "missing"),
        "mood": (8, "answered"),
    }
    with ctx.db.session() as session:
        zeros = session.scalar(select(func.count()).select_from(Answer).where(Answer.value == 0))
        assert zeros == 0
        assert session.get_one(CheckIn, checkin.id).status == "completed"


# --- severe readings page the on-call clinician ---------------------------------------------

PHI_WORDS = ("alice", "multiple sclerosis", "sclerosis", "ketamine", "depression", "infusion")


def assert_no_phi(body: str) -> None:
    """A staff page carries no name, number, diagnosis or drug (HIPAA minimum necessary)."""
    for word in PHI_WORDS:
        assert word not in body.lower()
    assert "MS " not in body and not body.endswith("MS")
    assert ALICE not in body and ALICE[2:] not in body


@pytest.mark.parametrize(
    ("replies", "measure", "value"),
    [(["6", "9"], "pain", 9), (["9"], "fatigue", 9), (["5", "5", "1"], "mood", 1)],
)
def test_a_severe_answer_opens_an_alert_and_texts_only_the_programs_on_call_clinician(
    client: FlaskClient,
    ctx: Context,
    world: World,
    fake_twilio: FakeTwilio,
    replies: list[str],
    measure: str,
    value: int,
) -> None:
    start_daily(ctx)

    for reply in replies:
        text(client, ctx, reply)

    (alert,) = alerts_of(ctx, world.alice_id)
    assert (alert.kind, alert.status) == ("severe", "open")
    assert alert.evidence[0]["measure"] == measure
    assert [j["value"] for j in alert.evidence[0]["judged"]] == [value]
    assert fake_twilio.to(DAVE) == []
    (page,) = fake_twilio.to(BOB)
    assert alert.ref in page.body
    assert "severe" in page.body
    assert alert.severity.upper() in page.body
    assert f"{PUBLIC_URL}/alerts/{alert.ref}" in page.body
    assert_no_phi(page.body)
    assert not re.search(r"\d", page.body.replace(alert.ref, "")), "no score in a staff text"
    with ctx.db.session() as session:
        row = session.scalars(select(Message).where(Message.twilio_sid == page.sid)).one()
        assert (row.purpose, row.staff_id, row.status) == ("alert", world.bob_id, "queued")
        note = session.scalars(select(AlertNotification)).one()
        assert (note.alert_id, note.staff_id, note.message_id) == (alert.id, world.bob_id, row.id)


def test_a_second_severe_reading_while_the_alert_is_open_pages_nobody_again(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    start_daily(ctx)
    text(client, ctx, "9")  # fatigue 9: alert opened, bob paged
    assert len(fake_twilio.to(BOB)) == 1

    text(client, ctx, "10")  # pain 10
    text(client, ctx, "0")  # mood 0

    (alert,) = alerts_of(ctx, world.alice_id)
    assert [(e["measure"], e["judged"][-1]["value"]) for e in alert.evidence] == [
        ("fatigue", 9),
        ("pain", 10),
        ("mood", 0),
    ]
    assert len(fake_twilio.to(BOB)) == 1
    assert fake_twilio.to(DAVE) == []


# --- compliance keywords ----------------------------------------------------------------------

STOP_WORDS = [
    "STOP",
    "stop",
    " Stop ",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "STOPALL",
]
STOP_CONFIRM = (
    "Care Team: you are unsubscribed and will get no more texts. Reply START to resubscribe."
)


@pytest.mark.parametrize("word", STOP_WORDS)
def test_the_stop_family_opts_the_patient_out_with_one_confirmation(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio, word: str
) -> None:
    start_daily(ctx)  # mid-check-in: STOP wins over "answer the question"

    assert text(client, ctx, word) == [STOP_CONFIRM]
    assert text(client, ctx, word) == []  # FCC 2024: one confirmation only
    assert text(client, ctx, "STOP") == []

    assert patient_status(ctx, world.alice_id) == "opted_out"
    events = consent_events(ctx, world.alice_id)
    assert [(e.kind, e.source) for e in events] == [
        ("consent_given", "staff_enrolment"),
        ("opted_out", "sms_keyword"),
    ]
    assert events[-1].message_id is not None
    assert [c.status for c in checkins(ctx, world.alice_id)] == ["skipped"]
    with pytest.raises(PatientError, match="opted out"):
        sendnow.start_now(ctx, ALICE, "daily_symptoms", actor="test")
    scheduler_tick_sends_nothing_to_alice(ctx, fake_twilio)
    assert len(fake_twilio.to(ALICE)) == 1  # only the first question, sent before STOP


@pytest.mark.parametrize("word", ["START", "unstop", "YES"])
def test_start_unstop_and_yes_resubscribe_an_opted_out_patient(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio, word: str
) -> None:
    text(client, ctx, "STOP")

    (reply,) = text(client, ctx, word)

    assert reply.startswith("Care Team: you are subscribed to check-in texts again.")
    assert "Msg & data rates may apply" in reply
    assert patient_status(ctx, world.alice_id) == "active"
    assert [e.kind for e in consent_events(ctx, world.alice_id)] == [
        "consent_given",
        "opted_out",
        "opted_in",
    ]
    assert sendnow.start_now(ctx, ALICE, "daily_symptoms", actor="test").endswith(": sent")
    assert [s.body for s in fake_twilio.to(ALICE)] == [ASK_FATIGUE]


def test_yes_from_a_subscribed_patient_is_not_an_opt_in(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    start_daily(ctx)

    assert text(client, ctx, "YES") == [f"{REASK} {ASK_FATIGUE}"]  # an unreadable answer

    assert [e.kind for e in consent_events(ctx, world.alice_id)] == ["consent_given"]
    assert patient_status(ctx, world.alice_id) == "active"


@pytest.mark.parametrize("word", ["HELP", "info", " Help "])
def test_help_and_info_name_the_program_support_rates_and_how_to_stop(
    client: FlaskClient, ctx: Context, world: World, word: str
) -> None:
    (reply,) = text(client, ctx, word)

    assert "Care Team" in reply
    assert "your clinic" in reply  # the program's support contact
    assert "1 text a day" in reply  # how often we text
    assert "Msg & data rates may apply" in reply
    assert "STOP" in reply
    assert patient_status(ctx, world.alice_id) == "active"


def test_with_twilio_advanced_opt_out_the_patient_is_opted_out_and_we_send_no_reply(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    assert text(client, ctx, "Stop please", OptOutType="STOP") == []

    assert patient_status(ctx, world.alice_id) == "opted_out"
    assert [(e.kind, e.source) for e in consent_events(ctx, world.alice_id)][-1] == (
        "opted_out",
        "twilio_opt_out_type",
    )
    assert fake_twilio.sent == []

    assert text(client, ctx, "Start", OptOutType="START") == []
    assert patient_status(ctx, world.alice_id) == "active"


# --- crisis language --------------------------------------------------------------------------

CRISIS_TEXTS = [
    "I want to kill myself",
    "thinking about taking all my pills",
    "\U0001f48a",
    "quiero morir",
]


@pytest.mark.parametrize("state", ["idle", "mid-check-in", "opted out"])
@pytest.mark.parametrize("body", CRISIS_TEXTS)
def test_crisis_language_gets_988_at_once_and_pages_on_call_staff_in_every_state(
    client: FlaskClient,
    ctx: Context,
    world: World,
    fake_twilio: FakeTwilio,
    body: str,
    state: str,
) -> None:
    if state == "mid-check-in":
        start_daily(ctx)
        text(client, ctx, "4")
    if state == "opted out":
        text(client, ctx, "STOP")

    (reply,) = text(client, ctx, body)

    assert "988" in reply and "911" in reply
    (alert,) = alerts_of(ctx, world.alice_id)
    assert (alert.kind, alert.severity, alert.status) == ("crisis", "urgent", "open")
    (page,) = fake_twilio.to(BOB)
    assert alert.ref in page.body and "URGENT" in page.body and "crisis" in page.body
    assert_no_phi(page.body)
    assert fake_twilio.to(DAVE) == []
    assert "open" not in [c.status for c in checkins(ctx, world.alice_id)]
    if state == "mid-check-in":
        (checkin,) = checkins(ctx, world.alice_id)
        assert checkin.status == "interrupted"
        assert {m: a.value for m, a in answers(ctx, checkin.id).items()} == {"fatigue": 4}


def test_while_a_crisis_alert_is_open_no_scripted_questions_start(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    text(client, ctx, "I want to kill myself")
    sent_before = len(fake_twilio.to(ALICE))

    with pytest.raises(PatientError, match="crisis"):
        sendnow.start_now(ctx, ALICE, "daily_symptoms", actor="test")
    scheduler_tick_sends_nothing_to_alice(ctx, fake_twilio)

    assert len(fake_twilio.to(ALICE)) == sent_before == 0
    # Her next text is not taken as an answer to a scripted question.
    assert text(client, ctx, "7") == [
        "Thanks for your message. There is no check-in open now. Reply HELP for help. "
        "In an emergency call 911."
    ]
    with ctx.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Answer)) == 0


def test_a_second_crisis_message_appends_to_the_open_alert_and_still_gets_988(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    text(client, ctx, "I want to kill myself")

    (reply,) = text(client, ctx, "quiero morir")

    assert "988" in reply
    (alert,) = alerts_of(ctx, world.alice_id)
    assert [e["matched"] for e in alert.evidence] == ["kill myself", "quiero morir"]
    assert len(fake_twilio.to(BOB)) == 1


# --- the status door --------------------------------------------------------------------------


def _sent_to_alice(ctx: Context, fake_twilio: FakeTwilio, purpose: str = "reply") -> int:
    with ctx.db.session() as session:
        message = outbox.queue(
            session,
            to=ALICE,
            from_number=ctx.settings.sender,
            body="Thanks, noted.",
            purpose=purpose,
            patient_id=_alice_id(ctx),
            now=ctx.clock(),
        )
        message_id = message.id
    assert outbox.deliver(ctx, message_id) == "queued"
    assert len(fake_twilio.sent) == 1
    return message_id


def _status(
    client: FlaskClient, callback_url: str, sid: str, status: str, error: int | None = None
) -> Any:
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": "AC" + "1" * 32,
        "To": ALICE,
        "From": "+16175550000",
        "ApiVersion": "2010-04-01",
    }
    if error is not None:
        params["ErrorCode"] = str(error)
    assert callback_url.startswith(PUBLIC_URL)
    return signed_post(client, callback_url[len(PUBLIC_URL) :], params)


def _message(ctx: Context, message_id: int) -> Message:
    with ctx.db.session() as session:
        return session.get_one(Message, message_id)


def test_status_callbacks_are_monotonic_a_late_sent_never_overwrites_delivered(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    message_id = _sent_to_alice(ctx, fake_twilio)
    (sent,) = fake_twilio.sent
    assert sent.status_callback == f"{PUBLIC_URL}/twilio/status?message={message_id}"

    assert _status(client, sent.status_callback, sent.sid, "delivered").status_code == 200
    assert _message(ctx, message_id).status == "delivered"
    assert _status(client, sent.status_callback, sent.sid, "sent").status_code == 200
    assert _status(client, sent.status_callback, sent.sid, "queued").status_code == 200

    row = _message(ctx, message_id)
    assert (row.status, row.twilio_sid) == ("delivered", sent.sid)


@pytest.mark.parametrize(("status", "code"), [("undelivered", 30003), ("failed", 30007)])
def test_undelivered_and_failed_callbacks_are_recorded_with_the_error_code(
    client: FlaskClient,
    ctx: Context,
    world: World,
    fake_twilio: FakeTwilio,
    status: str,
    code: int,
) -> None:
    message_id = _sent_to_alice(ctx, fake_twilio)
    (sent,) = fake_twilio.sent
    assert sent.status_callback is not None
    _status(client, sent.status_callback, sent.sid, "sent")

    assert _status(client, sent.status_callback, sent.sid, status, code).status_code == 200

    row = _message(ctx, message_id)
    assert (row.status, row.error_code) == (status, code)
    assert patient_status(ctx, world.alice_id) == "active"  # a carrier error is not a STOP


def test_a_failed_callback_with_error_21610_opts_the_patient_out(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    message_id = _sent_to_alice(ctx, fake_twilio)
    (sent,) = fake_twilio.sent
    assert sent.status_callback is not None

    _status(client, sent.status_callback, sent.sid, "failed", 21610)

    assert _message(ctx, message_id).error_code == 21610
    assert patient_status(ctx, world.alice_id) == "opted_out"
    assert consent_events(ctx, world.alice_id)[-1].source == "twilio_error_21610"


def test_a_status_callback_with_a_bad_signature_is_refused_and_changes_nothing(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    message_id = _sent_to_alice(ctx, fake_twilio)
    (sent,) = fake_twilio.sent
    assert sent.status_callback is not None
    path = sent.status_callback[len(PUBLIC_URL) :]
    params = {"MessageSid": sent.sid, "MessageStatus": "failed", "ErrorCode": "21610"}
    before = counts(ctx)

    forged = signed_post(client, path, params, token="not-the-auth-token")
    unsigned = client.post(path, data=params)
    # Signed for the URL without the query: the ?message= part is covered by the signature.
    bare = RequestValidator(AUTH_TOKEN).compute_signature(f"{PUBLIC_URL}/twilio/status", params)
    no_query = client.post(path, data=params, headers={"X-Twilio-Signature": bare})

    assert [forged.status_code, unsigned.status_code, no_query.status_code] == [403, 403, 403]
    row = _message(ctx, message_id)
    assert (row.status, row.error_code) == ("queued", None)
    assert counts(ctx) == before
    assert patient_status(ctx, world.alice_id) == "active"


def test_a_status_callback_that_beats_the_recorded_sid_still_finds_its_message(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    with ctx.db.session() as session:
        message_id = outbox.queue(
            session,
            to=ALICE,
            from_number=ctx.settings.sender,
            body="Thanks, noted.",
            purpose="reply",
            patient_id=world.alice_id,
            now=ctx.clock(),
        ).id
        # The send is in flight: claimed, the SID not yet back from Twilio.
        session.execute(
            update(Message).where(Message.id == message_id).values(status="claimed", attempts=1)
        )
    sid = new_sid()
    url = f"{ctx.status_callback_url}?message={message_id}"

    assert _status(client, url, sid, "sent").status_code == 200

    row = _message(ctx, message_id)
    assert (row.twilio_sid, row.status) == (sid, "sent")


def test_without_the_message_query_an_early_callback_cannot_find_its_message(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    with ctx.db.session() as session:
        message_id = outbox.queue(
            session,
            to=ALICE,
            from_number=ctx.settings.sender,
            body="Thanks, noted.",
            purpose="reply",
            patient_id=world.alice_id,
            now=ctx.clock(),
        ).id

    assert _status(client, ctx.status_callback_url, new_sid(), "sent").status_code == 200

    row = _message(ctx, message_id)
    assert (row.twilio_sid, row.status) == (None, "pending")


def test_a_callback_naming_another_messages_id_does_not_steal_it(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    message_id = _sent_to_alice(ctx, fake_twilio)
    (sent,) = fake_twilio.sent

    url = f"{ctx.status_callback_url}?message={message_id}"
    assert _status(client, url, new_sid(), "failed", 30007).status_code == 200

    row = _message(ctx, message_id)
    assert (row.twilio_sid, row.status, row.error_code) == (sent.sid, "queued", None)


# --- health -----------------------------------------------------------------------------------


def test_healthz_is_200_when_the_database_answers(client: FlaskClient, world: World) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def _unreachable(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        # The volume holding the database file goes away after the app started.
        return f"sqlite:///{tmp_path / 'volume' / 'checkin.sqlite3'}"
    url = make_url(PG_URL).set(database="checkin_no_such_database")
    return url.render_as_string(hide_password=False)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_healthz_is_503_when_the_database_is_unreachable(
    fake_twilio: FakeTwilio, tmp_path: Path, kind: str
) -> None:
    settings = load_settings(twilio_env(_unreachable(kind, tmp_path), fake_twilio))
    app = create_app({"TESTING": True}, settings=settings)
    shutil.rmtree(tmp_path / "volume", ignore_errors=True)
    try:
        response = app.test_client().get("/healthz")
    finally:
        app.extensions["checkin"].db.dispose()

    assert response.status_code == 503
    assert response.get_json()["status"] == "error"
