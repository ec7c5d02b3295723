"""The /api/v1 blueprint: its before-request checks, the OpenAPI document, and the resource
modules that register their routes on it."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify

from checkin.api import auth, errors
from checkin.api.spec import document

bp = Blueprint("api", __name__, url_prefix=errors.PREFIX)
bp.before_request(auth.authenticate)
bp.before_request(errors.json_bodies_only)
errors.handle_on(bp)


@bp.after_request
def _private(response: Response) -> Response:
    # Bodies carry patient data: no browser or proxy keeps a copy.
    response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document of this API (no token needed: it holds no data)."""
    return jsonify(document())


def init_app(app: Flask) -> None:
    """Register the blueprint (the caller exempts it from CSRF: it never reads the session)."""
    app.register_blueprint(bp)
    app.after_request(errors.as_json)


# The resources register their routes on `bp` (imported last: they import `bp` from here).
from checkin.api import alerts, checkins, fhir, observations, patients, schedules  # noqa: E402

__all__ = ["alerts", "bp", "checkins", "fhir", "init_app", "observations", "patients", "schedules"]
