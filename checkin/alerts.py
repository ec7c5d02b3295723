"""Open, dedupe, page, escalate, acknowledge and resolve alerts.

- At most one unresolved alert per patient and kind (a partial unique index enforces it): new
  evidence is appended to the open one and nobody is paged again, unless it is more severe.
- After an alert is resolved, a cooldown per kind applies: findings during it are appended to
  the resolved alert as evidence, without a new alert or page, unless they are more severe.
  A crisis has no cooldown.
- Urgent and high alerts page on-call clinicians of the patient's program by SMS and email;
  routine ones wait in the inbox and the daily digest, so nobody is woken for them.
- An urgent alert not acknowledged within CHECKIN_ESCALATE_AFTER_MINUTES pages the next tier
  (the program's admins).
- Pages carry a reference, the kind, the severity and a link; never a name, number, diagnosis,
  drug or score. Every state change is written to the audit log.
- Every state change (opened, severity raised, acknowledged, resolved, escalated) also queues
  an event for the program's webhook endpoints, in the same transaction (alert_webhooks).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from checkin import alert_webhooks, audit, outbox
from checkin.catalog import render
from checkin.models import Alert, AlertNotification, Message, Patient, StaffUser

PAGED_SEVERITIES = frozenset({"urgent", "high"})
SEVERITY_RANK = {"routine": 0, "high": 1, "urgent": 2}
CLINICAL_KINDS = frozenset(
    {"crisis", "severe", "worsening", "phq2_positive", "loss_of_response", "side_effect"}
)
ENGAGEMENT_KINDS = frozenset({"non_response", "delivery_failure", "stop_request"})
# After resolution, how long a new finding of the same kind is folded into the resolved
# alert instead of paging again. A crisis always alerts (CLINICAL.md: prefer a false alarm).
COOLDOWN = {
    "crisis": timedelta(0),
    "severe": timedelta(hours=24),
    "side_effect": timedelta(hours=24),
    "worsening": timedelta(days=7),
    "phq2_positive": timedelta(days=14),
    "loss_of_response": timedelta(days=14),
    "non_response": timedelta(days=7),
    "delivery_failure": timedelta(days=7),
    "stop_request": timedelta(0),
}
# A reference is read off a phone and typed back ("ACK K7Q2X9"): letter, digit, letter...
# so no word (or "MS") can ever form, and no 0/O or 1/I to confuse.
_REF_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_REF_DIGITS = "23456789"
ACK_PATTERN = re.compile(r"^\s*ack\s+([a-z0-9]{6})\s*[.!]?\s*$", re.IGNORECASE)


class AlertError(ValueError):
    """A one-line reason an alert action cannot be done."""


@dataclass(frozen=True)
class Pager:
    """What paging needs: the dashboard's base URL and the SMS and email senders."""

    public_url: str
    sms_from: str
    email_from: str | None = None  # None: email is not configured

    @classmethod
    def of(cls, ctx: Any) -> Pager:
        settings = ctx.settings
        email = settings.smtp_from if ctx.email is not None else None
        return cls(settings.public_url, settings.sender, email)


