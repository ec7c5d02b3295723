"""The patient simulator (demo mode only) and the seeded demo story.

Outside demo mode the simulator is a 404, signed in or not. In demo mode a clinician plays
alice: her reply travels as a signed webhook through /twilio/sms and is stored exactly as a
Twilio webhook's would be.
"""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from checkin import demo
from checkin.config import Settings, load_settings
from checkin.context import Context
from checkin.models import Alert, Answer, CheckIn, Message, Patient, TreatmentEvent
from checkin.sendnow import start_now
from tests.conftest import ALICE, World, twilio_env
from tests.fake_twilio import FakeTwilio
from tests.test_web import login, token


@pytest.fixture
def demo_mode() -> bool:
    return True


@pytest.fixture
def settings(db_url: str, fake_twilio: FakeTwilio, demo_mode: bool) -> Settings:
    """This module's settings: demo mode unless a test parametrizes demo_mode=False."""
    extra = {"CHECKIN_DEMO": "1"} if demo_mode else {}
    return load_settings(twilio_env(db_url, fake_twilio, **extra))


def page_text(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return html.unescape(response.get_data(as_text=True))


@pytest.mark.parametrize("demo_mode", [False])
def test_simulator_is_404_outside_demo_mode(client: FlaskClient, world: World) -> None:
    assert client.get("/simulator").status_code == 404
    assert login(client).status_code == 303
    assert client.get("/").status_code == 200  # signed in for real
    assert client.get("/simulator").status_code == 404
    assert client.get(f"/simulator?patient={world.alice_id}").status_code == 404
    # The POST is refused before CSRF or anything else could matter.
    assert client.post(f"/simulator/{world.alice_id}/reply", data={"body": "6"}).status_code in (
        400,
        404,
    )
    assert "Simulator" not in page_text(client, "/")


def test_simulator_requires_sign_in(client: FlaskClient, world: World) -> None:
    response = client.get("/simulator")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_simulator_reply_is_a_real_webhook(client: FlaskClient, ctx: Context, world: World) -> None:
    assert start_now(ctx, ALICE, "daily_symptoms", actor="test").endswith("sent")
    with ctx.db.session() as db:
        question = db.scalars(
            select(Message)
            .where(Message.patient_id == world.alice_id, Message.direction == "outbound")
            .order_by(Message.id)
        ).all()[-1]
        question_body = question.body
    assert login(client).status_code == 303
    assert "Simulator" in page_text(client, "/")  # the nav offers it in demo mode

    listing = page_text(client, "/simulator")
    assert "Alice Example" in listing
    assert "Erin Other" not in listing  # another program's patient is not offered
    assert client.get(f"/simulator?patient={world.erin_id}").status_code == 404

    phone = f"/simulator?patient={world.alice_id}"
    assert question_body in page_text(client, phone)

    # No CSRF token: refused, nothing stored.
    refused = client.post(f"/simulator/{world.alice_id}/reply", data={"body": "6"})
    assert refused.status_code == 400
    response = client.post(
        f"/simulator/{world.alice_id}/reply", data={"csrf_token": token(client, phone), "body": "6"}
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith(phone)

    with ctx.db.session() as db:
        inbound = db.scalars(
            select(Message).where(
                Message.patient_id == world.alice_id, Message.direction == "inbound"
            )
        ).all()
        assert [(m.body, m.from_number, m.status) for m in inbound] == [("6", ALICE, "received")]
        assert inbound[0].twilio_sid and inbound[0].twilio_sid.startswith("SM")
        answers = db.scalars(select(Answer).where(Answer.patient_id == world.alice_id)).all()
        assert [(a.measure, a.value, a.raw_text) for a in answers] == [("fatigue", 6, "6")]
        after = db.scalars(
            select(Message)
            .where(
                Message.patient_id == world.alice_id,
                Message.direction == "outbound",
                Message.id > inbound[0].id,
            )
            .order_by(Message.id)
        ).all()
        assert after, "the webhook's reply (the next question) was stored"
        next_question = after[-1].body
    thread = page_text(client, phone)
    assert next_question in thread
    # Oldest first, like a phone: question, reply, next question.
    assert thread.index(question_body) < thread.index("Sent ·") < thread.index(next_question)


def test_simulator_reply_with_a_bad_token_is_refused_by_the_webhook(
    client: FlaskClient, ctx: Context, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator goes through the signature check: a wrongly signed reply stores nothing."""
    from checkin.web import simulator

    monkeypatch.setattr(simulator, "sign", lambda token, url, params: "not-a-signature")
    assert login(client).status_code == 303
    phone = f"/simulator?patient={world.alice_id}"
    client.post(
        f"/simulator/{world.alice_id}/reply", data={"csrf_token": token(client, phone), "body": "6"}
    )
    assert "HTTP 403" in page_text(client, phone)
    with ctx.db.session() as db:
        assert db.scalars(select(Message).where(Message.direction == "inbound")).all() == []


def test_demo_seed_has_open_worsening_and_crisis_alerts(ctx: Context) -> None:
    assert demo.seed(ctx) is True
    with ctx.db.session() as db:
        rows = db.execute(
            select(Alert.kind, Alert.severity, Alert.status, Patient.phone, Alert.evidence).join(
                Patient, Patient.id == Alert.patient_id
            )
        ).all()
    open_alerts = {
        (kind, phone): (severity, ev) for kind, severity, st, phone, ev in rows if st == "open"
    }
    severity, evidence = open_alerts[("worsening", demo.WORSENING_PHONE)]
    assert severity == "high"
    assert evidence[0]["rule"] == "worsening_vs_baseline"
    assert evidence[0]["measure"] == "pain"
    severity, evidence = open_alerts[("crisis", demo.CRISIS_PHONE)]
    assert severity == "urgent"
    assert evidence[0]["matched"]
    assert demo.seed(ctx) is False  # once only


def test_demo_seed_gives_each_patient_four_months_with_infusions_and_recent_texts(
    ctx: Context,
) -> None:
    demo.seed(ctx)
    now = ctx.clock()
    with ctx.db.session() as db:
        for phone in demo.DEMO_PHONES:
            patient = db.scalars(select(Patient).where(Patient.phone == phone)).one()
            days = db.scalars(
                select(CheckIn.local_date).where(
                    CheckIn.patient_id == patient.id, CheckIn.flow == "daily_symptoms"
                )
            ).all()
            assert len(set(days)) == demo.HISTORY_DAYS
            statuses = db.scalars(
                select(CheckIn.status).where(CheckIn.patient_id == patient.id)
            ).all()
            answered = statuses.count("completed") / len(statuses)
            assert 0.8 <= answered <= 0.97, (phone, answered)
            infusions = db.scalars(
                select(TreatmentEvent.occurred_on).where(TreatmentEvent.patient_id == patient.id)
            ).all()
            assert len(infusions) == len(demo.INFUSION_DAYS_AGO)
            phq2 = db.scalars(
                select(Answer.value).where(
                    Answer.patient_id == patient.id, Answer.measure == "phq2_total"
                )
            ).all()
            assert len(phq2) >= demo.HISTORY_DAYS // 7
            texts = db.scalars(
                select(Message.created_at).where(Message.patient_id == patient.id)
            ).all()
            assert texts and min(texts) >= now - timedelta(days=demo.TRANSCRIPT_DAYS + 1)


def test_demo_mood_lifts_after_each_infusion_and_fades(ctx: Context) -> None:
    demo.seed(ctx)
    with ctx.db.session() as db:
        rows = db.execute(
            select(CheckIn.patient_id, CheckIn.local_date, Answer.value)
            .join(Answer, Answer.checkin_id == CheckIn.id)
            .where(Answer.measure == "mood", Answer.status == "answered")
        ).all()
        infusions = db.execute(select(TreatmentEvent.patient_id, TreatmentEvent.occurred_on)).all()
    after: list[int] = []
    later: list[int] = []
    for patient_id, day, value in rows:
        since = min(
            ((day - d).days for p, d in infusions if p == patient_id and d < day), default=99
        )
        if 1 <= since <= 7:
            after.append(value)
        elif 14 <= since <= 27:
            later.append(value)
    assert sum(after) / len(after) >= sum(later) / len(later) + 1.5
