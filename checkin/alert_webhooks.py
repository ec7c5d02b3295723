"""Outbound alert webhooks: endpoints an admin registers, the events they receive, signing.

An endpoint (an EHR inbox integration, a team chat) receives a JSON event whenever one of its
program's alerts is opened, raised in severity, acknowledged, resolved or escalated. Each event
is a WebhookDelivery row written in the same transaction as the alert change (save before
send); the scheduler's `webhooks` step sends it (checkin.webhook_delivery). docs/webhooks.md
is the receiver's guide.

Minimum necessary (HIPAA 45 CFR 164.502(b); CLINICAL.md "texts carry the minimum"): an event
leaves the clinic's systems for a third party's, so by default it carries what a page carries
and no more: the alert's reference, kind, severity, status, when it opened, and a link to the
alert page, where staff sign in to see the rest. Never the patient's name, phone number or
anything they wrote. An admin may opt an endpoint in to the readings (`include_readings`):
then the alert's evidence is added, limited to the rule, the readings it judged and its
thresholds (READING_KEYS); even then no free text (a crisis alert's matched words stay out).

Signing: `Checkin-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>` with the
unix time in `Checkin-Timestamp`; `verify` is the receiver's check, used by the tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from checkin import audit
from checkin.models import Alert, Patient, Program, WebhookDelivery, WebhookEndpoint

ALERT_EVENTS = (
    "alert.opened",
    "alert.severity_raised",
    "alert.acknowledged",
    "alert.resolved",
    "alert.escalated",
)
PING = "ping"
# Receivers refuse a timestamp further than this from their own clock: a captured request
# cannot be replayed later (docs/webhooks.md).
TOLERANCE_SECONDS = 300
SIGNATURE_VERSION = "v1"
# Plain http:// only to a receiver on this machine (the tests' loopback receiver, a local
# relay); anything that crosses a network must be https://.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
URL_MAX = 500  # WebhookEndpoint.url
DISABLED = "not sent: the endpoint was disabled"
DESCRIPTION_MAX = 200
# 32 random bytes, 43 characters: as strong as the HMAC-SHA256 key can use.
SECRET_BYTES = 32
# What `include_readings` adds from each evidence item: the rule and its numbers. Anything a
# rule may add later stays out until someone decides it is fit to leave the clinic.
READING_KEYS = frozenset(
    {
        "at",
        "rule",
        "measure",
        "measures",
        "direction",
        "judged",
        "change",
        "baseline",
        "thresholds",
        "ewma",
        "excess",
        "limit",
        "infusion_date",
        "post_peak",
        "post_peak_days",
        "fraction_lost",
        "unanswered",
        "from",
        "to",
        "sent",
        "answered",
        "rate",
        "checkin_id",
        "during_cooldown",
        "source",
        "suggest",
    }
)


class WebhookError(ValueError):
    """A one-line reason an endpoint or delivery change cannot be made."""


class SignatureError(ValueError):
    """Why a receiver must refuse a request: bad, missing or stale signature."""


# --- endpoints ----------------------------------------------------------------------------


def check_url(raw: str) -> str:
    """The endpoint URL if it is one we may send health events to; WebhookError otherwise."""
    url = raw.strip()
    if not url:
        raise WebhookError("the endpoint URL is required")
    if len(url) > URL_MAX:
        raise WebhookError(f"the URL is longer than {URL_MAX} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise WebhookError("the URL must not contain spaces or control characters")
    parts = urlsplit(url)
    try:
        host, _ = parts.hostname, parts.port  # .port raises on a port that is not a number
    except ValueError:
        raise WebhookError("the URL's port is not a number from 1 to 65535") from None
    if parts.scheme.lower() not in ("https", "http") or not host:
        raise WebhookError("the URL must start with https:// and name a host")
    if parts.username is not None or parts.password is not None:
        # It would show on admin pages and in logs; the signature is the receiver's proof.
        raise WebhookError("the URL must not carry a user name or password")
    if parts.fragment:
        raise WebhookError("the URL must not have a #fragment (it is never sent)")
    if parts.scheme.lower() == "http" and host not in LOOPBACK_HOSTS:
        raise WebhookError(
            "the URL must use https:// (plain http:// only for a receiver on this machine: "
            "127.0.0.1, ::1 or localhost)"
        )
    return url


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def register(
    session: Session,
    program_id: int,
    *,
    url: str,
    description: str,
    include_readings: bool,
    actor: str,
    now: datetime,
) -> WebhookEndpoint:
    """Add an active endpoint with a fresh secret (the caller shows it to the admin once)."""
    endpoint = WebhookEndpoint(
        program_id=program_id,
        url=check_url(url),
        description=description.strip()[:DESCRIPTION_MAX],
        secret=new_secret(),
        include_readings=include_readings,
        active=True,
        created_by=actor,
        created_at=now,
    )
    session.add(endpoint)
    session.flush()
    _audit(session, now, actor, "webhook.add", endpoint, include_readings=include_readings)
    return endpoint


def rotate_secret(session: Session, endpoint: WebhookEndpoint, actor: str, now: datetime) -> str:
    """A new secret, in force for every send from now on, retries included."""
    endpoint.secret = new_secret()
    _audit(session, now, actor, "webhook.rotate_secret", endpoint)
    return endpoint.secret


def set_active(
    session: Session, endpoint: WebhookEndpoint, active: bool, actor: str, now: datetime
) -> None:
    """Disable or enable. A disabled endpoint gets no new events and its queued ones are
    failed, not sent (the worker checks again before each send, for one queued meanwhile);
    an admin can retry them one by one once it is enabled again."""
    if endpoint.active == active:
        return
    endpoint.active = active
    if not active:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "pending")
            .values(status="failed", last_error=DISABLED)
            .execution_options(synchronize_session=False)
        )
    _audit(session, now, actor, "webhook.enable" if active else "webhook.disable", endpoint)


def retry(
    session: Session,
    endpoint: WebhookEndpoint,
    delivery: WebhookDelivery,
    actor: str,
    now: datetime,
) -> None:
    """Queue a failed delivery again, due now. Its attempts are kept: one that used up its
    tries gets one more (if that fails too, it is failed again at once); one failed early (a
    4xx, or its endpoint disabled) gets the tries it had left."""
    if delivery.status != "failed":
        raise WebhookError(f"only a failed delivery can be retried; this one is {delivery.status}")
    if not endpoint.active:
        raise WebhookError("the endpoint is disabled: enable it first")
    delivery.status, delivery.next_attempt_at = "pending", now
    _audit(session, now, actor, "webhook.retry", endpoint, event_id=delivery.event_id)


def queue_ping(session: Session, endpoint: WebhookEndpoint, actor: str, now: datetime) -> int:
    """Queue a `ping` test event for one active endpoint; returns the delivery's id."""
    if not endpoint.active:
        raise WebhookError("the endpoint is disabled: enable it first")
    count = session.scalar(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.event == PING)
    )
    event_id = f"{PING}:{(count or 0) + 1}"
    program = session.get_one(Program, endpoint.program_id)
    _insert(session, [endpoint], None, PING, event_id, _envelope(PING, event_id, now, program), now)
    _audit(session, now, actor, "webhook.ping", endpoint, event_id=event_id)
    delivery_id = session.scalar(
        select(WebhookDelivery.id).where(
            WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.event_id == event_id
        )
    )
    assert delivery_id is not None
    return delivery_id


