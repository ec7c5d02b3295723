"""The audit log is append-only in the database itself, each row names its program, and every
row says where the action came from (a web address, or the host a command ran on)."""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DatabaseError

from checkin import audit, create_app
from checkin.cli import cli
from checkin.context import Context
from checkin.db import make_engine
from checkin.migrate import alembic_config, upgrade
from checkin.models import AuditEvent
from tests.conftest import ALICE, T0, World, twilio_env
from tests.fake_twilio import FakeTwilio


def test_the_database_refuses_to_change_or_delete_an_audit_row(ctx: Context, world: World) -> None:
    with ctx.db.session() as session:
        audit.record(session, T0, "bob@example.org", "patient.view", f"patient:{world.alice_id}")
    for statement in (
        update(AuditEvent).values(actor="someone-else"),
        delete(AuditEvent),
    ):
        with pytest.raises(DatabaseError, match="audit_events is append-only"):
            with ctx.db.session() as session:
                session.execute(statement)
    with ctx.db.session() as session:
        actors = set(session.scalars(select(AuditEvent.actor)))
    assert "bob@example.org" in actors and "someone-else" not in actors


def test_each_row_names_the_program_its_target_belongs_to(ctx: Context, world: World) -> None:
    from tests.test_web import raise_alert

    ref = raise_alert(ctx, world.erin_id, "severe", "high", T0)
    with ctx.db.session() as session:
        for target in (
            f"patient:{world.alice_id}",
            f"patient:{world.erin_id}",
            f"alert:{ref}",
            f"staff:{world.dave_id}",
            f"program:{world.program_id}",
            "bob@example.org",
            "nobody@example.org",
            "patient:999999",
            "observations",
        ):
            audit.record(session, T0, "test", "probe", target)
    with ctx.db.session() as session:
        rows = session.execute(
            select(AuditEvent.target, AuditEvent.program_id).where(AuditEvent.action == "probe")
        ).all()
    got = dict((t, p) for t, p in rows)
    a, b = world.program_id, world.other_program_id
    assert got == {
        f"patient:{world.alice_id}": a,
        f"patient:{world.erin_id}": b,
        f"alert:{ref}": b,
        f"staff:{world.dave_id}": b,
        f"program:{a}": a,
        "bob@example.org": a,
        "nobody@example.org": None,
        "patient:999999": None,
        "observations": None,
    }


def test_a_cli_command_records_the_host_it_ran_on(
    db_url: str, fake_twilio: FakeTwilio, world: World, ctx: Context
) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["patients", "pause", "--phone", ALICE, "--until", "2099-01-01"],
        env=twilio_env(db_url, fake_twilio),
    )
    assert result.exit_code == 0, result.output
    with ctx.db.session() as session:
        row = session.scalars(select(AuditEvent).where(AuditEvent.action == "patient.pause")).one()
    assert row.actor.startswith("cli:")
    assert row.detail["host"] == socket.gethostname()
    assert row.program_id == world.program_id


def test_migration_0005_fills_in_the_program_of_rows_written_before_it(
    sqlite_url: str,
) -> None:
    from alembic import command

    command.downgrade(alembic_config(sqlite_url), "0004")
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO programs (id, name, support_contact, quiet_end, quiet_start, "
                "rule_params, created_at) VALUES (7, 'P', 'x', '08:00:00', '21:00:00', '{}', "
                "'2026-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO patients (id, program_id, phone, name, timezone, language, status, "
                "enrolled_at, rule_params) VALUES (3, 7, '+16175550101', 'A', 'UTC', 'en', "
                "'active', '2026-01-01 00:00:00', '{}')"
            )
        )
        rows = [
            {"action": "patient.view", "target": "patient:3"},
            {"action": "export", "target": "alerts"},
        ]
        for r in rows:
            conn.execute(
                text(
                    "INSERT INTO audit_events (at, actor, action, target, detail) "
                    "VALUES ('2026-03-10 14:00:00', 'x', :action, :target, '{}')"
                ),
                r,
            )
    engine.dispose()
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        got = conn.execute(text("SELECT target, program_id FROM audit_events ORDER BY id")).all()
    engine.dispose()
    assert [tuple(r) for r in got] == [("patient:3", 7), ("alerts", None)]


def _app_with(ctx: Context, trusted_proxies: int) -> Any:
    application = create_app(
        {"TESTING": True},
        settings=dataclasses.replace(ctx.settings, trusted_proxies=trusted_proxies),
    )
    application.extensions["checkin"].db.dispose()
    application.extensions["checkin"] = ctx
    return application


def test_behind_a_trusted_proxy_the_audit_log_records_the_clients_address(
    ctx: Context, world: World
) -> None:
    from tests.test_web import login

    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    for hops, expected in ((1, "203.0.113.9"), (0, "127.0.0.1")):
        client = _app_with(ctx, hops).test_client()
        client.get("/login", headers=forwarded)
        login(client)  # no header: the helper's own requests
        client.get(f"/patients/{world.alice_id}", headers=forwarded)
        with ctx.db.session() as session:
            row = session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "patient.view")
                .order_by(AuditEvent.id.desc())
            ).first()
        assert row is not None and row.detail["ip"] == expected, hops


def test_a_bad_trusted_proxies_setting_is_one_line_naming_it() -> None:
    from checkin.config import ConfigError, load_settings

    for value in ("-1", "two", "9"):
        with pytest.raises(ConfigError, match="CHECKIN_TRUSTED_PROXIES: must be a whole number"):
            load_settings({"CHECKIN_TRUSTED_PROXIES": value})


def test_looking_at_the_inbox_or_searching_the_patient_list_is_audited(
    client: Any, ctx: Context, world: World
) -> None:
    from tests.test_web import login

    login(client)
    client.get("/?status=all")
    client.get("/patients?q=Alice&status=active")
    with ctx.db.session() as session:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.in_(("alerts.list", "patients.list")))
            .order_by(AuditEvent.id)
        ).all()
    assert [(r.action, r.actor, r.program_id) for r in rows] == [
        ("alerts.list", "bob@example.org", world.program_id),
        ("patients.list", "bob@example.org", world.program_id),
    ]
    assert rows[1].detail["q"] == "Alice" and rows[1].detail["shown"] == 1
    assert rows[0].detail["status"] == "all" and rows[1].detail["ip"] == "127.0.0.1"
