"""checkin: SMS check-ins, reply understanding, trends and clinician alerts.

`create_app()` is the WSGI factory (gunicorn 'checkin:create_app()'); there is no global app.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import text
from werkzeug.middleware.proxy_fix import ProxyFix

from checkin.config import Settings, load_settings

__all__ = ["create_app"]


def create_app(config: dict[str, Any] | None = None, settings: Settings | None = None) -> Flask:
    from checkin import web, webhooks
    from checkin.context import make_context

    settings = settings or load_settings()
    settings.require_web()
    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.secret_key or "demo-only-secret")
    app.config.update(web.session_config(settings))
    app.config.update(config or {})
    ctx = make_context(settings)
    app.extensions["checkin"] = ctx

    app.register_blueprint(webhooks.bp)
    web.init_app(app)
    if settings.trusted_proxies:
        # The client's address (audit log, sign-in limits) from the proxies' X-Forwarded-For.
        # Twilio's signatures are checked against CHECKIN_PUBLIC_URL, never a forwarded host.
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]

    @app.get("/healthz")
    def healthz() -> tuple[dict[str, str], int]:
        try:
            # The app's context as it is now (like the webhooks), not as it was at creation.
            with app.extensions["checkin"].db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
            return {"status": "error", "database": type(exc).__name__}, 503
        return {"status": "ok"}, 200

    return app
