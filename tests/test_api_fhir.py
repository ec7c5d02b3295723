"""FHIR R4 through the JSON API (/api/v1/fhir): the same resources `checkin export fhir`
writes, validated by fhir.resources, behind the API's token, roles and program boundary."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from checkin.context import Context
from tests.conftest import PUBLIC_URL, World
from tests.test_api import Tokens, audit_rows, call, error_of, seed
from tests.test_fhir import MODELS, Bundle, resources


@pytest.fixture
def api(ctx: Context, world: World) -> Tokens:
    return seed(ctx, world)


def test_a_patient_is_served_as_a_valid_fhir_patient_and_the_read_is_audited(
    client: FlaskClient, ctx: Context, world: World, api: Tokens
) -> None:
    response = call(client, "GET", f"/fhir/Patient/{world.alice_id}", api.bob)
    assert response.status_code == 200
    patient = response.get_json()
    MODELS["Patient"].model_validate(patient)
    assert patient["id"] == str(world.alice_id) and patient["name"][0]["text"] == "Alice Example"
    (row,) = [r for r in audit_rows(ctx, "patient.view") if r.detail.get("via") == "api"]
    assert (row.actor, row.target) == ("bob@example.org", f"patient:{world.alice_id}")


def test_everything_about_a_patient_is_one_valid_bundle_pointing_at_the_api(
    client: FlaskClient, ctx: Context, world: World, api: Tokens
) -> None:
    response = call(client, "GET", f"/fhir/Patient/{world.alice_id}/$everything", api.bob)
    assert response.status_code == 200
    bundle: dict[str, Any] = response.get_json()
    Bundle.model_validate(bundle)
    kinds = {r["resourceType"] for r in resources(bundle)}
    assert {"Patient", "Observation", "QuestionnaireResponse", "Questionnaire"} <= kinds
    pains = [
        o["valueInteger"]
        for o in resources(bundle, "Observation")
        if any(c.get("code") == "72514-3" for c in o["code"]["coding"])
    ]
    assert sorted(pains) == [3, 4, 5]  # alice's three pain readings, LOINC-coded
    assert all(e["fullUrl"].startswith(f"{PUBLIC_URL}/api/v1/fhir/") for e in bundle["entry"])
    (row,) = [r for r in audit_rows(ctx, "export") if r.detail.get("kind") == "fhir"]
    assert row.target == f"patient:{world.alice_id}" and row.detail["via"] == "api"


def test_a_window_keeps_only_the_check_ins_due_in_it(
    client: FlaskClient, world: World, api: Tokens
) -> None:
    path = f"/fhir/Patient/{world.alice_id}/$everything?from=2026-03-09&to=2026-03-10"
    bundle = call(client, "GET", path, api.bob).get_json()
    assert len(list(resources(bundle, "QuestionnaireResponse"))) == 1  # yesterday's only


def test_another_programs_patient_is_a_404_in_fhir_too(
    client: FlaskClient, world: World, api: Tokens
) -> None:
    for path in (f"/fhir/Patient/{world.erin_id}", f"/fhir/Patient/{world.erin_id}/$everything"):
        assert "not found" in error_of(call(client, "GET", path, api.bob), 404)
    assert error_of(call(client, "GET", f"/fhir/Patient/{world.alice_id}"), 401)


def test_the_questionnaires_and_the_code_system_are_served_and_valid(
    client: FlaskClient, world: World, api: Tokens
) -> None:
    listed = call(client, "GET", "/fhir/Questionnaire", api.bob).get_json()
    Bundle.model_validate(listed)
    ids = [r["id"] for r in resources(listed, "Questionnaire")]
    assert len(ids) >= 3
    one = call(client, "GET", f"/fhir/Questionnaire/{ids[0]}", api.bob).get_json()
    MODELS["Questionnaire"].model_validate(one)
    assert one["id"] == ids[0]
    assert error_of(call(client, "GET", "/fhir/Questionnaire/nope", api.bob), 404)
    system = call(client, "GET", "/fhir/CodeSystem/checkin-measures", api.bob).get_json()
    MODELS["CodeSystem"].model_validate(system)
    assert {c["code"] for c in system["concept"]} >= {"fatigue", "mood"}
