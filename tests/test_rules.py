"""Trend-rule settings per program and per patient, and what a reply costs to judge."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import event, select

from checkin import evaluation, sendnow, trends
from checkin.cli import cli
from checkin.context import Context
from checkin.models import Alert, Answer, AuditEvent, CheckIn
from tests.conftest import ALICE, T0, World, twilio_env
from tests.fake_twilio import FakeTwilio
from tests.test_conversations import text


def run(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_a_patient_threshold_layers_over_the_program_and_takes_effect_on_the_next_reply(
    db_url: str, fake_twilio: FakeTwilio, client: FlaskClient, ctx: Context, world: World
) -> None:
    env = twilio_env(db_url, fake_twilio)
    assert run(env, "rules", "set", "worsening_points", "3").exit_code == 0
    done = run(env, "rules", "set", "severe_at_or_above", '{"pain": 8}', "--phone", ALICE)
    assert done.exit_code == 0, done.output
    shown = json.loads(run(env, "rules", "show", "--phone", ALICE).output)
    assert shown["worsening_points"] == 3.0
    assert shown["severe_at_or_above"] == {"pain": 8, "fatigue": 9}  # the program's fatigue kept

    assert sendnow.start_now(ctx, ALICE, "daily_symptoms", actor="test").endswith("sent")
    text(client, ctx, "5")
    text(client, ctx, "8")  # pain 8: severe for alice only
    with ctx.db.session() as session:
        alert = session.scalars(select(Alert)).one()
        audited = session.scalars(
            select(AuditEvent.action).where(AuditEvent.action == "rules.set")
        ).all()
    assert (alert.kind, alert.severity) == ("severe", "high")
    assert alert.evidence[0]["thresholds"] == {"severe": ">= 8"}
    assert len(audited) == 2


def test_a_bad_setting_is_refused_in_one_line_and_nothing_is_stored(
    db_url: str, fake_twilio: FakeTwilio, ctx: Context, world: World
) -> None:
    env = twilio_env(db_url, fake_twilio)
    for args in (("no_such_rule", "3"), ("worsening_points", '"lots"'), ("baseline_min", "0")):
        done = CliRunner().invoke(cli, ["rules", "set", *args], env=env)
        assert done.exit_code == 1
        lines = [line for line in done.output.splitlines() if line.strip()]
        assert len(lines) == 1 and args[0] in lines[0] and "Traceback" not in done.output
    shown = json.loads(run(env, "rules", "show").output)
    assert shown == trends.RuleParams().to_dict() | {"lor_days": list(trends.RuleParams().lor_days)}


def test_judging_a_reply_reads_a_fixed_window_of_readings_not_the_whole_history(
    ctx: Context, world: World
) -> None:
    with ctx.db.session() as session:
        for day in range(400):  # more than a year of daily pain readings
            at = T0 - timedelta(days=400 - day)
            checkin = CheckIn(
                patient_id=world.alice_id,
                flow="daily_symptoms",
                idempotency_key=f"hist:{day}",
                local_date=at.date(),
                due_at=at,
                expires_at=at + timedelta(hours=12),
                status="completed",
                state={},
                created_at=at,
            )
            session.add(checkin)
            session.flush()
            session.add(
                Answer(
                    checkin_id=checkin.id,
                    patient_id=world.alice_id,
                    measure="pain",
                    value=4,
                    status="answered",
                    recorded_at=at,
                )
            )
    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", capture)
    try:
        with ctx.db.session() as session:
            window = trends.history_needed(trends.RuleParams())
            rows = evaluation.recent_readings(session, world.alice_id, "pain", window)
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", capture)
    assert len(rows) == window == 21
    assert rows[-1].at > rows[0].at  # oldest first, newest last
    (query,) = [s for s in statements if "FROM answers" in s]
    assert "LIMIT" in query.upper() and "ORDER BY answers.recorded_at DESC" in query
