"""Every error under /api/v1 is JSON: {"error": {"status": 404, "message": "..."}}, never HTML.

Errors raised inside an API view (abort, a refused token, a bad body, a body too large, a bug)
reach the blueprint's own handlers. A request that matches no API route (an unknown path, a
method the path does not take) never reaches the blueprint, so `as_json` rewrites those
responses on their way out; the staff pages keep their HTML error pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, default_exceptions
from werkzeug.exceptions import abort as werkzeug_abort

PREFIX = "/api/v1"
# Headers of the original error response that a JSON rewrite keeps (405 says what is allowed).
KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")
# RFC 6750: a refused bearer token says which scheme the API wants.
BEARER_CHALLENGE = 'Bearer realm="checkin"'
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def fail(status: int, message: str) -> NoReturn:
    """Stop the request with this status and a one-line message for the integrator."""
    werkzeug_abort(status, description=message)


def body(status: int, message: str) -> Response:
    response = jsonify(error={"status": status, "message": message})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = BEARER_CHALLENGE
    return response


def handle_on(bp: Blueprint) -> None:
    """Every HTTP error raised inside the blueprint's views answers JSON."""
    for code in default_exceptions:
        bp.register_error_handler(code, _handle)


def _handle(error: HTTPException) -> Response:
    status = error.code or 500
    response = body(status, _message(error))
    _keep(dict(error.get_headers()), response)
    return response


def _keep(headers: Mapping[str, str], response: Response) -> None:
    for name in KEPT_HEADERS:
        if name in headers and name not in response.headers:
            response.headers[name] = headers[name]


def _message(error: HTTPException) -> str:
    if (error.code or 500) >= 500:
        # Never a traceback or an exception's text: it could quote patient data.
        return "Something went wrong on the server; it was logged. Try again later."
    return (error.description or error.name).strip()


def as_json(response: Response) -> Response:
    """An error response under /api/v1 that is not JSON yet becomes JSON (the routing errors:
    no such path, or a method the path does not take)."""
    if not under_api() or response.status_code < 400 or response.is_json:
        return response
    error = request.routing_exception
    if isinstance(error, HTTPException) and error.code == response.status_code:
        message = _message(error)
    else:
        known = default_exceptions.get(response.status_code)
        message = _message(known()) if known else response.status
    rewritten = body(response.status_code, message)
    _keep(dict(response.headers), rewritten)
    return rewritten


def under_api() -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def json_bodies_only() -> None:
    """A form post is refused (415) before spectree, which would skip the JSON model for it."""
    if request.method in ("POST", "PUT", "PATCH") and request.mimetype in FORM_TYPES:
        fail(415, "send the body as a JSON object with Content-Type: application/json")


def validation_failed(
    _req: Any, _resp: Any, error: Exception | None, _instance: Any, _adapter: Any
) -> None:
    """spectree's `before` hook: a query or body that does not match its model is a 400 that
    names the first problem (the field and what is wrong), instead of spectree's 422 list."""
    if error is None:
        return
    if request.method in ("POST", "PUT", "PATCH") and request.get_json(silent=True) is None:
        fail(400, "send the body as a JSON object with Content-Type: application/json")
    if not isinstance(error, ValidationError) or not error.errors():
        fail(400, "the request does not match the API description")
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = error.error_count() - 1
    also = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    what = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        what = "unknown parameter or field (see /api/v1/openapi.json)"
    fail(400, f"{where}: {what}{also}")
