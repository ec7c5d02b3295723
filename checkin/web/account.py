"""A staff member's own account: change their password.

A new password ends every other session signed in with the old one (web.auth keys sessions to
the password hash); this one is signed in again with the new key so the person stays in.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import login_user
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from checkin import staff as accounts
from checkin.models import StaffUser
from checkin.web import context
from checkin.web.auth import as_staff, login_required, signed_in

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("")
@login_required
def account() -> str:
    return render_template("account.html", min_password=accounts.MIN_PASSWORD_LENGTH)


@bp.post("/password")
@login_required
def change_password() -> tuple[str, int] | Response:
    ctx = context()
    form = request.form
    new = form.get("new_password") or ""
    try:
        with ctx.db.session() as db:
            member = db.get_one(StaffUser, signed_in().id)
            if not check_password_hash(member.password_hash, form.get("current_password") or ""):
                raise accounts.StaffError("the current password is not right")
            if new != (form.get("confirm_password") or ""):
                raise accounts.StaffError("the new password and its confirmation differ")
            accounts.set_password(db, member, new, now=ctx.clock(), actor=member.email)
            staff = as_staff(member)
    except ValueError as exc:
        error = f"Password not changed: {exc}."
        page = render_template(
            "account.html", min_password=accounts.MIN_PASSWORD_LENGTH, error=error
        )
        return page, 400
    seen = session.get("seen")
    login_user(staff)
    session["seen"] = seen
    flash("Password changed. Other sessions signed in with the old one have ended.", "success")
    return redirect(url_for("account.account"), code=303)
