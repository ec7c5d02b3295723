"""Enrol one patient (with the consent record), or import many from a CSV file.

Both go through checkin.patients, the same code as `checkin patients add` and `import`: the
phone is read into E.164 (a US number may be typed as "(617) 555-0101"), the time zone must be
an IANA name, and consent is recorded (how, when, the text shown) before any text is sent.
An import is all or nothing: every bad row is listed by line number and nothing is written.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from checkin import outbox
from checkin.consent import ENROLMENT_CONSENT_TEXT, Consent, ConsentError
from checkin.models import CONSENT_METHODS, Message, Program
from checkin.patients import NewPatient, enrol, enrol_all, find, read_csv
from checkin.web import context
from checkin.web.admin import bp
from checkin.web.auth import signed_in
from checkin.web.forms import (
    COMMON_ZONES,
    LANGUAGE_NAMES,
    FormError,
    all_zones,
    field,
    local_datetime,
)

METHOD_LABELS = {
    "in_person": "In person, spoken",
    "phone_call": "By phone call",
    "written_form": "Signed paper form",
    "electronic_form": "Electronic form",
}
assert set(METHOD_LABELS) == set(CONSENT_METHODS)
# A page import runs inside one request (about 2 ms a row); larger files go through the CLI.
MAX_IMPORT_ROWS = 5000
# What became of the welcome text, in staff's words (outbox.deliver's statuses).
WELCOME_OUTCOMES = {
    "queued": "sent",
    "accepted": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "sent",
    "deferred": "held until texting hours",
    "retrying": "not sent yet: Twilio did not answer, it will be retried",
    "suppressed": "not sent: the number opted out",
    "failed": "not sent: Twilio refused it (see the patient's messages)",
}


@bp.get("/patients/new")
def enrol_form() -> str:
    return _enrol_page({"consent_text": ENROLMENT_CONSENT_TEXT, "welcome": "yes"})


@bp.post("/patients/new")
def enrol_patient() -> tuple[str, int] | Response:
    ctx = context()
    staff = signed_in()
    form = request.form
    now = ctx.clock()
    try:
        consent = _consent(form, now)
        with ctx.db.session() as db:
            patient = enrol(
                db,
                NewPatient(
                    field(form, "phone", 40),
                    field(form, "name"),
                    field(form, "timezone", 64),
                    field(form, "language", 5) or "en",
                ),
                now,
                actor=staff.email,
                sender=ctx.settings.sender,
                welcome=form.get("welcome") == "yes",
                program=db.get_one(Program, staff.program_id),
                consent_record=consent,
            )
            patient_id, name = patient.id, patient.name
            welcome = db.scalar(
                select(Message.id).where(
                    Message.patient_id == patient_id, Message.purpose == "welcome"
                )
            )
    except ValueError as exc:
        return _enrol_page(form, error=str(exc)), 400
    outcome = outbox.deliver(ctx, welcome) if welcome else None
    sent = f"; welcome text {WELCOME_OUTCOMES.get(outcome, outcome)}" if outcome else ""
    flash(f"Enrolled {name}{sent}.", "success")
    return redirect(url_for("patients.patient_page", patient_id=patient_id), code=303)


@bp.get("/patients/import")
def import_form() -> str:
    return _import_page({"consent_text": ENROLMENT_CONSENT_TEXT, "welcome": "yes"})


@bp.post("/patients/import")
def import_patients() -> tuple[str, int] | Response:
    ctx = context()
    staff = signed_in()
    form = request.form
    now = ctx.clock()
    try:
        text = _csv_text()
        consent = _consent(form, now)
    except ValueError as exc:
        return _import_page(form, error=str(exc)), 400
    with ctx.db.session() as db:
        good, errors = read_csv(text, exists=lambda phone: find(db, phone) is not None)
        if not errors and not good:
            errors = ["the file has no patient rows under its header line"]
        if len(good) + len(errors) > MAX_IMPORT_ROWS:
            too_many = (
                f"the file has {len(good) + len(errors):,} rows; this page imports at most "
                f"{MAX_IMPORT_ROWS:,} at a time (split the file, or use `checkin patients "
                "import`)"
            )
            return _import_page(form, error=too_many), 400
        if errors:  # nothing was added: the block ends with nothing to commit
            return _import_page(form, errors=errors), 400
        welcomes = enrol_all(
            db,
            good,
            now,
            actor=staff.email,
            sender=ctx.settings.sender,
            welcome=form.get("welcome") == "yes",
            program=db.get_one(Program, staff.program_id),
            consent_record=consent,
        )
    # Welcome texts wait in the outbox for the scheduler (its next tick, quiet hours
    # permitting) rather than holding this request while thousands go out.
    queued = f"; {len(welcomes)} welcome text(s) queued for the scheduler" if welcomes else ""
    flash(f"Imported {len(good)} patient(s){queued}.", "success")
    return redirect(url_for("patients.patient_list"), code=303)


def _consent(form: Any, now: Any) -> Consent:
    if form.get("consent_confirmed") != "yes":
        raise ConsentError("confirm that the patient agreed to receive these texts")
    method = field(form, "consent_method", 40)
    if not method:
        raise ConsentError("say how consent was obtained")
    zone = context().settings.digest_timezone
    given = local_datetime(form, "consent_at", "when consent was given", zone)
    return Consent(method, given, form.get("consent_text") or "").checked(now)


def _csv_text() -> str:
    upload = request.files.get("file")
    raw = upload.read() if upload and upload.filename else b""
    if not raw:
        raw = (request.form.get("pasted") or "").encode()
    if not raw.strip():
        raise FormError("choose a CSV file (or paste its rows)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FormError("the file is not UTF-8 text; save it as CSV UTF-8 and try again") from None


def _common() -> dict[str, Any]:
    return {
        "methods": METHOD_LABELS,
        "clinic_zone": context().settings.digest_timezone,
        "languages": LANGUAGE_NAMES,
    }


def _enrol_page(values: Any, error: str | None = None) -> str:
    return render_template(
        "admin/enrol.html",
        values=values,
        error=error,
        common_zones=COMMON_ZONES,
        all_zones=all_zones(),
        selected_zone=values.get("timezone", ""),
        **_common(),
    )


def _import_page(values: Any, error: str | None = None, errors: list[str] | None = None) -> str:
    return render_template(
        "admin/import.html", values=values, error=error, errors=errors or [], **_common()
    )
