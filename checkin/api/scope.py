"""Program scoping for the API, as web/scope.py does it for the pages: a row of another
program is a 404 with the same message as one that does not exist."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from checkin.api.auth import caller
from checkin.api.errors import fail
from checkin.api.schemas import ID_MAX
from checkin.models import Alert, Patient, Schedule

Owned = TypeVar("Owned", Patient, Schedule)


def in_program(db: Session, model: type[Owned], ident: int, *where: ColumnElement[Any]) -> Owned:
    """The row with this id in the caller's program (and matching `where`), else a 404."""
    stmt = select(model).where(model.id == ident, model.program_id == caller().program_id, *where)
    # An id no 32-bit column can hold is not asked for (SQLite would refuse the number).
    row = db.scalar(stmt) if 1 <= ident <= ID_MAX else None
    if row is None:
        fail(404, f"{model.__name__.lower()} {ident} not found")
    return row


def alert_in_program(db: Session, ref: str) -> Alert:
    wanted = ref.strip().upper()
    stmt = (
        select(Alert)
        .join(Patient, Patient.id == Alert.patient_id)
        .where(Alert.ref == wanted, Patient.program_id == caller().program_id)
    )
    alert = db.scalar(stmt) if wanted.isalnum() and len(wanted) <= 12 else None
    if alert is None:
        fail(404, f"alert {ref[:20]!r} not found")
    return alert


def patient_of_program() -> ColumnElement[bool]:
    """For queries that join Patient: only the caller's program."""
    return Patient.program_id == caller().program_id


def patient_window(
    db: Session,
    stmt: Select[Any],
    patient_id: int | None,
    patient_column: InstrumentedAttribute[int],
    time_column: InstrumentedAttribute[datetime],
    start: datetime | None,
    end: datetime | None,
) -> Select[Any]:
    """`stmt` (which joins Patient) kept to the caller's program, to one of its patients when
    `patient_id` is given (another program's is a 404), and to [start, end) of `time_column`."""
    stmt = stmt.where(patient_of_program())
    if start:
        stmt = stmt.where(time_column >= start)
    if end:
        stmt = stmt.where(time_column < end)
    if patient_id is not None:
        in_program(db, Patient, patient_id)
        stmt = stmt.where(patient_column == patient_id)
    return stmt


def window_detail(start: datetime | None, end: datetime | None) -> dict[str, str | None]:
    """What a list's audit row says about its time window."""
    return {
        "start": start.isoformat() if start else None,
        "end": end.isoformat() if end else None,
    }
