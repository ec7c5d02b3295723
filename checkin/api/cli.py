"""`checkin tokens create|list|revoke`: personal API tokens from a terminal (for the first
integration, before anyone signs in, or to revoke a leaked token fast).

The group is added to `checkin` at the end of checkin/cli.py; this module imports that one
only inside the commands, so neither import needs the other to have finished.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from checkin.config import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(command: F) -> F:
    """Domain and configuration errors as one line and exit status 1, like every verb."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            raise click.ClickException(f"configuration: {exc}") from None
        except ValueError as exc:  # TokenError
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@click.group("tokens")
def tokens() -> None:
    """Personal API tokens (Authorization: Bearer ck_…)."""


@tokens.command("create")
@click.option("--email", required=True, help="Whose token: it acts with their role and program")
@click.option("--name", required=True, help="What will use it, e.g. 'EHR import'")
@click.option("--days", type=int, help="Expires after this many days (1-365); default: never")
@_one_line_errors
def tokens_create(email: str, name: str, days: int | None) -> None:
    """Create a token and print it once (only its hash is kept)."""
    from checkin.api import tokens as api_tokens
    from checkin.cli import _actor, _context, _staff_member

    ctx = _context()
    with ctx.db.session() as session:
        member = _staff_member(session, email)
        token, secret = api_tokens.create(session, member, name, days, ctx.clock(), actor=_actor())
        ends = token.expires_at
        expires = f"expires {ends:%Y-%m-%d %H:%M} UTC" if ends else "never expires"
        click.echo(f"token {token.id} for {member.email} ({member.role}), {expires}", err=True)
        click.echo("shown once: store it now, it cannot be shown again", err=True)
    click.echo(secret)


@tokens.command("list")
@click.option("--email", required=True)
@_one_line_errors
def tokens_list(email: str) -> None:
    """A staff member's tokens as CSV (never the tokens themselves)."""
    from checkin.api import tokens as api_tokens
    from checkin.cli import _context, _staff_member

    ctx = _context()
    now = ctx.clock()
    with ctx.db.session() as session:
        rows = api_tokens.of_staff(session, _staff_member(session, email).id)
    click.echo("id,name,prefix,status,created_at,expires_at,last_used_at")
    for t in rows:
        when = [x.isoformat() if x else "" for x in (t.created_at, t.expires_at, t.last_used_at)]
        name = t.name.replace(",", " ")
        click.echo(f"{t.id},{name},{t.prefix},{api_tokens.status(t, now)},{','.join(when)}")


@tokens.command("revoke")
@click.argument("token_id", type=int)
@_one_line_errors
def tokens_revoke(token_id: int) -> None:
    """Revoke a token by its id (`checkin tokens list`): it stops working at once."""
    from checkin.api import tokens as api_tokens
    from checkin.cli import _actor, _context
    from checkin.models import ApiToken

    ctx = _context()
    with ctx.db.session() as session:
        token = session.get(ApiToken, token_id)
        if token is None:
            raise api_tokens.TokenError(f"no token {token_id}")
        api_tokens.revoke(session, token, ctx.clock(), actor=_actor())
        click.echo(f"revoked token {token.id} ({token.name})")
