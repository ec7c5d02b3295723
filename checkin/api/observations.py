"""GET /observations: answers to check-in questions, filtered by patient, measure and time."""

from __future__ import annotations

from sqlalchemy import select

from checkin import audit
from checkin.api.auth import caller, context
from checkin.api.paging import fetch
from checkin.api.schemas import ObservationOut, ObservationPage, ObservationQuery
from checkin.api.scope import patient_window, window_detail
from checkin.api.spec import documented
from checkin.api.v1 import bp
from checkin.models import Answer, Patient


@bp.get("/observations")
@documented(200, ObservationPage, 404, tags=("observations",))
def list_observations(query: ObservationQuery) -> ObservationPage:
    """Observations (one measure of one check-in), oldest first.

    `from` and `to` bound `recorded_at`. A missing or skipped answer is listed with a null
    value, never 0. Another program's `patient_id` is a 404.
    """
    holder = caller()
    stmt = select(Answer).join(Patient, Patient.id == Answer.patient_id)
    if query.measure:
        stmt = stmt.where(Answer.measure == query.measure)
    ctx = context()
    with ctx.db.session() as db:
        stmt = patient_window(
            db, stmt, query.patient_id, Answer.patient_id, Answer.recorded_at, query.from_, query.to
        )
        page = fetch(db, stmt.order_by(Answer.recorded_at, Answer.id), query)
        # Readings are patient data: who read which, like a patient page view.
        audit.record(
            db,
            ctx.clock(),
            holder.email,
            "observations.list",
            f"patient:{query.patient_id}" if query.patient_id else None,
            program_id=holder.program_id,
            measure=query.measure,
            page=page.page,
            shown=len(page.rows),
            **window_detail(query.from_, query.to),
        )
        items = [ObservationOut.model_validate(a) for a in page.rows]
    return ObservationPage(items=items, **page.meta())
