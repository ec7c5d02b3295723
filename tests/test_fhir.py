"""The FHIR R4 export: every resource type and the whole Bundle validated by `fhir.resources`
(its R4B models, which are R4's for these six resources; docs/exports.md), plus what the
models cannot check: codes from R4's value sets, LOINC where LOINC has the item, references
that resolve inside the bundle, and responses that match their Questionnaire."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from checkin import fhir, flows
from checkin.cli import cli
from checkin.context import Context
from checkin.models import AuditEvent, Patient
from tests.conftest import ALICE, ERIN, PUBLIC_URL, T0, World, twilio_env
from tests.fake_twilio import FakeTwilio
from tests.records import ALICE_NOTE, History, seed

with warnings.catch_warnings():
    # fhir_core probes for its optional lxml; once pygal's import hook is installed (the
    # chart tests load it) that failed search ends in an ImportWarning, an error in this suite.
    warnings.simplefilter("ignore", ImportWarning)
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.codesystem import CodeSystem
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient as FhirPatient
    from fhir.resources.R4B.questionnaire import Questionnaire
    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

MODELS: dict[str, Any] = {
    "Patient": FhirPatient,
    "Observation": Observation,
    "Questionnaire": Questionnaire,
    "QuestionnaireResponse": QuestionnaireResponse,
    "CodeSystem": CodeSystem,
}
# R4 required value sets the models leave unchecked.
R4_CODES = {
    "Observation": {"final", "preliminary", "amended", "registered", "corrected", "cancelled"},
    "QuestionnaireResponse": {"in-progress", "completed", "amended", "entered-in-error", "stopped"},
    "Questionnaire": {"draft", "active", "retired", "unknown"},
    "CodeSystem": {"draft", "active", "retired", "unknown"},
}
ITEM_TYPES = {"group", "display", "boolean", "decimal", "integer", "date", "string", "choice"}
LOCAL = f"{PUBLIC_URL}/fhir/CodeSystem/checkin-measures"
LOINC_OF = {
    "pain": "72514-3",
    "phq2_total": "55758-7",
    "phq2_interest": "44250-9",
    "phq2_down": "44255-8",
}


@pytest.fixture
def history(ctx: Context, world: World) -> History:
    return seed(ctx, world)


@pytest.fixture
def alice_bundle(ctx: Context, world: World, history: History) -> dict[str, Any]:
    with ctx.db.session() as session:
        alice = session.get_one(Patient, world.alice_id)
        return fhir.patient_bundle(session, alice, PUBLIC_URL, timestamp=T0)


def resources(bundle: dict[str, Any], kind: str | None = None) -> Iterator[dict[str, Any]]:
    for entry in bundle["entry"]:
        if kind is None or entry["resource"]["resourceType"] == kind:
            yield entry["resource"]


def by_id(bundle: dict[str, Any], kind: str, ident: int) -> dict[str, Any]:
    return next(r for r in resources(bundle, kind) if r["id"] == str(ident))


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_resource_of_each_type_validates_as_fhir(
    alice_bundle: dict[str, Any], kind: str
) -> None:
    found = list(resources(alice_bundle, kind))
    assert found, f"no {kind} in the bundle"
    for resource in found:
        MODELS[kind].model_validate(resource)
        if kind in R4_CODES:
            assert resource["status"] in R4_CODES[kind], resource["status"]


def test_the_whole_bundle_validates_as_a_collection_with_full_urls(
    alice_bundle: dict[str, Any],
) -> None:
    parsed = Bundle.model_validate(alice_bundle)
    assert parsed.type == "collection"
    assert alice_bundle["timestamp"] == T0.isoformat()
    urls = [e["fullUrl"] for e in alice_bundle["entry"]]
    assert len(set(urls)) == len(urls)
    for entry in alice_bundle["entry"]:
        r = entry["resource"]
        assert entry["fullUrl"] == f"{PUBLIC_URL}/fhir/{r['resourceType']}/{r['id']}"
    Bundle.model_validate_json(json.dumps(alice_bundle))  # as the CLI prints it


def test_every_reference_in_the_bundle_resolves_inside_it(alice_bundle: dict[str, Any]) -> None:
    present = {f"{r['resourceType']}/{r['id']}" for r in resources(alice_bundle)}
    canonical = {f"{q['url']}|{q['version']}" for q in resources(alice_bundle, "Questionnaire")}
    references = list(_references(alice_bundle))
    assert len(references) > 30
    assert set(references) <= present
    for response in resources(alice_bundle, "QuestionnaireResponse"):
        assert response["questionnaire"] in canonical


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference":
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


# --- codes ---------------------------------------------------------------------------------


def test_observations_use_loinc_where_it_exists_and_the_local_code_always(
    alice_bundle: dict[str, Any],
) -> None:
    local = {c["code"] for c in next(resources(alice_bundle, "CodeSystem"))["concept"]}
    seen = set()
    for obs in resources(alice_bundle, "Observation"):
        codings = {c["system"]: c["code"] for c in obs["code"]["coding"]}
        measure = codings[LOCAL]
        seen.add(measure)
        assert measure in local
        assert codings.get("http://loinc.org") == LOINC_OF.get(measure), measure
        assert obs["category"][0]["coding"][0]["code"] == "survey"
    assert {"fatigue", "mood", "se_headache", *LOINC_OF} <= seen


def test_the_code_system_defines_every_measure_the_flows_ask_and_lives_under_the_public_url() -> (
    None
):
    system = fhir.code_system(PUBLIC_URL)
    assert system["url"] == LOCAL and system["content"] == "complete"
    codes = [c["code"] for c in system["concept"]]
    asked = {
        q.measure for name in flows.FLOW_NAMES for f in flows.versions(name) for q in f.questions
    }
    assert asked | {"phq2_total"} == set(codes) and system["count"] == len(codes)
    CodeSystem.model_validate(system)


# --- values, responses, questionnaires -------------------------------------------------------


def test_yes_no_answers_are_booleans_and_scales_are_integers(
    alice_bundle: dict[str, Any], history: History
) -> None:
    values = {
        _measure(obs): obs
        for obs in resources(alice_bundle, "Observation")
        if obs["derivedFrom"]
        == [{"reference": f"QuestionnaireResponse/{history.alice_post_infusion}"}]
    }
    assert values["se_headache"]["valueBoolean"] is True
    assert values["se_nausea"]["valueBoolean"] is False
    assert values["mood"]["valueInteger"] == 7 and "valueBoolean" not in values["mood"]
    response = by_id(alice_bundle, "QuestionnaireResponse", history.alice_post_infusion)
    answers = {i["linkId"]: i["answer"][0] for i in response["item"]}
    assert answers["se_headache"] == {"valueBoolean": True}
    assert answers["mood"] == {"valueInteger": 7}


def _measure(obs: dict[str, Any]) -> str:
    return next(str(c["code"]) for c in obs["code"]["coding"] if c["system"] == LOCAL)


def test_an_observation_has_its_time_subject_note_and_response(
    alice_bundle: dict[str, Any], world: World, history: History
) -> None:
    pain = next(
        obs
        for obs in resources(alice_bundle, "Observation")
        if _measure(obs) == "pain"
        and obs["derivedFrom"][0]["reference"] == f"QuestionnaireResponse/{history.alice_daily}"
    )
    assert pain["status"] == "final" and pain["valueInteger"] == 9
    assert pain["subject"] == {"reference": f"Patient/{world.alice_id}"}
    assert pain["effectiveDateTime"] == (T0 - timedelta(days=3, minutes=-2)).isoformat()
    assert pain["note"] == [{"text": ALICE_NOTE}]


def test_each_response_matches_its_questionnaire_and_status(
    alice_bundle: dict[str, Any], history: History
) -> None:
    questionnaires = {
        f"{q['url']}|{q['version']}": q for q in resources(alice_bundle, "Questionnaire")
    }
    for response in resources(alice_bundle, "QuestionnaireResponse"):
        items = [i["linkId"] for i in questionnaires[response["questionnaire"]]["item"]]
        answered = [i["linkId"] for i in response.get("item", [])]
        assert answered == [m for m in items if m in answered]  # known, in order
    expired = by_id(alice_bundle, "QuestionnaireResponse", history.alice_expired)
    assert expired["status"] == "stopped"
    assert [i["linkId"] for i in expired["item"]] == ["fatigue"]  # pain and mood went missing
    weekly = by_id(alice_bundle, "QuestionnaireResponse", history.alice_weekly)
    assert weekly["status"] == "completed"
    assert [i["linkId"] for i in weekly["item"]] == ["phq2_interest", "phq2_down", "phq2_total"]
    ids = {r["id"] for r in resources(alice_bundle, "QuestionnaireResponse")}
    assert str(history.alice_pending) not in ids  # never asked: nothing to respond to


def test_questionnaires_carry_the_english_texts_and_the_answer_bounds() -> None:
    by_flow = {q["id"]: q for q in fhir.questionnaires(PUBLIC_URL)}
    assert set(by_flow) == {"daily-symptoms-v1", "weekly-mood-v1", "post-infusion-v1"}
    daily = {i["linkId"]: i for i in by_flow["daily-symptoms-v1"]["item"]}
    assert daily["fatigue"]["text"].startswith("How tired have you felt today?")
    assert daily["fatigue"]["type"] == "integer"
    assert [e["valueInteger"] for e in daily["pain"]["extension"]] == [0, 10]
    weekly = {i["linkId"]: i for i in by_flow["weekly-mood-v1"]["item"]}
    assert [o["valueInteger"] for o in weekly["phq2_down"]["answerOption"]] == [0, 1, 2, 3]
    assert weekly["phq2_total"]["readOnly"] is True
    post = by_flow["post-infusion-v1"]["item"]
    assert [i["type"] for i in post] == ["boolean"] * 9 + ["integer"]
    for questionnaire in by_flow.values():
        Questionnaire.model_validate(questionnaire)
        assert questionnaire["status"] == "active"
        assert {i["type"] for i in questionnaire["item"]} <= ITEM_TYPES


def test_the_patient_has_her_number_and_name_and_no_diagnosis_or_treatment(
    alice_bundle: dict[str, Any], world: World
) -> None:
    (patient,) = resources(alice_bundle, "Patient")
    assert patient["telecom"] == [{"system": "phone", "value": ALICE, "use": "mobile"}]
    assert patient["name"] == [{"text": "Alice Example"}]
    assert patient["identifier"][0] == {
        "use": "usual",
        "system": f"{PUBLIC_URL}/fhir/sid/patient-id",
        "value": str(world.alice_id),
    }
    text = json.dumps(patient).lower()
    assert not any(word in text for word in ("sclerosis", "ketamine", "depress", "infusion"))
    kinds = {r["resourceType"] for r in resources(alice_bundle)}
    assert kinds == {*MODELS}  # no Condition, no MedicationAdministration


# --- bundles of many patients, the CLI -------------------------------------------------------


def test_a_programs_bundle_leaves_out_the_other_program(
    ctx: Context, world: World, history: History
) -> None:
    with ctx.db.session() as session:
        mine = fhir.all_patients_bundle(session, world.program_id, PUBLIC_URL)
        everyone = fhir.all_patients_bundle(session, None, PUBLIC_URL)
    assert [p["id"] for p in resources(mine, "Patient")] == [str(world.alice_id)]
    assert {p["id"] for p in resources(everyone, "Patient")} == {
        str(world.alice_id),
        str(world.erin_id),
    }
    assert ERIN not in json.dumps(mine)
    Bundle.model_validate(everyone)


def test_a_period_keeps_the_checkins_due_within_it(
    ctx: Context, world: World, history: History
) -> None:
    with ctx.db.session() as session:
        alice = session.get_one(Patient, world.alice_id)
        day = T0 - timedelta(days=2, hours=14)  # midnight UTC starting 8 March
        bundle = fhir.patient_bundle(
            session, alice, PUBLIC_URL, since=day, before=day + timedelta(days=1)
        )
    assert [r["id"] for r in resources(bundle, "QuestionnaireResponse")] == [
        str(history.alice_weekly)
    ]
    assert len(list(resources(bundle, "Observation"))) == 3


def test_the_cli_prints_a_valid_bundle_for_one_patient_and_audits_it(
    ctx: Context, db_url: str, fake_twilio: FakeTwilio, world: World, history: History
) -> None:
    env = twilio_env(db_url, fake_twilio)
    result = CliRunner().invoke(
        cli, ["export", "fhir", "--phone", ALICE], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.output)
    Bundle.model_validate(bundle)
    assert [p["telecom"][0]["value"] for p in resources(bundle, "Patient")] == [ALICE]
    everyone = CliRunner().invoke(cli, ["export", "fhir"], env=env, catch_exceptions=False)
    assert {p["id"] for p in resources(json.loads(everyone.output), "Patient")} == {
        str(world.alice_id),
        str(world.erin_id),
    }
    with ctx.db.session() as session:
        rows = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "export")))
    assert [(r.target, r.detail["format"], r.detail["rows"]) for r in rows][0] == (
        "fhir",
        "json",
        len(bundle["entry"]),
    )
    assert rows[0].program_id == world.program_id and rows[1].program_id is None
