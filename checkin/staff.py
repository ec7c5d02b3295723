"""Staff accounts. Passwords are hashed with werkzeug's scrypt, never stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from checkin import audit
from checkin.models import STAFF_ROLES, StaffUser
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
) -> StaffUser:
    email = email.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        raise StaffError(f"not an email address: {email!r}")
    if role not in STAFF_ROLES:
        raise StaffError(f"role must be one of {', '.join(STAFF_ROLES)}, got {role!r}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if on_call and not phone:
        raise StaffError("--on-call needs --phone: alerts are texted to on-call staff")
    try:
        phone = normalise_phone(phone) if phone else None
    except ValueError as exc:
        raise StaffError(str(exc)) from None
    if session.scalar(select(StaffUser.id).where(StaffUser.email == email)) is not None:
        raise StaffError(f"a staff member with email {email} already exists")
    program = default_program(session, now)
    member = StaffUser(
        program_id=program.id,
        email=email,
        name=name.strip(),
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
