"""Staff accounts. Passwords are hashed with werkzeug's scrypt, never stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from checkin import audit
from checkin.models import STAFF_ROLES, Program, StaffUser
from checkin.phones import normalise_phone
from checkin.programs import default_program

# NIST SP 800-63B: at least 8 characters; we ask 12 since these accounts see health data.
MIN_PASSWORD_LENGTH = 12


class StaffError(ValueError):
    pass


def add(
    session: Session,
    *,
    email: str,
    name: str,
    role: str,
    phone: str | None,
    on_call: bool,
    password: str,
    now: datetime,
    actor: str,
    program: Program | None = None,
) -> StaffUser:
    """A new account; `program` defaults to the deployment's first (the CLI's)."""
    email = email.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise StaffError(f"not an email address: {email!r}")
    if role not in STAFF_ROLES:
        raise StaffError(f"role must be one of {', '.join(STAFF_ROLES)}, got {role!r}")
    check_password(password)
    phone = _on_call_phone(phone, on_call)
    name = _name(name)
    if session.scalar(select(StaffUser.id).where(StaffUser.email == email)) is not None:
        raise StaffError(f"a staff member with email {email} already exists")
    program = program or default_program(session, now)
    member = StaffUser(
        program_id=program.id,
        email=email,
        name=name,
        role=role,
        phone=phone,
        on_call=on_call,
        active=True,
        created_at=now,
        password_hash=generate_password_hash(password),
    )
    session.add(member)
    session.flush()
    audit.record(session, now, actor, "staff.add", f"staff:{member.id}", role=role)
    return member


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")


def _name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise StaffError("name is empty")
    return name


def _on_call_phone(phone: str | None, on_call: bool) -> str | None:
    if on_call and not (phone or "").strip():
        raise StaffError("on call needs a phone number: alerts are texted to on-call staff")
    try:
        return normalise_phone(phone) if phone and phone.strip() else None
    except ValueError as exc:
        raise StaffError(str(exc)) from None


def update(
    session: Session,
    member: StaffUser,
    *,
    name: str,
    role: str,
    phone: str | None,
    on_call: bool,
    active: bool,
    now: datetime,
    actor: StaffUser,
) -> list[str]:
    """Change an account; returns the fields that changed. An admin cannot demote or
    deactivate themselves, and a program always keeps one active admin."""
    if role not in STAFF_ROLES:
        raise StaffError(f"role must be one of {', '.join(STAFF_ROLES)}, got {role!r}")
    wanted = {
        "name": _name(name),
        "role": role,
        "phone": _on_call_phone(phone, on_call),
        "on_call": on_call,
        "active": active,
    }
    changed = [k for k, v in wanted.items() if getattr(member, k) != v]
    loses_admin = member.role == "admin" and (role != "admin" or not active)
    if loses_admin and member.id == actor.id:
        raise StaffError("you cannot remove your own admin role or account; ask another admin")
    if loses_admin and _other_admins(session, member) == 0:
        raise StaffError("this is the program's last active admin; make someone else admin first")
    for key in changed:
        setattr(member, key, wanted[key])
    if changed:
        audit.record(
            session, now, actor.email, "staff.update", f"staff:{member.id}", changed=changed
        )
    return changed


def set_password(
    session: Session, member: StaffUser, password: str, *, now: datetime, actor: str
) -> None:
    """A new password; every session signed in with the old one ends (web.auth)."""
    check_password(password)
    member.password_hash = generate_password_hash(password)
    audit.record(session, now, actor, "staff.password", f"staff:{member.id}")


def _other_admins(session: Session, member: StaffUser) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(StaffUser)
            .where(
                StaffUser.program_id == member.program_id,
                StaffUser.role == "admin",
                StaffUser.active.is_(True),
                StaffUser.id != member.id,
            )
        )
        or 0
    )
