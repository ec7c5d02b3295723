"""The JSON API at /api/v1 through the Flask test client, on SQLite and PostgreSQL: personal
tokens (no, wrong, revoked, expired, a deactivated owner), the program boundary on every
resource, admin-only writes, pagination, JSON errors, audit rows, and the token UI on the
account page and the CLI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from checkin import schedules
from checkin.api import tokens
from checkin.cli import cli
from checkin.clock import FrozenClock
from checkin.context import Context
from checkin.models import (
    Alert,
    Answer,
    ApiToken,
    AuditEvent,
    CheckIn,
    ConsentEvent,
    Patient,
    Program,
    Schedule,
    StaffUser,
)
from tests.conftest import T0, World, twilio_env
from tests.fake_twilio import FakeTwilio
from tests.test_web import BOB_EMAIL, login, post, raise_alert, token

CONSENT_TEXT = (
    "Patient agreed to receive automated check-in texts, was told that texts are not "
    "encrypted and how to reply STOP or HELP."
)
NEW_PATIENT: dict[str, Any] = {
    "phone": "(617) 555-0142",
    "name": "Frank Example",
    "timezone": "America/New_York",
    "language": "es",
    "consent": {"method": "in_person", "given_at": "2026-03-09T15:00:00Z", "text": CONSENT_TEXT},
}
WEEKLY = {"flow": "weekly_mood", "time": "10:00", "days": ["mon"]}


# --- the world -------------------------------------------------------------------------------


@dataclass
class Tokens:
    """Personal tokens of the named world, and what their owners can reach."""

    carol: str  # admin, alice's program
    bob: str  # clinician, alice's program
    dave: str  # clinician of the other program (erin's)
    alice_ref: str  # alice's open alert
    erin_ref: str  # erin's open alert
    program_schedule: int  # alice's program's weekly PHQ-2
    erin_schedule: int  # erin's own schedule, in the other program


def new_token(ctx: Context, staff_id: int, days: int | None = None, name: str = "test") -> str:
    with ctx.db.session() as session:
        member = session.get_one(StaffUser, staff_id)
        _, secret = tokens.create(session, member, name, days, ctx.clock(), actor="test")
    return secret


def readings(ctx: Context, patient_id: int, values: list[int], measure: str = "pain") -> None:
    """A completed daily check-in per value, one a day, the newest yesterday."""
    with ctx.db.session() as session:
        for day, value in enumerate(values):
            at = T0 - timedelta(days=len(values) - day)
            checkin = CheckIn(
                patient_id=patient_id,
                flow="daily_symptoms",
                idempotency_key=f"api:{patient_id}:{measure}:{day}",
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
                    patient_id=patient_id,
                    measure=measure,
                    value=value,
                    status="answered",
                    recorded_at=at,
                )
            )


def seed(ctx: Context, world: World) -> Tokens:
    """Tokens for carol, bob and dave; readings, check-ins, alerts and schedules in both
    programs (the schemathesis run uses it too)."""
    readings(ctx, world.alice_id, [3, 4, 5])
    readings(ctx, world.erin_id, [8, 9])
    alice_ref = raise_alert(ctx, world.alice_id, "severe", "high", T0)
    erin_ref = raise_alert(ctx, world.erin_id, "severe", "high", T0)
    with ctx.db.session() as session:
        common: dict[str, Any] = {"days": "mon", "now": T0, "actor": "test"}
        program = session.get_one(Program, world.program_id)
        shared = schedules.add(
            session, program, flow="weekly_mood", local_time=time(10), patient=None, **common
        )
        other = session.get_one(Program, world.other_program_id)
        erin = session.get_one(Patient, world.erin_id)
        erins = schedules.add(
            session, other, flow="daily_symptoms", local_time=time(11), patient=erin, **common
        )
        shared_id, erins_id = shared.id, erins.id
    return Tokens(
        carol=new_token(ctx, world.carol_id),
        bob=new_token(ctx, world.bob_id),
        dave=new_token(ctx, world.dave_id),
        alice_ref=alice_ref,
        erin_ref=erin_ref,
        program_schedule=shared_id,
        erin_schedule=erins_id,
    )


@pytest.fixture
def api(ctx: Context, world: World) -> Tokens:
    return seed(ctx, world)


def call(
    client: FlaskClient, method: str, path: str, bearer: str | None = None, **kwargs: Any
) -> Any:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)


def error_of(response: Any, status: int) -> str:
    """The JSON error's message, after checking its shape and status."""
    assert response.status_code == status, (response.status_code, response.get_data(True))
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    message: str = body["error"]["message"]
    assert message
    return message


