"""The patient list and the patient page through the Flask test client, on SQLite and
PostgreSQL: program scoping, search, filters, pagination, response rates, charts, the
transcript, the audit row and escaping."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

from flask.testing import FlaskClient
from sqlalchemy import insert, select

from checkin.context import Context
from checkin.models import (
    Alert,
    Answer,
    AuditEvent,
    CheckIn,
    Message,
    Patient,
    TreatmentEvent,
)
from tests.conftest import T0, World
from tests.test_web import login

XSS = "<script>alert(1)</script>"


def row_ids(client: FlaskClient, query: str = "") -> list[int]:
    page = client.get(f"/patients{query}")
    assert page.status_code == 200
    return [int(i) for i in re.findall(r'class="patient-row" data-id="(\d+)"', page.text)]


def add_patients(ctx: Context, world: World, count: int, status: str = "active") -> None:
    rows = [
        {
            "program_id": world.program_id,
            "phone": f"+1617666{i:04d}",
            "name": f"Bulk {i:04d}",
            "timezone": "America/New_York",
            "language": "en",
            "status": status,
            "enrolled_at": T0,
            "rule_params": {},
        }
        for i in range(count)
    ]
    with ctx.db.session() as session:
        session.execute(insert(Patient), rows)


def checkin(ctx: Context, patient_id: int, days_ago: float, status: str, answered: bool) -> None:
    at = T0 - timedelta(days=days_ago)
    with ctx.db.session() as session:
        row = CheckIn(
            patient_id=patient_id,
            flow="daily_symptoms",
            idempotency_key=f"t:{patient_id}:{days_ago}:{status}",
            local_date=at.date(),
            due_at=at,
            expires_at=at + timedelta(hours=12),
            status=status,
            state={},
            created_at=at,
        )
        session.add(row)
        session.flush()
        if answered:
            for measure, value in (("fatigue", 4), ("pain", 3), ("mood", 6), ("phq2_total", 1)):
                session.add(
                    Answer(
                        checkin_id=row.id,
                        patient_id=patient_id,
                        measure=measure,
                        value=value,
                        status="answered",
                        recorded_at=at,
                    )
                )


def rename(ctx: Context, patient_id: int, name: str) -> None:
    with ctx.db.session() as session:
        session.get_one(Patient, patient_id).name = name


# --- access ------------------------------------------------------------------------------


def test_patient_pages_need_sign_in(client: FlaskClient, world: World) -> None:
    for path in ("/patients", f"/patients/{world.alice_id}"):
        response = client.get(path)
        assert response.status_code == 302
        assert urlsplit(response.headers["Location"]).path == "/login"


def test_another_programs_patient_is_404_and_not_listed(client: FlaskClient, world: World) -> None:
    login(client)
    assert client.get(f"/patients/{world.erin_id}").status_code == 404
    assert client.get("/patients/999999").status_code == 404
    assert row_ids(client) == [world.alice_id]
    assert "Erin" not in client.get("/patients?q=erin").text


def test_nav_links_to_patients(client: FlaskClient, world: World) -> None:
    login(client)
    assert 'href="/patients"' in client.get("/").text


# --- the list ----------------------------------------------------------------------------


def test_search_by_name_or_phone(client: FlaskClient, ctx: Context, world: World) -> None:
    add_patients(ctx, world, 3)
    login(client)
    assert row_ids(client, "?q=ALICE") == [world.alice_id]
    assert row_ids(client, "?q=555-0101") == [world.alice_id]
    assert len(row_ids(client, "?q=bulk")) == 3
    assert row_ids(client, "?q=%25") == []  # a LIKE wildcard is matched literally
    assert "No patients match" in client.get("/patients?q=nobody").text


def test_status_filter(client: FlaskClient, ctx: Context, world: World) -> None:
    add_patients(ctx, world, 2, status="paused")
    login(client)
    assert len(row_ids(client, "?status=paused")) == 2
    assert row_ids(client, "?status=active") == [world.alice_id]
    assert row_ids(client, "?status=opted_out") == []
    assert len(row_ids(client, "?status=bogus")) == 3  # unknown filter: everyone


def test_pagination(client: FlaskClient, ctx: Context, world: World) -> None:
    add_patients(ctx, world, 120)  # 121 with alice: pages of 50, 50, 21
    login(client)
    first, second, third = (row_ids(client, f"?page={n}") for n in (1, 2, 3))
    assert (len(first), len(second), len(third)) == (50, 50, 21)
    assert len(set(first) | set(second) | set(third)) == 121
    page2 = client.get("/patients?page=2").text
    assert "page 2 of 3" in page2
    assert 'href="/patients?page=3"' in page2 and 'href="/patients?page=1"' in page2
    assert row_ids(client, "?page=99") == third  # past the end: the last page
    searched = client.get("/patients?q=bulk&page=2").text
    assert "q=bulk" in searched and "page=3" in searched


def test_response_rates_count_answered_over_sent(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    a = world.alice_id
    # Last 7 days: 7 sent (4 completed, 1 expired with answers, 1 expired without, 1
    # interrupted) => 5 answered of 7 = 71%. Failed, missed and skipped are not counted.
    for day, status, answered in [
        (1, "completed", True),
        (2, "completed", True),
        (3, "completed", True),
        (4, "completed", True),
        (5, "expired", True),
        (5.5, "expired", False),
        (6, "interrupted", False),
        (6.2, "failed", False),
        (6.4, "missed", False),
        (6.6, "skipped", False),
        (20, "expired", False),  # only in the 30-day window: 5 of 8 = 62%
        (40, "completed", True),  # outside both windows
    ]:
        checkin(ctx, a, day, status, answered)
    with ctx.db.session() as session:
        session.add(
            Alert(
                ref="PATX1",
                patient_id=a,
                kind="severe",
                severity="high",
                status="open",
                evidence=[],
                created_at=T0,
                updated_at=T0,
            )
        )
    login(client)
    page = client.get("/patients").text
    assert re.search(r'class="rate-7">71% <span class="muted">\(5/7\)', page)
    assert re.search(r'class="rate-30">62% <span class="muted">\(5/8\)', page)
    assert re.search(r'class="open-alerts"><strong>1</strong>', page)
    yesterday = (T0 - timedelta(days=1)).date().isoformat()
    assert f'{yesterday} <span class="muted">completed</span>' in page


def test_no_checkins_reads_none_sent(client: FlaskClient, world: World) -> None:
    login(client)
    page = client.get("/patients").text
    assert "none sent" in page and "never" in page


# --- the patient page --------------------------------------------------------------------


def test_patient_page_charts_with_infusions(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    for day in range(1, 20):
        checkin(ctx, world.alice_id, day, "completed", True)
    with ctx.db.session() as session:
        session.add(
            TreatmentEvent(
                patient_id=world.alice_id,
                occurred_on=(T0 - timedelta(days=10)).date(),
                recorded_by="test",
                created_at=T0,
            )
        )
    login(client)
    response = client.get(f"/patients/{world.alice_id}?days=30")
    assert response.status_code == 200
    page = response.text
    for measure in ("fatigue", "pain", "mood", "phq2_total"):
        figure = page.split(f'id="chart-{measure}"')[1].split("</figure>")[0]
        assert "<svg" in figure and "Infusion" in figure
        assert "Baseline (median of last 7)" in figure and "Alert threshold" in figure
    assert "Alert threshold: 9" in page and "Alert threshold: 1" in page
    assert "<script" not in page  # pygal's JS is stripped; the CSP allows none
    policy = response.headers["Content-Security-Policy"]
    assert "style-src 'self' 'sha256-" in policy and "script-src" not in policy
    assert "19 readings" in page


def test_patient_page_period_choice(client: FlaskClient, world: World) -> None:
    login(client)
    assert "Readings over 365 days" in client.get(f"/patients/{world.alice_id}?days=365").text
    assert "Readings over 90 days" in client.get(f"/patients/{world.alice_id}?days=7").text


def test_transcript_shows_delivery_statuses(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    with ctx.db.session() as session:
        for i, (direction, status, code) in enumerate(
            [("outbound", "delivered", None), ("inbound", "received", None)]
            + [("outbound", "undelivered", 30003)]
        ):
            session.add(
                Message(
                    direction=direction,
                    patient_id=world.alice_id,
                    to_number="+1",
                    from_number="+2",
                    body=f"message number {i}",
                    purpose="checkin",
                    status=status,
                    error_code=code,
                    created_at=T0 - timedelta(hours=3 - i),
                )
            )
    login(client)
    page = client.get(f"/patients/{world.alice_id}").text
    transcript = page.split('id="transcript-heading"')[1]
    assert transcript.index("message number 2") < transcript.index("message number 0")
    assert "undelivered" in transcript and "error 30003" in transcript
    assert "delivered" in transcript and "received" in transcript
    assert "consent given" in page  # alice's enrolment consent


def test_patient_view_is_audited(client: FlaskClient, ctx: Context, world: World) -> None:
    login(client)
    response = client.get(f"/patients/{world.alice_id}", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert response.status_code == 200, response.headers
    with ctx.db.session() as session:
        rows = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "patient.view")))
    assert [(r.actor, r.target, r.detail) for r in rows] == [
        ("bob@example.org", f"patient:{world.alice_id}", {"ip": "10.1.2.3"})
    ]


def test_patient_name_is_escaped(client: FlaskClient, ctx: Context, world: World) -> None:
    rename(ctx, world.alice_id, XSS)
    login(client)
    for path in ("/patients", f"/patients/{world.alice_id}"):
        page = client.get(path).text
        assert XSS not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
