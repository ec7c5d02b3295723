"""The audit-log viewer: read-only, newest first, filtered and paginated.

An admin sees their own program's rows, and the deployment-wide ones that belong to no
program (sign-in attempts for unknown emails, CLI exports of everything). There is no route
that changes a row, and the database refuses UPDATE and DELETE on the table anyway.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import render_template, request
from sqlalchemy import ColumnElement, func, or_, select

from checkin.models import AuditEvent
from checkin.web import context
from checkin.web.admin import bp
from checkin.web.auth import signed_in
from checkin.web.forms import FormError, Paging, field, form_date

PAGE_SIZE = 100


@bp.get("/audit")
def audit_log() -> str:
    ctx = context()
    zone = ctx.settings.digest_timezone
    args = request.args
    error = None
    try:
        where = _filters(args, zone)
    except FormError as exc:
        error, where = str(exc), [_visible()]
    with ctx.db.session() as db:
        total = db.scalar(select(func.count()).select_from(AuditEvent).where(*where)) or 0
        paging = Paging.of(total, args.get("page"), PAGE_SIZE)
        newest = select(AuditEvent).where(*where)
        newest = newest.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        rows = list(db.scalars(paging.rows(newest)))
        actions = list(
            db.scalars(
                select(AuditEvent.action).where(_visible()).distinct().order_by(AuditEvent.action)
            )
        )
    filters = {k: field(args, k, 120) for k in ("actor", "action", "target", "from", "to")}
    return render_template(
        "admin/audit.html",
        rows=rows,
        actions=actions,
        filters=filters,
        query={k: v for k, v in filters.items() if v},
        page=paging.page,
        pages=paging.pages,
        total=total,
        error=error,
        zone=zone,
    )


def _visible() -> ColumnElement[bool]:
    return or_(AuditEvent.program_id == signed_in().program_id, AuditEvent.program_id.is_(None))


def _filters(args: Any, zone: str) -> list[ColumnElement[bool]]:
    where = [_visible()]
    actor = field(args, "actor", 120).lower()
    if actor:
        where.append(func.lower(AuditEvent.actor).contains(actor, autoescape=True))
    action = field(args, "action", 60)
    if action:
        where.append(AuditEvent.action == action)
    target = field(args, "target", 80)
    if target:
        where.append(AuditEvent.target == target)
    start = form_date(args, "from", "from date")
    end = form_date(args, "to", "to date")
    if start and end and end < start:
        raise FormError(f"the to date {end} is before the from date {start}")
    if start:
        where.append(AuditEvent.at >= _midnight(start, zone))
    if end:
        where.append(AuditEvent.at < _midnight(end + timedelta(days=1), zone))
    return where


def _midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone))
