"""The alerts inbox (the landing page) and the alert page that staff pages link to.

Every query is scoped to the signed-in staff member's program: another program's alert or
patient is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import ColumnElement, case, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from checkin import alerts, audit
from checkin.evaluation import recent_readings
from checkin.models import Alert, Patient, StaffUser
from checkin.web import context
from checkin.web.auth import login_required, signed_in

bp = Blueprint("dashboard", __name__)

ALERT_KINDS = sorted(alerts.CLINICAL_KINDS | alerts.ENGAGEMENT_KINDS)
# The inbox's status filter: value -> (label, statuses shown).
STATUS_FILTERS = {
    "unresolved": ("Needs action (open or acknowledged)", ("open", "acknowledged")),
    "open": ("Open", ("open",)),
    "acknowledged": ("Acknowledged", ("acknowledged",)),
    "resolved": ("Resolved", ("resolved",)),
    "all": ("All", ("open", "acknowledged", "resolved")),
}
INBOX_LIMIT = 200  # a page of the inbox; pagination comes with the patient list
RECENT_MEASURES = ("fatigue", "pain", "mood")
RECENT_READINGS = 14  # per measure on the alert page: two weeks of daily check-ins
NOTE_MAX = 2000
# Most urgent first (alerts.SEVERITY_RANK is highest-is-worst; SQL sorts ascending).
_SEVERITY_ORDER = case(
    {severity: -rank for severity, rank in alerts.SEVERITY_RANK.items()},
    value=Alert.severity,
    else_=0,
)


@bp.get("/")
@login_required
def inbox() -> str:
    kind = request.args.get("kind", "")
    kind = kind if kind in ALERT_KINDS else ""
    status = request.args.get("status", "unresolved")
    status = status if status in STATUS_FILTERS else "unresolved"
    stmt = (
        select(Alert, Patient)
        .join(Patient, Patient.id == Alert.patient_id)
        .where(_in_program(), Alert.status.in_(STATUS_FILTERS[status][1]))
    )
    if kind:
        stmt = stmt.where(Alert.kind == kind)
    stmt = stmt.order_by(_SEVERITY_ORDER, Alert.created_at, Alert.id).limit(INBOX_LIMIT + 1)
    with context().db.session() as db:
        rows = [tuple(row) for row in db.execute(stmt)]
    return render_template(
        "inbox.html",
        rows=rows[:INBOX_LIMIT],
        more=len(rows) > INBOX_LIMIT,
        kind=kind,
        status=status,
        kinds=ALERT_KINDS,
        statuses=STATUS_FILTERS,
    )


@bp.get("/alerts/<ref>")
@login_required
def alert_page(ref: str) -> str:
    ctx = context()
    staff = signed_in()
    with ctx.db.session() as db:
        alert, patient = _find(db, ref)
        readings = {m: recent_readings(db, patient.id, m, RECENT_READINGS) for m in RECENT_MEASURES}
        people = _names(db, alert.acknowledged_by_id, alert.resolved_by_id)
        audit.record(
            db, ctx.clock(), staff.email, "alert.view", f"alert:{alert.ref}", ip=request.remote_addr
        )
    return render_template(
        "alert.html",
        alert=alert,
        patient=patient,
        readings={m: list(reversed(r)) for m, r in readings.items()},
        judged=_judged(alert.evidence),
        people=people,
        note_max=NOTE_MAX,
    )


@bp.post("/alerts/<ref>/acknowledge")
@login_required
def acknowledge(ref: str) -> Response:
    def ack(db: Session, alert: Alert, member: StaffUser, now: datetime) -> None:
        alerts.acknowledge(db, alert, member, now, via="web", ip=request.remote_addr)

    return _act(ref, ack, "Acknowledged")


@bp.post("/alerts/<ref>/resolve")
@login_required
def resolve(ref: str) -> Response:
    note = request.form.get("note", "")[:NOTE_MAX]

    def close(db: Session, alert: Alert, member: StaffUser, now: datetime) -> None:
        alerts.resolve(db, alert, member, note, now, via="web", ip=request.remote_addr)

    return _act(ref, close, "Resolved")


def _act(
    ref: str, action: Callable[[Session, Alert, StaffUser, datetime], None], done: str
) -> Response:
    """Load the alert in the staff member's program, act, and show the alert page again."""
    ctx = context()
    staff = signed_in()
    with ctx.db.session() as db:
        alert, _ = _find(db, ref)
        member = db.get_one(StaffUser, staff.id)
        try:
            action(db, alert, member, ctx.clock())
        except alerts.AlertError as exc:
            flash(f"Not done: {exc}.", "error")
        else:
            flash(f"{done}: alert {alert.ref}.", "success")
    return redirect(url_for("dashboard.alert_page", ref=alert.ref), code=303)


def _in_program() -> ColumnElement[bool]:
    """Only the signed-in staff member's program (the query must join Patient)."""
    return Patient.program_id == signed_in().program_id


def _find(db: Session, ref: str) -> tuple[Alert, Patient]:
    ref = ref.strip().upper()
    if not ref.isalnum() or len(ref) > 12:
        abort(404)
    stmt = (
        select(Alert, Patient)
        .join(Patient, Patient.id == Alert.patient_id)
        .where(_in_program(), Alert.ref == ref)
    )
    row = db.execute(stmt).one_or_none()
    if row is None:
        abort(404)
    alert, patient = row
    return alert, patient


def _names(db: Session, *ids: int | None) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = db.execute(select(StaffUser.id, StaffUser.name).where(StaffUser.id.in_(wanted)))
    return {i: n for i, n in rows}


def _judged(evidence: list[dict[str, Any]]) -> set[tuple[str, int]]:
    """(measure, check-in id) of every reading an evidence item judged, to mark them inline."""
    marks = set()
    for item in evidence:
        measure = item.get("measure")
        if not isinstance(measure, str):
            continue
        if isinstance(item.get("checkin_id"), int) and "value" in item:
            marks.add((measure, item["checkin_id"]))
        for reading in item.get("judged") or []:
            if isinstance(reading, dict) and isinstance(reading.get("checkin_id"), int):
                marks.add((measure, reading["checkin_id"]))
    return marks
