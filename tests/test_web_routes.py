"""Every route of the staff app, walked from the URL map: sign-in required, roles enforced,
CSRF required on every form, another program's patient a 404, and names rendered inert.

The routes come from `app.url_map`, so a route added later is covered without anyone
remembering to add it here; the few public ones are listed, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient

from checkin import alert_webhooks, schedules
from checkin.api import tokens
from checkin.context import Context
from checkin.models import Patient, Program, Schedule, StaffUser
from tests.conftest import T0, World
from tests.test_web import (
    DAVE_EMAIL,
    give_dave_a_password,
    login,
    post,
    raise_alert,
    token,
)

CAROL_EMAIL = "carol@example.org"
# Public on purpose: sign-in itself, the health check for load balancers, static files, and
# the Twilio webhooks (their signature is their proof; tested in test_webhooks.py). The JSON
# API takes a bearer token, never the session: test_api.py walks its routes the same way.
PUBLIC = {"auth.login_form", "auth.login", "healthz", "static"}
PUBLIC_BLUEPRINTS = {"webhooks", "api"}
# Configuration: an admin's, never a clinician's.
ADMIN_ONLY_ACTIONS = {"patient_actions.add_schedule", "patient_actions.remove_schedule"}
XSS = "<script>alert('x')</script>"


@pytest.fixture
def ids(ctx: Context, world: World) -> dict[str, Any]:
    """Real values for every URL variable: alice's alert, a program schedule, her own one."""
    ref = raise_alert(ctx, world.alice_id, "severe", "high", T0)
    with ctx.db.session() as session:
        program = session.get_one(Program, world.program_id)
        alice = session.get_one(Patient, world.alice_id)
        common = {"days": "mon", "now": T0, "actor": "test"}
        shared = schedules.add(
            session, program, flow="weekly_mood", local_time=time(10), patient=None, **common
        )
        own = schedules.add(
            session, program, flow="daily_symptoms", local_time=time(11), patient=alice, **common
        )
        hook = alert_webhooks.register(
            session,
            program.id,
            url="https://ehr.example.org/in",
            description="EHR",
            include_readings=False,
            actor="test",
            now=T0,
        )
        carol = session.get_one(StaffUser, world.carol_id)
        api_token, _ = tokens.create(session, carol, "walk", None, T0, actor="test")
        return {
            "token_id": api_token.id,
            "endpoint_id": hook.id,
            "delivery_id": alert_webhooks.queue_ping(session, hook, "test", T0),
            "ref": ref,
            "patient_id": world.alice_id,
            "staff_id": world.bob_id,
            "program_schedule_id": shared.id,
            "own_schedule_id": own.id,
        }


