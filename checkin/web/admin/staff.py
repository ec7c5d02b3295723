"""Staff accounts and the on-call roster.

Who is on call is who gets paged (alerts._page_if_needed): on-call staff need a phone, and the
roster warns when nobody is on call, since urgent alerts then reach no one until escalation
pages the admins. Admins set a first password (12+ characters) and can set a new one; either
ends the member's other sessions (web.auth keys sessions to the password hash). Nobody is
deleted: a former member is made inactive, so the audit log keeps its names.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from checkin import staff as accounts
from checkin.models import STAFF_ROLES, Program, StaffUser
from checkin.web import context
from checkin.web.admin import bp
from checkin.web.auth import signed_in
from checkin.web.forms import field
from checkin.web.scope import in_program


@bp.get("/staff")
def staff_list() -> str:
    with context().db.session() as db:
        members = list(
            db.scalars(
                select(StaffUser)
                .where(StaffUser.program_id == signed_in().program_id)
                .order_by(StaffUser.active.desc(), StaffUser.name, StaffUser.id)
            )
        )
    on_call = [m for m in members if m.active and m.on_call]
    return render_template("admin/staff.html", members=members, on_call=on_call)


@bp.get("/staff/new")
def new_staff() -> str:
    return _form_page({"role": "clinician"}, member=None)


@bp.post("/staff/new")
def create_staff() -> tuple[str, int] | Response:
    ctx = context()
    form = request.form
    try:
        with ctx.db.session() as db:
            member = accounts.add(
                db,
                email=field(form, "email", 254),
                name=field(form, "name"),
                role=field(form, "role", 20),
                phone=field(form, "phone", 40) or None,
                on_call=form.get("on_call") == "yes",
                password=form.get("password") or "",
                now=ctx.clock(),
                actor=signed_in().email,
                program=db.get_one(Program, signed_in().program_id),
            )
            name = member.name
    except ValueError as exc:
        return _form_page(form, member=None, error=str(exc)), 400
    flash(f"Added {name}. Give them their first password in person or by phone.", "success")
    return redirect(url_for("admin.staff_list"), code=303)


@bp.get("/staff/<int:staff_id>")
def edit_staff(staff_id: int) -> str:
    with context().db.session() as db:
        member = _member(db, staff_id)
    values = {
        "name": member.name,
        "role": member.role,
        "phone": member.phone or "",
        "on_call": "yes" if member.on_call else "",
        "active": "yes" if member.active else "",
    }
    return _form_page(values, member=member)


@bp.post("/staff/<int:staff_id>")
def update_staff(staff_id: int) -> tuple[str, int] | Response:
    ctx = context()
    form = request.form
    try:
        with ctx.db.session() as db:
            member = _member(db, staff_id)
            changed = accounts.update(
                db,
                member,
                name=field(form, "name"),
                role=field(form, "role", 20),
                phone=field(form, "phone", 40) or None,
                on_call=form.get("on_call") == "yes",
                active=form.get("active") == "yes",
                now=ctx.clock(),
                actor=db.get_one(StaffUser, signed_in().id),
            )
            name = member.name
    except ValueError as exc:
        with ctx.db.session() as db:
            member = _member(db, staff_id)
        return _form_page(form, member=member, error=str(exc)), 400
    done = ", ".join(c.replace("_", " ") for c in changed) if changed else "nothing changed"
    flash(f"Saved {name}: {done}.", "success")
    return redirect(url_for("admin.staff_list"), code=303)


@bp.post("/staff/<int:staff_id>/password")
def set_password(staff_id: int) -> tuple[str, int] | Response:
    ctx = context()
    try:
        with ctx.db.session() as db:
            member = _member(db, staff_id)
            accounts.set_password(
                db,
                member,
                request.form.get("password") or "",
                now=ctx.clock(),
                actor=signed_in().email,
            )
            name = member.name
    except ValueError as exc:
        flash(f"Password not changed: {exc}.", "error")
        return redirect(url_for("admin.edit_staff", staff_id=staff_id), code=303)
    flash(f"New password set for {name}; their other sessions have ended.", "success")
    return redirect(url_for("admin.staff_list"), code=303)


def _member(db: Session, staff_id: int) -> StaffUser:
    return in_program(db, StaffUser, staff_id)


def _form_page(values: Any, member: StaffUser | None, error: str | None = None) -> str:
    return render_template(
        "admin/staff_form.html",
        values=values,
        member=member,
        roles=STAFF_ROLES,
        error=error,
        min_password=accounts.MIN_PASSWORD_LENGTH,
    )
