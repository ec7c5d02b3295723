"""Outbound SMS through the official Twilio client, over real HTTP, to the fake Twilio.

The outbox saves each Message row before the send and records the SID or the error after it;
Twilio's error codes have consequences (retry, opt-out, invalid number); quiet hours defer
scheduled texts; opted-out patients are never texted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from checkin import outbox
from checkin.clock import FrozenClock
from checkin.config import load_settings
from checkin.consent import opt_out
from checkin.context import Context, make_context
from checkin.models import ConsentEvent, Message, Patient
from checkin.transports import TransportError
from checkin.transports.twilio_sms import TwilioSms
from tests.conftest import ALICE, BOB, PUBLIC_URL, T0, World, twilio_env
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio

BODY = "How tired have you felt today? Reply 0 (none) to 10 (worst)."
SERVICE_SID = "MG" + "2" * 32


def queue_for_alice(ctx: Context, world: World, purpose: str = "checkin", body: str = BODY) -> int:
    with ctx.db.session() as session:
        message = outbox.queue(
            session,
            to=ALICE,
            from_number=ctx.settings.sender,
            body=body,
            purpose=purpose,
            patient_id=world.alice_id,
            now=ctx.clock(),
        )
        return message.id


def message(ctx: Context, message_id: int) -> Message:
    with ctx.db.session() as session:
        return session.get_one(Message, message_id)


def alice(ctx: Context, world: World) -> Patient:
    with ctx.db.session() as session:
        return session.get_one(Patient, world.alice_id)


def consent_sources(ctx: Context, world: World) -> list[tuple[str, str]]:
    with ctx.db.session() as session:
        rows = session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.patient_id == world.alice_id)
            .order_by(ConsentEvent.id)
        )
        return [(e.kind, e.source) for e in rows]


# --- the send itself --------------------------------------------------------------------------


def test_a_send_reaches_twilio_over_http_with_to_from_body_and_status_callback(
    ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    message_id = queue_for_alice(ctx, world)
    assert message(ctx, message_id).status == "pending"  # saved before anything was sent

    assert outbox.deliver(ctx, message_id) == "queued"

    (sent,) = fake_twilio.sent
    assert (sent.to, sent.from_, sent.body) == (ALICE, FROM_NUMBER, BODY)
    assert sent.messaging_service_sid is None
    # The row's id rides on the callback URL: it existed before the request went out.
    assert sent.status_callback == f"{PUBLIC_URL}/twilio/status?message={message_id}"
    row = message(ctx, message_id)
    assert (row.twilio_sid, row.status, row.attempts) == (sent.sid, "queued", 1)
    assert row.sent_at == T0 and row.error_code is None


def test_a_message_row_is_saved_before_the_send_and_keeps_the_error_when_twilio_fails(
    ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.fail_next(500, None, "Internal Server Error")
    message_id = queue_for_alice(ctx, world)

    assert outbox.deliver(ctx, message_id) == "retrying"

    row = message(ctx, message_id)
    assert fake_twilio.requests == 1 and fake_twilio.sent == []
    assert row.twilio_sid is None
    assert row.error_message is not None and "500" in row.error_message
    assert (row.to_number, row.body, row.attempts) == (ALICE, BODY, 1)

    assert outbox.deliver(ctx, message_id) == "queued"  # the same row, sent on the retry
    row = message(ctx, message_id)
    assert row.twilio_sid == fake_twilio.sent[0].sid and row.attempts == 2


@pytest.fixture
def service_ctx(db_url: str, fake_twilio: FakeTwilio, clock: FrozenClock) -> Iterator[Context]:
    settings = load_settings(
        twilio_env(db_url, fake_twilio, TWILIO_MESSAGING_SERVICE_SID=SERVICE_SID)
    )
    context = make_context(settings)
    context.clock = clock
    yield context
    context.db.dispose()


def test_a_messaging_service_sid_is_sent_instead_of_a_from_number(
    service_ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    message_id = queue_for_alice(service_ctx, world)

    assert outbox.deliver(service_ctx, message_id) == "queued"

    (sent,) = fake_twilio.sent
    assert sent.messaging_service_sid == SERVICE_SID
    assert "From" not in sent.form
    assert sent.form["MessagingServiceSid"] == SERVICE_SID


def test_the_transport_sends_only_a_messaging_service_sid_when_no_from_number_is_set(
    fake_twilio: FakeTwilio,
) -> None:
    sms = TwilioSms(
        ACCOUNT_SID,
        AUTH_TOKEN,
        from_number=None,
        messaging_service_sid=SERVICE_SID,
        api_base_url=fake_twilio.base_url,
    )

    result = sms.send_sms(ALICE, "hello", status_callback=None)

    (sent,) = fake_twilio.sent
    assert (result.sid, result.status) == (sent.sid, "queued")
    assert sent.form.keys() == {"To", "Body", "MessagingServiceSid"}


# --- transient failures retry, then give up -------------------------------------------------


@pytest.mark.parametrize(("http_status", "code"), [(429, 20429), (500, None), (503, None)])
def test_a_rate_limit_or_server_error_is_retried_later_with_attempts_counted(
    ctx: Context,
    world: World,
    fake_twilio: FakeTwilio,
    clock: FrozenClock,
    http_status: int,
    code: int | None,
) -> None:
    fake_twilio.fail_next(http_status, code, "Too Many Requests", times=2)
    message_id = queue_for_alice(ctx, world)

    assert outbox.deliver(ctx, message_id) == "retrying"
    first = message(ctx, message_id)
    assert (first.status, first.attempts, first.error_code) == ("pending", 1, code)
    assert first.send_after is not None and first.send_after > clock()
    assert outbox.deliver_due(ctx) == 0  # not before its backoff ends

    clock.at = first.send_after
    assert outbox.deliver_due(ctx) == 1
    second = message(ctx, message_id)
    assert (second.status, second.attempts) == ("pending", 2)
    assert second.send_after is not None and second.send_after > clock()

    clock.at = second.send_after
    assert outbox.deliver_due(ctx) == 1
    row = message(ctx, message_id)
    assert (row.status, row.attempts) == ("queued", 3)
    assert [s.to for s in fake_twilio.sent] == [ALICE]
    assert fake_twilio.requests == 3


def test_a_send_that_keeps_failing_is_marked_failed_after_max_attempts(
    ctx: Context, world: World, fake_twilio: FakeTwilio, clock: FrozenClock
) -> None:
    fake_twilio.fail_next(429, 20429, "Too Many Requests", times=outbox.MAX_ATTEMPTS + 3)
    message_id = queue_for_alice(ctx, world)

    assert outbox.deliver(ctx, message_id) == "retrying"
    for attempt in range(2, outbox.MAX_ATTEMPTS):
        clock.advance(minutes=30)
        assert outbox.deliver_due(ctx) == 1
        assert (message(ctx, message_id).status, message(ctx, message_id).attempts) == (
            "pending",
            attempt,
        )
    clock.advance(minutes=30)
    assert outbox.deliver_due(ctx) == 1  # the last allowed attempt

    row = message(ctx, message_id)
    assert (row.status, row.attempts, row.error_code) == ("failed", outbox.MAX_ATTEMPTS, 20429)
    clock.advance(hours=2)
    assert outbox.deliver_due(ctx) == 0  # given up: nothing more goes to Twilio
    assert fake_twilio.requests == outbox.MAX_ATTEMPTS
    assert alice(ctx, world).status == "active"  # a rate limit says nothing about the patient


# --- permanent failures have consequences ---------------------------------------------------


def test_error_21610_opts_the_patient_out_and_is_not_retried(
    ctx: Context, world: World, fake_twilio: FakeTwilio, clock: FrozenClock
) -> None:
    fake_twilio.fail_next(400, 21610, "Attempt to send to unsubscribed recipient")
    message_id = queue_for_alice(ctx, world)

    assert outbox.deliver(ctx, message_id) == "failed"

    row = message(ctx, message_id)
    assert (row.status, row.error_code, row.attempts) == ("failed", 21610, 1)
    assert alice(ctx, world).status == "opted_out"
    assert consent_sources(ctx, world)[-1] == ("opted_out", "twilio_error_21610")
    clock.advance(hours=1)
    assert outbox.deliver_due(ctx) == 0
    assert outbox.deliver(ctx, message_id) == "taken"
    assert fake_twilio.requests == 1

    later = queue_for_alice(ctx, world, purpose="reply", body="Thanks")
    assert outbox.deliver(ctx, later) == "suppressed"
    assert fake_twilio.requests == 1


@pytest.mark.parametrize("code", [21211, 21614])
def test_an_invalid_or_landline_number_is_flagged_and_not_retried(
    ctx: Context, world: World, fake_twilio: FakeTwilio, clock: FrozenClock, code: int
) -> None:
    fake_twilio.fail_next(400, code, "The 'To' number is not a valid phone number.")
    message_id = queue_for_alice(ctx, world)

    assert outbox.deliver(ctx, message_id) == "failed"

    row = message(ctx, message_id)
    assert (row.status, row.error_code) == ("failed", code)
    assert alice(ctx, world).status == "number_invalid"
    assert consent_sources(ctx, world) == [("consent_given", "staff_enrolment")]  # not a STOP
    clock.advance(hours=1)
    assert outbox.deliver_due(ctx) == 0
    assert fake_twilio.requests == 1


def test_a_permanent_error_for_a_staff_page_does_not_touch_any_patient(
    ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.fail_next(400, 21211, "The 'To' number is not a valid phone number.")
    with ctx.db.session() as session:
        page = outbox.queue(
            session,
            to=BOB,
            from_number=ctx.settings.sender,
            body="checkin HIGH alert ABCDEF: severe. Details: https://x/alerts/ABCDEF",
            purpose="alert",
            staff_id=world.bob_id,
            now=ctx.clock(),
        ).id

    assert outbox.deliver(ctx, page) == "failed"

    assert alice(ctx, world).status == "active"


# --- who may be texted, and when --------------------------------------------------------------


@pytest.mark.parametrize("purpose", ["checkin", "reply", "alert"])
def test_an_opted_out_patient_is_never_texted(
    ctx: Context, world: World, fake_twilio: FakeTwilio, purpose: str
) -> None:
    with ctx.db.session() as session:
        patient = session.get_one(Patient, world.alice_id)
        opt_out(session, patient, ctx.clock(), source="sms_keyword", actor=ALICE)
    message_id = queue_for_alice(ctx, world, purpose=purpose)

    assert outbox.deliver(ctx, message_id) == "suppressed"

    row = message(ctx, message_id)
    assert row.status == "suppressed" and row.twilio_sid is None
    assert fake_twilio.requests == 0 and fake_twilio.sent == []
    assert outbox.deliver_due(ctx) == 0


# 22:30 in New York on 10 March 2026 (EDT, UTC-4) is 02:30 UTC on the 11th.
LATE_EVENING = datetime(2026, 3, 11, 2, 30, tzinfo=UTC)
NEXT_MORNING_8AM = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("purpose", ["checkin", "welcome"])
def test_a_scheduled_text_queued_in_quiet_hours_waits_until_8am_local(
    ctx: Context, world: World, fake_twilio: FakeTwilio, clock: FrozenClock, purpose: str
) -> None:
    clock.at = LATE_EVENING
    message_id = queue_for_alice(ctx, world, purpose=purpose)

    assert outbox.deliver(ctx, message_id) == "deferred"

    row = message(ctx, message_id)
    assert (row.status, row.send_after, row.attempts) == ("pending", NEXT_MORNING_8AM, 0)
    assert fake_twilio.requests == 0
    clock.at = NEXT_MORNING_8AM - timedelta(minutes=1)
    assert outbox.deliver_due(ctx) == 0
    assert fake_twilio.requests == 0

    clock.at = NEXT_MORNING_8AM
    assert outbox.deliver_due(ctx) == 1

    (sent,) = fake_twilio.sent  # deferred, not dropped
    assert sent.to == ALICE
    row = message(ctx, message_id)
    assert (row.status, row.twilio_sid, row.attempts) == ("queued", sent.sid, 1)


@pytest.mark.parametrize("purpose", ["reply", "alert", "crisis"])
def test_replies_and_alerts_are_not_held_by_quiet_hours(
    ctx: Context, world: World, fake_twilio: FakeTwilio, clock: FrozenClock, purpose: str
) -> None:
    clock.at = LATE_EVENING
    message_id = queue_for_alice(ctx, world, purpose=purpose, body="Thanks")

    assert outbox.deliver(ctx, message_id) == "queued"

    assert [s.to for s in fake_twilio.sent] == [ALICE]
    assert message(ctx, message_id).sent_at == LATE_EVENING


# --- the guard against the real Twilio ------------------------------------------------------


def test_a_transport_pointed_at_the_real_twilio_fails_loudly_in_tests(
    fake_twilio: FakeTwilio,
) -> None:
    sms = TwilioSms(
        ACCOUNT_SID,
        AUTH_TOKEN,
        from_number=FROM_NUMBER,
        messaging_service_sid=None,
        api_base_url="https://api.twilio.com",
    )

    with pytest.raises(RuntimeError, match="real Twilio at api.twilio.com"):
        sms.send_sms(ALICE, "this must never leave the machine", status_callback=None)

    assert fake_twilio.requests == 0


def test_the_outbox_pointed_at_the_real_twilio_raises_and_leaves_the_message_unsent(
    db_url: str, fake_twilio: FakeTwilio, world: World, clock: FrozenClock
) -> None:
    settings = load_settings(
        twilio_env(db_url, fake_twilio, TWILIO_API_BASE_URL="https://api.twilio.com")
    )
    real = make_context(settings)
    real.clock = clock
    try:
        message_id = queue_for_alice(real, world, purpose="reply")
        with pytest.raises(RuntimeError, match="real Twilio"):
            outbox.deliver(real, message_id)
        row = message(real, message_id)
    finally:
        real.db.dispose()

    # The claim stands (no SID, no 'sent'); its lease lets a later tick take it over.
    assert (row.status, row.twilio_sid, row.sent_at) == ("claimed", None, None)
    assert fake_twilio.requests == 0


def test_a_connection_failure_is_a_transient_transport_error(fake_twilio: FakeTwilio) -> None:
    base = fake_twilio.base_url
    fake_twilio.stop()
    sms = TwilioSms(
        ACCOUNT_SID,
        AUTH_TOKEN,
        from_number=FROM_NUMBER,
        messaging_service_sid=None,
        api_base_url=base,
    )

    with pytest.raises(TransportError) as raised:
        sms.send_sms(ALICE, "hello", status_callback=None)

    assert raised.value.permanent is False and raised.value.code is None
