"""FHIR R4 under /api/v1/fhir: the same resources `checkin export fhir` writes (checkin.fhir).

- GET /fhir/Patient/{id}: the Patient resource.
- GET /fhir/Patient/{id}/$everything[?from&to]: a Bundle with the patient, every check-in as
  a QuestionnaireResponse, every answer as an Observation, and the Questionnaires and the
  CodeSystem they use (FHIR's own name for "everything about this patient").
- GET /fhir/Questionnaire, GET /fhir/Questionnaire/{id}, GET /fhir/CodeSystem/checkin-measures.

Answers are JSON (FHIR's JSON format) with the API's token, roles and program boundary; a read
of a patient is audited like any other, and $everything like an export.
"""

from __future__ import annotations

from typing import Any

from checkin import audit, fhir
from checkin.api.auth import caller, context
from checkin.api.errors import fail
from checkin.api.schemas import FhirResource, FhirWindow
from checkin.api.scope import in_program
from checkin.api.spec import documented
from checkin.api.v1 import bp
from checkin.models import Patient

TAGS = ("fhir",)


def _base() -> str:
    """Where a Bundle's entries can be fetched again: this API's FHIR endpoint."""
    return f"{context().settings.public_url}/api/v1/fhir"


def _resource(data: dict[str, Any]) -> FhirResource:
    return FhirResource.model_validate(data)


@bp.get("/fhir/Patient/<int:patient_id>")
@documented(200, FhirResource, 404, tags=TAGS)
def fhir_patient(patient_id: int) -> FhirResource:
    """One patient of the program as a FHIR Patient."""
    ctx = context()
    with ctx.db.session() as db:
        patient = in_program(db, Patient, patient_id)
        audit.record(db, ctx.clock(), caller().email, "patient.view", f"patient:{patient.id}")
        return _resource(fhir.patient_resource(patient, ctx.settings.public_url))


@bp.get("/fhir/Patient/<int:patient_id>/$everything")
@documented(200, FhirResource, 404, tags=TAGS)
def fhir_everything(patient_id: int, query: FhirWindow) -> FhirResource:
    """A Bundle of everything checkin holds for one patient (check-ins due in the window)."""
    ctx = context()
    with ctx.db.session() as db:
        patient = in_program(db, Patient, patient_id)
        found = fhir.patient_bundle(
            db,
            patient,
            ctx.settings.public_url,
            since=query.from_,
            before=query.to,
            base=_base(),
            timestamp=ctx.clock(),
        )
        audit.record(
            db,
            ctx.clock(),
            caller().email,
            "export",
            f"patient:{patient.id}",
            kind="fhir",
            format="json",
            entries=len(found["entry"]),
        )
    return _resource(found)


@bp.get("/fhir/Questionnaire")
@documented(200, FhirResource, tags=TAGS)
def fhir_questionnaires() -> FhirResource:
    """Every flow version as a Questionnaire, in a Bundle."""
    public_url = context().settings.public_url
    return _resource(fhir.bundle(fhir.questionnaires(public_url), _base()))


@bp.get("/fhir/Questionnaire/<questionnaire_id>")
@documented(200, FhirResource, 404, tags=TAGS)
def fhir_questionnaire(questionnaire_id: str) -> FhirResource:
    """One flow version's Questionnaire."""
    for item in fhir.questionnaires(context().settings.public_url):
        if item["id"] == questionnaire_id:
            return _resource(item)
    fail(404, f"questionnaire {questionnaire_id[:40]!r} not found")


@bp.get("/fhir/CodeSystem/checkin-measures")
@documented(200, FhirResource, tags=TAGS)
def fhir_code_system() -> FhirResource:
    """checkin's own codes (fatigue, mood, the side effects) where LOINC has none."""
    return _resource(fhir.code_system(context().settings.public_url))
