"""A crisis reply never waits on paging: pages are sent after the response, and are safe
in the outbox if the process dies first."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from checkin import outbox
from checkin.context import Context
from checkin.models import Message
from checkin.simulate import twilio_inbound_params
from tests.conftest import ALICE, BOB, PUBLIC_URL, World
from tests.fake_twilio import AUTH_TOKEN, FakeTwilio


def _crisis_request(app: Flask, ctx: Context) -> object:
    from twilio.request_validator import RequestValidator

    params = twilio_inbound_params(ctx.settings, ALICE, "I want to kill myself")
    signature = RequestValidator(AUTH_TOKEN).compute_signature(f"{PUBLIC_URL}/twilio/sms", params)
    # buffered=False: the response is handed back before the server closes it, the moment a
    # real server has written the reply to Twilio.
    return app.test_client().post(
        "/twilio/sms", data=params, buffered=False, headers={"X-Twilio-Signature": signature}
    )


def test_the_988_reply_is_ready_before_any_page_is_sent(
    app: Flask, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    response = _crisis_request(app, ctx)
    assert b"988" in response.get_data()  # type: ignore[attr-defined]
    assert fake_twilio.to(BOB) == []  # nobody paged yet: the reply did not wait
    with ctx.db.session() as session:
        page = session.scalars(select(Message).where(Message.purpose == "alert")).one()
        assert page.status == "pending"  # saved before send
    response.close()  # type: ignore[attr-defined]  # the server has sent the reply
    assert len(fake_twilio.to(BOB)) == 1


def test_a_page_left_behind_by_a_dead_process_goes_out_on_the_next_tick(
    app: Flask, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    _crisis_request(app, ctx)  # never closed: the process died after replying
    assert fake_twilio.to(BOB) == []
    assert outbox.deliver_due(ctx) == 1
    assert len(fake_twilio.to(BOB)) == 1
