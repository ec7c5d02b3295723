"""Staff sign-in and sign-out, the idle timeout, failed-login throttling and roles.

Failed sign-ins are counted from the audit log (action 'auth.login_failed', target the email,
detail.ip the address), so the limits hold across every gunicorn worker and host without a
table of their own: one per email (guessing one account's password) and one per address
(trying a few passwords on many accounts, which the per-email limit never sees).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_user, logout_user
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from checkin import audit
from checkin.models import AuditEvent, StaffUser
from checkin.web import IDLE_TIMEOUT, STAFF_BLUEPRINTS, context

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login_form"
login_manager.login_message = "Sign in to see that page."
login_manager.login_message_category = "info"
# 'basic': Flask-Login marks the session non-fresh when the client changes; 'strong' would sign
# out staff whose address changes behind a clinic's NAT or a phone moving between networks.
login_manager.session_protection = "basic"

F = TypeVar("F", bound=Callable[..., Any])
# After this many failed sign-ins for one email inside LOCKOUT_WINDOW, further attempts for that
# email are refused (even with the right password) until the failures age out of the window.
MAX_FAILED_LOGINS = 5
LOCKOUT_WINDOW = timedelta(minutes=15)
# After this many failed sign-ins from one address inside LOCKOUT_WINDOW, whatever the emails,
# every attempt from that address is refused until the failures age out. A clinic's staff share
# one NAT address, so it is one more than four people each reaching their own limit of 5 on a
# bad morning; an attacker spraying one password over many accounts gets 21 guesses per 15
# minutes in all, instead of 5 on every account.
MAX_FAILED_LOGINS_PER_ADDRESS = 21
AUDIT_TARGET_LENGTH = 80  # AuditEvent.target's size


@dataclass(frozen=True)
class Staff:
    """The signed-in staff member, as Flask-Login sees them (detached from any DB session)."""

    id: int
    email: str
    name: str
    role: str
    program_id: int
    session_key: str

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        # The key changes with the password hash, so a new password ends every other session.
        return f"{self.id}:{self.session_key}"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def signed_in() -> Staff:
    """The current staff member; only call it behind login_required."""
    return cast(Staff, current_user._get_current_object())


def _session_key(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def as_staff(member: StaffUser) -> Staff:
    return Staff(
        id=member.id,
        email=member.email,
        name=member.name,
        role=member.role,
        program_id=member.program_id,
        session_key=_session_key(member.password_hash),
    )


def load_staff(user_id: str) -> Staff | None:
    raw_id, _, key = user_id.partition(":")
    if not raw_id.isdigit():
        return None
    with context().db.session() as db:
        member = db.get(StaffUser, int(raw_id))
        if member is None or not member.active:
            return None
        staff = as_staff(member)
    return staff if staff.session_key == key else None


login_manager.user_loader(load_staff)


def login_required(view: F) -> F:
    """Flask-Login's check, typed (flask_login ships no type hints)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        return view(*args, **kwargs)

    return cast(F, wrapper)


def role_required(role: str) -> Callable[[F], F]:
    """Signed in, and `role` (an admin may do everything, so admins always pass)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in (role, "admin"):
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def end_idle_session() -> None:
    """Before every staff page: sign out a session idle for IDLE_TIMEOUT, else note activity.

    Enforced on the server with the app's clock, not only by the cookie's expiry, so a copied
    cookie stops working too.
    """
    if request.blueprint not in STAFF_BLUEPRINTS or "_user_id" not in session:
        return
    now = context().clock()
    seen = session.get("seen")
    if isinstance(seen, int | float) and now.timestamp() - seen > IDLE_TIMEOUT.total_seconds():
        logout_user()
        session.clear()
        flash("You were signed out after 30 minutes without activity.", "info")
        return
    session["seen"] = now.timestamp()


@bp.get("/login")
def login_form() -> str | Response:
    target = _safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(target or url_for("dashboard.inbox"))
    return render_template("login.html", next=target, email="")


@bp.post("/login")
def login() -> tuple[str, int] | Response:
    email = request.form.get("email", "").strip().lower()
    password = request.form.get("password", "")
    target = _safe_next(request.form.get("next"))
    ctx = context()
    now = ctx.clock()
    ip = request.remote_addr
    with ctx.db.session() as db:
        refusal = _refusal(db, email, ip, now)
        if refusal is not None:
            audit.record(db, now, email or "?", "auth.login_refused", _target(email), ip=ip)
            error, status, staff = refusal, 429, None
        else:
            staff = _check_password(db, email, password)
            if staff is None:
                audit.record(db, now, email or "?", "auth.login_failed", _target(email), ip=ip)
                error, status = "Wrong email or password.", 401
            else:
                audit.record(db, now, staff.email, "auth.login", f"staff:{staff.id}", ip=ip)
    if staff is None:
        return render_template("login.html", next=target, email=email, error=error), status
    session.clear()  # nothing from before sign-in carries over (session fixation)
    login_user(staff)
    session.permanent = True
    session["seen"] = now.timestamp()
    return redirect(target or url_for("dashboard.inbox"), code=303)


@bp.post("/logout")
def logout() -> Response:
    if current_user.is_authenticated:
        staff = signed_in()
        ctx = context()
        with ctx.db.session() as db:
            audit.record(
                db,
                ctx.clock(),
                staff.email,
                "auth.logout",
                f"staff:{staff.id}",
                ip=request.remote_addr,
            )
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login_form"), code=303)


_WAIT = f"Wait {LOCKOUT_WINDOW.seconds // 60} minutes and try again"
_LOCKED = (
    f"Too many failed sign-ins for this email. {_WAIT}, or ask an admin to check your account."
)
_ADDRESS_LOCKED = f"Too many failed sign-ins from this network address. {_WAIT}."


def _refusal(db: Session, email: str, ip: str | None, now: datetime) -> str | None:
    """Why this attempt is refused before its password is checked, or None to check it."""
    if ip is not None and _failures(db, now, _from_address(ip)) >= MAX_FAILED_LOGINS_PER_ADDRESS:
        return _ADDRESS_LOCKED
    if _failures(db, now, AuditEvent.target == _target(email)) >= MAX_FAILED_LOGINS:
        return _LOCKED
    return None


def _failures(db: Session, now: datetime, which: ColumnElement[bool]) -> int:
    """Failed sign-ins inside LOCKOUT_WINDOW that match `which`."""
    count = db.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(
            AuditEvent.at > now - LOCKOUT_WINDOW,  # ix_audit_events_at bounds the scan
            AuditEvent.action == "auth.login_failed",
            which,
        )
    )
    return count or 0


def _from_address(ip: str) -> ColumnElement[bool]:
    # detail is a JSON column: json_extract(detail, '$."ip"') on SQLite, detail ->> 'ip' on
    # PostgreSQL, so the address needs no column of its own.
    address: ColumnElement[str] = AuditEvent.detail["ip"].as_string()
    return address == ip


def _check_password(db: Session, email: str, password: str) -> Staff | None:
    member = db.scalar(select(StaffUser).where(StaffUser.email == email)) if email else None
    if member is None or not member.active:
        # Spend the same scrypt time as a real check, so timing does not reveal who has an account.
        check_password_hash(_decoy_hash(), password)
        return None
    if not check_password_hash(member.password_hash, password):
        return None
    return as_staff(member)


@functools.cache
def _decoy_hash() -> str:
    return generate_password_hash("no staff member has this password")


def _target(email: str) -> str:
    return email[:AUDIT_TARGET_LENGTH]


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site: never '//evil.example' or 'https://evil.example'."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target
