"""Conversations patients can actually answer, driven through the signed Twilio webhook.

Every reply goes through POST /twilio/sms with a real X-Twilio-Signature; check-ins are started
by send-now or by scheduler ticks against a frozen clock; both databases. Each test says what a
patient (or the clinician paged) would notice.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import hypothesis
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from sqlalchemy import func, select

from checkin import create_app, crisis, flows, keywords, scheduler, schedules, sendnow
from checkin.catalog import render
from checkin.clock import FrozenClock
from checkin.config import load_settings
from checkin.context import Context, make_context
from checkin.flows.parsing import interpret
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
from checkin.patients import NewPatient, PatientError, enrol, program_of
from checkin.simulate import twilio_inbound_params
from tests.conftest import ALICE, BOB, DAVE, T0, World, signed_post, twilio_env
from tests.fake_twilio import FROM_NUMBER, FakeTwilio

NEW_YORK = ZoneInfo("America/New_York")
FIRST_DAY = date(2026, 3, 10)  # T0's date in New York
EVERY_DAY = "mon,tue,wed,thu,fri,sat,sun"
ROSA = "+16175550103"  # a Spanish-speaking patient of alice's program
STRANGER = "+16175550177"

ASK_FATIGUE = "How tired have you felt today? Reply 0 (none) to 10 (worst)."
ASK_PAIN = "How much pain have you had today? Reply 0 (none) to 10 (worst)."
ASK_MOOD = "How is your mood today? Reply 0 (very low) to 10 (very good)."
REASK = "Sorry, please reply with a number from 0 to 10."
REASK_ONE = "Sorry, please send just one number from 0 to 10."
ASK_BLOOD = "Any blood in your urine? Reply YES or NO."
REMINDER = "Reminder: your check-in is still open."
LATE = (
    "Thanks. That check-in has closed, but your care team can see your message. "
    "In an emergency call 911."
)

# A staff page carries no name, number, diagnosis, drug, symptom or score (HIPAA minimum).
PHI_WORDS = (
    "alice",
    "alice example",
    "ketamine",
    "sclerosis",
    "depress",
    "infusion",
    "cystitis",
    "bladder",
    "urine",
    "blood",
)


# --- helpers ------------------------------------------------------------------------------


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)


def post(client: FlaskClient, ctx: Context, body: str, sid: str, sender: str) -> Any:
    params = twilio_inbound_params(ctx.settings, sender, body, sid)
    return signed_post(client, "/twilio/sms", params)


def twiml_messages(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/xml"
    root = ElementTree.fromstring(response.get_data(as_text=True))
    assert root.tag == "Response"
    assert all(child.tag == "Message" for child in root)
    return [child.text or "" for child in root]


def text(
    client: FlaskClient, ctx: Context, body: str, *, sid: str | None = None, sender: str = ALICE
) -> list[str]:
    """The patient texts `body`; returns the replies in the TwiML."""
    return twiml_messages(post(client, ctx, body, sid or new_sid(), sender))


def at(clock: FrozenClock, day: int, hour: int, minute: int = 0) -> None:
    """Set the frozen clock to a New York wall-clock time in March 2026."""
    clock.at = datetime(2026, 3, day, hour, minute, tzinfo=NEW_YORK).astimezone(UTC)


def tick_at(ctx: Context, clock: FrozenClock, day: int, hour: int, minute: int = 0) -> None:
    at(clock, day, hour, minute)
    counts = scheduler.tick(ctx)
    assert -1 not in counts.values(), f"a scheduler step failed: {counts}"


def patient_id(ctx: Context, phone: str) -> int:
    with ctx.db.session() as session:
        found = session.scalar(select(Patient.id).where(Patient.phone == phone))
        assert found is not None
        return found


def checkins(ctx: Context, phone: str = ALICE) -> list[CheckIn]:
    """The patient's check-ins from the test's first day on, in order of creation.

    Planning also looks back over the day before (rows settled 'missed'); those are not what
    these conversations are about, so they are left out here.
    """
    with ctx.db.session() as session:
        stmt = (
            select(CheckIn)
            .where(CheckIn.patient_id == patient_id(ctx, phone), CheckIn.local_date >= FIRST_DAY)
            .order_by(CheckIn.id)
        )
        return list(session.scalars(stmt))


def open_checkin(ctx: Context, phone: str = ALICE) -> CheckIn:
    (checkin,) = [c for c in checkins(ctx, phone) if c.status == "open"]
    return checkin


def start(ctx: Context, flow: str, phone: str = ALICE) -> CheckIn:
    """Start `flow` for the patient now through send-now; returns the open check-in."""
    result = sendnow.start_now(ctx, phone, flow, actor="test")
    assert result == f"{flow} for {phone}: sent"
    return open_checkin(ctx, phone)


def answers(ctx: Context, checkin_id: int) -> dict[str, tuple[int | None, str]]:
    with ctx.db.session() as session:
        rows = session.scalars(select(Answer).where(Answer.checkin_id == checkin_id))
        return {a.measure: (a.value, a.status) for a in rows}


def answer_rows(ctx: Context, checkin_id: int) -> list[Answer]:
    with ctx.db.session() as session:
        stmt = select(Answer).where(Answer.checkin_id == checkin_id).order_by(Answer.id)
        return list(session.scalars(stmt))


def alerts_of(ctx: Context, phone: str = ALICE) -> list[Alert]:
    with ctx.db.session() as session:
        stmt = select(Alert).where(Alert.patient_id == patient_id(ctx, phone)).order_by(Alert.id)
        return list(session.scalars(stmt))


def count(ctx: Context, table: Any) -> int:
    with ctx.db.session() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def counts(ctx: Context) -> dict[str, int]:
    tables = (Message, Answer, Alert, AlertNotification, ConsentEvent, AuditEvent, CheckIn)
    return {t.__tablename__: count(ctx, t) for t in tables}


def inbound_message(ctx: Context, sid: str) -> Message:
    with ctx.db.session() as session:
        return session.scalars(select(Message).where(Message.twilio_sid == sid)).one()


def bodies_to(fake_twilio: FakeTwilio, phone: str) -> list[str]:
    return [s.body for s in fake_twilio.to(phone)]


def enrol_rosa(ctx: Context) -> None:
    with ctx.db.session() as session:
        enrol(
            session,
            NewPatient(ROSA, "Rosa Ejemplo", "America/New_York", "es"),
            T0 - timedelta(days=14),
            actor="test",
            sender=FROM_NUMBER,
            welcome=False,
        )


def add_schedule(ctx: Context, phone: str, flow: str, local_time: time, days: str) -> None:
    """Give one patient their own schedule for `flow` (created before the day's ticks)."""
    created = datetime(2026, 3, 10, 7, 0, tzinfo=NEW_YORK)
    with ctx.db.session() as session:
        patient = session.get_one(Patient, patient_id(ctx, phone))
        schedules.add(
            session,
            program_of(session, patient),
            flow=flow,
            local_time=local_time,
            days=days,
            patient=patient,
            now=created,
            actor="test",
        )


def assert_no_phi(body: str) -> None:
    lowered = body.lower()
    for word in PHI_WORDS:
        assert word not in lowered, f"{word!r} in staff page {body!r}"
    assert "MS " not in body and not body.endswith("MS")
    assert ALICE not in body and ALICE[2:] not in body


# --- 1. daily_symptoms understands real replies ---------------------------------------------


def test_three_numbers_in_one_text_complete_the_daily_check_in(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    checkin = start(ctx, "daily_symptoms")

    (reply,) = text(client, ctx, "8 6 3")

    assert reply.startswith("Thank you, your answers are saved.")
    assert answers(ctx, checkin.id) == {
        "fatigue": (8, "answered"),
        "pain": (6, "answered"),
        "mood": (3, "answered"),
    }
    assert len(answer_rows(ctx, checkin.id)) == 3
    assert checkins(ctx)[-1].status == "completed"


def test_labelled_values_in_any_order_are_stored_and_the_remaining_question_is_asked(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    checkin = start(ctx, "daily_symptoms")

    assert text(client, ctx, "pain 4, fatigue 6") == [ASK_MOOD]

    assert answers(ctx, checkin.id) == {"fatigue": (6, "answered"), "pain": (4, "answered")}


def test_a_number_wrapped_in_words_is_stored_with_the_words_kept_as_a_note_for_staff(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    checkin = start(ctx, "daily_symptoms")

    assert text(client, ctx, "I'd say 4 today") == [ASK_PAIN]

    (row,) = answer_rows(ctx, checkin.id)
    assert (row.measure, row.value, row.status) == ("fatigue", 4, "answered")
    assert row.note == "i'd say today"
    assert row.raw_text == "I'd say 4 today"


@pytest.mark.parametrize("body", ["6-7", "6 or 7", "6 to 7", "6.5"])
def test_a_range_or_a_decimal_is_asked_again_for_one_number_and_nothing_is_stored(
    client: FlaskClient, ctx: Context, world: World, body: str
) -> None:
    checkin = start(ctx, "daily_symptoms")

    assert text(client, ctx, body) == [f"{REASK_ONE} {ASK_FATIGUE}"]

    assert answers(ctx, checkin.id) == {}
    assert open_checkin(ctx).state["step"] == 0


def test_a_number_outside_the_scale_is_asked_again_naming_zero_to_ten(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    checkin = start(ctx, "daily_symptoms")

    (reply,) = text(client, ctx, "11")

    assert reply == f"{REASK} {ASK_FATIGUE}"
    assert "0 to 10" in reply
    assert answers(ctx, checkin.id) == {}


def test_skip_moves_on_and_stores_the_question_as_skipped_with_no_value(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    checkin = start(ctx, "daily_symptoms")

    assert text(client, ctx, "SKIP") == [ASK_PAIN]

    assert answers(ctx, checkin.id) == {"fatigue": (None, "skipped")}


def test_naming_an_earlier_question_corrects_its_stored_answer_in_place(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    checkin = start(ctx, "daily_symptoms")
    assert text(client, ctx, "6") == [ASK_PAIN]
    assert text(client, ctx, "3") == [ASK_MOOD]

    assert text(client, ctx, "actually pain 5") == [ASK_MOOD]  # mood is still what is asked
    (thanks,) = text(client, ctx, "7")

    assert thanks.startswith("Thank you")
    assert answers(ctx, checkin.id) == {
        "fatigue": (6, "answered"),
        "pain": (5, "answered"),
        "mood": (7, "answered"),
    }
    assert [r.measure for r in answer_rows(ctx, checkin.id)].count("pain") == 1


# --- 2. weekly_mood (PHQ-2) -------------------------------------------------------------------


def test_phq2_label_answers_store_the_items_and_total_and_a_positive_screen_alerts_quietly(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    checkin = start(ctx, "weekly_mood")
    assert bodies_to(fake_twilio, ALICE) == [render("ask_phq2_interest", "en")]

    assert text(client, ctx, "several days") == [render("ask_phq2_down", "en")]
    (thanks,) = text(client, ctx, "nearly every day")

    assert thanks.startswith("Thank you")
    assert answers(ctx, checkin.id) == {
        "phq2_interest": (1, "answered"),
        "phq2_down": (3, "answered"),
        "phq2_total": (4, "answered"),
    }
    (alert,) = alerts_of(ctx)
    assert (alert.kind, alert.severity, alert.status) == ("phq2_positive", "routine", "open")
    assert [j["value"] for j in alert.evidence[0]["judged"]] == [4]
    assert fake_twilio.to(BOB) == [] and fake_twilio.to(DAVE) == []  # nobody woken for it
    assert count(ctx, AlertNotification) == 0


def test_a_phq2_total_of_two_opens_no_alert(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    checkin = start(ctx, "weekly_mood")

    text(client, ctx, "several days")
    text(client, ctx, "1")

    assert answers(ctx, checkin.id)["phq2_total"] == (2, "answered")
    assert alerts_of(ctx) == []
    assert fake_twilio.to(BOB) == []


# --- 3. post_infusion -------------------------------------------------------------------------


def test_none_answers_every_side_effect_question_with_no_and_then_mood_is_asked(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    checkin = start(ctx, "post_infusion")
    assert bodies_to(fake_twilio, ALICE) == [render("ask_se_dissociation", "en")]

    assert text(client, ctx, "none") == [ASK_MOOD]
    stored = answers(ctx, checkin.id)
    side_effects = {m: v for m, v in stored.items() if m.startswith("se_")}
    assert len(side_effects) == 9
    assert set(side_effects.values()) == {(0, "answered")}
    assert "mood" not in stored

    (thanks,) = text(client, ctx, "6")
    assert thanks.startswith("Thank you")
    assert answers(ctx, checkin.id)["mood"] == (6, "answered")
    assert alerts_of(ctx) == []


def test_blood_in_the_urine_pages_the_on_call_clinician_without_naming_patient_drug_or_symptom(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    checkin = start(ctx, "post_infusion")
    asked = bodies_to(fake_twilio, ALICE)
    while asked[-1] != ASK_BLOOD:
        assert len(asked) < 10, f"never asked about blood in the urine: {asked}"
        asked += text(client, ctx, "no")

    assert text(client, ctx, "yes") == [ASK_MOOD]

    stored = answers(ctx, checkin.id)
    assert stored["se_blood_in_urine"] == (1, "answered")
    assert sum(1 for v, _ in stored.values() if v == 0) == 8
    (alert,) = alerts_of(ctx)
    assert (alert.kind, alert.severity, alert.status) == ("side_effect", "high", "open")
    (page,) = fake_twilio.to(BOB)
    assert alert.ref in page.body and "HIGH" in page.body and "side effect" in page.body
    assert_no_phi(page.body)
    assert fake_twilio.to(DAVE) == []

    text(client, ctx, "1")  # mood 1: a severe reading, a second page

    kinds = {a.kind: a for a in alerts_of(ctx)}
    assert set(kinds) == {"side_effect", "severe"}
    pages = fake_twilio.to(BOB)
    assert len(pages) == 2 and kinds["severe"].ref in pages[1].body
    for sent in pages:
        assert_no_phi(sent.body)
        assert "ketamine" not in sent.body.lower() and "Alice" not in sent.body
    assert fake_twilio.to(DAVE) == []


# --- 4. one check-in open per patient --------------------------------------------------------


def test_send_now_of_the_same_flow_while_one_is_open_is_skipped_and_sends_nothing(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    first = start(ctx, "daily_symptoms")
    text(client, ctx, "5")

    with pytest.raises(PatientError, match="skipped"):
        sendnow.start_now(ctx, ALICE, "daily_symptoms", actor="test")

    assert [c.status for c in checkins(ctx)] == ["open", "skipped"]
    assert "still open" in checkins(ctx)[1].state["reason"]
    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE]
    assert text(client, ctx, "3") == [ASK_MOOD]  # the first one carries on
    assert answers(ctx, first.id) == {"fatigue": (5, "answered"), "pain": (3, "answered")}


def test_a_scheduled_daily_check_in_due_while_one_is_open_is_skipped_and_sends_nothing(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    add_schedule(ctx, ALICE, "daily_symptoms", time(11, 0), EVERY_DAY)
    tick_at(ctx, clock, 10, 10, 0)  # before her own 11:00 slot: nothing
    first = start(ctx, "daily_symptoms")
    text(client, ctx, "5")

    tick_at(ctx, clock, 10, 11, 0)

    first_run, scheduled = checkins(ctx)
    assert (first_run.status, scheduled.status) == ("open", "skipped")
    assert scheduled.due_at == datetime(2026, 3, 10, 11, 0, tzinfo=NEW_YORK)
    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE]
    assert answers(ctx, first.id) == {"fatigue": (5, "answered")}


def test_another_flow_due_while_a_check_in_is_open_waits_and_is_sent_after_it_completes(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    add_schedule(ctx, ALICE, "weekly_mood", time(9, 30), "tue")  # 2026-03-10 is a Tuesday
    tick_at(ctx, clock, 10, 9, 0)
    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE]

    tick_at(ctx, clock, 10, 9, 30)

    daily, weekly = checkins(ctx)
    assert (daily.flow, daily.status) == ("daily_symptoms", "open")
    assert (weekly.flow, weekly.status) == ("weekly_mood", "pending")
    retry_at = datetime(2026, 3, 10, 9, 30, tzinfo=NEW_YORK) + scheduler.REQUEUE_DELAY
    assert weekly.due_at == retry_at
    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE]

    at(clock, 10, 9, 40)
    (thanks,) = text(client, ctx, "5 5 5")
    assert thanks.startswith("Thank you")
    tick_at(ctx, clock, 10, 9, 41)  # completed, but the requeue delay has not passed
    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE]

    clock.at = retry_at
    assert -1 not in scheduler.tick(ctx).values()

    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE, render("ask_phq2_interest", "en")]
    assert [(c.flow, c.status) for c in checkins(ctx)] == [
        ("daily_symptoms", "completed"),
        ("weekly_mood", "open"),
    ]
    assert text(client, ctx, "0") == [render("ask_phq2_down", "en")]  # answers the weekly one


# --- 5. one reminder ---------------------------------------------------------------------------


def test_three_hours_without_a_reply_bring_exactly_one_reminder_repeating_the_question(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    tick_at(ctx, clock, 10, 9, 0)
    tick_at(ctx, clock, 10, 11, 59)
    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE]

    tick_at(ctx, clock, 10, 12, 0)

    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE, f"{REMINDER} {ASK_FATIGUE}"]
    at(clock, 10, 12, 30)
    assert text(client, ctx, "4") == [ASK_PAIN]
    for hour in (13, 16, 20):
        tick_at(ctx, clock, 10, hour, 0)
    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE, f"{REMINDER} {ASK_FATIGUE}"]


def test_a_reply_postpones_the_reminder_which_then_repeats_the_current_question(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    tick_at(ctx, clock, 10, 9, 0)
    at(clock, 10, 10, 30)
    assert text(client, ctx, "5") == [ASK_PAIN]

    tick_at(ctx, clock, 10, 12, 0)  # 3 h after the question, 1.5 h after her reply
    tick_at(ctx, clock, 10, 13, 29)
    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE]

    tick_at(ctx, clock, 10, 13, 30)

    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE, f"{REMINDER} {ASK_PAIN}"]
    assert scheduler.remind(ctx) == 0


def test_a_reminder_falling_in_quiet_hours_is_held_and_dropped_once_the_check_in_expired(
    ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    add_schedule(ctx, ALICE, "daily_symptoms", time(19, 30), EVERY_DAY)
    tick_at(ctx, clock, 10, 19, 30)
    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE]

    tick_at(ctx, clock, 10, 22, 30)  # 3 h of silence, but 22:30 is inside quiet hours

    (held,) = reminders(ctx)
    assert (held.status, held.twilio_sid) == ("pending", None)
    assert held.send_after == datetime(2026, 3, 11, 8, 0, tzinfo=NEW_YORK)
    for hour, minute in ((23, 0), (23, 59)):
        tick_at(ctx, clock, 10, hour, minute)
    for hour, minute in ((0, 0), (3, 0), (7, 59), (8, 0), (8, 30)):
        tick_at(ctx, clock, 11, hour, minute)

    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE]  # the reminder never went out
    (run,) = checkins(ctx)
    assert run.status == "expired"
    (dropped,) = reminders(ctx)
    assert (dropped.status, dropped.twilio_sid) == ("suppressed", None)


def reminders(ctx: Context) -> list[Message]:
    with ctx.db.session() as session:
        stmt = select(Message).where(Message.purpose == "reminder").order_by(Message.id)
        return list(session.scalars(stmt))


# --- 6. expiry and late replies ----------------------------------------------------------------


def test_an_unfinished_check_in_expires_at_midnight_with_the_rest_stored_missing_not_zero(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World
) -> None:
    tick_at(ctx, clock, 10, 9, 0)
    at(clock, 10, 9, 10)
    text(client, ctx, "4")
    tick_at(ctx, clock, 10, 23, 59)
    assert checkins(ctx)[0].status == "open"

    tick_at(ctx, clock, 11, 0, 1)

    (run,) = checkins(ctx)
    assert run.status == "expired"
    assert answers(ctx, run.id) == {
        "fatigue": (4, "answered"),
        "pain": (None, "missing"),
        "mood": (None, "missing"),
    }


def test_a_reply_after_expiry_is_kept_as_late_and_never_answers_the_next_days_check_in(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    tick_at(ctx, clock, 10, 9, 0)
    at(clock, 10, 9, 10)
    text(client, ctx, "4")
    tick_at(ctx, clock, 11, 0, 1)
    (expired,) = checkins(ctx)
    before = answers(ctx, expired.id)

    at(clock, 11, 7, 0)
    late_sid = new_sid()
    assert text(client, ctx, "6", sid=late_sid) == [LATE]

    late = inbound_message(ctx, late_sid)
    assert (late.purpose, late.checkin_id) == ("late_reply", expired.id)
    assert answers(ctx, expired.id) == before
    assert count(ctx, Answer) == 3

    tick_at(ctx, clock, 11, 9, 0)  # the next day's check-in opens
    today = open_checkin(ctx)
    assert today.id != expired.id
    assert answers(ctx, today.id) == {}  # the 07:00 "6" was not carried over
    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE, ASK_FATIGUE]

    at(clock, 11, 9, 5)
    assert text(client, ctx, "7") == [ASK_PAIN]
    assert answers(ctx, today.id) == {"fatigue": (7, "answered")}
    assert answers(ctx, expired.id) == before
    assert inbound_message(ctx, late_sid).checkin_id == expired.id


def test_a_reply_after_midnight_before_any_tick_still_gets_the_closed_reply(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World
) -> None:
    checkin = start(ctx, "daily_symptoms")
    at(clock, 11, 0, 30)
    sid = new_sid()

    assert text(client, ctx, "6", sid=sid) == [LATE]

    assert checkins(ctx)[0].status == "expired"
    assert answers(ctx, checkin.id) == {
        "fatigue": (None, "missing"),
        "pain": (None, "missing"),
        "mood": (None, "missing"),
    }
    late = inbound_message(ctx, sid)
    assert (late.purpose, late.checkin_id) == ("late_reply", checkin.id)


# --- 7. free-text stop requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "body"),
    [
        (ALICE, "please stop texting me"),
        (ALICE, "Please STOP texting me!!"),
        (ROSA, "no me escriban mas"),
        (ROSA, "No me escriban más"),
    ],
)
def test_a_free_text_stop_request_is_not_an_answer_keeps_them_subscribed_and_says_reply_stop(
    client: FlaskClient,
    ctx: Context,
    world: World,
    fake_twilio: FakeTwilio,
    phone: str,
    body: str,
) -> None:
    enrol_rosa(ctx)
    language = "es" if phone == ROSA else "en"
    checkin = start(ctx, "daily_symptoms", phone)
    text(client, ctx, "5", sender=phone)
    sid = new_sid()

    (reply,) = text(client, ctx, body, sid=sid, sender=phone)

    assert reply == render("stop_request", language)
    assert reply.endswith("STOP.")
    assert answers(ctx, checkin.id) == {"fatigue": (5, "answered")}
    still_open = open_checkin(ctx, phone)
    assert still_open.state["step"] == 1
    assert inbound_message(ctx, sid).purpose == "stop_request"
    with ctx.db.session() as session:
        patient = session.get_one(Patient, patient_id(ctx, phone))
        assert patient.status == "active"
        kinds = session.scalars(
            select(ConsentEvent.kind).where(ConsentEvent.patient_id == patient.id)
        ).all()
        assert kinds == ["consent_given"]
    (alert,) = alerts_of(ctx, phone)
    assert (alert.kind, alert.severity, alert.status) == ("stop_request", "routine", "open")
    assert fake_twilio.to(BOB) == [] and count(ctx, AlertNotification) == 0
    assert text(client, ctx, "3", sender=phone) == [render("ask_mood", language)]


# --- 8. crisis in the states test_webhooks does not cover -------------------------------------


def test_crisis_language_after_a_check_in_expired_gets_988_and_pages_on_call(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    tick_at(ctx, clock, 10, 9, 0)
    tick_at(ctx, clock, 11, 0, 1)
    assert [c.status for c in checkins(ctx)] == ["expired"]
    at(clock, 11, 2, 0)  # quiet hours: the crisis reply is exempt

    (reply,) = text(client, ctx, "I can't go on anymore")

    assert reply == render("crisis", "en")
    assert "988" in reply and "911" in reply
    (alert,) = alerts_of(ctx)
    assert (alert.kind, alert.severity) == ("crisis", "urgent")
    (page,) = fake_twilio.to(BOB)
    assert alert.ref in page.body
    assert_no_phi(page.body)
    assert fake_twilio.to(DAVE) == []
    assert [c.status for c in checkins(ctx)] == ["expired"]
    tick_at(ctx, clock, 11, 9, 0)  # scripted questions stay paused while the alert is open
    assert bodies_to(fake_twilio, ALICE) == [ASK_FATIGUE]


def test_crisis_language_from_an_unknown_number_gets_988_every_time_and_enrols_nobody(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    (generic,) = text(client, ctx, "hello who is this", sender=STRANGER)
    assert "did not recognise" in generic
    patients_before = count(ctx, Patient)

    (reply,) = text(client, ctx, "I want to kill myself", sender=STRANGER)
    (again,) = text(client, ctx, "i want to die", sender=STRANGER)

    assert reply == again == render("crisis", "en")
    assert "988" in reply and "911" in reply
    assert count(ctx, Patient) == patients_before
    with ctx.db.session() as session:
        assert session.scalar(select(Patient).where(Patient.phone == STRANGER)) is None
    assert count(ctx, Alert) == 0
    assert fake_twilio.sent == []


@pytest.mark.parametrize("body", ["quiero morir", "ya no puedo más", "I want to kill myself"])
def test_a_spanish_speaking_patient_gets_the_crisis_reply_in_spanish(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio, body: str
) -> None:
    enrol_rosa(ctx)
    start(ctx, "daily_symptoms", ROSA)

    (reply,) = text(client, ctx, body, sender=ROSA)

    assert reply == render("crisis", "es")
    assert "988" in reply and "911" in reply and "peligro" in reply
    (alert,) = alerts_of(ctx, ROSA)
    assert (alert.kind, alert.severity) == ("crisis", "urgent")
    assert [c.status for c in checkins(ctx, ROSA)] == ["interrupted"]
    (page,) = fake_twilio.to(BOB)
    assert "Rosa" not in page.body and ROSA not in page.body


# --- 9. a Spanish-speaking patient --------------------------------------------------------------


def test_a_spanish_speaking_patient_gets_every_check_in_text_in_spanish_and_spanish_numbers_work(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World, fake_twilio: FakeTwilio
) -> None:
    enrol_rosa(ctx)
    es = {key: render(key, "es") for key in ("ask_fatigue", "ask_pain", "ask_mood")}
    es["reask"] = render("reask", "es", {"low": 0, "high": 10})

    tick_at(ctx, clock, 10, 9, 0)
    (first,) = bodies_to(fake_twilio, ROSA)
    assert first == es["ask_fatigue"] and first.startswith("Cuanto cansancio")

    at(clock, 10, 9, 5)
    replies = text(client, ctx, "siete", sender=ROSA)
    replies += text(client, ctx, "no se", sender=ROSA)
    tick_at(ctx, clock, 10, 12, 5)  # no reply for 3 h: the reminder, in Spanish
    at(clock, 10, 12, 10)
    replies += text(client, ctx, "dos", sender=ROSA)
    replies += text(client, ctx, "ocho", sender=ROSA)

    assert replies == [
        es["ask_pain"],
        f"{es['reask']} {es['ask_pain']}",
        es["ask_mood"],
        render("thanks", "es"),
    ]
    assert bodies_to(fake_twilio, ROSA) == [
        es["ask_fatigue"],
        f"{render('reminder', 'es')} {es['ask_pain']}",
    ]
    run = checkins(ctx, ROSA)[0]
    assert answers(ctx, run.id) == {
        "fatigue": (7, "answered"),
        "pain": (2, "answered"),
        "mood": (8, "answered"),
    }


def test_a_spanish_speaking_patient_answers_the_phq2_with_spanish_label_words(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    enrol_rosa(ctx)
    checkin = start(ctx, "weekly_mood", ROSA)
    assert bodies_to(fake_twilio, ROSA) == [render("ask_phq2_interest", "es")]

    assert text(client, ctx, "varios días", sender=ROSA) == [render("ask_phq2_down", "es")]
    assert text(client, ctx, "Casi todos los días", sender=ROSA) == [render("thanks", "es")]

    assert answers(ctx, checkin.id)["phq2_total"] == (4, "answered")


# --- 10. re-delivered MessageSid ---------------------------------------------------------------


def test_a_redelivered_message_gets_the_same_reply_again_and_records_nothing_new(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    checkin = start(ctx, "daily_symptoms")
    first_sid = new_sid()
    assert text(client, ctx, "6", sid=first_sid) == [ASK_PAIN]
    assert text(client, ctx, "4") == [ASK_MOOD]
    before = counts(ctx)

    again = text(client, ctx, "6", sid=first_sid)

    assert again == [ASK_PAIN]  # the reply Twilio missed, not the current question
    assert counts(ctx) == before
    assert answers(ctx, checkin.id) == {"fatigue": (6, "answered"), "pain": (4, "answered")}
    assert open_checkin(ctx).state["step"] == 2
    with ctx.db.session() as session:
        rows = session.scalars(select(Message).where(Message.twilio_sid == first_sid)).all()
        assert len(rows) == 1


def test_a_redelivered_crisis_message_gets_988_again_without_a_second_page(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    sid = new_sid()
    (reply,) = text(client, ctx, "I want to kill myself", sid=sid)
    before = counts(ctx)

    assert text(client, ctx, "I want to kill myself", sid=sid) == [reply]

    assert counts(ctx) == before
    assert len(fake_twilio.to(BOB)) == 1


@pytest.mark.parametrize(
    ("body", "expected"), [("5\x00", [ASK_PAIN]), ("\x00", [f"{REASK} {ASK_FATIGUE}"])]
)
def test_a_text_with_a_nul_character_is_answered_and_kept_on_both_databases(
    client: FlaskClient, ctx: Context, world: World, body: str, expected: list[str]
) -> None:
    checkin = start(ctx, "daily_symptoms")
    sid = new_sid()

    assert text(client, ctx, body, sid=sid) == expected

    assert inbound_message(ctx, sid).body == body.replace("\x00", "\ufffd")
    stored = answers(ctx, checkin.id)
    assert stored == ({"fatigue": (5, "answered")} if body.startswith("5") else {})


# --- 11. any text at all, mid-check-in ----------------------------------------------------------

_numbers = itertools.count()
VALID_ANSWER = {"scale": "5", "choice": "1", "yesno": "no"}
ODD_BODIES = [
    "",
    " ",
    "<script>alert(1)</script>",
    "<Response><Message>hi</Message></Response>",
    "]]><![CDATA[",
    "&amp; 5 &lt;",
    "8 6 3",
    "pain 4, fatigue 6",
    "pain 4 pain 5",
    "mood 99",
    "7/10",
    "3/5",
    "-1",
    "\x00",
    "5\x00",
    "\x07\x1b[31m7",
    "\u202e7",
    "\U0001f600",
    "\U0001f44d",
    "\uff17",  # fullwidth 7
    "\u0667",  # Arabic-Indic 7
    "NONE",
    "yes no",
    "si",
    "SKIP",
    "HELP",
    "STOP",
    "stop texting",
    "several days",
    "x" * 1600,
    "9" * 1600,
    "5 " * 800,
]
BODIES = st.one_of(
    st.sampled_from(ODD_BODIES),
    st.text(max_size=1600),
    st.text(st.characters(categories=["Cc", "Cf", "Zs", "Nd", "So"]), max_size=40),
    st.text(st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=20),
    st.lists(st.integers(-20, 150), min_size=1, max_size=5).map(lambda xs: " ".join(map(str, xs))),
    st.tuples(
        st.sampled_from(["pain", "fatigue", "mood", "actually", "i'd say", "dolor", "siete"]),
        st.integers(-5, 20),
        st.sampled_from(["", " today", ", mood 3", "!", " 💊"]),
    ).map(lambda t: f"{t[0]} {t[1]}{t[2]}"),
)


@pytest.fixture
def sqlite_app(sqlite_url: str, fake_twilio: FakeTwilio) -> Iterator[tuple[Context, FlaskClient]]:
    """The app on SQLite only, shared by every example of the property test."""
    ctx = make_context(load_settings(twilio_env(sqlite_url, fake_twilio)))
    ctx.clock = FrozenClock(T0)
    app = create_app({"TESTING": True}, settings=ctx.settings)
    app.extensions["checkin"].db.dispose()
    app.extensions["checkin"] = ctx
    yield ctx, app.test_client()
    ctx.db.dispose()


def _fresh_patient_mid_check_in(ctx: Context, client: FlaskClient, flow: str, done: int) -> str:
    """A new patient with `flow` open and its first `done` questions answered."""
    n = next(_numbers)
    phone = f"+1617{200 + n // 10000:03d}{n % 10000:04d}"
    with ctx.db.session() as session:
        enrol(
            session,
            NewPatient(phone, f"Patient {n}", "America/New_York"),
            T0 - timedelta(days=1),
            actor="test",
            sender=FROM_NUMBER,
            welcome=False,
        )
    start(ctx, flow, phone)
    for question in flows.current(flow).questions[:done]:
        text(client, ctx, VALID_ANSWER[question.kind], sender=phone)
    assert open_checkin(ctx, phone).state["step"] == done
    return phone


@hypothesis.settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(flow=st.sampled_from(flows.FLOW_NAMES), done=st.integers(0, 9), body=BODIES)
def test_any_text_mid_check_in_gets_twiml_and_is_stored_as_a_value_only_when_it_was_read(
    sqlite_app: tuple[Context, FlaskClient], flow: str, done: int, body: str
) -> None:
    ctx, client = sqlite_app
    questions = flows.current(flow).questions
    done = min(done, len(questions) - 1)
    phone = _fresh_patient_mid_check_in(ctx, client, flow, done)
    open_questions = questions[done:]
    reading = interpret(body, [q.slot() for q in open_questions], [q.slot() for q in questions])
    handled_first = (
        crisis.detect(body) is not None
        or keywords.classify(body, opted_out=False) is not None
        or keywords.is_stop_request(body)
    )
    sid = new_sid()

    response = post(client, ctx, body, sid, phone)

    replies = twiml_messages(response)
    assert len(replies) == 1 and replies[0]
    message = inbound_message(ctx, sid)
    with ctx.db.session() as session:
        valued = session.scalars(
            select(Answer).where(Answer.message_id == message.id, Answer.value.is_not(None))
        ).all()
    accepted = reading.kind == "answers" or (
        reading.kind == "none" and open_questions[0].group is not None
    )
    if handled_first or not accepted:
        assert valued == [], f"{body!r} ({reading.kind}) stored {[a.measure for a in valued]}"
    else:
        assert valued, f"{body!r} was read as {reading} but nothing was stored"
        stored = {a.measure: a.value for a in valued}
        read = {open_questions[0].measure if m == "" else m: v for m, v in reading.values.items()}
        assert {m: v for m, v in stored.items() if m in read} == read
        assert message.checkin_id == checkins(ctx, phone)[0].id