def _audit(
    session: Session,
    now: datetime,
    actor: str,
    action: str,
    endpoint: WebhookEndpoint,
    **detail: Any,
) -> None:
    # The host only: a chat webhook's path is often its own secret, and the log is forever.
    host = urlsplit(endpoint.url).hostname or ""
    audit.record(
        session,
        now,
        actor,
        action,
        f"webhook:{endpoint.id}",
        program_id=endpoint.program_id,
        host=host,
        **detail,
    )


# --- events -------------------------------------------------------------------------------


def alert_event(session: Session, alert: Alert, event: str, now: datetime, key: str = "") -> int:
    """Queue `event` about `alert` for every active endpoint of its program, in the caller's
    transaction. The event id is stable (`alert.opened:K7Q2X9`; `key` tells apart events that
    can happen more than once), so a second queueing is a no-op. Returns how many were queued."""
    assert event in ALERT_EVENTS, event
    program_id = session.scalar(select(Patient.program_id).where(Patient.id == alert.patient_id))
    endpoints = list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.program_id == program_id, WebhookEndpoint.active.is_(True))
            .order_by(WebhookEndpoint.id)
        )
    )
    if not endpoints:
        return 0
    event_id = f"{event}:{alert.ref}" + (f":{key}" if key else "")
    program = session.get_one(Program, program_id)
    base = _envelope(event, event_id, now, program)
    by_choice = {False: _with_alert(base, alert, False), True: _with_alert(base, alert, True)}
    for readings in (False, True):
        chosen = [e for e in endpoints if e.include_readings == readings]
        _insert(session, chosen, alert.id, event, event_id, by_choice[readings], now)
    return len(endpoints)