def staff_rules(app: Flask) -> Iterator[tuple[str, str, str]]:
    """(endpoint, rule, method) of every non-public route."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC or rule.endpoint.split(".")[0] in PUBLIC_BLUEPRINTS:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, rule.rule, method


def url(app: Flask, endpoint: str, ids: dict[str, Any]) -> str:
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    values = {}
    for name in rule.arguments:
        if name == "schedule_id":
            own = endpoint.startswith("patient_actions.")
            values[name] = ids["own_schedule_id" if own else "program_schedule_id"]
        else:
            values[name] = ids[name]
    with app.test_request_context():
        return url_for(endpoint, **values)


def call(
    client: FlaskClient, method: str, path: str, with_token: bool = True, form_page: str = "/"
) -> Any:
    """GET, or POST with the CSRF token a browser would send (read from `form_page`: any page
    with a form; "/login" for a stranger)."""
    if method == "GET":
        return client.get(path)
    data = {"csrf_token": token(client, form_page)} if with_token else {}
    return client.post(path, data=data)


def test_the_walk_covers_the_admin_pages_and_patient_actions(app: Flask) -> None:
    endpoints = {endpoint for endpoint, _, _ in staff_rules(app)}
    assert {"admin.enrol_patient", "admin.audit_log", "patient_actions.pause"} <= endpoints
    assert len(endpoints) >= 35


def test_every_staff_route_sends_a_stranger_to_sign_in(
    app: Flask, client: FlaskClient, ids: dict[str, Any]
) -> None:
    for endpoint, _, method in staff_rules(app):
        response = call(client, method, url(app, endpoint, ids), form_page="/login")
        if endpoint.startswith("simulator."):
            assert response.status_code == 404, endpoint  # outside demo mode: not there at all
            continue
        assert response.status_code in (302, 303), (endpoint, method, response.status_code)
        assert urlsplit(response.headers["Location"]).path == "/login", endpoint


def test_every_admin_route_refuses_a_clinician(
    app: Flask, client: FlaskClient, ctx: Context, ids: dict[str, Any]
) -> None:
    login(client)  # bob, a clinician
    checked = 0
    for endpoint, _, method in staff_rules(app):
        if not (endpoint.startswith("admin.") or endpoint in ADMIN_ONLY_ACTIONS):
            continue
        response = call(client, method, url(app, endpoint, ids))
        assert response.status_code == 403, (endpoint, method, response.status_code)
        checked += 1
    assert checked >= 20
    with ctx.db.session() as session:  # nothing was changed by the refused posts
        assert session.get_one(Schedule, ids["program_schedule_id"]).active
        assert session.get_one(StaffUser, ids["staff_id"]).role == "clinician"
    assert "Your role cannot open this page" in client.get("/admin").text
    assert 'href="/admin"' not in client.get("/").text  # no Admin link for a clinician


def test_every_form_post_without_the_csrf_token_is_refused(
    app: Flask, client: FlaskClient, ctx: Context, ids: dict[str, Any]
) -> None:
    login(client, email=CAROL_EMAIL)  # an admin: every route is hers to use
    posts = [(e, m) for e, _, m in staff_rules(app) if m == "POST" and e != "auth.logout"]
    assert len(posts) >= 20
    for endpoint, method in posts:
        response = call(client, method, url(app, endpoint, ids), with_token=False)
        assert response.status_code == 400, (endpoint, response.status_code)
        assert "did not come from this site" in response.text
    with ctx.db.session() as session:
        alice = session.get_one(Patient, ids["patient_id"])
        assert (alice.status, alice.timezone) == ("active", "America/New_York")
        assert session.get_one(Schedule, ids["program_schedule_id"]).active


def test_another_programs_patient_is_a_404_on_every_patient_route(
    app: Flask, client: FlaskClient, ctx: Context, world: World, ids: dict[str, Any]
) -> None:
    give_dave_a_password(ctx, world)
    login(client, email=DAVE_EMAIL)
    routes = [(e, m) for e, r, m in staff_rules(app) if "<int:patient_id>" in r]
    assert len(routes) >= 8
    for endpoint, method in routes:
        if endpoint.startswith("simulator.") or endpoint in ADMIN_ONLY_ACTIONS:
            continue  # the simulator is a 404 anyway; schedules are a 403 for a clinician
        response = call(client, method, url(app, endpoint, ids))
        assert response.status_code == 404, (endpoint, method, response.status_code)
    with ctx.db.session() as session:
        assert session.get_one(Patient, world.alice_id).status == "active"


def test_an_admin_of_another_program_gets_404_for_alices_schedule_and_bobs_account(
    app: Flask, client: FlaskClient, ctx: Context, world: World, ids: dict[str, Any]
) -> None:
    give_dave_a_password(ctx, world)
    with ctx.db.session() as session:
        session.get_one(StaffUser, world.dave_id).role = "admin"
    login(client, email=DAVE_EMAIL)
    for path in (
        f"/admin/schedules/{ids['program_schedule_id']}/edit",
        f"/admin/staff/{world.bob_id}",
    ):
        assert client.get(path).status_code == 404, path
    removed = post(client, f"/admin/schedules/{ids['program_schedule_id']}/remove", "/admin")
    assert removed.status_code == 404
    page = client.get("/admin/staff").text
    assert "Bob" not in page and "Carol" not in page
    assert "Alice" not in client.get("/admin/schedules").text


def test_names_that_look_like_scripts_are_rendered_inert_on_every_page(
    app: Flask, client: FlaskClient, ctx: Context, world: World, ids: dict[str, Any]
) -> None:
    with ctx.db.session() as session:
        session.get_one(Patient, world.alice_id).name = XSS
        session.get_one(StaffUser, world.bob_id).name = XSS
    login(client, email=CAROL_EMAIL)
    client.get(f"/patients/{world.alice_id}")  # an audit row naming her
    pages = [url(app, e, ids) for e, r, m in staff_rules(app) if m == "GET"]
    pages += [f"/patients?q={XSS}", f"/admin/audit?actor={XSS}"]
    for path in pages:
        if path.startswith("/simulator"):
            continue
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        assert XSS not in response.text, path
        scripts = re.findall(r"<script[^>]*>", response.text)
        assert all('src="/static/' in s for s in scripts), (path, scripts)
        assert "script-src" not in response.headers.get("Content-Security-Policy", "x")
        assert "default-src 'self'" in response.headers["Content-Security-Policy"], path
    assert "&lt;script&gt;" in client.get(f"/patients/{world.alice_id}").text


def test_the_schedule_preview_script_is_the_only_script_and_comes_from_this_site(
    client: FlaskClient, world: World
) -> None:
    login(client, email=CAROL_EMAIL)
    page = client.get("/admin/schedules/new").text
    assert re.findall(r"<script[^>]*>", page) == [
        '<script src="/static/schedule-preview.js" defer>'
    ]
    assert client.get("/static/schedule-preview.js").status_code == 200


def test_an_idle_admin_page_session_times_out_like_the_others(
    client: FlaskClient, clock: Any, world: World
) -> None:
    login(client, email=CAROL_EMAIL)
    assert client.get("/admin/audit").status_code == 200
    clock.advance(minutes=31)
    response = client.get("/admin/audit")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"
