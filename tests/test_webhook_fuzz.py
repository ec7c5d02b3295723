"""Every parameter Twilio sends to the two webhooks, fuzzed, on SQLite and PostgreSQL.

Each request is signed exactly as Twilio signs it (the URL with its query string, then the
sorted form parameters), so it gets past the signature check and reaches the parsing, the
conversation and the status code. Fields go missing, carry the wrong type (letters where
digits go, negative and huge numbers), 100 KB of text, unicode, NUL and control characters,
or come twice. Whatever arrives, the answer is a 200 or a 4xx, never a 500, and the database
is either untouched or holds a whole, consistent record of what happened.
"""

from __future__ import annotations

import secrets
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Text, select
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from checkin import outbox, sendnow
from checkin.context import Context
from checkin.db import Base
from checkin.models import (
    ALERT_STATUSES,
    ANSWER_STATUSES,
    PATIENT_STATUSES,
    Alert,
    AlertNotification,
    Answer,
    ConsentEvent,
    Message,
    Patient,
)
from checkin.patients import NewPatient, enrol
from tests.conftest import ALICE, BOB, ERIN, PUBLIC_URL, World
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio

EXAMPLES = 120  # per endpoint and dialect: a few seconds each
STRANGER = "+16175550177"
BIG = 100_000  # 100 KB of text in one field

# Statuses a row may hold: Twilio's words for outbound texts plus our own four, and
# 'received' for what patients send (outbox.py, models.Message).
OUTBOUND_STATUSES = set(outbox.STATUS_RANK) | {"twiml", "suppressed"}
INBOUND_STATUSES = {"received"}


# --- what Twilio might send, and what it never should ---------------------------------------


class Placeholder:
    """A value only known when the request is made (a fresh SID, the newest message's id);
    Fuzz.resolve fills it in. Named, so a failing example reads well."""

    def __init__(self, name: str, where: Any = None) -> None:
        self.name, self.where = name, where

    def __repr__(self) -> str:
        return self.name


MISSING = Placeholder("MISSING")  # the field is left out altogether
FRESH_SID = Placeholder("FRESH_SID")  # a new MessageSid, as Twilio gives each text
SEEN_SID = Placeholder("SEEN_SID")  # a MessageSid already delivered once (a re-delivery)
SENT_SID = Placeholder("SENT_SID")  # the SID of the newest text checkin sent
FIRST_SENT_SID = Placeholder("FIRST_SENT_SID")  # the first one sent (long since delivered)
INBOUND_SID = Placeholder("INBOUND_SID")  # the SID of the newest text a patient sent
PATIENT = Placeholder("PATIENT")  # the patient in the middle of a check-in now
# ?message=<id> of the newest message that is...
OWN_ID = Placeholder("OWN_ID", Message.twilio_sid.is_not(None) & (Message.direction == "outbound"))
INBOUND_ID = Placeholder("INBOUND_ID", Message.direction == "inbound")  # ...a patient's text
REPLY_ID = Placeholder("REPLY_ID", Message.status == "twiml")  # ...a TwiML reply (no SID)


@dataclass(frozen=True)
class Big:
    """100 KB of one character, kept short in Hypothesis's report of a failing example."""

    char: str
    prefix: str = ""

    def __str__(self) -> str:
        return self.prefix + self.char * BIG


