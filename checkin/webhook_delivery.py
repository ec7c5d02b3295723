"""Send alert webhook deliveries: claim, POST the signed JSON, record, back off, dead-letter.

The scheduler's `webhooks` step runs `deliver_due`; the admin pages run `deliver` for a test
event or a manual retry once their response is sent. Either way:

- **Claim.** Due rows (`pending` whose `next_attempt_at` has come, or `sending` whose lease ran
  out) are picked with SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL and taken with a
  conditional UPDATE to `sending`, `next_attempt_at` becoming the lease. A worker that dies
  mid-send leaves its rows to be taken over when the lease runs out, so an event may reach a
  receiver twice, with the same `Checkin-Event-Id`: delivery is at least once, and receivers
  dedupe on that id (docs/webhooks.md).
- **Send.** One thread per endpoint (up to CONCURRENCY), its deliveries oldest first, each with
  a TIMEOUT_SECONDS timeout and redirects never followed. After a transient failure the
  endpoint's other deliveries wait for its retry without being tried or counted, so an endpoint
  that is down costs each tick one timeout, not one per queued event.
- **Record.** 2xx: delivered. 408, 429, 5xx, connection errors and timeouts: retried after
  30 s, 1, 2, 4, 8, 16, 32 min (with jitter; a longer Retry-After is honoured up to an hour),
  MAX_ATTEMPTS tries in all, then failed (a dead letter). A redirect or any other 4xx: failed
  at once, since the endpoint refused it for good. Only a status code and a short excerpt of
  the answer are kept, never more.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from checkin import alert_webhooks
from checkin.context import Context
from checkin.models import WebhookDelivery, WebhookEndpoint

# Tries in all before a delivery that keeps failing transiently becomes a dead letter: with
# the backoff below the last one is about an hour after the first.
MAX_ATTEMPTS = 8
TIMEOUT_SECONDS = 10
# How long a claim is a worker's own; past it, another worker may take the row over. Far
# longer than one send can take (TIMEOUT_SECONDS to connect, as long again to answer).
LEASE = timedelta(minutes=5)
BATCH = 50  # deliveries claimed per tick
CONCURRENCY = 8  # endpoints sent to at once per worker
EXCERPT_CHARS = 300  # of a refusing answer's body, for the admin to read; no more is stored
RETRIED_STATUSES = frozenset({408, 429})  # and every 5xx
MAX_RETRY_AFTER = 3600  # seconds; a receiver cannot push a retry out further than this


@dataclass(frozen=True)
class Outcome:
    """What one POST came to."""

    delivered: bool
    transient: bool  # worth trying again later
    status_code: int | None = None
    error: str | None = None
    retry_after: int | None = None  # seconds the receiver asked us to wait


@dataclass(frozen=True)
class _Send:
    delivery_id: int
    endpoint_id: int
    url: str
    secret: str
    event_id: str
    body: bytes
    lease: datetime  # our claim: the row's next_attempt_at while it is ours


def deliver_due(ctx: Context, limit: int = BATCH) -> int:
    """The scheduler step: claim due deliveries and send them; returns how many were claimed."""
    now = ctx.clock()
    with ctx.db.session() as session:
        pick = (
            select(WebhookDelivery.id)
            .where(_due(now))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        )
        if ctx.db.is_postgres:
            pick = pick.with_for_update(skip_locked=True)
        claimed, sends = _claim(ctx, session, list(session.scalars(pick)), now)
    _send_and_record(ctx, sends)
    return len(claimed)


def deliver(ctx: Context, delivery_ids: Sequence[int]) -> dict[int, str]:
    """Send these deliveries now if they are due and nobody else has them; each one's new
    status ('delivered', 'retrying', 'failed', 'deferred'), or 'taken'."""
    with ctx.db.session() as session:
        claimed, sends = _claim(ctx, session, list(delivery_ids), ctx.clock())
    results = {i: "taken" for i in delivery_ids if i not in claimed}
    results.update({i: "failed" for i in claimed})  # unless sent below: a disabled endpoint
    results.update(_send_and_record(ctx, sends))
    return results


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now),
        and_(WebhookDelivery.status == "sending", WebhookDelivery.next_attempt_at < now),
    )


def _claim(
    ctx: Context, session: Session, ids: list[int], now: datetime
) -> tuple[list[int], list[_Send]]:
    """Take the rows that are still due (the conditional UPDATE is the lock: a row another
    worker took no longer matches); fail those whose endpoint was disabled."""
    if not ids:
        return [], []
    lease = now + LEASE
    claimed = list(
        session.scalars(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids), _due(now))
            .values(status="sending", attempts=WebhookDelivery.attempts + 1, next_attempt_at=lease)
            .returning(WebhookDelivery.id)
            .execution_options(synchronize_session=False)
        )
    )
    rows = session.execute(
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id.in_(claimed))
        .order_by(WebhookDelivery.id)
    )
    sends = []
    for delivery, endpoint in rows:
        if not endpoint.active:
            _fail_unsent(delivery, alert_webhooks.DISABLED)
            continue
        body = alert_webhooks.wire_body(delivery.payload, ctx.settings.public_url)
        sends.append(
            _Send(
                delivery.id,
                endpoint.id,
                endpoint.url,
                endpoint.secret,
                delivery.event_id,
                body,
                lease,
            )
        )
    return claimed, sends


def _send_and_record(ctx: Context, sends: list[_Send]) -> dict[int, str]:
    groups = _by_endpoint(sends)
    if len(groups) <= 1:
        outcomes = [_post_group(ctx, group) for group in groups]
    else:
        with ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(groups))) as pool:
            outcomes = list(pool.map(lambda group: _post_group(ctx, group), groups))
    results: dict[int, str] = {}
    with ctx.db.session() as session:
        now = ctx.clock()
        for group, group_outcomes in zip(groups, outcomes, strict=True):
            results.update(_record_group(session, group, group_outcomes, now))
    return results


def _by_endpoint(sends: Iterable[_Send]) -> list[list[_Send]]:
    groups: dict[int, list[_Send]] = {}
    for send in sends:
        groups.setdefault(send.endpoint_id, []).append(send)
    return list(groups.values())


def _post_group(ctx: Context, group: list[_Send]) -> list[Outcome | None]:
    """Send one endpoint's deliveries in order; None for those not tried after a transient
    failure (the endpoint is down or overloaded: more requests now would not help it)."""
    outcomes: list[Outcome | None] = []
    stopped = False
    for send in group:
        if stopped:
            outcomes.append(None)
            continue
        outcome = post(send.url, send.secret, send.event_id, send.body, ctx.clock())
        outcomes.append(outcome)
        stopped = outcome.transient
    return outcomes


def post(url: str, secret: str, event_id: str, body: bytes, now: datetime) -> Outcome:
    """One signed POST, judged."""
    timestamp = int(now.timestamp())
    try:
        with requests.post(
            url,
            data=body,
            headers=alert_webhooks.headers(secret, event_id, timestamp, body),
            timeout=TIMEOUT_SECONDS,
            allow_redirects=False,  # a redirect would send health events somewhere unvetted
            stream=True,  # the body is read only on a refusal, and only its first bytes
        ) as response:
            return judge(response)
    except requests.Timeout:
        return Outcome(False, True, error=f"no answer within {TIMEOUT_SECONDS} s")
    except requests.ConnectionError as exc:
        return Outcome(False, True, error=_connection_error(exc))
    except requests.RequestException as exc:  # a URL the HTTP client cannot use
        return Outcome(False, False, error=f"not sent: {type(exc).__name__}")


def judge(response: requests.Response) -> Outcome:
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(True, False, code)
    if 300 <= code < 400:
        where = _one_line(response.headers.get("Location", ""))[:200]
        return Outcome(False, False, code, f"HTTP {code}: redirect to {where!r} not followed")
    excerpt = _excerpt(response)
    error = f"HTTP {code}" + (f": {excerpt}" if excerpt else "")
    if code in RETRIED_STATUSES or code >= 500:
        return Outcome(False, True, code, error, _retry_after(response))
    return Outcome(False, False, code, error)


def _excerpt(response: requests.Response) -> str:
    try:
        raw: bytes = response.raw.read(EXCERPT_CHARS * 4, decode_content=True)
    except Exception:  # noqa: BLE001 - the status code is what matters; the body is a hint
        return ""
    return _one_line(raw.decode("utf-8", "replace"))[:EXCERPT_CHARS]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _retry_after(response: requests.Response) -> int | None:
    value = response.headers.get("Retry-After", "").strip()
    return min(int(value), MAX_RETRY_AFTER) if value.isdigit() else None


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"\)\]]+)")


def _connection_error(exc: requests.ConnectionError) -> str:
    # requests' own message names the URL (whose path may be a chat webhook's secret): keep
    # only the operating system's reason.
    if isinstance(exc, requests.exceptions.SSLError):
        return "could not connect: TLS handshake or certificate check failed"
    reason = _ERRNO.search(str(exc))
    return f"could not connect: {reason.group(1).strip()}" if reason else "could not connect"


def _record_group(
    session: Session, group: list[_Send], outcomes: list[Outcome | None], now: datetime
) -> dict[int, str]:
    results: dict[int, str] = {}
    retry_at = now + backoff(1)
    for send, outcome in zip(group, outcomes, strict=True):
        delivery = session.get(WebhookDelivery, send.delivery_id)
        if delivery is None or not _still_ours(delivery, send):
            results[send.delivery_id] = "taken"
        elif outcome is None:
            results[send.delivery_id] = _put_back(delivery, retry_at)
        else:
            results[send.delivery_id] = record(delivery, outcome, now)
            if delivery.status == "pending":
                retry_at = delivery.next_attempt_at
    return results


def _still_ours(delivery: WebhookDelivery, send: _Send) -> bool:
    """False when our lease ran out and another worker took the row over: its record wins."""
    return (delivery.status, delivery.next_attempt_at) == ("sending", send.lease)


def record(delivery: WebhookDelivery, outcome: Outcome, now: datetime) -> str:
    """Apply one attempt's outcome. A delivered row keeps the error of the attempt before, so
    the log still shows what went wrong on the way."""
    delivery.last_status_code = outcome.status_code
    if outcome.delivered:
        delivery.status, delivery.delivered_at = "delivered", now
        return "delivered"
    delivery.last_error = outcome.error
    if outcome.transient and delivery.attempts < MAX_ATTEMPTS:
        wait = max(backoff(delivery.attempts), timedelta(seconds=outcome.retry_after or 0))
        delivery.status, delivery.next_attempt_at = "pending", now + wait
        return "retrying"
    if outcome.transient:
        delivery.last_error = f"{outcome.error}; gave up after {delivery.attempts} attempts"
    delivery.status = "failed"
    return "failed"


def backoff(attempts: int) -> timedelta:
    """30 s after the first try, then 1, 2, 4 min...; jitter so that the events queued during
    one outage do not all retry in the same second."""
    base = 30 * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def _put_back(delivery: WebhookDelivery, at: datetime) -> str:
    delivery.status, delivery.next_attempt_at = "pending", at
    delivery.attempts -= 1  # not tried: not an attempt
    return "deferred"


def _fail_unsent(delivery: WebhookDelivery, reason: str) -> None:
    delivery.status, delivery.last_error = "failed", reason
    delivery.attempts -= 1
