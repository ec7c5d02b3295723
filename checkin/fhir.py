"""FHIR R4 resources for what checkin records: pure functions over ORM rows, no Flask.

- **Patient**: a local identifier, the phone as telecom, the name as typed, the language. No
  diagnosis, treatment or drug: the chart elsewhere has those, and a bundle shared for the
  check-ins needs none of them.
- **Observation** per answered reading: status final, category survey, LOINC where LOINC has
  the item (pain 72514-3, PHQ-2 items 44250-9 / 44255-8, PHQ-2 total 55758-7) plus, always, the
  code in checkin's own CodeSystem (fatigue, mood and the post-infusion side effects have no
  LOINC item of this wording); valueInteger for scales, valueBoolean for yes/no; derivedFrom
  its QuestionnaireResponse.
- **QuestionnaireResponse** per check-in that was asked, against the **Questionnaire** of the
  flow version it ran (every version is exported, old ones as retired), items by `linkId`.
- **CodeSystem** `{public_url}/fhir/CodeSystem/checkin-measures` defining the local codes.

Canonical URLs (the CodeSystem, the Questionnaires, the identifier system) live under
`{public_url}/fhir` and never change with where resources are served; Bundle `fullUrl`s use
`base` (default the same), so the JSON API can pass its own endpoint. Measure names and
LOINC codes: docs/exports.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from checkin import flows
from checkin.catalog import render
from checkin.flows.engine import Flow, Question
from checkin.models import Answer, CheckIn, Patient

LOINC = "http://loinc.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
BCP47 = "urn:ietf:bcp:47"
CODE_SYSTEM_ID = "checkin-measures"
# Check-ins that were put to the patient; planned, skipped, missed or undeliverable ones have
# no response to export.
ASKED = ("open", "completed", "expired", "interrupted")
# An expired or interrupted run will never be finished: R4's "stopped" ("partially filled
# out with answers but has been abandoned") says exactly that.
RESPONSE_STATUS = {
    "open": "in-progress",
    "completed": "completed",
    "expired": "stopped",
    "interrupted": "stopped",
}


@dataclass(frozen=True)
class Measure:
    display: str
    definition: str
    loinc: tuple[str, str] | None = None  # (code, LOINC's display)
    boolean: bool = False
    low: int = 0
    high: int = 10


def _side_effect(what: str) -> Measure:
    return Measure(
        f"Since treatment: {what}",
        f"Asked about 24 hours after an infusion: {what}? Yes or no.",
        boolean=True,
        high=1,
    )


MEASURES: dict[str, Measure] = {
    "fatigue": Measure(
        "Fatigue today (0 none - 10 worst)",
        "How tired the patient felt today, 0 (none) to 10 (worst): a monitoring item, not a "
        "validated MS fatigue scale.",
    ),
    "pain": Measure(
        "Pain today (0 none - 10 worst)",
        "Pain today on the 0-10 numeric rating scale, 0 (no pain) to 10 (worst).",
        ("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported"),
    ),
    "mood": Measure(
        "Mood today (0 very low - 10 very good)",
        "The patient's mood today, 0 (very low) to 10 (very good); higher is better.",
    ),
    "phq2_interest": Measure(
        "PHQ-2: little interest or pleasure (0-3)",
        "PHQ-2 item 1 over the past 2 weeks: 0 not at all, 1 several days, 2 more than half "
        "the days, 3 nearly every day.",
        ("44250-9", "Little interest or pleasure in doing things in last 2 weeks"),
        high=3,
    ),
    "phq2_down": Measure(
        "PHQ-2: feeling down, depressed or hopeless (0-3)",
        "PHQ-2 item 2 over the past 2 weeks, scored as item 1.",
        ("44255-8", "Feeling down, depressed, or hopeless in last 2 weeks"),
        high=3,
    ),
    "phq2_total": Measure(
        "PHQ-2 total score (0-6)",
        "The sum of the two PHQ-2 items, computed only when both were answered; 3 or more is "
        "a positive screen.",
        ("55758-7", "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]"),
        high=6,
    ),
    "se_dissociation": _side_effect("felt unreal or detached from self"),
    "se_nausea": _side_effect("nausea or vomiting"),
    "se_headache": _side_effect("headache"),
    "se_dizziness": _side_effect("dizziness"),
    "se_blurred_vision": _side_effect("blurred vision"),
    "se_anxiety": _side_effect("feeling anxious"),
    "se_bladder_pain": _side_effect("pain or burning when passing urine"),
    "se_urinary_urgency": _side_effect("needing to pass urine urgently or very often"),
    "se_blood_in_urine": _side_effect("blood in the urine"),
}
# Results a flow computes rather than asks (flows' `derive`), shown read-only in the
# Questionnaire after the items they come from.
DERIVED = {"weekly_mood": ("phq2_total",)}


# --- URLs -------------------------------------------------------------------------------------


def canonical_base(public_url: str) -> str:
    return f"{public_url.rstrip('/')}/fhir"


def code_system_url(public_url: str) -> str:
    return f"{canonical_base(public_url)}/CodeSystem/{CODE_SYSTEM_ID}"


def questionnaire_url(public_url: str, flow_name: str) -> str:
    return f"{canonical_base(public_url)}/Questionnaire/{flow_name}"


def patient_identifier_system(public_url: str) -> str:
    return f"{canonical_base(public_url)}/sid/patient-id"


def questionnaire_id(flow: Flow) -> str:
    # FHIR ids allow letters, digits, '-' and '.': no underscores.
    return f"{flow.name.replace('_', '-')}-v{flow.version}"


# --- terminology and questionnaires ----------------------------------------------------------


def code_system(public_url: str) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "id": CODE_SYSTEM_ID,
        "url": code_system_url(public_url),
        "version": "1",
        "name": "CheckinMeasures",
        "title": "checkin measures",
        "status": "active",
        "publisher": "checkin",
        "description": "What checkin asks patients by text message, one code per measure. "
        "Where LOINC has the item, observations carry the LOINC code as well.",
        "caseSensitive": True,
        "content": "complete",
        "count": len(MEASURES),
        "concept": [
            {"code": code, "display": m.display, "definition": m.definition}
            for code, m in MEASURES.items()
        ],
    }


def measure_code(measure: str, public_url: str) -> dict[str, Any]:
    """The CodeableConcept of a measure: LOINC first when it has one, the local code always."""
    m = MEASURES[measure]
    codings = []
    if m.loinc:
        codings.append({"system": LOINC, "code": m.loinc[0], "display": m.loinc[1]})
    codings.append({"system": code_system_url(public_url), "code": measure, "display": m.display})
    return {"coding": codings, "text": m.display}


def questionnaires(public_url: str) -> list[dict[str, Any]]:
    """Every version of every flow; the current one is active, older ones retired (check-ins
    that ran them still point at them)."""
    out = []
    for name in flows.FLOW_NAMES:
        current = flows.current(name)
        out += [questionnaire(f, public_url, active=f is current) for f in flows.versions(name)]
    return out


def questionnaire(flow: Flow, public_url: str, *, active: bool = True) -> dict[str, Any]:
    items = [_question_item(q, public_url) for q in flow.questions]
    items += [_derived_item(m, public_url) for m in DERIVED.get(flow.name, ())]
    title = flow.name.replace("_", " ").capitalize()
    return {
        "resourceType": "Questionnaire",
        "id": questionnaire_id(flow),
        "url": questionnaire_url(public_url, flow.name),
        "version": str(flow.version),
        "name": "".join(part.capitalize() for part in flow.name.split("_")),
        "title": title,
        "status": "active" if active else "retired",
        "subjectType": ["Patient"],
        "publisher": "checkin",
        "description": f"The {title.lower()} check-in as texted to patients (English wording).",
        "item": items,
    }


def _question_item(question: Question, public_url: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "linkId": question.measure,
        "code": measure_code(question.measure, public_url)["coding"],
        "text": render(question.prompt, "en"),
    }
    if question.kind == "yesno":
        item["type"] = "boolean"
    elif question.kind == "choice":
        item["type"] = "integer"
        item["answerOption"] = [{"valueInteger": v} for v in range(question.low, question.high + 1)]
    else:
        item["type"] = "integer"
        item["extension"] = _bounds(question.low, question.high)
    return item


def _derived_item(measure: str, public_url: str) -> dict[str, Any]:
    m = MEASURES[measure]
    return {
        "linkId": measure,
        "code": measure_code(measure, public_url)["coding"],
        "text": m.display,
        "type": "integer",
        "readOnly": True,
        "extension": _bounds(m.low, m.high),
    }


def _bounds(low: int, high: int) -> list[dict[str, Any]]:
    return [{"url": MIN_VALUE, "valueInteger": low}, {"url": MAX_VALUE, "valueInteger": high}]


# --- patients and their answers ---------------------------------------------------------------


def patient_resource(patient: Patient, public_url: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": str(patient.id),
        "identifier": [
            {
                "use": "usual",
                "system": patient_identifier_system(public_url),
                "value": str(patient.id),
            }
        ],
        "name": [{"text": patient.name}],
        "telecom": [{"system": "phone", "value": patient.phone, "use": "mobile"}],
        "communication": [
            {
                "language": {"coding": [{"system": BCP47, "code": patient.language}]},
                "preferred": True,
            }
        ],
    }


def observation(answer: Answer, public_url: str) -> dict[str, Any]:
    """One answered reading (a skipped or missing one is no observation: it is the absence
    of an item in its QuestionnaireResponse)."""
    m = MEASURES[answer.measure]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(answer.id),
        "status": "final",
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}
        ],
        "code": measure_code(answer.measure, public_url),
        "subject": {"reference": f"Patient/{answer.patient_id}"},
        "effectiveDateTime": answer.recorded_at.isoformat(),
        "derivedFrom": [{"reference": f"QuestionnaireResponse/{answer.checkin_id}"}],
    }
    resource["valueBoolean" if m.boolean else "valueInteger"] = _value(m, answer.value)
    if answer.note:
        resource["note"] = [{"text": answer.note}]
    return resource


def questionnaire_response(
    checkin: CheckIn, answers: Sequence[Answer], public_url: str
) -> dict[str, Any]:
    flow = flows.version(checkin.flow, checkin.flow_version)
    asked = [q.measure for q in flow.questions] + list(DERIVED.get(flow.name, ()))
    answered = {a.measure: a for a in answers if a.status == "answered"}
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": str(checkin.id),
        "questionnaire": f"{questionnaire_url(public_url, flow.name)}|{flow.version}",
        "status": RESPONSE_STATUS[checkin.status],
        "subject": {"reference": f"Patient/{checkin.patient_id}"},
        "source": {"reference": f"Patient/{checkin.patient_id}"},
    }
    authored = _authored(checkin, answers)
    if authored:
        resource["authored"] = authored.isoformat()
    # In the Questionnaire's order; a measure it does not ask has no linkId to stand under.
    items = [_response_item(answered[m]) for m in asked if m in answered]
    if items:
        resource["item"] = items
    return resource


def _authored(checkin: CheckIn, answers: Sequence[Answer]) -> datetime | None:
    times = [a.recorded_at for a in answers if a.status == "answered"]
    return checkin.completed_at or (max(times) if times else None) or checkin.sent_at


def _response_item(answer: Answer) -> dict[str, Any]:
    m = MEASURES[answer.measure]
    key = "valueBoolean" if m.boolean else "valueInteger"
    return {"linkId": answer.measure, "answer": [{key: _value(m, answer.value)}]}


def _value(m: Measure, value: int | None) -> int | bool:
    assert value is not None, "only answered readings are exported as values"
    return bool(value) if m.boolean else value


# --- bundles ----------------------------------------------------------------------------------


def patient_bundle(
    session: Session,
    patient: Patient,
    public_url: str,
    *,
    since: datetime | None = None,
    before: datetime | None = None,
    base: str | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """One patient's check-ins (due in [since, before) when given) with the Questionnaires
    and the CodeSystem they use."""
    return _patients_bundle(
        session,
        [patient],
        [CheckIn.patient_id == patient.id],
        public_url,
        since=since,
        before=before,
        base=base,
        timestamp=timestamp,
    )


def all_patients_bundle(
    session: Session,
    program_id: int | None,
    public_url: str,
    *,
    since: datetime | None = None,
    before: datetime | None = None,
    base: str | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """Every patient of a program (of the deployment when `program_id` is None)."""
    stmt = select(Patient).order_by(Patient.id)
    where: list[ColumnElement[bool]] = []
    if program_id is not None:
        stmt = stmt.where(Patient.program_id == program_id)
        where.append(Patient.program_id == program_id)
    return _patients_bundle(
        session,
        list(session.scalars(stmt)),
        where,
        public_url,
        since=since,
        before=before,
        base=base,
        timestamp=timestamp,
    )


def _patients_bundle(
    session: Session,
    patients: Sequence[Patient],
    where: list[ColumnElement[bool]],
    public_url: str,
    *,
    since: datetime | None,
    before: datetime | None,
    base: str | None,
    timestamp: datetime | None,
) -> dict[str, Any]:
    if since:
        where.append(CheckIn.due_at >= since)
    if before:
        where.append(CheckIn.due_at < before)
    checkins, answers = _checkins_and_answers(session, where)
    resources: list[dict[str, Any]] = [code_system(public_url), *questionnaires(public_url)]
    resources += [patient_resource(p, public_url) for p in patients]
    for checkin in checkins:
        own = answers.get(checkin.id, [])
        resources.append(questionnaire_response(checkin, own, public_url))
        resources += [observation(a, public_url) for a in own if a.status == "answered"]
    return bundle(resources, base or canonical_base(public_url), timestamp=timestamp)


def _checkins_and_answers(
    session: Session, where: list[ColumnElement[bool]]
) -> tuple[list[CheckIn], dict[int, list[Answer]]]:
    """Three queries whatever the number of patients: the check-ins, then their answers."""
    asked = (
        select(CheckIn.id)
        .join(Patient, Patient.id == CheckIn.patient_id)
        .where(CheckIn.status.in_(ASKED), *where)
    )
    checkins = list(
        session.scalars(
            select(CheckIn)
            .where(CheckIn.id.in_(asked))
            .order_by(CheckIn.patient_id, CheckIn.due_at, CheckIn.id)
        )
    )
    answers: dict[int, list[Answer]] = defaultdict(list)
    stmt = select(Answer).where(Answer.checkin_id.in_(asked)).order_by(Answer.id)
    for answer in session.scalars(stmt):
        answers[answer.checkin_id].append(answer)
    return checkins, answers


def bundle(
    resources: Iterable[dict[str, Any]], base: str, *, timestamp: datetime | None = None
) -> dict[str, Any]:
    """A collection Bundle; each entry's fullUrl is `{base}/{type}/{id}`, so the relative
    references inside ("Patient/12") resolve within the bundle."""
    out: dict[str, Any] = {"resourceType": "Bundle", "type": "collection"}
    if timestamp:
        out["timestamp"] = timestamp.isoformat()
    out["entry"] = [
        {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources
    ]
    return out
