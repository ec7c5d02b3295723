"""The append-only audit log: who saw or changed what, when, and from where.

"From where" comes from the entry point: the web app sets the client's address for each
request, the CLI the host it runs on (`origin`), so domain functions record it without every
caller threading an address through. Each row also names the program its target belongs to,
so a clinic's admins read their own log. The database refuses to update or delete rows
(migration 0005's triggers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from checkin.models import Alert, AuditEvent, Patient, Schedule, StaffUser

# (("ip", "203.0.113.9"),) during a web request, (("host", "db-1"),) in a CLI command.
Origin = tuple[tuple[str, str], ...]
_ORIGIN: ContextVar[Origin] = ContextVar("audit_origin", default=())


@contextmanager
def origin(**where: str) -> Iterator[None]:
    """Every audit row recorded inside the block says where the action came from."""
    token = set_origin(**where)
    try:
        yield
    finally:
        _ORIGIN.reset(token)


def set_origin(**where: str) -> Token[Origin]:
    """For callers that cannot use a `with` block (Flask's before/teardown request hooks)."""
    return _ORIGIN.set(tuple((k, v) for k, v in where.items() if v))


def reset_origin(token: Token[Origin]) -> None:
    _ORIGIN.reset(token)


def record(
    session: Session,
    at: datetime,
    actor: str,
    action: str,
    target: str | None = None,
    *,
    program_id: int | None = None,
    **detail: Any,
) -> None:
    for key, value in _ORIGIN.get():
        detail.setdefault(key, value)
    if program_id is None:
        program_id = program_of(session, target)
    session.add(
        AuditEvent(
            at=at, actor=actor, action=action, target=target, detail=detail, program_id=program_id
        )
    )


def program_of(session: Session, target: str | None) -> int | None:
    """The program that `target` ('patient:12', 'alert:K7Q2X9', 'staff:3', 'schedule:5',
    'program:1', or a staff email for sign-in events) belongs to; None for anything else."""
    if not target:
        return None
    kind, _, ident = target.partition(":")
    if not ident:
        return session.scalar(select(StaffUser.program_id).where(StaffUser.email == target))
    if kind == "alert":
        stmt = select(Patient.program_id).join(Alert, Alert.patient_id == Patient.id)
        return session.scalar(stmt.where(Alert.ref == ident))
    if not ident.isdigit():
        return None
    if kind == "program":
        return int(ident)
    if kind == "patient":
        return session.scalar(select(Patient.program_id).where(Patient.id == int(ident)))
    if kind == "staff":
        return session.scalar(select(StaffUser.program_id).where(StaffUser.id == int(ident)))
    if kind == "schedule":
        return session.scalar(select(Schedule.program_id).where(Schedule.id == int(ident)))
    return None
