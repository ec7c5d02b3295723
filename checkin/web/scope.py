"""Program scoping: a row of another program is a 404, the same answer as one that does not
exist, so staff cannot even learn that it is there."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import abort
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from checkin.models import Patient, Schedule, StaffUser
from checkin.web.auth import signed_in

Owned = TypeVar("Owned", Patient, StaffUser, Schedule)


def in_program(db: Session, model: type[Owned], ident: int, *where: ColumnElement[Any]) -> Owned:
    """The row with this id in the signed-in staff member's program (and matching `where`),
    else a 404."""
    stmt = select(model).where(
        model.id == ident, model.program_id == signed_in().program_id, *where
    )
    row = db.scalar(stmt)
    if row is None:
        abort(404)
    return row