ODD: list[Any] = [
    "",
    " ",
    "\x00",
    "\x00\x00SM" + "0" * 32,
    "SM" + "0" * 31 + "\x00",
    "\r\n",
    "\t\x07\x1b[31m",
    "abc",
    "-1",
    "-2147483649",
    "2147483648",
    "9" * 40,
    "1e9",
    "0x1F",
    "NaN",
    "3.5",
    "\u0663",  # Arabic-Indic 3: isdigit() and int() both accept it
    "\u00b2",  # superscript 2: isdigit() accepts it, int() does not
    "\uff17",  # fullwidth 7
    "+",
    "+1617555010",
    "+16175550101\x00",
    "whatsapp:+16175550101",
    "\u202e10155557161+",
    "%",
    "_",
    "%_%",
    "%00",
    "' OR 1=1 --",
    "<Response><Message>hi</Message></Response>",
    "]]>&amp;<",
    "\U0001f48a",
    "\ud7ff\ue000\ufffd\uffff",
    Big("x"),
    Big("9"),
    Big("6", prefix="+1"),
    Big("\x00"),
    Big("a", prefix="SM"),
]
JUNK = st.one_of(
    st.sampled_from(ODD),
    st.text(max_size=30),
    st.text(st.characters(categories=["Cc", "Cf", "Zs", "Nd", "No", "So"]), max_size=20),
    st.integers(-(2**70), 2**70).map(str),
)
# Where Twilio sends digits: numbers too big for any column, negative, and not quite numbers.
NUMBERISH = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["-1", "0", "2147483648", "9" * 40, "\u00b2", "\u0663", "1e9", "3.5"]),
    JUNK,
)


def field_(*good: Any, junk: int = 3, bad: st.SearchStrategy[Any] = JUNK) -> st.SearchStrategy[Any]:
    """A field that is one of the `good` values, missing (1 time in 10), or `bad` (`junk` in 10).

    Mostly good values, so that most requests get past the first bad field and exercise what
    comes after it; shrinking leads to the good ones.
    """

    def pick(n: int) -> st.SearchStrategy[Any]:
        if n < 9 - junk:
            return st.sampled_from(good)
        return st.just(MISSING) if n == 9 - junk else bad

    return st.integers(0, 9).flatmap(pick)


SMS_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "MessageSid": field_(FRESH_SID, FRESH_SID, SEEN_SID, junk=2),
    "SmsMessageSid": field_(FRESH_SID, SEEN_SID),
    "SmsSid": field_(FRESH_SID),
    "AccountSid": field_(ACCOUNT_SID, "AC" + "0" * 32),
    "From": field_(PATIENT, PATIENT, PATIENT, ALICE, BOB, ERIN, STRANGER, "(617) 555-0101", junk=2),
    "To": field_(FROM_NUMBER),
    "Body": field_(
        "7",
        "9",
        "0",
        "8 6 3",
        "pain 4, fatigue 6",
        "STOP",
        "START",
        "HELP",
        "YES",
        "please stop texting me",
        "I want to kill myself",
        "ACK ZZZZZZ",
        "7\x00",
        "\x00",
        junk=4,
    ),
    "NumMedia": field_("0", "1", "10", bad=NUMBERISH),
    "NumSegments": field_("1", "2", bad=NUMBERISH),
    "OptOutType": field_("STOP", "START", "HELP", "stop"),
    "MessagingServiceSid": field_("MG" + "1" * 32),
    "SmsStatus": field_("received", "receiving"),
    "ApiVersion": field_("2010-04-01"),
    "FromCountry": field_("US"),
    "MediaUrl0": field_("https://api.twilio.com/2010-04-01/Accounts/AC/Media/ME1"),
}

STATUSES = sorted(outbox.STATUS_RANK) + [
    "DELIVERED",
    " delivered",
    "canceled",
    "receiving",
    "received",
    "partially_delivered",
    "twiml",
    "suppressed",
]
STATUS_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "MessageSid": field_(SENT_SID, SENT_SID, FIRST_SENT_SID, FRESH_SID, INBOUND_SID, junk=2),
    "SmsSid": field_(SENT_SID, FRESH_SID, INBOUND_SID),
    "MessageStatus": field_(*STATUSES, junk=2),
    "SmsStatus": field_(*STATUSES),
    "ErrorCode": field_("30003", "30007", "21610", "21211", "21614", junk=4, bad=NUMBERISH),
    "ErrorMessage": field_("Unknown destination handset", "Message Delivery - Carrier violation"),
    "To": field_(PATIENT, BOB),
    "From": field_(FROM_NUMBER),
    "AccountSid": field_(ACCOUNT_SID),
    "ApiVersion": field_("2010-04-01"),
}
# The ?message=<id> checkin puts on every StatusCallback URL (outbox._send_all).
MESSAGE_QUERY = field_(OWN_ID, OWN_ID, INBOUND_ID, REPLY_ID, bad=NUMBERISH)