def audit_rows(ctx: Context, action: str) -> list[AuditEvent]:
    with ctx.db.session() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(session.scalars(stmt))


def api_rules(app: Flask) -> list[tuple[str, str]]:
    """(method, rule) of each API route (not the document): ("GET", "/patients/{patient_id}")."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.openapi":
            template = re.sub(r"<(?:[^:<>]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append((method, template.removeprefix("/api/v1")))
    return found


def filled(template: str) -> str:
    """A rule with real-looking values in its variables."""
    values = {"{patient_id}": "1", "{schedule_id}": "1", "{ref}": "K7Q2X9"}
    for name, value in values.items():
        template = template.replace(name, value)
    return template


# --- tokens ----------------------------------------------------------------------------------


def test_every_api_route_refuses_a_request_without_a_token(
    app: Flask, client: FlaskClient, api: Tokens
) -> None:
    routes = api_rules(app)
    assert len(routes) >= 14
    for method, path in routes:
        message = error_of(call(client, method, filled(path)), 401)
        assert "Bearer" in message, (method, path)
    response = call(client, "GET", "/patients")
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="checkin"')


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer ck_not-a-token-anyone-was-given",
        "Bearer something-else",
        "Bearer ",
        "Basic Ym9iOmEtbG9uZy10ZXN0LXBhc3N3b3Jk",
        "ck_without-a-scheme",
    ],
)
def test_a_wrong_token_is_a_401(client: FlaskClient, api: Tokens, authorization: str) -> None:
    response = client.get("/api/v1/patients", headers={"Authorization": authorization})
    error_of(response, 401)


def test_a_revoked_token_is_a_401_that_says_so(
    client: FlaskClient, ctx: Context, api: Tokens
) -> None:
    assert call(client, "GET", "/patients", api.bob).status_code == 200
    with ctx.db.session() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.prefix == api.bob[:11])).one()
        tokens.revoke(session, row, ctx.clock(), actor="test")
    assert "revoked" in error_of(call(client, "GET", "/patients", api.bob), 401)


def test_an_expired_token_is_a_401_that_says_so(
    client: FlaskClient, ctx: Context, world: World, clock: FrozenClock
) -> None:
    secret = new_token(ctx, world.bob_id, days=1)
    clock.advance(hours=23, minutes=59)
    assert call(client, "GET", "/patients", secret).status_code == 200
    clock.advance(minutes=1)
    assert "expired" in error_of(call(client, "GET", "/patients", secret), 401)


def test_a_deactivated_staff_members_tokens_stop_working(
    client: FlaskClient, ctx: Context, world: World, api: Tokens
) -> None:
    with ctx.db.session() as session:
        session.get_one(StaffUser, world.bob_id).active = False
    assert "deactivated" in error_of(call(client, "GET", "/alerts", api.bob), 401)


def test_the_session_cookie_is_not_a_token(client: FlaskClient, api: Tokens) -> None:
    assert login(client).status_code == 303  # bob, signed in to the dashboard
    assert client.get("/").status_code == 200
    error_of(client.get("/api/v1/patients"), 401)
    error_of(client.post(f"/api/v1/alerts/{api.alice_ref}/acknowledge"), 401)


def test_a_token_stores_only_its_hash_and_notes_its_use_at_most_once_a_minute(
    client: FlaskClient, ctx: Context, api: Tokens, clock: FrozenClock
) -> None:
    assert api.carol.startswith("ck_") and len(api.carol) >= 40

    def row() -> ApiToken:
        with ctx.db.session() as session:
            return session.scalars(select(ApiToken).where(ApiToken.prefix == api.carol[:11])).one()

    assert row().token_hash == tokens.digest(api.carol) != api.carol
    assert row().last_used_at is None
    call(client, "GET", "/patients", api.carol)
    assert row().last_used_at == T0
    clock.advance(seconds=59)
    call(client, "GET", "/patients", api.carol)
    assert row().last_used_at == T0
    clock.advance(seconds=1)
    call(client, "GET", "/patients", api.carol)
    assert row().last_used_at == T0 + timedelta(minutes=1)


def test_a_token_is_refused_an_expiry_beyond_a_year_or_an_empty_name(
    ctx: Context, world: World
) -> None:
    with ctx.db.session() as session:
        bob = session.get_one(StaffUser, world.bob_id)
        for name, days in (("ok", 366), ("ok", 0), ("  ", 30), ("x" * 81, 30)):
            with pytest.raises(tokens.TokenError):
                tokens.create(session, bob, name, days, T0, actor="test")


# --- the program boundary ---------------------------------------------------------------------


def test_another_programs_patient_is_a_404_like_one_that_does_not_exist(
    client: FlaskClient, world: World, api: Tokens
) -> None:
    hidden = error_of(call(client, "GET", f"/patients/{world.erin_id}", api.carol), 404)
    missing = error_of(call(client, "GET", "/patients/99999", api.carol), 404)
    assert hidden.replace(str(world.erin_id), "N") == missing.replace("99999", "N")
    assert call(client, "GET", f"/patients/{world.erin_id}", api.dave).status_code == 200


@pytest.mark.parametrize("resource", ["observations", "checkins", "schedules"])
def test_filtering_by_another_programs_patient_is_a_404(
    client: FlaskClient, world: World, api: Tokens, resource: str
) -> None:
    error_of(call(client, "GET", f"/{resource}?patient_id={world.erin_id}", api.carol), 404)
    own = call(client, "GET", f"/{resource}?patient_id={world.alice_id}", api.carol)
    assert own.status_code == 200


def test_another_programs_rows_never_appear_in_any_list(
    client: FlaskClient, world: World, api: Tokens
) -> None:
    for bearer, mine, theirs in (
        (api.carol, world.alice_id, world.erin_id),
        (api.dave, world.erin_id, world.alice_id),
    ):
        patients = call(client, "GET", "/patients", bearer).get_json()["items"]
        assert [p["id"] for p in patients] == [mine]
        for resource in ("observations", "checkins", "alerts"):
            rows = call(client, "GET", f"/{resource}", bearer).get_json()["items"]
            assert rows and {r["patient_id"] for r in rows} == {mine}, resource
        rows = call(client, "GET", "/schedules", bearer).get_json()["items"]
        assert theirs not in {r["patient_id"] for r in rows}


def test_another_programs_alert_cannot_be_read_acknowledged_or_resolved(
    client: FlaskClient, ctx: Context, api: Tokens
) -> None:
    ref = api.erin_ref
    error_of(call(client, "GET", f"/alerts/{ref}", api.bob), 404)
    error_of(call(client, "POST", f"/alerts/{ref}/acknowledge", api.bob), 404)
    error_of(call(client, "POST", f"/alerts/{ref}/resolve", api.carol, json={"note": "x"}), 404)
    with ctx.db.session() as session:
        assert session.scalars(select(Alert.status).where(Alert.ref == ref)).one() == "open"


def test_another_programs_schedule_cannot_be_read_changed_or_removed_even_by_an_admin(
    client: FlaskClient, ctx: Context, api: Tokens
) -> None:
    theirs = f"/schedules/{api.erin_schedule}"
    error_of(call(client, "GET", theirs, api.carol), 404)
    error_of(call(client, "PUT", theirs, api.carol, json=WEEKLY), 404)
    error_of(call(client, "DELETE", theirs, api.carol), 404)
    with ctx.db.session() as session:
        assert session.get_one(Schedule, api.erin_schedule).active


# --- roles -------------------------------------------------------------------------------------


def test_a_clinician_writing_configuration_gets_a_403_and_nothing_changes(
    client: FlaskClient, ctx: Context, api: Tokens
) -> None:
    mine = f"/schedules/{api.program_schedule}"
    for method, path, body in (
        ("POST", "/schedules", WEEKLY),
        ("PUT", mine, WEEKLY),
        ("DELETE", mine, None),
        ("POST", "/patients", NEW_PATIENT),
    ):
        message = error_of(call(client, method, path, api.bob, json=body), 403)
        assert "admin" in message
    with ctx.db.session() as session:
        assert session.get_one(Schedule, api.program_schedule).active
        assert session.scalar(select(Patient).where(Patient.name == "Frank Example")) is None
        assert session.scalar(select(Schedule).where(Schedule.id > api.erin_schedule)) is None


def test_a_clinician_acknowledges_and_resolves_an_alert_through_the_api(
    client: FlaskClient, ctx: Context, api: Tokens
) -> None:
    ref = api.alice_ref
    acked = call(client, "POST", f"/alerts/{ref}/acknowledge", api.bob)
    assert acked.status_code == 200, acked.get_data(True)
    assert acked.get_json()["status"] == "acknowledged"
    assert "already acknowledged" in error_of(
        call(client, "POST", f"/alerts/{ref}/acknowledge", api.bob), 409
    )
    assert "note" in error_of(
        call(client, "POST", f"/alerts/{ref}/resolve", api.bob, json={"note": "  "}), 400
    )
    done = call(client, "POST", f"/alerts/{ref}/resolve", api.bob, json={"note": "called her"})
    assert done.get_json()["status"] == "resolved"
    assert done.get_json()["resolution_note"] == "called her"
    error_of(call(client, "POST", f"/alerts/{ref}/resolve", api.bob, json={"note": "x"}), 409)
    for action in ("alert.acknowledge", "alert.resolve"):
        (row,) = audit_rows(ctx, action)
        assert (row.actor, row.target) == (BOB_EMAIL, f"alert:{ref}")
        assert row.detail["via"] == "api" and row.detail["ip"] == "127.0.0.1"


# --- resources -------------------------------------------------------------------------------


def enrol(client: FlaskClient, bearer: str, **changes: Any) -> Any:
    return call(client, "POST", "/patients", bearer, json={**NEW_PATIENT, **changes})


def test_an_admin_enrols_a_patient_with_the_consent_the_page_records(
    client: FlaskClient, ctx: Context, world: World, api: Tokens
) -> None:
    response = enrol(client, api.carol)
    assert response.status_code == 201, response.get_data(True)
    body = response.get_json()
    assert (body["phone"], body["language"], body["status"]) == ("+16175550142", "es", "active")
    assert response.headers["Location"] == f"/api/v1/patients/{body['id']}"
    assert call(client, "GET", f"/patients/{body['id']}", api.bob).get_json() == body
    with ctx.db.session() as session:
        patient = session.get_one(Patient, body["id"])
        assert patient.program_id == world.program_id
        consent = session.scalars(select(ConsentEvent).where(ConsentEvent.patient_id == patient.id))
        (event,) = consent
        assert (event.method, event.detail, event.recorded_by) == (
            "in_person",
            CONSENT_TEXT,
            "carol@example.org",
        )
        assert event.given_at == T0 - timedelta(hours=23)
    row = audit_rows(ctx, "patient.enrol")[-1]
    assert (row.actor, row.target) == ("carol@example.org", f"patient:{body['id']}")
    assert row.detail["via"] == "api"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"phone": "+1 555"}, "phone"),
        ({"phone": "+16175550101"}, "already exists"),  # alice's
        ({"timezone": "Mars/Olympus_Mons"}, "IANA"),
        ({"language": "fr"}, "language"),
        ({"name": ""}, "name"),
        ({"consent": {"method": "in_person", "text": "ok"}}, "consent.text"),
        ({"consent": {"method": "by_pigeon", "text": CONSENT_TEXT}}, "consent.method"),
        (
            {
                "consent": {
                    "method": "phone_call",
                    "text": CONSENT_TEXT,
                    "given_at": "2027-01-01T00:00:00Z",
                }
            },
            "future",
        ),
        (
            {
                "consent": {
                    "method": "phone_call",
                    "text": CONSENT_TEXT,
                    "given_at": "2026-03-01T09:00",
                }
            },
            "timezone",
        ),
    ],
)
def test_enrolment_refuses_what_the_enrolment_page_refuses(
    client: FlaskClient, ctx: Context, api: Tokens, changes: dict[str, Any], words: str
) -> None:
    message = error_of(enrol(client, api.carol, **changes), 400)
    assert words in message
    with ctx.db.session() as session:
        assert session.scalar(select(Patient).where(Patient.name == "Frank Example")) is None


def test_the_patient_list_is_paginated_with_the_total_and_links(
    client: FlaskClient, ctx: Context, api: Tokens
) -> None:
    for i in range(4):
        assert enrol(client, api.carol, phone=f"+1617555016{i}", name=f"P{i}").status_code == 201
    first = call(client, "GET", "/patients?per_page=2&status=active", api.bob).get_json()
    assert (first["page"], first["per_page"], first["total"], first["pages"]) == (1, 2, 5, 3)
    assert [p["name"] for p in first["items"]] == ["Alice Example", "P0"]
    links = first["links"]
    assert links["prev"] is None
    assert links["next"] == "/api/v1/patients?per_page=2&status=active&page=2"
    assert links["last"] == "/api/v1/patients?per_page=2&status=active&page=3"
    second = call(client, "GET", links["next"].removeprefix("/api/v1"), api.bob).get_json()
    assert [p["name"] for p in second["items"]] == ["P1", "P2"]
    past = call(client, "GET", "/patients?per_page=2&page=9", api.bob).get_json()
    assert past["items"] == [] and past["links"]["prev"].endswith("page=3")
    found = call(client, "GET", "/patients?q=p3", api.bob).get_json()
    assert [p["name"] for p in found["items"]] == ["P3"]
    assert call(client, "GET", "/patients?status=paused", api.bob).get_json()["total"] == 0
    (row, *_) = audit_rows(ctx, "patients.list")
    assert row.detail["status"] == "active" and row.detail["shown"] == 2


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("per_page=201", "per_page"),
        ("per_page=0", "per_page"),
        ("page=abc", "page"),
        ("status=gone", "status"),
        ("q=" + "x" * 101, "q"),
    ],
)
def test_a_bad_query_parameter_is_a_400_naming_it(
    client: FlaskClient, api: Tokens, query: str, words: str
) -> None:
    assert error_of(call(client, "GET", f"/patients?{query}", api.bob), 400).startswith(words)


def test_observations_filter_by_patient_measure_and_time_and_are_audited(
    client: FlaskClient, ctx: Context, world: World, api: Tokens
) -> None:
    readings(ctx, world.alice_id, [7], measure="mood")
    every = call(client, "GET", "/observations", api.bob).get_json()
    assert [(o["measure"], o["value"]) for o in every["items"]] == [
        ("pain", 3),
        ("pain", 4),
        ("pain", 5),
        ("mood", 7),
    ]
    query = f"patient_id={world.alice_id}&measure=pain&from=2026-03-08&to=2026-03-09T14:00:00Z"
    window = call(client, "GET", f"/observations?{query}", api.bob).get_json()
    assert [o["value"] for o in window["items"]] == [4]
    assert window["items"][0]["recorded_at"] == "2026-03-08T14:00:00Z"
    row = audit_rows(ctx, "observations.list")[-1]
    assert (row.actor, row.target, row.program_id) == (
        BOB_EMAIL,
        f"patient:{world.alice_id}",
        world.program_id,
    )
    assert row.detail["measure"] == "pain" and row.detail["via"] == "api"
    error_of(call(client, "GET", "/observations?from=yesterday", api.bob), 400)


def test_checkins_filter_by_patient_status_and_time(
    client: FlaskClient, world: World, api: Tokens
) -> None:
    rows = call(client, "GET", f"/checkins?patient_id={world.alice_id}", api.bob).get_json()
    assert [c["status"] for c in rows["items"]] == ["completed"] * 3
    assert rows["items"][0]["local_date"] == "2026-03-07"
    late = call(client, "GET", "/checkins?from=2026-03-09T00:00:00Z", api.bob).get_json()
    assert late["total"] == 1
    assert call(client, "GET", "/checkins?status=open", api.bob).get_json()["total"] == 0


def test_alerts_list_and_read_like_the_inbox(
    client: FlaskClient, ctx: Context, api: Tokens
) -> None:
    listed = call(client, "GET", "/alerts?status=open&kind=severe", api.bob).get_json()
    assert [a["ref"] for a in listed["items"]] == [api.alice_ref]
    assert call(client, "GET", "/alerts?kind=crisis", api.bob).get_json()["items"] == []
    one = call(client, "GET", f"/alerts/{api.alice_ref.lower()}", api.bob).get_json()
    assert one["severity"] == "high" and one["evidence"][0]["rule"] == "test severe"
    (row,) = audit_rows(ctx, "alert.view")
    assert row.target == f"alert:{api.alice_ref}" and row.detail["via"] == "api"


def test_an_admin_adds_changes_and_removes_schedules(
    client: FlaskClient, ctx: Context, world: World, api: Tokens
) -> None:
    before = {s["id"] for s in call(client, "GET", "/schedules", api.bob).get_json()["items"]}
    assert api.program_schedule in before
    added = call(
        client,
        "POST",
        "/schedules",
        api.carol,
        json={"flow": "post_infusion", "time": "10:00", "after_infusion": [7, 1, 3]},
    )
    assert added.status_code == 201, added.get_data(True)
    body = added.get_json()
    assert (body["kind"], body["after_infusion"], body["days"]) == ("infusion", [1, 3, 7], None)
    assert added.headers["Location"] == f"/api/v1/schedules/{body['id']}"
    own = {**WEEKLY, "patient_id": world.alice_id}
    alices = call(client, "POST", "/schedules", api.carol, json=own).get_json()
    assert alices["patient_id"] == world.alice_id
    changed = call(
        client, "PUT", f"/schedules/{alices['id']}", api.carol, json={**WEEKLY, "time": "11:30"}
    )
    assert changed.status_code == 200, changed.get_data(True)
    new = changed.get_json()
    assert new["id"] != alices["id"] and new["time"] == "11:30"
    assert new["patient_id"] == world.alice_id  # an edit keeps whose schedule it is
    assert call(client, "GET", f"/schedules/{alices['id']}", api.bob).get_json()["active"] is False
    removed = call(client, "DELETE", f"/schedules/{new['id']}", api.carol)
    assert removed.status_code == 204 and removed.get_data() == b""
    error_of(call(client, "DELETE", f"/schedules/{new['id']}", api.carol), 404)
    listed = call(client, "GET", "/schedules", api.bob).get_json()["items"]
    assert {s["id"] for s in listed} == before | {body["id"]}
    added_by_api = [r for r in audit_rows(ctx, "schedule.add") if r.detail.get("via") == "api"]
    assert len(added_by_api) == 3  # the infusion one, alice's own, and its replacement
    removals = audit_rows(ctx, "schedule.remove")  # the replaced one, then the deleted one
    assert [(r.actor, r.detail["via"]) for r in removals] == [("carol@example.org", "api")] * 2


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({**WEEKLY, "time": "22:00"}, "22:00"),  # quiet hours
        ({**WEEKLY, "time": "9am"}, "time"),
        ({**WEEKLY, "flow": "tarot"}, "flow"),
        ({**WEEKLY, "after_infusion": [1]}, "not both"),
        ({"flow": "weekly_mood", "time": "10:00"}, "not both"),
        ({**WEEKLY, "start_date": "2026-05-01", "end_date": "2026-04-01"}, "before"),
        ({**WEEKLY, "patient_id": 99999}, "not found"),
    ],
)
def test_a_schedule_is_refused_for_what_the_schedule_page_refuses(
    client: FlaskClient, api: Tokens, body: dict[str, Any], words: str
) -> None:
    response = call(client, "POST", "/schedules", api.carol, json=body)
    assert response.status_code in (400, 404)
    assert words in error_of(response, response.status_code)


# --- errors ------------------------------------------------------------------------------------


def test_unknown_routes_and_methods_under_the_api_answer_in_json(
    client: FlaskClient, api: Tokens
) -> None:
    error_of(call(client, "GET", "/nothing-here", api.bob), 404)
    error_of(client.get("/api/v1"), 404)
    error_of(call(client, "GET", "/patients/0", api.bob), 404)
    error_of(call(client, "GET", "/patients/99999999999", api.bob), 404)
    response = call(client, "PATCH", "/patients", api.carol)
    error_of(response, 405)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_a_body_that_is_not_json_is_refused_in_json(client: FlaskClient, api: Tokens) -> None:
    path = f"/alerts/{api.alice_ref}/resolve"
    for kwargs in (
        {"data": "{not json", "content_type": "application/json"},
        {"data": "note=called", "content_type": "text/plain"},
        {},
    ):
        assert "JSON" in error_of(call(client, "POST", path, api.bob, **kwargs), 400)
    for form in ("application/x-www-form-urlencoded", "multipart/form-data"):
        response = call(client, "POST", path, api.bob, data={"note": "called"}, content_type=form)
        assert "JSON" in error_of(response, 415)


def test_a_body_too_large_is_a_413_in_json(app: Flask, client: FlaskClient, api: Tokens) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1024
    response = call(client, "POST", "/patients", api.carol, json={"name": "x" * 2000})
    error_of(response, 413)


def test_staff_pages_keep_their_html_error_pages(client: FlaskClient, api: Tokens) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"


def test_api_answers_are_never_cached(client: FlaskClient, api: Tokens) -> None:
    response = call(client, "GET", "/patients", api.bob)
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers


def test_the_openapi_document_is_served_without_a_token_and_covers_every_route(
    app: Flask, client: FlaskClient
) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    documented = {
        (method.upper(), path.removeprefix("/api/v1"))
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert documented == set(api_rules(app))
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    per_page = next(
        p
        for p in document["paths"]["/api/v1/patients"]["get"]["parameters"]
        if p["name"] == "per_page"
    )
    assert per_page["schema"]["maximum"] == 200


# --- the account page and the CLI ----------------------------------------------------------------


def test_a_new_token_is_shown_once_on_the_account_page_and_then_works(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client)  # bob
    page = post(client, "/account/tokens", "/account", name="EHR import", days="30")
    assert page.status_code == 201
    html = page.get_data(as_text=True)
    assert "shown only this once" in html
    (secret,) = {s for s in tokens_in(html)}
    assert call(client, "GET", "/alerts", secret).status_code == 200
    again = client.get("/account").get_data(as_text=True)
    assert secret not in again and "EHR import" in again and secret[:11] in again
    with ctx.db.session() as session:
        (row,) = session.scalars(select(ApiToken).where(ApiToken.staff_id == world.bob_id))
        assert row.expires_at == T0 + timedelta(days=30) and row.name == "EHR import"
    (audited,) = audit_rows(ctx, "api_token.create")
    assert (audited.actor, audited.target) == (BOB_EMAIL, f"staff:{world.bob_id}")
    assert audited.detail["ip"] == "127.0.0.1" and secret not in str(audited.detail)


def tokens_in(html: str) -> list[str]:
    return re.findall(r'value="(ck_[A-Za-z0-9_-]{40,})"', html)


def test_revoking_a_token_on_the_account_page_stops_it_at_once(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    secret = new_token(ctx, world.bob_id, name="reporting")
    login(client)
    with ctx.db.session() as session:
        token_id = session.scalars(select(ApiToken.id)).one()
    response = post(client, f"/account/tokens/{token_id}/revoke", "/account")
    assert response.status_code == 303
    assert "Revoked the token" in client.get("/account").get_data(as_text=True)
    assert "revoked" in error_of(call(client, "GET", "/patients", secret), 401)
    (row,) = audit_rows(ctx, "api_token.revoke")
    assert row.actor == BOB_EMAIL and row.detail["token"] == token_id


def test_nobody_can_revoke_someone_elses_token(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    secret = new_token(ctx, world.carol_id)
    login(client)  # bob
    with ctx.db.session() as session:
        token_id = session.scalars(select(ApiToken.id)).one()
    assert post(client, f"/account/tokens/{token_id}/revoke", "/account").status_code == 404
    assert call(client, "GET", "/patients", secret).status_code == 200


@pytest.mark.parametrize(
    ("form", "words"),
    [
        ({"name": "", "days": "30"}, "name"),
        ({"name": "x", "days": "366"}, "365"),
        ({"name": "x", "days": "soon"}, "number of days"),
    ],
)
def test_the_token_form_refuses_a_missing_name_or_a_bad_expiry(
    client: FlaskClient, ctx: Context, world: World, form: dict[str, str], words: str
) -> None:
    login(client)
    response = client.post(
        "/account/tokens", data={"csrf_token": token(client, "/account"), **form}
    )
    assert response.status_code == 400
    assert words in response.get_data(as_text=True)
    with ctx.db.session() as session:
        assert session.scalars(select(ApiToken)).first() is None


def test_a_token_that_never_expires_must_be_chosen(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client)
    post(client, "/account/tokens", "/account", name="forever", days="", never="yes")
    with ctx.db.session() as session:
        assert session.scalars(select(ApiToken.expires_at)).one() is None


def test_the_cli_creates_a_token_printed_once_and_revokes_it(
    db_url: str, fake_twilio: FakeTwilio, app: Flask, client: FlaskClient, world: World
) -> None:
    env = twilio_env(db_url, fake_twilio)
    runner = CliRunner()
    args = ["tokens", "create", "--email", "BOB@example.org", "--name", "nightly", "--days", "7"]
    made = runner.invoke(cli, args, env=env, catch_exceptions=False)
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("ck_") and "\n" not in secret
    assert "shown once" in made.stderr
    listed = runner.invoke(cli, ["tokens", "list", "--email", BOB_EMAIL], env=env)
    assert "nightly" in listed.stdout and secret not in listed.stdout
    token_id = listed.stdout.splitlines()[1].split(",")[0]
    assert call(client, "GET", "/patients", secret).status_code == 200
    revoked = runner.invoke(cli, ["tokens", "revoke", token_id], env=env)
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    error_of(call(client, "GET", "/patients", secret), 401)
    again = runner.invoke(cli, ["tokens", "revoke", token_id], env=env)
    assert again.exit_code == 1 and "already revoked" in again.output
    bad = runner.invoke(
        cli, ["tokens", "create", "--email", BOB_EMAIL, "--name", "x", "--days", "400"], env=env
    )
    assert bad.exit_code == 1 and "365" in bad.output
