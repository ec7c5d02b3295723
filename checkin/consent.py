"""Consent changes: every one writes a ConsentEvent (what, when, how) and an audit entry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from checkin import audit
from checkin.models import CheckIn, ConsentEvent, Patient

# What staff confirm the patient was told before the first text (CLINICAL.md: record prior
# express consent, "when, how, the text shown"; HIPAA: told the risk of unencrypted SMS).
ENROLMENT_CONSENT_TEXT = (
    "Patient agreed to receive automated check-in texts about once a day, was told message "
    "and data rates may apply, that texts are not encrypted, and how to reply STOP or HELP."
)


def give(
    session: Session,
    patient: Patient,
    now: datetime,
    *,
    source: str,
    actor: str,
    detail: str = ENROLMENT_CONSENT_TEXT,
) -> None:
    patient.consented_at = now
    _event(session, patient, now, "consent_given", source, actor, detail)


def opt_out(
    session: Session,
    patient: Patient,
    now: datetime,
    *,
    source: str,
    actor: str,
    message_id: int | None = None,
) -> None:
    patient.status = "opted_out"
    _event(session, patient, now, "opted_out", source, actor, None, message_id)
    # Nothing scripted may follow an opt-out: open and planned check-ins end here.
    session.execute(
        update(CheckIn)
        .where(CheckIn.patient_id == patient.id, CheckIn.status.in_(("pending", "open")))
        .values(status="skipped")
    )


def opt_in(
    session: Session,
    patient: Patient,
    now: datetime,
    *,
    source: str,
    actor: str,
    message_id: int | None = None,
) -> None:
    paused = patient.paused_until is not None and patient.paused_until >= now.date()
    patient.status = "paused" if paused else "active"
    _event(session, patient, now, "opted_in", source, actor, None, message_id)


def history(session: Session, patient_id: int) -> list[ConsentEvent]:
    stmt = select(ConsentEvent).where(ConsentEvent.patient_id == patient_id)
    return list(session.scalars(stmt.order_by(ConsentEvent.id)))


def _event(
    session: Session,
    patient: Patient,
    now: datetime,
    kind: str,
    source: str,
    actor: str,
    detail: str | None,
    message_id: int | None = None,
) -> None:
    session.add(
        ConsentEvent(
            patient_id=patient.id,
            kind=kind,
            source=source,
            detail=detail,
            recorded_by=actor,
            message_id=message_id,
            created_at=now,
        )
    )
    audit.record(session, now, actor, f"consent.{kind}", f"patient:{patient.id}", source=source)
