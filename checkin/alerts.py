"""Open, dedupe and route alerts.

At most one unresolved alert per patient and kind (a partial unique index enforces it): new
evidence is appended to the open one and nobody is paged again. A new alert texts every on-call
clinician of the patient's program through the same outbox as patient texts. The text carries a
reference, the kind, the severity and a link; never a name, number, diagnosis, drug or score.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from checkin import audit, outbox
from checkin.catalog import render
from checkin.models import Alert, AlertNotification, Message, Patient, StaffUser

# Urgent and high alerts page on-call staff by SMS at once; routine ones wait in the inbox
# (and, with the trends issue, a daily digest) so nobody is woken for them.
PAGED_SEVERITIES = frozenset({"urgent", "high"})
# A reference is read off a phone and typed back ("ACK K7Q2X9"): letter, digit, letter...
# so no word (or "MS") can ever form, and no 0/O or 1/I to confuse.
_REF_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_REF_DIGITS = "23456789"


def raise_alert(
    session: Session,
    patient: Patient,
    kind: str,
    severity: str,
    evidence: dict[str, Any],
    now: datetime,
    *,
    public_url: str | None = None,
    sender: str | None = None,
) -> tuple[Alert, list[Message]]:
    """Open an alert (paging on-call staff) or append to the open one of the same kind.

    Returns the alert and the pages queued, which the caller delivers after committing.
    """
    existing = _unresolved(session, patient.id, kind)
    if existing is not None:
        _append(existing, evidence, now)
        return existing, []
    alert = Alert(
        ref=_new_ref(session),
        patient_id=patient.id,
        kind=kind,
        severity=severity,
        status="open",
        evidence=[{"at": now.isoformat(), **evidence}],
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():  # another process may open the same alert right now
            session.add(alert)
    except IntegrityError:
        existing = _unresolved(session, patient.id, kind)
        assert existing is not None
        _append(existing, evidence, now)
        return existing, []
    audit.record(
        session, now, "system", "alert.open", f"alert:{alert.ref}", kind=kind, severity=severity
    )
    if severity not in PAGED_SEVERITIES:
        return alert, []
    if public_url is None or sender is None:
        raise ValueError(f"a {severity} alert pages staff: public_url and sender are needed")
    return alert, _page_on_call(session, alert, patient, now, public_url, sender)


def _unresolved(session: Session, patient_id: int, kind: str) -> Alert | None:
    return session.scalar(
        select(Alert).where(
            Alert.patient_id == patient_id, Alert.kind == kind, Alert.status != "resolved"
        )
    )


def _append(alert: Alert, evidence: dict[str, Any], now: datetime) -> None:
    alert.evidence = [*alert.evidence, {"at": now.isoformat(), **evidence}]
    alert.updated_at = now


def _page_on_call(
    session: Session, alert: Alert, patient: Patient, now: datetime, public_url: str, sender: str
) -> list[Message]:
    staff = session.scalars(
        select(StaffUser)
        .where(
            StaffUser.program_id == patient.program_id,
            StaffUser.on_call.is_(True),
            StaffUser.active.is_(True),
            StaffUser.phone.is_not(None),
        )
        .order_by(StaffUser.id)
    )
    body = staff_text(alert, public_url)
    pages = []
    for member in staff:
        assert member.phone is not None
        message = outbox.queue(
            session,
            to=member.phone,
            from_number=sender,
            body=body,
            purpose="alert",
            staff_id=member.id,
            now=now,
            idempotency_key=f"alert:{alert.id}:sms:{member.id}",
        )
        session.add(
            AlertNotification(
                alert_id=alert.id,
                staff_id=member.id,
                channel="sms",
                message_id=message.id,
                created_at=now,
            )
        )
        pages.append(message)
    return pages


def staff_text(alert: Alert, public_url: str) -> str:
    return render(
        "staff_alert",
        "en",
        {
            "severity": alert.severity.upper(),
            "ref": alert.ref,
            "kind": alert.kind.replace("_", " "),
            "link": f"{public_url}/alerts/{alert.ref}",
        },
    )


def has_open_crisis(session: Session, patient_id: int) -> bool:
    return _unresolved(session, patient_id, "crisis") is not None


def _new_ref(session: Session) -> str:
    while True:
        ref = "".join(secrets.choice(_REF_LETTERS) + secrets.choice(_REF_DIGITS) for _ in range(3))
        if session.scalar(select(Alert.id).where(Alert.ref == ref)) is None:
            return ref
