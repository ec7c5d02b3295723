"""GET /checkins: check-ins planned, sent and answered, filtered by patient, status and time."""

from __future__ import annotations

from sqlalchemy import select

from checkin import audit
from checkin.api.auth import caller, context
from checkin.api.paging import fetch
from checkin.api.schemas import CheckInOut, CheckInPage, CheckInQuery
from checkin.api.scope import patient_window, window_detail
from checkin.api.spec import documented
from checkin.api.v1 import bp
from checkin.models import CheckIn, Patient


@bp.get("/checkins")
@documented(200, CheckInPage, 404, tags=("checkins",))
def list_checkins(query: CheckInQuery) -> CheckInPage:
    """Check-ins by when they are (or were) due, oldest first.

    `from` and `to` bound `due_at`. Another program's `patient_id` is a 404.
    """
    holder = caller()
    stmt = select(CheckIn).join(Patient, Patient.id == CheckIn.patient_id)
    if query.status:
        stmt = stmt.where(CheckIn.status == query.status)
    ctx = context()
    with ctx.db.session() as db:
        stmt = patient_window(
            db, stmt, query.patient_id, CheckIn.patient_id, CheckIn.due_at, query.from_, query.to
        )
        page = fetch(db, stmt.order_by(CheckIn.due_at, CheckIn.id), query)
        # Who was texted when, and whether they answered: patient data, audited.
        audit.record(
            db,
            ctx.clock(),
            holder.email,
            "checkins.list",
            f"patient:{query.patient_id}" if query.patient_id else None,
            program_id=holder.program_id,
            status=query.status,
            page=page.page,
            shown=len(page.rows),
            **window_detail(query.from_, query.to),
        )
        items = [CheckInOut.model_validate(c) for c in page.rows]
    return CheckInPage(items=items, **page.meta())
