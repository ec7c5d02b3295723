"""Editing a flow never breaks a conversation already in progress.

A check-in remembers the flow version it started with. When a new version becomes current
mid-conversation, the open check-in goes on with the questions it started with, and the next
check-in uses the new version.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from checkin import sendnow
from checkin.context import Context
from checkin.flows import daily_symptoms
from checkin.flows.engine import Question
from checkin.models import Answer, CheckIn
from tests.conftest import ALICE, World
from tests.test_conversations import text

# Version 2 asks about sleep first, then the three old questions.
SLEEP = Question("sleep", "ask_fatigue", labels=("sleep",))
V2 = replace(
    daily_symptoms.FLOW_V1, version=2, questions=(SLEEP, *daily_symptoms.FLOW_V1.questions)
)


def test_an_open_check_in_keeps_its_version_when_a_new_one_becomes_current(
    client: FlaskClient, ctx: Context, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sendnow.start_now(ctx, ALICE, "daily_symptoms", actor="test").endswith("sent")
    monkeypatch.setattr(daily_symptoms, "VERSIONS", {1: daily_symptoms.FLOW_V1, 2: V2})
    monkeypatch.setattr(daily_symptoms, "CURRENT", V2)

    replies = [text(client, ctx, body)[0] for body in ("6", "4", "7")]
    assert replies[0].startswith("How much pain")  # version 1's second question, not sleep
    assert replies[2].startswith("Thank you")
    with ctx.db.session() as session:
        first = session.scalars(select(CheckIn)).one()
        measures = set(session.scalars(select(Answer.measure).where(Answer.checkin_id == first.id)))
    assert first.flow_version == 1 and first.status == "completed"
    assert measures == {"fatigue", "pain", "mood"}

    assert sendnow.start_now(ctx, ALICE, "daily_symptoms", actor="test").endswith("sent")
    text(client, ctx, "5")
    with ctx.db.session() as session:
        second = session.scalars(select(CheckIn).where(CheckIn.id != first.id)).one()
        stored = set(session.scalars(select(Answer.measure).where(Answer.checkin_id == second.id)))
    assert second.flow_version == 2
    assert stored == {"sleep"}  # the new version asked about sleep first
