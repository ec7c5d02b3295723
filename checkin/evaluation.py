"""Load what the pure trend rules need (O(window) rows, through indexes) and run them.

Thin by design: trends.py judges; this module only reads readings, infusions and check-in
outcomes for one patient and hands them over.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from checkin import trends
from checkin.flows import engine
from checkin.models import Answer, CheckIn, Patient, Program, TreatmentEvent

log = logging.getLogger(__name__)
# Loss of response looks at the most recent infusion's days -7..18 (CLINICAL.md l.35-39).
LOR_LOOKBACK = timedelta(days=30)
# Non-response looks at this many of the patient's most recent finished check-ins.
OUTCOMES_LOOKED_AT = 30


def params_for(session: Session, patient: Patient) -> trends.RuleParams:
    """The program's settings, then the patient's, over the CLINICAL.md defaults."""
    program = session.get_one(Program, patient.program_id)
    try:
        return trends.RuleParams.from_overrides(
            program.rule_params or {}, patient.rule_params or {}
        )
    except ValueError:
        # Settings are validated when they are set; never let a bad row silence the rules.
        log.exception("bad rule settings for patient %s; using the defaults", patient.id)
        return trends.RuleParams()


def after_answers(
    session: Session, checkin: CheckIn, readings: list[engine.Reading], now: datetime
) -> list[trends.Finding]:
    """Every finding the answers just stored give rise to."""
    patient = checkin.patient
    params = params_for(session, patient)
    answered = [(r.measure, r.value) for r in readings]
    findings = trends.side_effects(answered)
    measures = {m for m, v in answered if v is not None and m in trends.TREND_MEASURES}
    for measure in sorted(measures):
        history = recent_readings(session, patient.id, measure, trends.history_needed(params))
        findings += trends.evaluate(measure, history, params)
    if "mood" in measures:
        findings += _loss_of_response(session, patient, params, now)
    return findings


def recent_readings(
    session: Session, patient_id: int, measure: str, limit: int
) -> list[trends.Reading]:
    """The newest `limit` answered readings, oldest first: one index range scan
    (ix_answers_patient_id_measure_recorded_at), never the whole history."""
    stmt = (
        select(Answer.value, Answer.recorded_at, Answer.checkin_id)
        .where(
            Answer.patient_id == patient_id, Answer.measure == measure, Answer.status == "answered"
        )
        .order_by(Answer.recorded_at.desc(), Answer.id.desc())
        .limit(limit)
    )
    rows = list(session.execute(stmt))
    return [
        trends.Reading(measure, float(v), at, cid) for v, at, cid in reversed(rows) if v is not None
    ]


def _loss_of_response(
    session: Session, patient: Patient, params: trends.RuleParams, now: datetime
) -> list[trends.Finding]:
    infusions = list(
        session.scalars(
            select(TreatmentEvent.occurred_on).where(
                TreatmentEvent.patient_id == patient.id,
                TreatmentEvent.kind == "infusion",
                TreatmentEvent.occurred_on >= (now - LOR_LOOKBACK).date(),
            )
        )
    )
    if not infusions:
        return []
    stmt = (
        select(Answer.value, Answer.recorded_at, Answer.checkin_id)
        .where(
            Answer.patient_id == patient.id,
            Answer.measure == "mood",
            Answer.status == "answered",
            Answer.recorded_at >= now - LOR_LOOKBACK * 2,
        )
        .order_by(Answer.recorded_at)
    )
    mood = [
        trends.Reading("mood", float(v), at, cid)
        for v, at, cid in session.execute(stmt)
        if v is not None
    ]
    return trends.loss_of_response(mood, infusions, params, ZoneInfo(patient.timezone))


def non_response(session: Session, patient: Patient) -> list[trends.Finding]:
    """Judge engagement from the newest finished check-ins (delivery failures excluded)."""
    answered = exists().where(Answer.checkin_id == CheckIn.id, Answer.status == "answered")
    stmt = (
        select(CheckIn.local_date, CheckIn.status, answered)
        .where(
            CheckIn.patient_id == patient.id,
            CheckIn.status.in_(
                ("completed", "expired", "interrupted", "failed", "missed", "skipped")
            ),
        )
        .order_by(CheckIn.due_at.desc())
        .limit(OUTCOMES_LOOKED_AT)
    )
    outcomes = []
    for local_date, status, any_answer in reversed(list(session.execute(stmt))):
        if status == "expired":
            status = "partial" if any_answer else "unanswered"
        outcomes.append((local_date, status))
    return trends.non_response(outcomes, params_for(session, patient))
