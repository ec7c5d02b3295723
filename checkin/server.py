"""`checkin serve`: gunicorn in-process, so one command serves production-style workers."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Runs in each worker after the fork, so every worker has its own database pool.
        from checkin import create_app

        return create_app()


def serve_gunicorn(host: str, port: int, workers: int) -> None:
    _Gunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            # Twilio waits 15 s for a webhook; a request stuck longer than that is already lost.
            "timeout": 30,
            "accesslog": "-",
            # The path without its query string (a patient search is a name or a number, and
            # logs are no place for either), the status, and the server time in milliseconds.
            "access_log_format": ACCESS_LOG_FORMAT,
            "proc_name": "checkin-web",
        }
    ).run()
