"""GET /alerts, GET /alerts/{ref}, POST /alerts/{ref}/acknowledge and /resolve.

Acknowledging and resolving call the same checkin.alerts functions as the alert page and the
"ACK" text, so the audit log says who did it and that it came through the API (via "api").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session

from checkin import alerts, audit
from checkin.api.auth import caller, context
from checkin.api.errors import fail
from checkin.api.paging import fetch
from checkin.api.schemas import AlertOut, AlertPage, AlertQuery, ResolveIn
from checkin.api.scope import alert_in_program, patient_of_program
from checkin.api.spec import documented
from checkin.api.v1 import bp
from checkin.models import Alert, Patient, StaffUser

# An alert action: (session, alert, the acting staff member, now) -> None; AlertError if the
# alert's state does not allow it.
Action = Callable[[Session, Alert, StaffUser, datetime], None]


@bp.get("/alerts")
@documented(200, AlertPage, tags=("alerts",))
def list_alerts(query: AlertQuery) -> AlertPage:
    """The program's alerts, oldest first, by status and kind."""
    holder = caller()
    stmt = select(Alert).join(Patient, Patient.id == Alert.patient_id).where(patient_of_program())
    if query.status:
        stmt = stmt.where(Alert.status == query.status)
    if query.kind:
        stmt = stmt.where(Alert.kind == query.kind)
    ctx = context()
    with ctx.db.session() as db:
        page = fetch(db, stmt.order_by(Alert.created_at, Alert.id), query)
        audit.record(
            db,
            ctx.clock(),
            holder.email,
            "alerts.list",
            program_id=holder.program_id,
            status=query.status,
            kind=query.kind,
            page=page.page,
            shown=len(page.rows),
        )
        items = [AlertOut.model_validate(a) for a in page.rows]
    return AlertPage(items=items, **page.meta())


@bp.get("/alerts/<ref>")
@documented(200, AlertOut, 404, tags=("alerts",))
def read_alert(ref: str) -> AlertOut:
    """One alert, with the evidence that opened it."""
    ctx = context()
    with ctx.db.session() as db:
        alert = alert_in_program(db, ref)
        audit.record(db, ctx.clock(), caller().email, "alert.view", f"alert:{alert.ref}")
        return AlertOut.model_validate(alert)


@bp.post("/alerts/<ref>/acknowledge")
@documented(200, AlertOut, 404, 409, tags=("alerts",))
def acknowledge_alert(ref: str) -> AlertOut:
    """Say someone is on it (an open alert only; 409 otherwise)."""

    def ack(db: Session, alert: Alert, member: StaffUser, now: datetime) -> None:
        alerts.acknowledge(db, alert, member, now, via="api", ip=request.remote_addr)

    return _act(ref, ack)


@bp.post("/alerts/<ref>/resolve")
@documented(200, AlertOut, 404, 409, tags=("alerts",))
def resolve_alert(ref: str, json: ResolveIn) -> AlertOut:
    """Close the alert with a note saying what was done (409 if it is resolved already)."""

    def close(db: Session, alert: Alert, member: StaffUser, now: datetime) -> None:
        alerts.resolve(db, alert, member, json.note, now, via="api", ip=request.remote_addr)

    return _act(ref, close)


def _act(ref: str, action: Action) -> AlertOut:
    ctx = context()
    try:
        with ctx.db.session() as db:
            alert = alert_in_program(db, ref)
            action(db, alert, db.get_one(StaffUser, caller().staff_id), ctx.clock())
            return AlertOut.model_validate(alert)
    except alerts.AlertError as exc:
        fail(409, f"{exc}")