def _envelope(event: str, event_id: str, now: datetime, program: Program) -> dict[str, Any]:
    return {
        "event": event,
        "event_id": event_id,
        "occurred_at": iso(now),
        "program": program.name,
    }


def _with_alert(base: dict[str, Any], alert: Alert, readings: bool) -> dict[str, Any]:
    about: dict[str, Any] = {
        "ref": alert.ref,
        "kind": alert.kind,
        "severity": alert.severity,
        "status": alert.status,
        "opened_at": iso(alert.created_at),
        # Made absolute with CHECKIN_PUBLIC_URL when sent (wire_body): the alert functions
        # that queue events do not know the deployment's address.
        "url": f"/alerts/{alert.ref}",
    }
    if readings:
        about["evidence"] = [_readings_only(item) for item in alert.evidence]
    return {**base, "alert": about}


def _readings_only(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k in READING_KEYS}


def _insert(
    session: Session,
    endpoints: list[WebhookEndpoint],
    alert_id: int | None,
    event: str,
    event_id: str,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    """One delivery per endpoint; an event already queued for an endpoint is left alone (two
    processes acknowledging one alert at once queue it once, and neither fails)."""
    if not endpoints:
        return
    rows = [
        {
            "endpoint_id": e.id,
            "alert_id": alert_id,
            "event_id": event_id,
            "event": event,
            "payload": payload,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for e in endpoints
    ]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(WebhookDelivery.__table__).on_conflict_do_nothing(
        index_elements=["endpoint_id", "event_id"]
    )
    session.flush()  # the alert row the deliveries point at
    session.execute(stmt, rows)


def iso(at: datetime) -> str:
    """UTC, to the second, with a Z: what every JSON parser reads the same way."""
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- the wire -----------------------------------------------------------------------------


def wire_body(payload: Mapping[str, Any], public_url: str) -> bytes:
    """The exact bytes sent (and signed): compact JSON, keys sorted, the alert link absolute."""
    body = dict(payload)
    about = body.get("alert")
    if isinstance(about, dict) and str(about.get("url", "")).startswith("/"):
        body["alert"] = {**about, "url": public_url.rstrip("/") + about["url"]}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` and the hex HMAC-SHA256 of `{timestamp}.{body}` keyed with the endpoint's secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "checkin-webhooks/1",
        "Checkin-Event-Id": event_id,
        "Checkin-Timestamp": str(timestamp),
        "Checkin-Signature": sign(secret, timestamp, body),
    }


def verify(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    now: datetime,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """The receiver's check (docs/webhooks.md): a fresh timestamp and a matching v1 signature
    over the raw body. Raises SignatureError saying what is wrong."""
    if not timestamp or not timestamp.isdigit():
        raise SignatureError("missing or malformed Checkin-Timestamp")
    if abs(now.timestamp() - int(timestamp)) > tolerance:
        raise SignatureError("timestamp outside the tolerance: stale or replayed")
    expected = sign(secret, int(timestamp), body)
    # Several v1= values may be sent one day (two secrets during a rotation): any one will do.
    offered = [part.strip() for part in (signature or "").split(",")]
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise SignatureError("signature does not match")
