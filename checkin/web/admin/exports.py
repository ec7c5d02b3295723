"""Exports from the dashboard: the same files as `checkin export` (checkin/export.py), for the
admin's own program only, downloaded as an attachment and audited before they leave.

The form posts (with its CSRF token) instead of linking a GET: a download writes an audit
row, which a link on another site or a browser's prefetch must not be able to cause, and a
patient's phone number stays out of URLs, browser history and proxy logs. De-identification
is ticked by default: an export that carries names and numbers takes a deliberate click.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flask import render_template, request
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from checkin import export as exporter
from checkin.models import Patient
from checkin.phones import normalise_phone
from checkin.web import context
from checkin.web.admin import bp
from checkin.web.auth import signed_in
from checkin.web.forms import FormError, field, form_date

KIND_LABELS = {
    "observations": "Observations: one row per answer",
    "checkins": "Check-ins: one row per check-in, with answered, skipped and missing counts",
    "alerts": "Alerts",
    "messages": "Messages: texts to and from patients (and pages to staff when identified)",
}
FORMAT_LABELS = {"csv": "CSV (spreadsheets, R, pandas)", "json": "JSON"}
MEDIA_TYPES = {"csv": "text/csv", "json": "application/json"}
assert set(KIND_LABELS) == set(exporter.KINDS) and set(FORMAT_LABELS) == set(exporter.FORMATS)
# What the form shows first: a research export, de-identified.
DEFAULTS = {"kind": "observations", "format": "csv", "deidentify": "yes"}


@dataclass(frozen=True)
class Choice:
    kind: str
    fmt: str
    deidentify: bool


@bp.get("/exports")
def export_form() -> str:
    return _page(DEFAULTS)


@bp.post("/exports")
def download_export() -> tuple[str, int] | Response:
    ctx = context()
    staff = signed_in()
    now = ctx.clock()
    try:
        choice = _choice(request.form)
        with ctx.db.session() as db:
            filters = _filters(db, request.form, staff.program_id)
            data = exporter.build(db, choice.kind, filters, deidentify=choice.deidentify)
            body = exporter.render(data, choice.fmt)
            exporter.record(
                db,
                now,
                staff.email,
                kind=choice.kind,
                fmt=choice.fmt,
                filters=filters,
                deidentified=choice.deidentify,
                rows=len(data.rows),
            )
    except ValueError as exc:
        return _page(_shown(request.form), error=str(exc)), 400
    name = exporter.filename(choice.kind, choice.fmt, choice.deidentify, now.date())
    return _attachment(body, MEDIA_TYPES[choice.fmt], name)


def _choice(form: Mapping[str, str]) -> Choice:
    kind = field(form, "kind", 20)
    if kind not in exporter.KINDS:
        raise FormError(f"choose what to export ({', '.join(exporter.KINDS)})")
    fmt = field(form, "format", 10)
    if fmt not in exporter.FORMATS:
        raise FormError("choose CSV or JSON")
    return Choice(kind, fmt, field(form, "deidentify", 5) == "yes")


def _filters(db: Session, form: Mapping[str, str], program_id: int) -> exporter.Filters:
    return exporter.Filters(
        form_date(form, "from", "from date"),
        form_date(form, "to", "to date"),
        patient_id=_patient_id(db, field(form, "phone", 40), program_id),
        program_id=program_id,
    )


def _patient_id(db: Session, raw: str, program_id: int) -> int | None:
    """The patient of this program with that phone; the same refusal whether the number is
    nobody's or another program's patient, so the form cannot probe other programs."""
    if not raw:
        return None
    phone = normalise_phone(raw)
    found = db.scalar(
        select(Patient.id).where(Patient.phone == phone, Patient.program_id == program_id)
    )
    if found is None:
        raise FormError(f"no patient with phone {phone} in this program")
    return found


def _attachment(body: str, media_type: str, name: str) -> Response:
    response = Response(body, mimetype=media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    # Patient data: no browser or proxy keeps a copy (the staff pages' header, said again
    # here because a download is the one response people save on purpose).
    response.headers["Cache-Control"] = "no-store"
    return response


def _shown(form: Mapping[str, str]) -> dict[str, str]:
    names = ("kind", "format", "from", "to", "phone", "deidentify")
    return {name: field(form, name, 40) for name in names}


def _page(values: Mapping[str, str], error: str | None = None) -> str:
    return render_template(
        "admin/exports.html",
        values=values,
        kinds=KIND_LABELS,
        formats=FORMAT_LABELS,
        error=error,
    )