@st.composite
def form(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> list[tuple[str, Any]]:
    """The fields in any order, some of them twice, plus keys Twilio never sends."""
    pairs: list[tuple[str, Any]] = []
    for name, strategy in fields.items():
        value = draw(strategy)
        if value is MISSING:
            continue
        pairs.append((name, value))
        if draw(st.integers(0, 9)) == 0:
            pairs.append((name, draw(JUNK)))  # a duplicate key
    extra = draw(st.lists(st.tuples(st.text(min_size=1, max_size=12), JUNK), max_size=2))
    pairs += extra
    return draw(st.permutations(pairs))


# --- the world the fuzz runs in --------------------------------------------------------------


@dataclass
class Fuzz:
    client: FlaskClient
    ctx: Context
    fake: FakeTwilio
    seen_sids: list[str] = field(default_factory=list)
    outcomes: Counter[int] = field(default_factory=Counter)
    patients: int = 0
    patient: str = ALICE

    def resolve(self, value: Any) -> str:
        if value is FRESH_SID:
            return "SM" + secrets.token_hex(16)
        if value is SEEN_SID:
            return self.seen_sids[-1] if self.seen_sids else "SM" + secrets.token_hex(16)
        if value is SENT_SID or value is FIRST_SENT_SID:
            with self.fake.lock:
                sent = self.fake.sent[-1 if value is SENT_SID else 0]
            return sent.sid
        if value is PATIENT:
            return self.patient
        if value is INBOUND_SID:
            with self.ctx.db.session() as session:
                stmt = select(Message.twilio_sid).where(Message.direction == "inbound")
                found = session.scalars(stmt.order_by(Message.id.desc()).limit(1)).first()
            return found or "SM" + secrets.token_hex(16)
        if isinstance(value, Placeholder) and value.where is not None:
            with self.ctx.db.session() as session:
                stmt = select(Message.id).where(value.where).order_by(Message.id.desc()).limit(1)
                found = session.scalars(stmt).first()
            return str(found or 1)
        assert isinstance(value, str | Big), value
        return str(value)

    def post(self, path: str, pairs: list[tuple[str, Any]], query: str = "") -> Any:
        """POST the form to `path?query`, signed as Twilio signs it."""
        data = MultiDict([(name, self.resolve(value)) for name, value in pairs])
        target = f"{path}?{query}" if query else path
        signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_URL + target, data)
        response = self.client.post(target, data=data, headers={"X-Twilio-Signature": signature})
        self.outcomes[response.status_code] += 1
        assert response.status_code == 200 or 400 <= response.status_code < 500, (
            response.status_code,
            _shorten(data),
        )
        return data, response

    def reply(self, body: str) -> None:
        """The patient answers, so there are inbound texts and TwiML replies to call back about."""
        pairs = [("MessageSid", FRESH_SID), ("From", PATIENT), ("To", FROM_NUMBER), ("Body", body)]
        _, response = self.post("/twilio/sms", pairs)
        assert response.status_code == 200

    def new_patient_mid_check_in(self) -> None:
        """A new patient with a daily check-in just sent: whatever the fuzz did to the last one
        (STOP, a crisis, a number flagged invalid), the next texts can be answers again."""
        self.patients += 1
        phone = f"+1617300{self.patients:04d}"
        with self.ctx.db.session() as session:
            enrol(
                session,
                NewPatient(phone, f"Fuzz {self.patients}", "America/New_York"),
                self.ctx.clock(),
                actor="fuzz",
                sender=FROM_NUMBER,
                welcome=False,
            )
        sendnow.start_now(self.ctx, phone, "daily_symptoms", actor="fuzz")
        self.patient = phone


