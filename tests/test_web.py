"""The staff web app through the Flask test client: sign-in, sessions, CSRF, program scoping,
the alerts inbox and the alert page, on SQLite and on PostgreSQL, with a frozen clock.

CSRF protection stays on (the `app` fixture's TESTING does not turn Flask-WTF off), so every
POST here carries the token read from the form, as a browser's would.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select

from checkin import alerts, evaluation, trends
from checkin.clock import FrozenClock
from checkin.context import Context
from checkin.models import Alert, Answer, AuditEvent, CheckIn, Patient, StaffUser
from checkin.patients import NewPatient, enrol
from checkin.simulate import twilio_inbound_params
from checkin.web.auth import role_required
from tests.conftest import ALICE, PUBLIC_URL, T0, World, _password_hash, signed_post
from tests.fake_twilio import FROM_NUMBER

PASSWORD = "a-long-test-password"  # what the world hashed for every staff member
BOB_EMAIL = "bob@example.org"
DAVE_EMAIL = "dave@example.org"
PAGER = alerts.Pager(PUBLIC_URL, FROM_NUMBER)
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


# --- helpers -----------------------------------------------------------------------------


def token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token from a page's form, as a browser would submit it."""
    page = client.get(path)
    match = TOKEN.search(page.get_data(as_text=True))
    assert match, f"no CSRF token in the form on {path}"
    return match.group(1)


def login(
    client: FlaskClient, email: str = BOB_EMAIL, password: str = PASSWORD, next: str = ""
) -> Any:
    data = {"csrf_token": token(client), "email": email, "password": password}
    if next:
        data["next"] = next
    return client.post("/login", data=data)


def post(client: FlaskClient, path: str, page: str, **data: str) -> Any:
    """POST a form found on `page`, with that page's CSRF token."""
    return client.post(path, data={"csrf_token": token(client, page), **data})


def raise_alert(
    ctx: Context,
    patient_id: int,
    kind: str,
    severity: str,
    at: datetime,
    evidence: dict[str, Any] | None = None,
) -> str:
    with ctx.db.session() as session:
        patient = session.get_one(Patient, patient_id)
        alert, _ = alerts.raise_alert(
            session, patient, kind, severity, evidence or {"rule": f"test {kind}"}, at, PAGER
        )
        return alert.ref


def give_dave_a_password(ctx: Context, world: World) -> None:
    with ctx.db.session() as session:
        session.get_one(StaffUser, world.dave_id).password_hash = _password_hash()


def audit_rows(ctx: Context, action: str) -> list[AuditEvent]:
    with ctx.db.session() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(session.scalars(stmt))


def alert_status(ctx: Context, ref: str) -> str:
    with ctx.db.session() as session:
        return session.scalars(select(Alert.status).where(Alert.ref == ref)).one()


def inbox_refs(client: FlaskClient, query: str = "") -> list[str]:
    page = client.get(f"/{query}")
    assert page.status_code == 200
    return re.findall(r'class="alert-row" data-ref="([A-Z0-9]+)"', page.get_data(as_text=True))


def pain_series(ctx: Context, patient_id: int, values: list[int]) -> None:
    """One daily check-in per value, the newest yesterday."""
    with ctx.db.session() as session:
        for day, value in enumerate(values):
            at = T0 - timedelta(days=len(values) - day)
            checkin = CheckIn(
                patient_id=patient_id,
                flow="daily_symptoms",
                idempotency_key=f"web:{patient_id}:{day}",
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
                    measure="pain",
                    value=value,
                    status="answered",
                    recorded_at=at,
                )
            )


def worsening_alert(ctx: Context, patient_id: int, values: list[int] | None = None) -> str:
    """Pain at 2 for two weeks, then 6 and 7: the real rule's finding, raised as an alert."""
    pain_series(ctx, patient_id, values or [2] * 14 + [6, 7])
    params = trends.RuleParams()
    with ctx.db.session() as session:
        history = evaluation.recent_readings(
            session, patient_id, "pain", trends.history_needed(params)
        )
    (finding,) = [f for f in trends.evaluate("pain", history, params) if f.kind == "worsening"]
    evidence = {**finding.evidence, "rule": finding.rule}
    return raise_alert(ctx, patient_id, "worsening", finding.severity, T0, evidence)


