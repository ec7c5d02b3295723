"""Who is calling: `Authorization: Bearer <token>` and nothing else.

The session cookie is never read here, so a page on another site cannot make a signed-in
browser call the API (which is why the API needs no CSRF token). The caller's role and program
are those of the token's owner, read on every request: a deactivated account, a revoked or an
expired token stops working at once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import current_app, g, request

from checkin.api.errors import fail
from checkin.api.tokens import Holder, TokenError, check
from checkin.context import Context

F = TypeVar("F", bound=Callable[..., Any])

# Endpoints anyone may call: the OpenAPI document describes the API and holds no data.
PUBLIC_ENDPOINTS = frozenset({"api.openapi"})


def authenticate() -> None:
    """The API blueprint's before_request: every view but the public ones needs a valid token,
    so a view that forgot a decorator is still closed."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        fail(401, "send a personal API token: Authorization: Bearer ck_…")
    ctx = context()
    try:
        with ctx.db.session() as db:
            g.api_caller = check(db, presented.strip(), ctx.clock())
    except TokenError as exc:
        fail(401, f"{exc}")


def caller() -> Holder:
    """The staff member the request's token acts for (set by `authenticate`)."""
    holder: Holder = g.api_caller
    return holder


def admin_only(view: F) -> F:
    """Configuration and enrolment are an admin's: a clinician's token gets a 403."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not caller().is_admin:
            fail(403, "only an admin can do this; your token acts with a clinician's role")
        return view(*args, **kwargs)

    return cast(F, wrapper)


def context() -> Context:
    ctx: Context = current_app.extensions["checkin"]
    return ctx
