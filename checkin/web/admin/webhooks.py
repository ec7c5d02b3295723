"""Alert webhooks: the program's endpoints, their secrets, and the delivery log.

A secret is shown once, in the answer to the form that made it (adding an endpoint, rotating
its secret), and never again: it is not put in a flash message, which would carry it in the
session cookie. Every change is audited (alert_webhooks). Another program's endpoint, or a
delivery of it, is a 404.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from checkin import alert_webhooks, webhook_delivery
from checkin.alert_webhooks import WebhookError
from checkin.context import Context
from checkin.models import WebhookDelivery, WebhookEndpoint
from checkin.web import context
from checkin.web.admin import bp
from checkin.web.auth import signed_in
from checkin.web.forms import Paging, field

log = logging.getLogger(__name__)

PAGE_SIZE = 50  # deliveries per page of the log


@bp.get("/webhooks")
def webhook_list() -> str:
    with context().db.session() as db:
        endpoints = list(
            db.scalars(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.program_id == signed_in().program_id)
                .order_by(WebhookEndpoint.active.desc(), WebhookEndpoint.id)
            )
        )
        counts = _counts(db, [e.id for e in endpoints])
    return render_template("admin/webhooks.html", endpoints=endpoints, counts=counts)


@bp.get("/webhooks/new")
def new_webhook() -> str:
    return _form_page({})


@bp.post("/webhooks/new")
def create_webhook() -> tuple[str, int] | str:
    ctx = context()
    form = request.form
    try:
        with ctx.db.session() as db:
            endpoint = alert_webhooks.register(
                db,
                signed_in().program_id,
                url=field(form, "url", alert_webhooks.URL_MAX + 1),
                description=field(form, "description", alert_webhooks.DESCRIPTION_MAX),
                include_readings=form.get("include_readings") == "yes",
                actor=signed_in().email,
                now=ctx.clock(),
            )
    except WebhookError as exc:
        return _form_page(form, error=str(exc)), 400
    return _secret_page(endpoint, "added")


@bp.get("/webhooks/<int:endpoint_id>")
def webhook_page(endpoint_id: int) -> str:
    with context().db.session() as db:
        endpoint = _endpoint(db, endpoint_id)
        of_endpoint = WebhookDelivery.endpoint_id == endpoint.id
        total = db.scalar(select(func.count()).select_from(WebhookDelivery).where(of_endpoint))
        paging = Paging.of(total or 0, request.args.get("page"), PAGE_SIZE)
        newest = select(WebhookDelivery).where(of_endpoint)
        newest = newest.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        deliveries = list(db.scalars(paging.rows(newest)))
    return render_template(
        "admin/webhook.html",
        endpoint=endpoint,
        deliveries=deliveries,
        total=total or 0,
        page=paging.page,
        pages=paging.pages,
        max_attempts=webhook_delivery.MAX_ATTEMPTS,
    )


@bp.post("/webhooks/<int:endpoint_id>/disable")
def disable_webhook(endpoint_id: int) -> Response:
    return _set_active(endpoint_id, False)


@bp.post("/webhooks/<int:endpoint_id>/enable")
def enable_webhook(endpoint_id: int) -> Response:
    return _set_active(endpoint_id, True)


@bp.post("/webhooks/<int:endpoint_id>/rotate")
def rotate_webhook_secret(endpoint_id: int) -> str:
    ctx = context()
    with ctx.db.session() as db:
        endpoint = _endpoint(db, endpoint_id)
        alert_webhooks.rotate_secret(db, endpoint, signed_in().email, ctx.clock())
    return _secret_page(endpoint, "rotated")


@bp.post("/webhooks/<int:endpoint_id>/ping")
def ping_webhook(endpoint_id: int) -> Response:
    ctx = context()
    try:
        with ctx.db.session() as db:
            endpoint = _endpoint(db, endpoint_id)
            delivery_id = alert_webhooks.queue_ping(db, endpoint, signed_in().email, ctx.clock())
    except WebhookError as exc:
        flash(f"No test event sent: {exc}.", "error")
        return _back(endpoint_id)
    flash("Test event queued: it is sent now; reload this page to see how it went.", "success")
    return _send_after_response(ctx, _back(endpoint_id), delivery_id)


@bp.post("/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/retry")
def retry_webhook_delivery(endpoint_id: int, delivery_id: int) -> Response:
    ctx = context()
    try:
        with ctx.db.session() as db:
            endpoint = _endpoint(db, endpoint_id)
            delivery = _delivery(db, endpoint, delivery_id)
            alert_webhooks.retry(db, endpoint, delivery, signed_in().email, ctx.clock())
            event_id = delivery.event_id
    except WebhookError as exc:
        flash(f"Not retried: {exc}.", "error")
        return _back(endpoint_id)
    flash(f"{event_id} queued again: it is sent now; reload to see how it went.", "success")
    return _send_after_response(ctx, _back(endpoint_id), delivery_id)


def _set_active(endpoint_id: int, active: bool) -> Response:
    ctx = context()
    with ctx.db.session() as db:
        endpoint = _endpoint(db, endpoint_id)
        alert_webhooks.set_active(db, endpoint, active, signed_in().email, ctx.clock())
    if active:
        flash("Enabled: new alert events are sent to this endpoint.", "success")
    else:
        flash("Disabled: no events are sent to it; queued ones were marked failed.", "success")
    return _back(endpoint_id)


def _send_after_response(ctx: Context, response: Response, delivery_id: int) -> Response:
    """Send once the admin has the page back: an endpoint may take its full timeout to answer.
    The row is saved; if this process dies first, the scheduler's next tick sends it."""

    def send() -> None:
        try:
            webhook_delivery.deliver(ctx, [delivery_id])
        except Exception:  # the scheduler retries what is still pending
            log.exception("sending webhook delivery %s after the response failed", delivery_id)

    response.call_on_close(send)
    return response


def _back(endpoint_id: int) -> Response:
    return redirect(url_for("admin.webhook_page", endpoint_id=endpoint_id), code=303)


def _endpoint(db: Session, endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.program_id == signed_in().program_id,
        )
    )
    if endpoint is None:
        abort(404)
    return endpoint


def _delivery(db: Session, endpoint: WebhookEndpoint, delivery_id: int) -> WebhookDelivery:
    delivery = db.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id:
        abort(404)
    return delivery


def _counts(db: Session, endpoint_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per endpoint: delivered, pending (waiting or being sent) and failed."""
    counts = {i: {"delivered": 0, "pending": 0, "failed": 0} for i in endpoint_ids}
    stmt = (
        select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
        .where(WebhookDelivery.endpoint_id.in_(endpoint_ids))
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)
    )
    for endpoint_id, status, n in db.execute(stmt):
        shown = "pending" if status == "sending" else status
        counts[endpoint_id][shown] += n
    return counts


def _form_page(values: Any, error: str | None = None) -> str:
    return render_template("admin/webhook_form.html", values=values, error=error)


def _secret_page(endpoint: WebhookEndpoint, done: str) -> str:
    return render_template("admin/webhook_secret.html", endpoint=endpoint, done=done)
