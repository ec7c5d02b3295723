"""The alerts inbox (the landing page) and the alert page that staff pages link to.

Every query is scoped to the signed-in staff member's program: another program's alert or
patient is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import ColumnElement, case, func, select, tuple_
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from checkin import alert_summary, alerts, audit
from checkin.evaluation import recent_readings
from checkin.models import Alert, Answer, Patient, StaffUser
from checkin.web import context
from checkin.web.auth import login_required, signed_in
from checkin.web.forms import Paging

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
PAGE_SIZE = 50  # alerts per inbox page, as on the patient list
# Readings per inbox row: a week of daily check-ins, enough to see a change against the days
# before it without opening the alert.
INBOX_READINGS = 7
RECENT_MEASURES = ("fatigue", "pain", "mood")
RECENT_READINGS = 14  # per measure on the alert page: two weeks of daily check-ins
NOTE_MAX = 2000
# Most urgent first (alerts.SEVERITY_RANK is highest-is-worst; SQL sorts ascending).
_SEVERITY_ORDER = case(
    {severity: -rank for severity, rank in alerts.SEVERITY_RANK.items()},
    value=Alert.severity,
    else_=0,
)

_PATIENT_OF_ALERT = Patient.id == Alert.patient_id


@dataclass(frozen=True)
class InboxRow:
    alert: Alert
    patient: Patient
    why: str  # alert_summary.summarize: one line saying why it fired
    measure: str | None  # the measure the newest evidence names, as staff read it
    recent: list[tuple[float, bool]]  # its newest readings, oldest first: (value, judged)


@bp.get("/")
@login_required
def inbox() -> str:
    kind = request.args.get("kind", "")
    kind = kind if kind in ALERT_KINDS else ""
    status = request.args.get("status", "unresolved")
    status = status if status in STATUS_FILTERS else "unresolved"
    where = [_in_program(), Alert.status.in_(STATUS_FILTERS[status][1])]
    if kind:
        where.append(Alert.kind == kind)
    with context().db.session() as db:
        counted = select(func.count()).select_from(Alert).join(Patient, _PATIENT_OF_ALERT)
        total = db.scalar(counted.where(*where)) or 0
        paging = Paging.of(total, request.args.get("page"), PAGE_SIZE)
        stmt = paging.rows(
            select(Alert, Patient)
            .join(Patient, _PATIENT_OF_ALERT)
            .where(*where)
            .order_by(_SEVERITY_ORDER, Alert.created_at, Alert.id)
        )
        rows = _inbox_rows(db, [(alert, patient) for alert, patient in db.execute(stmt)])
        # The inbox names patients: who looked at which page of it is audited too.
        staff = signed_in()
        audit.record(
            db,
            context().clock(),
            staff.email,
            "alerts.list",
            program_id=staff.program_id,
            status=status,
            kind=kind or None,
            page=paging.page,
            shown=len(rows),
        )
    return render_template(
        "inbox.html",
        rows=rows,
        total=total,
        page=paging.page,
        pages=paging.pages,
        kind=kind,
        status=status,
        kinds=ALERT_KINDS,
        statuses=STATUS_FILTERS,
        readings_shown=INBOX_READINGS,
    )


def _inbox_rows(db: Session, found: Sequence[tuple[Alert, Patient]]) -> list[InboxRow]:
    """Each alert with its one-line summary and its measure's recent readings."""
    measures = {alert.id: alert_summary.measure_of(alert.evidence) for alert, _ in found}
    wanted = {(a.patient_id, m) for a, _ in found if (m := measures[a.id]) is not None}
    readings = _newest_readings(db, wanted, INBOX_READINGS)
    rows = []
    for alert, patient in found:
        measure = measures[alert.id]
        judged = _judged(alert.evidence)
        series = readings.get((alert.patient_id, measure), []) if measure else []
        rows.append(
            InboxRow(
                alert=alert,
                patient=patient,
                why=alert_summary.summarize(alert.kind, alert.evidence),
                measure=alert_summary.measure_label(measure) if measure else None,
                recent=[(value, (measure, cid) in judged) for value, cid in series],
            )
        )
    return rows


def _newest_readings(
    db: Session, wanted: Iterable[tuple[int, str]], limit: int
) -> dict[tuple[int, str], list[tuple[float, int]]]:
    """The newest `limit` answered (value, check-in id) of each (patient, measure), oldest
    first: one query for the whole page, however many rows it has."""
    pairs = sorted(wanted)
    if not pairs:
        return {}
    newest_first = func.row_number().over(
        partition_by=(Answer.patient_id, Answer.measure),
        order_by=(Answer.recorded_at.desc(), Answer.id.desc()),  # as recent_readings orders
    )
    ranked = (
        select(Answer.patient_id, Answer.measure, Answer.value, Answer.checkin_id)
        .add_columns(newest_first.label("n"))
        .where(Answer.status == "answered", tuple_(Answer.patient_id, Answer.measure).in_(pairs))
        .subquery()
    )
    stmt = (
        select(ranked.c.patient_id, ranked.c.measure, ranked.c.value, ranked.c.checkin_id)
        .where(ranked.c.n <= limit)
        .order_by(ranked.c.patient_id, ranked.c.measure, ranked.c.n.desc())
    )
    out: dict[tuple[int, str], list[tuple[float, int]]] = defaultdict(list)
    for patient_id, measure, value, checkin_id in db.execute(stmt):
        if value is not None:
            out[(patient_id, measure)].append((float(value), checkin_id))
    return out


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


def _judged(evidence: object) -> set[tuple[str, int]]:
    """(measure, check-in id) of every reading an evidence item judged, to mark them inline.

    Evidence is JSON of any age and shape: anything that is not what the rules write is skipped.
    """
    marks: set[tuple[str, int]] = set()
    for item in evidence if isinstance(evidence, list) else []:
        measure = item.get("measure") if isinstance(item, dict) else None
        if not isinstance(measure, str):
            continue
        if isinstance(item.get("checkin_id"), int) and "value" in item:
            marks.add((measure, item["checkin_id"]))
        judged = item.get("judged")
        for reading in judged if isinstance(judged, list) else []:
            if isinstance(reading, dict) and isinstance(reading.get("checkin_id"), int):
                marks.add((measure, reading["checkin_id"]))
    return marks
