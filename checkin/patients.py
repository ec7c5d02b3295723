"""Enrolment and the patient's own status: pause, resume, infusions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from checkin import audit, consent, outbox
from checkin.catalog import LANGUAGES, render
from checkin.models import Message, Patient, Program, TreatmentEvent
from checkin.phones import check_timezone, normalise_phone
from checkin.programs import default_program
from checkin.schedules import forget_planned


class PatientError(ValueError):
    """A one-line reason an operation on a patient cannot be done."""


@dataclass(frozen=True)
class NewPatient:
    phone: str
    name: str
    timezone: str
    language: str = "en"


def validate(raw: NewPatient) -> NewPatient:
    """The same patient with a normalised phone; raises PatientError naming the bad field."""
    try:
        phone = normalise_phone(raw.phone)
        check_timezone(raw.timezone)
    except ValueError as exc:
        raise PatientError(str(exc)) from None
    name = " ".join((raw.name or "").split())
    if not name:
        raise PatientError("name is empty")
    language = (raw.language or "en").strip().lower()
    if language not in LANGUAGES:
        raise PatientError(f"language must be one of {', '.join(LANGUAGES)}, got {raw.language!r}")
    return NewPatient(phone, name, raw.timezone.strip(), language)


def enrol(
    session: Session,
    raw: NewPatient,
    now: datetime,
    *,
    actor: str,
    sender: str,
    welcome: bool = True,
    source: str = "staff_enrolment",
    program: Program | None = None,
    consent_record: consent.Consent = consent.STANDARD,
) -> Patient:
    """Add a patient whose consent staff obtained, and queue the welcome text.

    `program` defaults to the deployment's first program (the CLI's); the dashboard passes
    the signed-in admin's own.
    """
    new = validate(raw)
    checked = consent_record.checked(now)
    if find(session, new.phone) is not None:
        raise PatientError(f"a patient with phone {new.phone} already exists")
    program = program or default_program(session, now)
    patient = Patient(
        program_id=program.id,
        phone=new.phone,
        name=new.name,
        timezone=new.timezone,
        language=new.language,
        status="active",
        enrolled_at=now,
    )
    session.add(patient)
    session.flush()
    consent.give(session, patient, now, source=source, actor=actor, consent=checked)
    audit.record(session, now, actor, "patient.enrol", f"patient:{patient.id}", source=source)
    if welcome:
        body = render("welcome", patient.language, {"program": program.name})
        outbox.queue(
            session,
            to=patient.phone,
            from_number=sender,
            body=body,
            purpose="welcome",
            patient_id=patient.id,
            now=now,
            idempotency_key=f"welcome:{patient.id}",
        )
    return patient


def enrol_all(
    session: Session,
    new: list[NewPatient],
    now: datetime,
    *,
    actor: str,
    sender: str,
    welcome: bool,
    program: Program | None = None,
    consent_record: consent.Consent = consent.STANDARD,
) -> list[int]:
    """Enrol every row of an import (already checked by read_csv); returns the ids of the
    welcome texts queued. The caller's transaction makes it all or nothing."""
    ids = [
        enrol(
            session,
            row,
            now,
            actor=actor,
            sender=sender,
            welcome=welcome,
            source="csv_import",
            program=program,
            consent_record=consent_record,
        ).id
        for row in new
    ]
    if not welcome or not ids:
        return []
    stmt = select(Message.id).where(Message.patient_id.in_(ids), Message.purpose == "welcome")
    return list(session.scalars(stmt))


