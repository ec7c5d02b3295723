"""The append-only audit log: who changed what, and when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from checkin.models import AuditEvent


def record(
    session: Session,
    at: datetime,
    actor: str,
    action: str,
    target: str | None = None,
    **detail: Any,
) -> None:
    session.add(AuditEvent(at=at, actor=actor, action=action, target=target, detail=detail))