@pytest.fixture
def fuzz(client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio) -> Fuzz:
    fuzz = Fuzz(client, ctx, fake_twilio)
    fuzz.new_patient_mid_check_in()
    assert fake_twilio.sent, "the check-in's first question was sent"
    return fuzz


def _shorten(data: MultiDict[str, str]) -> list[tuple[str, str]]:
    return [
        (k, v if len(v) < 80 else f"{v[:40]!r}...({len(v)} chars)") for k, v in data.items(True)
    ]


Rows = dict[str, dict[Any, dict[str, Any]]]


def snapshot(ctx: Context) -> Rows:
    """Every row of every table (bar the long text columns), by primary key."""
    tables: Rows = {}
    with ctx.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if not isinstance(c.type, Text)]
            key = table.primary_key.columns[0].name
            rows = conn.execute(select(*columns)).mappings()
            tables[table.name] = {row[key]: dict(row) for row in rows}
    return tables


def changed(before: Rows, after: Rows) -> dict[str, set[Any]]:
    """The keys of the rows each table gained or changed."""
    return {
        name: {key for key, row in rows.items() if before[name].get(key) != row}
        for name, rows in after.items()
    }


def twiml_messages(response: Any) -> list[str]:
    assert response.mimetype == "text/xml"
    root = ElementTree.fromstring(response.get_data(as_text=True))
    assert root.tag == "Response" and all(child.tag == "Message" for child in root)
    return [child.text or "" for child in root]


def assert_consistent(ctx: Context, touched: dict[str, set[Any]]) -> None:
    """What must hold of every row a request added or changed: a whole, consistent record.

    Only those rows, so that a failure is reported against the request that caused it."""
    with ctx.db.session() as session:
        for message in session.scalars(select(Message).where(Message.id.in_(touched["messages"]))):
            allowed = INBOUND_STATUSES if message.direction == "inbound" else OUTBOUND_STATUSES
            assert message.status in allowed, (message.id, message.direction, message.status)
            assert "\x00" not in message.body
            assert message.error_code is None or -(2**31) <= message.error_code < 2**31
            key = message.idempotency_key or ""
            if key.startswith("reply:"):  # a TwiML reply belongs to a stored inbound text
                sid = key[len("reply:") : key.rindex(":")]
                source = session.scalar(select(Message).where(Message.twilio_sid == sid))
                assert source is not None and source.direction == "inbound", key
        for answer in session.scalars(select(Answer).where(Answer.id.in_(touched["answers"]))):
            assert answer.status in ANSWER_STATUSES
            # No answer without the text it came from, from the same patient, in its check-in.
            assert answer.message_id is not None, answer.id
            source = session.get_one(Message, answer.message_id)
            assert source.direction == "inbound"
            assert (source.patient_id, source.checkin_id) == (answer.patient_id, answer.checkin_id)
        consented = session.scalars(
            select(ConsentEvent.patient_id).where(ConsentEvent.id.in_(touched["consent_events"]))
        )
        for patient_id in touched["patients"] | set(consented):
            patient = session.get_one(Patient, patient_id)
            assert patient.status in PATIENT_STATUSES
            kinds = session.scalars(
                select(ConsentEvent.kind)
                .where(ConsentEvent.patient_id == patient.id)
                .order_by(ConsentEvent.id)
            ).all()
            # An opt-out is always recorded with the status it set, and the other way round.
            assert (patient.status == "opted_out") == (kinds[-1] == "opted_out"), (
                patient.id,
                patient.status,
                kinds,
            )
        for alert in session.scalars(select(Alert).where(Alert.id.in_(touched["alerts"]))):
            assert alert.status in ALERT_STATUSES and alert.evidence, alert.ref
            assert alert.patient_id is not None
        notes = select(AlertNotification).where(
            AlertNotification.id.in_(touched["alert_notifications"])
        )
        for note in session.scalars(notes):
            page = session.get(Message, note.message_id) if note.message_id else None
            assert page is None or (page.purpose, page.staff_id) == ("alert", note.staff_id)


