"""GET /patients, GET /patients/{id}, POST /patients (admins: enrolment, with consent)."""

from __future__ import annotations

from flask import url_for
from sqlalchemy import select

from checkin import audit
from checkin.api.auth import admin_only, caller, context
from checkin.api.errors import fail
from checkin.api.paging import fetch
from checkin.api.schemas import NewPatientIn, PatientOut, PatientPage, PatientQuery
from checkin.api.scope import in_program
from checkin.api.spec import documented
from checkin.api.v1 import bp
from checkin.consent import Consent
from checkin.models import Patient, Program
from checkin.patients import NewPatient, enrol
from checkin.web.patients import name_or_phone_matches

# Path ids are integers; one beyond the 32-bit ids the database holds is a 404 (scope.py).
ID = "int"


@bp.get("/patients")
@documented(200, PatientPage, tags=("patients",))
def list_patients(query: PatientQuery) -> PatientPage:
    """The program's patients, by name."""
    holder = caller()
    where = [Patient.program_id == holder.program_id]
    if query.q and query.q.strip():
        where.append(name_or_phone_matches(query.q.strip()))
    if query.status:
        where.append(Patient.status == query.status)
    ctx = context()
    with ctx.db.session() as db:
        page = fetch(db, select(Patient).where(*where).order_by(Patient.name, Patient.id), query)
        # A list (and a search) shows names and numbers: audited like the patient list page.
        audit.record(
            db,
            ctx.clock(),
            holder.email,
            "patients.list",
            program_id=holder.program_id,
            q=query.q or None,
            status=query.status,
            page=page.page,
            shown=len(page.rows),
        )
        items = [PatientOut.model_validate(p) for p in page.rows]
    return PatientPage(items=items, **page.meta())


@bp.get(f"/patients/<{ID}:patient_id>")
@documented(200, PatientOut, 404, tags=("patients",))
def read_patient(patient_id: int) -> PatientOut:
    """One patient of the program."""
    ctx = context()
    with ctx.db.session() as db:
        patient = in_program(db, Patient, patient_id)
        audit.record(db, ctx.clock(), caller().email, "patient.view", f"patient:{patient.id}")
        return PatientOut.model_validate(patient)


@bp.post("/patients")
@admin_only
@documented(201, PatientOut, 403, tags=("patients",))
def enrol_patient(json: NewPatientIn) -> tuple[PatientOut, int, dict[str, str]]:
    """Enrol a patient whose consent staff obtained (admins only).

    The same checks as the enrolment page: an E.164 (or US) number not enrolled yet, an IANA
    time zone, a language, and how, when and with which text consent was given. The welcome
    text, if asked for, waits in the outbox for the scheduler (texting hours apply).
    """
    ctx = context()
    holder = caller()
    now = ctx.clock()
    given = json.consent
    try:
        with ctx.db.session() as db:
            patient = enrol(
                db,
                NewPatient(json.phone, json.name, json.timezone, json.language),
                now,
                actor=holder.email,
                sender=ctx.settings.sender,
                welcome=json.send_welcome,
                program=db.get_one(Program, holder.program_id),
                consent_record=Consent(given.method, given.given_at, given.text),
            )
            out = PatientOut.model_validate(patient)
    except ValueError as exc:  # PatientError, ConsentError, InvalidPhone, InvalidTimezone
        fail(400, str(exc))
    return out, 201, {"Location": url_for("api.read_patient", patient_id=out.id)}
