"""Exports to stdout as CSV or JSON, with at least the columns in the CLI contract."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from checkin.models import Alert, Answer, Message, Patient

KINDS = ("observations", "alerts", "messages")


def rows(
    session: Session, kind: str, status: str | None = None
) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """Columns and rows of one export; `status` keeps only alerts or messages in that state
    (``export messages --status failed`` lists the dead letters)."""
    if kind == "observations":
        return OBSERVATION_COLUMNS, _observations(session)
    if kind == "alerts":
        return ALERT_COLUMNS, (r for r in _alerts(session) if status in (None, r["status"]))
    return MESSAGE_COLUMNS, (r for r in _messages(session) if status in (None, r["status"]))


OBSERVATION_COLUMNS = ["phone", "measure", "value", "status", "recorded_at", "checkin_id", "note"]
ALERT_COLUMNS = [
    "phone",
    "ref",
    "kind",
    "severity",
    "status",
    "created_at",
    "acknowledged_at",
    "resolved_at",
]
MESSAGE_COLUMNS = [
    "phone",
    "direction",
    "purpose",
    "body",
    "status",
    "twilio_sid",
    "error_code",
    "error_message",
    "attempts",
    "created_at",
    "sent_at",
]


def _observations(session: Session) -> Iterator[dict[str, Any]]:
    stmt = select(Answer, Patient.phone).join(Patient, Patient.id == Answer.patient_id)
    for answer, phone in session.execute(stmt.order_by(Answer.recorded_at, Answer.id)):
        yield {
            "phone": phone,
            "measure": answer.measure,
            "value": answer.value,
            "status": answer.status,
            "recorded_at": answer.recorded_at.isoformat(),
            "checkin_id": answer.checkin_id,
            "note": answer.note,
        }


def _alerts(session: Session) -> Iterator[dict[str, Any]]:
    stmt = select(Alert, Patient.phone).join(Patient, Patient.id == Alert.patient_id)
    for alert, phone in session.execute(stmt.order_by(Alert.created_at, Alert.id)):
        yield {
            "phone": phone,
            "ref": alert.ref,
            "kind": alert.kind,
            "severity": alert.severity,
            "status": alert.status,
            "created_at": alert.created_at.isoformat(),
            "acknowledged_at": _iso(alert.acknowledged_at),
            "resolved_at": _iso(alert.resolved_at),
        }


def _messages(session: Session) -> Iterator[dict[str, Any]]:
    for message in session.scalars(select(Message).order_by(Message.created_at, Message.id)):
        phone = message.from_number if message.direction == "inbound" else message.to_number
        yield {
            "phone": phone,
            "direction": message.direction,
            "purpose": message.purpose,
            "body": message.body,
            "status": message.status,
            "twilio_sid": message.twilio_sid,
            "error_code": message.error_code,
            "error_message": message.error_message,
            "attempts": message.attempts,
            "created_at": message.created_at.isoformat(),
            "sent_at": _iso(message.sent_at),
        }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def render(columns: list[str], data: Iterator[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(list(data), indent=2) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(data)
    return out.getvalue()