def resolved_alerts(ctx: Context, patient_id: int, kind: str, severities: list[str]) -> list[str]:
    """Resolved alerts (any number per patient and kind), one a minute, oldest first; their
    refs in the inbox's order: most severe first, then oldest first."""
    refs = []
    with ctx.db.session() as session:
        for i, severity in enumerate(severities):
            at = T0 - timedelta(days=1) + timedelta(minutes=i)
            ref = f"{kind[:2].upper()}{i:05d}"  # unique per kind; real refs have no 0
            session.add(
                Alert(
                    ref=ref,
                    patient_id=patient_id,
                    kind=kind,
                    severity=severity,
                    status="resolved",
                    evidence=[{"at": at.isoformat(), "rule": f"test {kind}"}],
                    created_at=at,
                    updated_at=at,
                    resolved_at=at,
                    resolution_note="test",
                )
            )
            refs.append((-alerts.SEVERITY_RANK[severity], i, ref))
    return [ref for *_, ref in sorted(refs)]


def row_of(page_html: str, ref: str) -> str:
    match = re.search(rf'<tr class="alert-row" data-ref="{ref}">(.*?)</tr>', page_html, re.S)
    assert match, f"no inbox row for {ref}"
    return match.group(1)


def cell_text(row_html: str, cls: str) -> str:
    """A cell's text as a sighted reader sees it (visually hidden text left out)."""
    match = re.search(rf'<td class="{cls}">(.*?)</td>', row_html, re.S)
    assert match, f"no {cls} cell"
    shown = re.sub(r'<span class="visually-hidden">.*?</span>', "", match.group(1))
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", shown)).split())


def pager_links(page_html: str) -> dict[str, dict[str, list[str]]]:
    """The pager's links: label -> the query string each carries."""
    nav = re.search(r'<nav aria-label="Pages" class="pager">(.*?)</nav>', page_html, re.S)
    assert nav, "no pager"
    links = re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav.group(1))
    return {label: parse_qs(urlsplit(html_lib.unescape(href)).query) for href, label in links}


def caption(page_html: str) -> str:
    match = re.search(r'<caption id="inbox-caption">(.*?)</caption>', page_html, re.S)
    assert match, "no caption"
    return match.group(1)