def raise_alert(
    session: Session,
    patient: Patient,
    kind: str,
    severity: str,
    evidence: dict[str, Any],
    now: datetime,
    pager: Pager | None = None,
) -> tuple[Alert, list[Message]]:
    """Open an alert (paging on-call staff) or add the evidence to the one it belongs to.

    Returns the alert and the pages queued, which the caller delivers after committing.
    """
    item = {"at": now.isoformat(), **evidence}
    existing = _unresolved(session, patient.id, kind)
    if existing is not None:
        return existing, _add_evidence(session, existing, item, severity, now, pager)
    cooling = _cooling_down(session, patient.id, kind, now)
    # A finding worse than the one staff resolved is news: it opens a new alert and pages.
    if cooling is not None and SEVERITY_RANK[severity] <= SEVERITY_RANK[cooling.severity]:
        cooling.evidence = [*cooling.evidence, {**item, "during_cooldown": True}]
        cooling.updated_at = now
        audit.record(session, now, "system", "alert.cooldown_evidence", f"alert:{cooling.ref}")
        return cooling, []
    alert = Alert(
        ref=_new_ref(session),
        patient_id=patient.id,
        kind=kind,
        severity=severity,
        status="open",
        evidence=[item],
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():  # another process may open the same alert right now
            session.add(alert)
    except IntegrityError:
        existing = _unresolved(session, patient.id, kind)
        assert existing is not None
        return existing, _add_evidence(session, existing, item, severity, now, pager)
    audit.record(
        session, now, "system", "alert.open", f"alert:{alert.ref}", kind=kind, severity=severity
    )
    alert_webhooks.alert_event(session, alert, "alert.opened", now)
    return alert, _page_if_needed(session, alert, patient, now, pager)


def _add_evidence(
    session: Session,
    alert: Alert,
    item: dict[str, Any],
    severity: str,
    now: datetime,
    pager: Pager | None,
) -> list[Message]:
    alert.evidence = [*alert.evidence, item]
    alert.updated_at = now
    if SEVERITY_RANK[severity] <= SEVERITY_RANK[alert.severity]:
        return []
    # Worse than what staff were told: raise the severity and page again.
    audit.record(
        session,
        now,
        "system",
        "alert.severity_raised",
        f"alert:{alert.ref}",
        was=alert.severity,
        now=severity,
    )
    alert.severity = severity
    # Severity only rises, so the new one tells this event from the alert's other raises.
    alert_webhooks.alert_event(session, alert, "alert.severity_raised", now, key=severity)
    return _page_if_needed(session, alert, alert.patient, now, pager)


def _page_if_needed(
    session: Session, alert: Alert, patient: Patient, now: datetime, pager: Pager | None
) -> list[Message]:
    if alert.severity not in PAGED_SEVERITIES:
        return []
    if pager is None:
        raise ValueError(f"a {alert.severity} alert pages staff: a Pager is needed")
    on_call = session.scalars(
        select(StaffUser)
        .where(
            StaffUser.program_id == patient.program_id,
            StaffUser.on_call.is_(True),
            StaffUser.active.is_(True),
        )
        .order_by(StaffUser.id)
    )
    return page(session, alert, list(on_call), now, pager, tier=1)


def page(
    session: Session,
    alert: Alert,
    staff: list[StaffUser],
    now: datetime,
    pager: Pager,
    *,
    tier: int,
) -> list[Message]:
    """Queue an SMS (to staff with a phone) and an email (when configured) per person."""
    pages = []
    for member in staff:
        targets = [("sms", member.phone, pager.sms_from, staff_text(alert, pager.public_url))]
        if pager.email_from:
            body = staff_email(alert, pager.public_url)
            targets.append(("email", member.email, pager.email_from, body))
        for channel, address, sender, body in targets:
            if not address:
                continue
            message = outbox.queue(
                session,
                to=address,
                from_number=sender,
                body=body,
                purpose="alert",
                staff_id=member.id,
                now=now,
                channel=channel,
                idempotency_key=f"alert:{alert.id}:{alert.severity}:{tier}:{channel}:{member.id}",
            )
            session.add(
                AlertNotification(
                    alert_id=alert.id,
                    staff_id=member.id,
                    channel=channel,
                    tier=tier,
                    message_id=message.id,
                    created_at=now,
                )
            )
            pages.append(message)
    return pages


def staff_text(alert: Alert, public_url: str) -> str:
    return render("staff_alert", "en", _params(alert, public_url))


def staff_email(alert: Alert, public_url: str) -> str:
    return render("staff_alert_email", "en", _params(alert, public_url))


def _params(alert: Alert, public_url: str) -> dict[str, str]:
    return {
        "severity": alert.severity.upper(),
        "ref": alert.ref,
        "kind": alert.kind.replace("_", " "),
        "link": f"{public_url}/alerts/{alert.ref}",
    }


def acknowledge(
    session: Session,
    alert: Alert,
    staff: StaffUser,
    now: datetime,
    *,
    via: str,
    ip: str | None = None,
) -> None:
    _same_program(session, alert, staff)
    if alert.status != "open":
        raise AlertError(f"alert {alert.ref} is already {alert.status}")
    alert.status, alert.acknowledged_at, alert.acknowledged_by_id = "acknowledged", now, staff.id
    alert.updated_at = now
    audit.record(
        session, now, staff.email, "alert.acknowledge", f"alert:{alert.ref}", via=via, **_where(ip)
    )
    alert_webhooks.alert_event(session, alert, "alert.acknowledged", now)


def resolve(
    session: Session,
    alert: Alert,
    staff: StaffUser,
    note: str,
    now: datetime,
    *,
    via: str,
    ip: str | None = None,
) -> None:
    _same_program(session, alert, staff)
    if alert.status == "resolved":
        raise AlertError(f"alert {alert.ref} is already resolved")
    if not note.strip():
        raise AlertError("a resolution note is required: say what was done")
    if alert.acknowledged_at is None:
        alert.acknowledged_at, alert.acknowledged_by_id = now, staff.id
    alert.status, alert.resolved_at, alert.resolved_by_id = "resolved", now, staff.id
    alert.resolution_note, alert.updated_at = note.strip(), now
    audit.record(
        session, now, staff.email, "alert.resolve", f"alert:{alert.ref}", via=via, **_where(ip)
    )
    alert_webhooks.alert_event(session, alert, "alert.resolved", now)


def _where(ip: str | None) -> dict[str, Any]:
    """'From where' for the audit log: the client address of a web action (none for SMS/CLI)."""
    return {"ip": ip} if ip else {}


def _same_program(session: Session, alert: Alert, staff: StaffUser) -> None:
    patient = session.get_one(Patient, alert.patient_id)
    if patient.program_id != staff.program_id or not staff.active:
        # The same words as an unknown reference: another program's alerts do not exist here.
        raise AlertError(f"no alert {alert.ref}")


def by_ref(session: Session, ref: str) -> Alert:
    alert = session.scalar(select(Alert).where(Alert.ref == ref.strip().upper()))
    if alert is None:
        raise AlertError(f"no alert {ref.strip().upper()}")
    return alert


def handle_ack_text(session: Session, staff: StaffUser, body: str, now: datetime) -> str | None:
    """'ACK K7Q2X9' from a staff phone: the reply text, or None if the text is not an ACK."""
    match = ACK_PATTERN.match(body or "")
    if match is None:
        return None
    try:
        alert = by_ref(session, match.group(1))
        acknowledge(session, alert, staff, now, via="sms")
    except AlertError as exc:
        return render("staff_ack_failed", "en", {"reason": str(exc)})
    return render("staff_ack", "en", {"ref": alert.ref})


def escalate(session: Session, now: datetime, after: timedelta, pager: Pager) -> list[Message]:
    """Page the next tier about urgent alerts nobody acknowledged in time."""
    pages: list[Message] = []
    overdue = session.scalars(
        select(Alert).where(
            Alert.status == "open",
            Alert.severity == "urgent",
            Alert.escalated_at.is_(None),
            Alert.created_at <= now - after,
        )
    )
    for alert in overdue:
        program_id = session.get_one(Patient, alert.patient_id).program_id
        admins = list(
            session.scalars(
                select(StaffUser)
                .where(
                    StaffUser.program_id == program_id,
                    StaffUser.role == "admin",
                    StaffUser.active.is_(True),
                )
                .order_by(StaffUser.id)
            )
        )
        alert.escalated_at = now
        audit.record(
            session,
            now,
            "system",
            "alert.escalate",
            f"alert:{alert.ref}",
            tier=2,
            to=[a.email for a in admins],
        )
        alert_webhooks.alert_event(session, alert, "alert.escalated", now)
        pages += page(session, alert, admins, now, pager, tier=2)
    return pages


def _unresolved(session: Session, patient_id: int, kind: str) -> Alert | None:
    return session.scalar(
        select(Alert).where(
            Alert.patient_id == patient_id, Alert.kind == kind, Alert.status != "resolved"
        )
    )


def _cooling_down(session: Session, patient_id: int, kind: str, now: datetime) -> Alert | None:
    cooldown = COOLDOWN.get(kind, timedelta(0))
    if cooldown <= timedelta(0):
        return None
    return session.scalar(
        select(Alert)
        .where(
            Alert.patient_id == patient_id,
            Alert.kind == kind,
            Alert.status == "resolved",
            Alert.resolved_at > now - cooldown,
        )
        .order_by(Alert.resolved_at.desc())
        .limit(1)
    )


def _new_ref(session: Session) -> str:
    while True:
        ref = "".join(secrets.choice(_REF_LETTERS) + secrets.choice(_REF_DIGITS) for _ in range(3))
        if session.scalar(select(Alert.id).where(Alert.ref == ref)) is None:
            return ref