def change_settings(
    session: Session,
    patient: Patient,
    *,
    timezone: str,
    language: str,
    now: datetime,
    actor: str,
) -> list[str]:
    """Set the patient's time zone and language; returns what changed ("timezone", ...).

    Check-ins planned but not yet sent were placed in the old zone: they are dropped and the
    scheduler plans them again in the new one on its next tick.
    """
    try:
        zone = check_timezone(timezone).key
    except ValueError as exc:
        raise PatientError(str(exc)) from None
    language = language.strip().lower()
    if language not in LANGUAGES:
        raise PatientError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    changed = {"timezone": (patient.timezone, zone), "language": (patient.language, language)}
    changed = {k: v for k, v in changed.items() if v[0] != v[1]}
    if not changed:
        return []
    patient.timezone, patient.language = zone, language
    if "timezone" in changed:
        forget_planned(session, patient_id=patient.id)
    detail: dict[str, Any] = {k: {"from": old, "to": new} for k, (old, new) in changed.items()}
    audit.record(session, now, actor, "patient.settings", f"patient:{patient.id}", **detail)
    return list(changed)


def find(session: Session, phone: str) -> Patient | None:
    return session.scalar(select(Patient).where(Patient.phone == phone))


def get(session: Session, raw_phone: str) -> Patient:
    """The patient with this phone, or PatientError naming the problem."""
    try:
        phone = normalise_phone(raw_phone)
    except ValueError as exc:
        raise PatientError(str(exc)) from None
    patient = find(session, phone)
    if patient is None:
        raise PatientError(f"no patient with phone {phone}")
    return patient


def pause(session: Session, patient: Patient, until: date, now: datetime, *, actor: str) -> None:
    if until < now.astimezone(ZoneInfo(patient.timezone)).date():
        raise PatientError(f"the pause end date {until} is in the past")
    if patient.status == "opted_out":
        raise PatientError(f"patient {patient.phone} has opted out; nothing to pause")
    patient.paused_until = until
    if patient.status == "active":
        patient.status = "paused"
    audit.record(session, now, actor, "patient.pause", f"patient:{patient.id}", until=str(until))


def resume(session: Session, patient: Patient, now: datetime, *, actor: str) -> None:
    patient.paused_until = None
    if patient.status == "paused":
        patient.status = "active"
    audit.record(session, now, actor, "patient.resume", f"patient:{patient.id}")


def is_paused(patient: Patient, local_day: date) -> bool:
    return patient.paused_until is not None and local_day <= patient.paused_until


def add_infusion(
    session: Session, patient: Patient, on: date, now: datetime, *, actor: str
) -> TreatmentEvent:
    existing = session.scalar(
        select(TreatmentEvent).where(
            TreatmentEvent.patient_id == patient.id, TreatmentEvent.occurred_on == on
        )
    )
    if existing is not None:
        raise PatientError(f"an infusion on {on} is already recorded for {patient.phone}")
    event = TreatmentEvent(
        patient_id=patient.id, kind="infusion", occurred_on=on, recorded_by=actor, created_at=now
    )
    session.add(event)
    audit.record(session, now, actor, "infusion.add", f"patient:{patient.id}", on=str(on))
    return event


def program_of(session: Session, patient: Patient) -> Program:
    return session.get_one(Program, patient.program_id)


def read_csv(
    text: str, exists: Callable[[str], bool] | None = None
) -> tuple[list[NewPatient], list[str]]:
    """Parse an import file (columns phone,name,timezone[,language]).

    Returns the valid patients and one message per bad row, by line number; the caller imports
    nothing unless the error list is empty. `exists(phone)` says whether a normalised phone is
    enrolled already (such a row is reported by its line number too).
    """
    import csv
    import io

    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    missing = [c for c in ("phone", "name", "timezone") if c not in fields]
    if missing:
        return [], [f"line 1: missing column(s) {', '.join(missing)}"]
    reader.fieldnames = fields
    good: list[NewPatient] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        raw = NewPatient(
            row.get("phone") or "",
            row.get("name") or "",
            row.get("timezone") or "",
            row.get("language") or "en",
        )
        try:
            new = validate(raw)
        except PatientError as exc:
            errors.append(f"line {line}: {exc}")
            continue
        if new.phone in seen:
            errors.append(f"line {line}: phone {new.phone} repeats line {seen[new.phone]}")
            continue
        seen[new.phone] = line
        if exists is not None and exists(new.phone):
            errors.append(f"line {line}: a patient with phone {new.phone} already exists")
            continue
        good.append(new)
    return good, errors
