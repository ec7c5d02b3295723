"""The staff web app: sign-in, the alerts inbox, the alert page, the patient list and page.

Server-rendered Jinja, no JavaScript build step. Every form carries a CSRF token (Flask-WTF);
the Twilio webhooks are exempt because their signature is their proof. Cookies are Secure,
HttpOnly and SameSite=Lax outside demo mode (demo serves plain http on 127.0.0.1).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Response, current_app, g, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from checkin import audit
from checkin.config import Settings
from checkin.context import Context

# An idle session ends after this long without a request (HIPAA automatic logoff).
IDLE_TIMEOUT = timedelta(minutes=30)
# Blueprints that serve staff pages: they get the session checks and the security headers.
STAFF_BLUEPRINTS = frozenset(
    {"auth", "account", "dashboard", "patients", "patient_actions", "admin", "simulator"}
)
# A CSV import of several thousand patients fits easily; anything bigger is refused (413).
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
# No inline script or style anywhere, nothing from another origin, never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def context() -> Context:
    ctx: Context = current_app.extensions["checkin"]
    return ctx


def session_config(settings: Settings) -> dict[str, Any]:
    """Flask settings for the staff session cookie; create_app lets its caller override them."""
    return {
        "SESSION_COOKIE_SECURE": not settings.demo,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # The cookie's own expiry; end_idle_session enforces the same limit on the server.
        "PERMANENT_SESSION_LIFETIME": IDLE_TIMEOUT,
        "SESSION_REFRESH_EACH_REQUEST": True,
    }


def init_app(app: Flask) -> None:
    from checkin import webhooks
    from checkin.api import v1 as api
    from checkin.web import account, admin, auth, dashboard, patient_actions, patients, simulator

    csrf = CSRFProtect(app)
    csrf.exempt(webhooks.bp)
    # The API reads a bearer token and never the session cookie: no cookie, no CSRF.
    csrf.exempt(api.bp)
    api.init_app(app)
    auth.login_manager.init_app(app)
    app.config.setdefault("MAX_CONTENT_LENGTH", MAX_UPLOAD_BYTES)
    app.register_blueprint(auth.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(patients.bp)
    app.register_blueprint(patient_actions.bp)
    app.register_blueprint(admin.bp)
    # Always registered; every simulator route is a 404 outside demo mode.
    app.register_blueprint(simulator.bp)
    app.before_request(_audit_origin)
    app.teardown_request(_end_audit_origin)
    app.before_request(auth.end_idle_session)
    app.after_request(_security_headers)
    app.register_error_handler(CSRFError, _csrf_error)
    for status in (403, 404):
        app.register_error_handler(status, _error_page)
    app.context_processor(_demo_mode)
    app.add_template_filter(_when, "when")
    app.add_template_filter(_ago, "ago")
    app.add_template_filter(_words, "words")
    app.add_template_filter(_instant, "instant")


def _demo_mode() -> dict[str, bool]:
    return {"demo_mode": context().settings.demo}


def _security_headers(response: Response) -> Response:
    if request.blueprint not in STAFF_BLUEPRINTS:
        return response
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    # Pages carry patient data: no browser or proxy keeps a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def _audit_origin() -> None:
    """Every audit row a staff request writes says which address it came from (and, from the
    API, that it came through the API)."""
    if request.blueprint in STAFF_BLUEPRINTS:
        g.audit_origin = audit.set_origin(ip=request.remote_addr or "")
    elif request.blueprint == "api":
        g.audit_origin = audit.set_origin(ip=request.remote_addr or "", via="api")


def _end_audit_origin(_exc: BaseException | None) -> None:
    token = g.pop("audit_origin", None)
    if token is not None:
        audit.reset_origin(token)


_ERRORS = {
    403: ("Not allowed", "Your role cannot open this page. Ask an admin if you need it."),
    404: ("Not found", "There is nothing here, or it belongs to another program."),
}


def _error_page(error: HTTPException) -> tuple[str, int] | HTTPException:
    code = error.code or 500
    if request.blueprint not in STAFF_BLUEPRINTS or code not in _ERRORS:
        return error
    title, message = _ERRORS[code]
    return render_template("error.html", title=title, message=message), code


def _csrf_error(error: CSRFError) -> tuple[str, int]:
    message = "This form expired or did not come from this site. Go back, reload and try again."
    return render_template("error.html", title="Form refused", message=message), 400


def _when(value: datetime | None, zone: str | None = None) -> str:
    """An instant in the clinic's zone (CHECKIN_DIGEST_TIMEZONE), or in `zone` if given."""
    if value is None:
        return ""
    local = value.astimezone(ZoneInfo(zone or context().settings.digest_timezone))
    return local.strftime("%a %d %b %Y %H:%M %Z")


def _instant(value: str) -> str:
    """An ISO 8601 instant stored in evidence JSON, shown like every other time."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    return _when(parsed) if parsed.tzinfo else value


def _ago(value: datetime | None) -> str:
    if value is None:
        return ""
    minutes = int((context().clock() - value).total_seconds() // 60)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} h ago"
    return f"{minutes // (24 * 60)} days ago"


def _words(value: str) -> str:
    """'loss_of_response' -> 'loss of response'."""
    return str(value).replace("_", " ")