# --- the tests ------------------------------------------------------------------------------

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def test_any_signed_inbound_text_gets_200_or_4xx_and_is_stored_whole_or_not_at_all(
    fuzz: Fuzz,
) -> None:
    @FUZZ_SETTINGS
    @given(pairs=form(SMS_FIELDS), restart=st.integers(0, 4))
    def example(pairs: list[tuple[str, Any]], restart: int) -> None:
        if restart == 0:
            fuzz.new_patient_mid_check_in()
        before = snapshot(fuzz.ctx)

        data, response = fuzz.post("/twilio/sms", pairs)

        after = snapshot(fuzz.ctx)
        if response.status_code != 200:
            assert after == before, "a refused text changed the database"
            return
        replies = twiml_messages(response)
        sid = data.get("MessageSid") or data.get("SmsMessageSid")
        with fuzz.ctx.db.session() as session:
            (stored,) = session.scalars(select(Message).where(Message.twilio_sid == sid)).all()
            stored_replies = session.scalars(
                select(Message.body)
                .where(Message.idempotency_key.startswith(f"reply:{sid}:", autoescape=True))
                .order_by(Message.id)
            ).all()
        assert stored.direction == "inbound"
        if sid in fuzz.seen_sids:  # Twilio re-delivered: the same replies, nothing new
            assert after == before, "a re-delivered text was stored again"
        else:
            assert stored.id not in before["messages"], "a new MessageSid was taken as old"
            assert stored.from_number == data["From"]
            assert stored.body == data.get("Body", "").replace("\x00", "\ufffd")
            fuzz.seen_sids.append(sid)
        assert replies == list(stored_replies)
        assert_consistent(fuzz.ctx, changed(before, after))

    example()
    # The fuzz reached both outcomes: texts stored and answered, and texts refused.
    assert fuzz.outcomes[200] >= EXAMPLES // 4, fuzz.outcomes
    assert sum(n for code, n in fuzz.outcomes.items() if code != 200) >= 5, fuzz.outcomes


def test_any_signed_status_callback_gets_200_or_4xx_and_moves_statuses_only_forward(
    fuzz: Fuzz,
) -> None:
    @FUZZ_SETTINGS
    @given(
        pairs=form(STATUS_FIELDS),
        message=st.lists(MESSAGE_QUERY, max_size=2),
        extra=st.lists(st.tuples(st.text(min_size=1, max_size=8), JUNK), max_size=1),
        restart=st.integers(0, 4),
    )
    def example(
        pairs: list[tuple[str, Any]],
        message: list[Any],
        extra: list[tuple[str, Any]],
        restart: int,
    ) -> None:
        if restart == 0:
            fuzz.new_patient_mid_check_in()
        if restart == 1:
            fuzz.reply("5")
        query_pairs = [("message", fuzz.resolve(m)) for m in message if m is not MISSING]
        query_pairs += [(name, fuzz.resolve(value)) for name, value in extra]
        query = urllib.parse.urlencode(query_pairs)
        before = snapshot(fuzz.ctx)

        _, response = fuzz.post("/twilio/status", pairs, query)

        after = snapshot(fuzz.ctx)
        if response.status_code != 200:
            assert after == before, "a refused callback changed the database"
            return
        touched = changed(before, after)
        assert_consistent(fuzz.ctx, touched)
        for message_id in touched["messages"] & set(before["messages"]):
            old, new = before["messages"][message_id], after["messages"][message_id]
            rank = outbox.STATUS_RANK.get
            if new["status"] != old["status"]:
                assert rank(new["status"], -1) > rank(old["status"], -1), (old, new)

    example()
    assert fuzz.outcomes[200] >= EXAMPLES // 4, fuzz.outcomes
