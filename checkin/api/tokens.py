"""Personal API tokens: create (shown once), check, revoke.

A token is `ck_` and 32 random bytes (secrets.token_urlsafe). Only its SHA-256 is stored: the
token is long and random, so a slow password hash would add nothing, and a lookup by the
unique hash is the whole check (no comparison loop whose timing depends on the secret).
Its first characters (`prefix`) are kept so people can tell their tokens apart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from checkin import audit
from checkin.models import ApiToken, StaffUser

TOKEN_PREFIX = "ck_"
SHOWN_PREFIX = 11  # "ck_" and 8 characters: enough to tell tokens apart, useless to guess
NAME_MAX = 80  # ApiToken.name's size
# A token lives at most a year; "never" is allowed but must be chosen.
MAX_DAYS = 365
# last_used_at is written at most this often per token: an integration polling every second
# must not turn every read into a write.
LAST_USED_EVERY = timedelta(minutes=1)
# A bearer value longer than this is not one of ours (ours are 46 characters).
MAX_PRESENTED = 200


class TokenError(ValueError):
    """A one-line reason a token cannot be created, used or revoked."""


@dataclass(frozen=True)
class Holder:
    """Who a valid token acts for, detached from any database session."""

    staff_id: int
    email: str
    role: str
    program_id: int
    token_id: int

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(
    session: Session,
    member: StaffUser,
    name: str,
    days: int | None,
    now: datetime,
    *,
    actor: str,
) -> tuple[ApiToken, str]:
    """A new token for `member`, expiring after `days` (None: never). Returns the row and the
    secret, which is never stored and cannot be shown again."""
    name = " ".join((name or "").split())
    if not name:
        raise TokenError("give the token a name, e.g. the integration that will use it")
    if len(name) > NAME_MAX:
        raise TokenError(f"the name is over {NAME_MAX} characters")
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise TokenError(f"a token expires after 1 to {MAX_DAYS} days (or never)")
    if not member.active:
        raise TokenError(f"{member.email} is deactivated")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        staff_id=member.id,
        name=name,
        prefix=secret[:SHOWN_PREFIX],
        token_hash=digest(secret),
        created_at=now,
        expires_at=now + timedelta(days=days) if days is not None else None,
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        now,
        actor,
        "api_token.create",
        f"staff:{member.id}",
        token=token.id,
        name=name,
        expires=token.expires_at.isoformat() if token.expires_at else None,
    )
    return token, secret


def revoke(session: Session, token: ApiToken, now: datetime, *, actor: str) -> None:
    if token.revoked_at is not None:
        raise TokenError(f"token {token.prefix}… was already revoked")
    token.revoked_at = now
    audit.record(session, now, actor, "api_token.revoke", f"staff:{token.staff_id}", token=token.id)


def check(session: Session, presented: str, now: datetime) -> Holder:
    """The staff member a presented token acts for, or TokenError saying why it does not work:
    unknown, revoked, expired, or its owner deactivated."""
    if not presented.startswith(TOKEN_PREFIX) or len(presented) > MAX_PRESENTED:
        raise TokenError("this is not a checkin API token")
    wanted = digest(presented)
    found = session.execute(
        select(ApiToken, StaffUser)
        .join(StaffUser, StaffUser.id == ApiToken.staff_id)
        .where(ApiToken.token_hash == wanted)
    ).one_or_none()
    if found is None or not hmac.compare_digest(found[0].token_hash, wanted):
        raise TokenError("unknown token: it may have been mistyped or deleted")
    token, member = found
    if token.revoked_at is not None:
        raise TokenError("this token was revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenError(f"this token expired at {token.expires_at:%Y-%m-%d %H:%M} UTC")
    if not member.active:
        raise TokenError("the staff account this token belongs to is deactivated")
    _note_use(session, token.id, now)
    return Holder(member.id, member.email, member.role, member.program_id, token.id)


def _note_use(session: Session, token_id: int, now: datetime) -> None:
    """Set last_used_at, unless it was set less than LAST_USED_EVERY ago (one conditional
    UPDATE: concurrent requests write it once)."""
    session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - LAST_USED_EVERY),
        )
        .values(last_used_at=now)
    )


def of_staff(session: Session, staff_id: int) -> list[ApiToken]:
    """A staff member's tokens, newest first (revoked ones too: they are history)."""
    stmt = select(ApiToken).where(ApiToken.staff_id == staff_id)
    return list(session.scalars(stmt.order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def status(token: ApiToken, now: datetime) -> str:
    """'active', 'revoked' or 'expired', as the account page shows it."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"
