"""A staff member's own account: change their password, and their personal API tokens.

A new password ends every other session signed in with the old one (web.auth keys sessions to
the password hash); this one is signed in again with the new key so the person stays in.

A new API token is shown once, on the page that answers the form (never in a flash message:
those travel in the session cookie), and only its hash is kept. A token acts with its owner's
role and program; revoking it, or deactivating the account, stops it at once.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import login_user
from sqlalchemy import select
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from checkin import staff as accounts
from checkin.api import tokens
from checkin.models import ApiToken, StaffUser
from checkin.web import context
from checkin.web.auth import as_staff, login_required, signed_in
from checkin.web.forms import FormError, field

bp = Blueprint("account", __name__, url_prefix="/account")


# The expiry the form suggests; staff may choose 1 to tokens.MAX_DAYS, or never.
DEFAULT_TOKEN_DAYS = 90


@bp.get("")
@login_required
def account() -> str:
    return _page()


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
        return _page(error=f"Password not changed: {exc}."), 400
    seen = session.get("seen")
    login_user(staff)
    session["seen"] = seen
    flash("Password changed. Other sessions signed in with the old one have ended.", "success")
    return redirect(url_for("account.account"), code=303)


@bp.post("/tokens")
@login_required
def create_token() -> tuple[str, int]:
    ctx = context()
    staff = signed_in()
    form = request.form
    try:
        days = _days(field(form, "days", 10), form.get("never") == "yes")
        with ctx.db.session() as db:
            member = db.get_one(StaffUser, staff.id)
            token, secret = tokens.create(
                db, member, field(form, "name", 200), days, ctx.clock(), actor=staff.email
            )
            created = token.id
    except ValueError as exc:
        return _page(token_error=f"Token not created: {exc}.", values=form), 400
    return _page(new_secret=secret, new_token_id=created), 201


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> Response:
    ctx = context()
    staff = signed_in()
    try:
        with ctx.db.session() as db:
            own = select(ApiToken).where(ApiToken.id == token_id, ApiToken.staff_id == staff.id)
            token = db.scalar(own)
            if token is None:
                abort(404)  # someone else's token is nobody's business here
            tokens.revoke(db, token, ctx.clock(), actor=staff.email)
            name = token.name
    except tokens.TokenError as exc:
        flash(f"Not done: {exc}.", "error")
    else:
        flash(f"Revoked the token {name!r}: it no longer works.", "success")
    return redirect(url_for("account.account", _anchor="tokens"), code=303)


def _days(text: str, never: bool) -> int | None:
    if never:
        return None
    if not text.isdigit():
        raise FormError(f"expires after must be a number of days (1-{tokens.MAX_DAYS})")
    return int(text)


def _page(**extra: Any) -> str:
    ctx = context()
    with ctx.db.session() as db:
        mine = tokens.of_staff(db, signed_in().id)
    now = ctx.clock()
    return render_template(
        "account.html",
        min_password=accounts.MIN_PASSWORD_LENGTH,
        tokens=[(t, tokens.status(t, now)) for t in mine],
        max_days=tokens.MAX_DAYS,
        default_days=DEFAULT_TOKEN_DAYS,
        name_max=tokens.NAME_MAX,
        **extra,
    )
