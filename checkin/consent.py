"""Consent changes: every one writes a ConsentEvent (what, when, how) and an audit entry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from checkin import audit
from checkin.models import CONSENT_METHODS, CheckIn, ConsentEvent, Patient

# What staff confirm the patient was told before the first text (CLINICAL.md: record prior
# express consent, "when, how, the text shown"; HIPAA: told the risk of unencrypted SMS).
ENROLMENT_CONSENT_TEXT = (
    "Patient agreed to receive automated check-in texts about once a day, was told message "
    "and data rates may apply, that texts are not encrypted, and how to reply STOP or HELP."
)


# A consent text this short cannot have told the patient what they agreed to.
MIN_CONSENT_TEXT = 40
CONSENT_TEXT_MAX = 2000


class ConsentError(ValueError):
    """A one-line reason a consent record cannot be accepted."""


@dataclass(frozen=True)
class Consent:
    """How and when staff obtained a patient's consent, and the text the patient was shown."""

    method: str | None = None  # models.CONSENT_METHODS; None for imports and older records
    given_at: datetime | None = None  # None: at enrolment
    text: str = ENROLMENT_CONSENT_TEXT

    def checked(self, now: datetime) -> Consent:
        """The same record, or ConsentError naming the problem."""
        if self.method is not None and self.method not in CONSENT_METHODS:
            choices = ", ".join(CONSENT_METHODS)
            raise ConsentError(f"consent method must be one of {choices}, got {self.method!r}")
        if self.given_at is not None and self.given_at > now:
            raise ConsentError("consent cannot be dated in the future")
        text = " ".join(self.text.split())
        if len(text) < MIN_CONSENT_TEXT:
            raise ConsentError(
                f"the consent text shown to the patient is missing or under {MIN_CONSENT_TEXT} "
                "characters"
            )
        if len(text) > CONSENT_TEXT_MAX:
            raise ConsentError(f"the consent text is over {CONSENT_TEXT_MAX} characters")
        return Consent(self.method, self.given_at, text)


# What the CLI and older callers record: the standard text, how and when not given.
STANDARD = Consent()


def give(
    session: Session,
    patient: Patient,
    now: datetime,
    *,
    source: str,
    actor: str,
    consent: Consent = STANDARD,
) -> None:
    patient.consented_at = consent.given_at or now
    _event(
        session,
        patient,
        now,
        "consent_given",
        source,
        actor,
        consent.text,
        method=consent.method,
        given_at=patient.consented_at,
    )


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
    *,
    method: str | None = None,
    given_at: datetime | None = None,
) -> None:
    session.add(
        ConsentEvent(
            patient_id=patient.id,
            kind=kind,
            source=source,
            method=method,
            given_at=given_at,
            detail=detail,
            recorded_by=actor,
            message_id=message_id,
            created_at=now,
        )
    )
    audit.record(session, now, actor, f"consent.{kind}", f"patient:{patient.id}", source=source)