@contextmanager
def statements(ctx: Context) -> Iterator[list[str]]:
    """Every SQL statement the app sends while the block runs."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        sent.append(sql)

    event.listen(ctx.db.engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", note)


# --- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/?status=all", "/alerts/K7Q2X9"])
def test_every_staff_page_sends_a_stranger_to_sign_in(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"


def test_staff_sign_in_with_email_and_password_and_land_on_the_inbox(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    response = login(client, email="  BOB@example.org ")
    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/"
    page = client.get("/")
    assert page.status_code == 200 and "Bob" in page.get_data(as_text=True)
    (row,) = audit_rows(ctx, "auth.login")
    assert (row.actor, row.detail["ip"]) == (BOB_EMAIL, "127.0.0.1")


def test_a_wrong_password_is_refused_and_recorded(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    response = login(client, password="not-the-password")
    assert response.status_code == 401
    assert "Wrong email or password" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302
    (row,) = audit_rows(ctx, "auth.login_failed")
    assert row.target == BOB_EMAIL


def test_an_unknown_email_gets_the_same_answer_as_a_wrong_password(
    client: FlaskClient, world: World
) -> None:
    response = login(client, email="nobody@example.org")
    assert response.status_code == 401
    assert "Wrong email or password" in response.get_data(as_text=True)


def test_after_five_failures_the_sixth_attempt_is_refused_even_with_the_right_password(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World
) -> None:
    for _ in range(5):
        assert login(client, password="guess").status_code == 401
        clock.advance(seconds=30)
    refused = login(client)
    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.get_data(as_text=True)
    assert client.get("/").status_code == 302
    assert login(client, email="carol@example.org").status_code == 303  # others unaffected
    post(client, "/logout", "/")
    clock.advance(minutes=15)
    assert login(client).status_code == 303  # the failures have aged out


def test_after_21_failures_from_one_address_it_is_refused_for_every_email_but_others_are_not(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World
) -> None:
    # A password spray: a few guesses on each of many emails, each under its own limit of 5.
    for i in range(21):
        assert login(client, email=f"staff{i % 7}@example.org", password="guess").status_code == 401
        clock.advance(seconds=20)
    refused = login(client, email="carol@example.org")
    assert refused.status_code == 429
    assert "Too many failed sign-ins from this network address" in refused.get_data(as_text=True)
    assert client.get("/").status_code == 302
    (row,) = audit_rows(ctx, "auth.login_refused")
    assert (row.target, row.detail["ip"]) == ("carol@example.org", "127.0.0.1")

    elsewhere = {"REMOTE_ADDR": "10.0.0.7"}
    data = {"csrf_token": token(client), "email": "carol@example.org", "password": PASSWORD}
    assert client.post("/login", data=data, environ_base=elsewhere).status_code == 303
    post(client, "/logout", "/")
    clock.advance(minutes=15)
    assert login(client).status_code == 303  # the failures have aged out


def test_signing_out_ends_the_session(client: FlaskClient, ctx: Context, world: World) -> None:
    login(client)
    response = post(client, "/logout", "/")
    assert response.status_code == 303
    assert client.get("/").status_code == 302
    assert [r.actor for r in audit_rows(ctx, "auth.logout")] == [BOB_EMAIL]


def test_a_session_idle_for_30_minutes_is_signed_out_and_activity_keeps_it_alive(
    client: FlaskClient, clock: FrozenClock, world: World
) -> None:
    login(client)
    for _ in range(3):  # an hour of use, never 30 minutes apart
        clock.advance(minutes=20)
        assert client.get("/").status_code == 200
    clock.advance(minutes=31)
    response = client.get("/")
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"
    assert "without activity" in client.get("/login").get_data(as_text=True)


def test_a_new_password_ends_the_sessions_signed_in_with_the_old_one(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client)
    with ctx.db.session() as session:
        session.get_one(StaffUser, world.bob_id).password_hash = "scrypt:changed"
    assert client.get("/").status_code == 302


def test_outside_demo_mode_the_session_cookie_is_secure_httponly_and_lax(
    client: FlaskClient, world: World
) -> None:
    response = login(client)
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_sign_in_never_redirects_to_another_site(client: FlaskClient, world: World) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = login(client, next=target)
        assert response.headers["Location"] == "/", target
        post(client, "/logout", "/")


def test_a_role_required_page_refuses_a_clinician_and_admits_an_admin(
    app: Flask, client: FlaskClient, world: World
) -> None:
    app.add_url_rule("/probe", "probe", role_required("admin")(lambda: "admin only"))
    assert client.get("/probe").status_code == 302
    login(client)
    assert client.get("/probe").status_code == 403
    post(client, "/logout", "/")
    login(client, email="carol@example.org")
    assert client.get("/probe").get_data(as_text=True) == "admin only"


# --- CSRF --------------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    ref = raise_alert(ctx, world.alice_id, "severe", "high", T0)
    bare_login = client.post("/login", data={"email": BOB_EMAIL, "password": PASSWORD})
    assert bare_login.status_code == 400
    assert client.get("/").status_code == 302  # not signed in
    login(client)
    refused = client.post(f"/alerts/{ref}/acknowledge")
    assert refused.status_code == 400
    forged = client.post(f"/alerts/{ref}/acknowledge", data={"csrf_token": "forged"})
    assert forged.status_code == 400
    assert alert_status(ctx, ref) == "open"


def test_the_twilio_webhooks_need_no_csrf_token_their_signature_is_their_proof(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    params = twilio_inbound_params(ctx.settings, ALICE, "HELP")
    assert signed_post(client, "/twilio/sms", params).status_code == 200


# --- program scoping ---------------------------------------------------------------------


def test_staff_of_another_program_get_404_for_alices_alert_and_never_see_it(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    ref = raise_alert(ctx, world.alice_id, "severe", "high", T0)
    erins = raise_alert(ctx, world.erin_id, "severe", "high", T0)
    give_dave_a_password(ctx, world)
    login(client, email=DAVE_EMAIL)
    assert client.get(f"/alerts/{ref}").status_code == 404
    assert client.get("/alerts/NOSUCH").status_code == 404
    assert inbox_refs(client, "?status=all") == [erins]
    acknowledged = post(client, f"/alerts/{ref}/acknowledge", "/")
    assert acknowledged.status_code == 404
    assert alert_status(ctx, ref) == "open"
    assert "Alice" not in client.get("/").get_data(as_text=True)


# --- the inbox -----------------------------------------------------------------------------


def test_the_inbox_lists_urgent_then_high_then_routine_and_oldest_first_within_each(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    a = world.alice_id
    routine_old = raise_alert(ctx, a, "non_response", "routine", T0 - timedelta(hours=9))
    high_new = raise_alert(ctx, a, "severe", "high", T0 - timedelta(hours=1))
    urgent_new = raise_alert(ctx, a, "crisis", "urgent", T0 - timedelta(minutes=5))
    high_old = raise_alert(ctx, a, "worsening", "high", T0 - timedelta(hours=5))
    urgent_old = raise_alert(ctx, a, "side_effect", "urgent", T0 - timedelta(hours=2))
    raise_alert(ctx, world.erin_id, "crisis", "urgent", T0)  # the other program's
    login(client)
    assert inbox_refs(client) == [urgent_old, urgent_new, high_old, high_new, routine_old]


def test_the_inbox_filters_by_kind_and_by_status(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    crisis = raise_alert(ctx, world.alice_id, "crisis", "urgent", T0 - timedelta(hours=2))
    severe = raise_alert(ctx, world.alice_id, "severe", "high", T0 - timedelta(hours=1))
    stale = raise_alert(ctx, world.alice_id, "non_response", "routine", T0 - timedelta(days=3))
    with ctx.db.session() as session:
        bob = session.get_one(StaffUser, world.bob_id)
        alerts.acknowledge(session, alerts.by_ref(session, severe), bob, T0, via="cli")
        alerts.resolve(session, alerts.by_ref(session, stale), bob, "phoned", T0, via="cli")
    login(client)
    assert inbox_refs(client) == [crisis, severe]  # needs action: open or acknowledged
    assert inbox_refs(client, "?status=open") == [crisis]
    assert inbox_refs(client, "?status=acknowledged") == [severe]
    assert inbox_refs(client, "?status=resolved") == [stale]
    assert inbox_refs(client, "?status=all") == [crisis, severe, stale]
    assert inbox_refs(client, "?status=all&kind=severe") == [severe]
    assert inbox_refs(client, "?kind=crisis") == [crisis]
    assert inbox_refs(client, "?kind=nonsense&status=nonsense") == [crisis, severe]


def test_the_inbox_shows_50_alerts_a_page_and_its_page_links_keep_the_filters(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    severities = ["high" if i % 10 == 0 else "routine" for i in range(120)]
    expected = resolved_alerts(ctx, world.alice_id, "non_response", severities)
    resolved_alerts(ctx, world.alice_id, "severe", ["high"] * 3)  # not this kind: never shown
    login(client)
    query = "?status=resolved&kind=non_response"
    first = client.get(f"/{query}").get_data(as_text=True)
    assert "120 alerts, page 1 of 3" in caption(first)
    links = pager_links(first)
    assert set(links) == {"1", "2", "3", "Next"}
    for label, page in (("2", "2"), ("3", "3"), ("Next", "2")):
        assert links[label] == {"page": [page], "status": ["resolved"], "kind": ["non_response"]}
    assert 'aria-current="page">1</a>' in first

    shown = [inbox_refs(client, f"{query}&page={n}") for n in (1, 2, 3)]
    assert [len(refs) for refs in shown] == [50, 50, 20]
    assert shown[0] + shown[1] + shown[2] == expected  # the 12 high ones lead page 1
    last = client.get(f"/{query}&page=3").get_data(as_text=True)
    assert "page 3 of 3" in caption(last)
    assert set(pager_links(last)) == {"Previous", "1", "2", "3"}


@pytest.mark.parametrize(
    ("asked", "shown"),
    [
        ("99", 3),
        ("4", 3),
        ("0", 1),
        ("-2", 1),
        ("abc", 1),
        ("2.5", 1),
        ("\u00b2", 1),
        ("9" * 5000, 1),
    ],
)
def test_a_page_number_past_the_end_or_not_a_number_shows_the_nearest_real_page(
    client: FlaskClient, ctx: Context, world: World, asked: str, shown: int
) -> None:
    resolved_alerts(ctx, world.alice_id, "non_response", ["routine"] * 101)
    login(client)
    page = client.get("/", query_string={"status": "resolved", "page": asked})
    assert page.status_code == 200
    assert f"page {shown} of 3" in caption(page.get_data(as_text=True))


def test_one_page_of_alerts_has_no_pager(client: FlaskClient, ctx: Context, world: World) -> None:
    raise_alert(ctx, world.alice_id, "severe", "high", T0)
    login(client)
    html = client.get("/?page=2").get_data(as_text=True)
    assert caption(html).startswith("1 alert, most severe first")
    assert 'class="pager"' not in html


def test_each_inbox_row_says_why_it_fired_and_shows_the_recent_readings_judged_ones_marked(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    worsening = worsening_alert(ctx, world.alice_id)
    crisis = raise_alert(
        ctx, world.alice_id, "crisis", "urgent", T0, {"matched": "want to die", "message_id": 1}
    )
    login(client)
    html = client.get("/").get_data(as_text=True)
    assert 'scope="col">Why it fired</th>' in html and 'scope="col">Recent readings</th>' in html

    row = row_of(html, worsening)
    assert cell_text(row, "why") == (
        "pain 6, 7 vs baseline 2 (worsening ≥2 points and ≥30% on 2 check-ins)"
    )
    assert cell_text(row, "recent") == "pain: 2 2 2 2 2 6 7"  # the newest 7, oldest first
    assert re.findall(r'<strong class="judged">(\d+)', row) == ["6", "7"]
    assert row.count('<span class="visually-hidden"> (judged)</span>') == 2  # read aloud

    row = row_of(html, crisis)
    assert cell_text(row, "why") == 'crisis language: "want to die"'
    assert cell_text(row, "recent") == "–"  # a crisis names no measure


def test_the_inbox_reads_every_rows_recent_readings_in_one_query(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    refs = {}
    for n, usual in enumerate((1, 2, 3)):
        with ctx.db.session() as session:
            patient = enrol(
                session,
                NewPatient(f"+1617555020{n}", f"Patient {n}", "America/New_York"),
                T0 - timedelta(days=30),
                actor="test",
                sender=FROM_NUMBER,
                welcome=False,
            )
            patient_id = patient.id
        refs[usual] = worsening_alert(ctx, patient_id, [usual] * 14 + [usual + 5, usual + 6])
    login(client)
    with statements(ctx) as sent:
        html = client.get("/").get_data(as_text=True)
    assert len([sql for sql in sent if "FROM answers" in sql]) == 1
    for usual, ref in refs.items():
        readings = [str(usual)] * 5 + [str(usual + 5), str(usual + 6)]
        assert cell_text(row_of(html, ref), "recent") == "pain: " + " ".join(readings)


# --- the alert page --------------------------------------------------------------------------


def test_the_alert_page_shows_the_evidence_that_fired_it_and_recent_readings(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    ref = worsening_alert(ctx, world.alice_id)
    login(client)
    page = client.get(f"/alerts/{ref}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "worsening vs baseline" in html  # the rule
    for words in ("judged", "baseline", "thresholds", "median", "consecutive"):
        assert words in html, words
    readings = html[html.index('id="readings-heading"') :]
    assert readings.count("(judged)") == 2  # the 6 and the 7, marked inline
    assert readings.count("<td>2</td>") == 12  # the newest 14 readings: twelve 2s, a 6, a 7


def test_viewing_an_alert_is_recorded_with_who_and_from_where(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    ref = raise_alert(ctx, world.alice_id, "severe", "high", T0)
    login(client)
    client.get(f"/alerts/{ref.lower()}")
    (row,) = audit_rows(ctx, "alert.view")
    assert (row.actor, row.target, row.detail["ip"]) == (BOB_EMAIL, f"alert:{ref}", "127.0.0.1")
    assert row.at == T0


def test_acknowledge_then_resolve_with_a_note_from_the_web_are_audited(
    client: FlaskClient, ctx: Context, clock: FrozenClock, world: World
) -> None:
    ref = raise_alert(ctx, world.alice_id, "severe", "high", T0)
    page = f"/alerts/{ref}"
    login(client)
    acknowledged = post(client, f"{page}/acknowledge", page)
    assert acknowledged.status_code == 303 and acknowledged.headers["Location"] == page
    assert alert_status(ctx, ref) == "acknowledged"
    assert "Acknowledged: alert" in client.get(page).get_data(as_text=True)

    no_note = post(client, f"{page}/resolve", page, note="   ")
    assert no_note.status_code == 303
    assert "resolution note is required" in client.get(page).get_data(as_text=True)
    assert alert_status(ctx, ref) == "acknowledged"

    clock.advance(minutes=10)
    post(client, f"{page}/resolve", page, note="Called her; <b>GP</b> visit booked.")
    assert alert_status(ctx, ref) == "resolved"
    html = client.get(page).get_data(as_text=True)
    assert "Called her; &lt;b&gt;GP&lt;/b&gt; visit booked." in html
    assert 'action="/alerts/' not in html  # nothing left to do
    for action in ("alert.acknowledge", "alert.resolve"):
        (row,) = audit_rows(ctx, action)
        assert (row.actor, row.target) == (BOB_EMAIL, f"alert:{ref}")
        assert row.detail == {"via": "web", "ip": "127.0.0.1"}


def test_acknowledging_twice_says_so_instead_of_failing(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    ref = raise_alert(ctx, world.alice_id, "severe", "high", T0)
    page = f"/alerts/{ref}"
    login(client)
    tok = token(client, page)
    client.post(f"{page}/acknowledge", data={"csrf_token": tok})
    client.post(f"{page}/acknowledge", data={"csrf_token": tok})  # a second tab
    assert "is already acknowledged" in client.get(page).get_data(as_text=True)
    assert len(audit_rows(ctx, "alert.acknowledge")) == 1


def test_a_patient_named_like_a_script_is_rendered_inert(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    name = "<script>alert(1)</script>"
    with ctx.db.session() as session:
        mallory = enrol(
            session,
            NewPatient("+16175550103", name, "America/New_York"),
            T0,
            actor="test",
            sender=FROM_NUMBER,
            welcome=False,
        )
        mallory_id = mallory.id
    ref = raise_alert(ctx, mallory_id, "severe", "high", T0, {"rule": name, "note": name})
    login(client)
    for path in ("/", f"/alerts/{ref}"):
        response = client.get(path)
        html = response.get_data(as_text=True)
        assert "<script" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]


def test_the_link_in_an_sms_page_lands_on_that_alert_after_sign_in(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    ref = raise_alert(ctx, world.alice_id, "crisis", "urgent", T0)
    with ctx.db.session() as session:
        text = alerts.staff_text(alerts.by_ref(session, ref), PUBLIC_URL)
    link = re.search(r"https://\S+", text)
    assert link is not None
    path = urlsplit(link.group(0)).path
    assert path == f"/alerts/{ref}"
    bounced = client.get(path)
    assert bounced.status_code == 302
    login_page = bounced.headers["Location"]
    next_field = re.search(
        r'name="next" value="([^"]+)"', client.get(login_page).get_data(as_text=True)
    )
    assert next_field is not None and next_field.group(1) == path
    landed = login(client, next=next_field.group(1))
    assert landed.status_code == 303 and landed.headers["Location"] == path
    page = client.get(path)
    assert page.status_code == 200 and ref in page.get_data(as_text=True)
