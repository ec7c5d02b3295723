"""The admin's export page through the test client (CSRF on), on SQLite and PostgreSQL: a
download of her own program only, de-identified by default, an attachment nobody caches, and
an audit row for each file; a clinician is refused."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from checkin.context import Context
from tests.conftest import ALICE, ERIN, World
from tests.records import ALICE_NOTE, History, seed
from tests.test_web import audit_rows, login, token

CAROL = "carol@example.org"
PAGE = "/admin/exports"


@pytest.fixture
def history(ctx: Context, world: World) -> History:
    return seed(ctx, world)


def download(client: FlaskClient, **form: str) -> Any:
    data = {"csrf_token": token(client, PAGE), "kind": "observations", "format": "csv", **form}
    return client.post(PAGE, data=data)


def test_the_form_offers_every_kind_and_ticks_deidentify(client: FlaskClient, world: World) -> None:
    login(client, email=CAROL)
    html = client.get(PAGE).text
    for kind in ("observations", "checkins", "alerts", "messages"):
        assert f'<option value="{kind}"' in html
    assert 'name="deidentify" value="yes" checked' in html
    assert 'href="/admin/exports"' in client.get("/admin").text


def test_an_admin_downloads_a_deidentified_csv_of_her_own_program(
    client: FlaskClient, world: World, history: History
) -> None:
    login(client, email=CAROL)
    response = download(client, deidentify="yes")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="checkin-observations-deidentified-2026-03-10.csv"'
    )
    body = response.text
    for secret in history.identifying:
        assert secret not in body, secret
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len({r["patient"] for r in rows}) == 1  # Alice; Erin is the other program's
    assert len(rows) == 19


def test_an_identified_download_keeps_the_contract_columns_and_her_program_only(
    client: FlaskClient, world: World, history: History
) -> None:
    login(client, email=CAROL)
    response = download(client, kind="alerts", format="json")  # the box left unticked
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert 'filename="checkin-alerts-2026-03-10.json"' in response.headers["Content-Disposition"]
    (alert,) = json.loads(response.text)
    assert {"phone", "kind", "severity", "status", "created_at"} <= set(alert)
    assert alert["phone"] == ALICE
    observations = download(client, format="json").text
    assert ALICE_NOTE in observations and ERIN not in observations


def test_a_download_is_audited_with_the_admin_her_program_and_her_address(
    client: FlaskClient, ctx: Context, world: World, history: History
) -> None:
    login(client, email=CAROL)
    response = download(
        client, kind="checkins", phone="(617) 555-0101", deidentify="yes", **{"from": "2026-03-08"}
    )
    assert response.status_code == 200
    (row,) = audit_rows(ctx, "export")
    assert (row.actor, row.target, row.program_id) == (CAROL, "checkins", world.program_id)
    assert row.detail == {
        "format": "csv",
        "filters": {
            "from": "2026-03-08",
            "patient": f"patient:{world.alice_id}",
            "program": world.program_id,
        },
        "deidentified": True,
        "rows": 4,  # her PHQ-2, post-infusion, expired and planned check-ins from 8 March on
        "ip": "127.0.0.1",
    }


def test_another_programs_patient_is_refused_like_an_unknown_number_and_not_audited(
    client: FlaskClient, ctx: Context, world: World, history: History
) -> None:
    login(client, email=CAROL)
    for phone in (ERIN, "+16175550100"):
        response = download(client, phone=phone)
        assert response.status_code == 400
        assert f"Not exported: no patient with phone {phone} in this program." in response.text
    assert audit_rows(ctx, "export") == []


def test_a_bad_form_is_refused_and_keeps_what_was_typed(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    response = download(client, kind="checkins", **{"from": "2026-03-10", "to": "2026-03-01"})
    assert response.status_code == 400
    assert "the to date 2026-03-01 is before the from date 2026-03-10" in response.text
    assert 'value="2026-03-10"' in response.text
    assert '<option value="checkins" selected>' in response.text
    assert 'name="deidentify" value="yes" checked' not in response.text  # as she left it
    assert download(client, kind="everything").status_code == 400
    assert download(client, format="xlsx").status_code == 400
    assert audit_rows(ctx, "export") == []


def test_a_clinician_cannot_open_the_page_or_download(
    client: FlaskClient, ctx: Context, world: World, history: History
) -> None:
    login(client)  # bob
    assert client.get(PAGE).status_code == 403
    data = {"csrf_token": token(client, "/"), "kind": "observations", "format": "csv"}
    assert client.post(PAGE, data=data).status_code == 403
    assert audit_rows(ctx, "export") == []
