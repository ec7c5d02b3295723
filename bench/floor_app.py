"""The floor for bench/inbound.py: the least an inbound-SMS webhook can do on this stack.

One Flask view under the same gunicorn, worker count and worker class as `checkin serve`:
verify the Twilio signature exactly as checkin does (twilio.request_validator, against a
public URL + path), insert one row in one transaction through a pooled SQLAlchemy engine on
psycopg 3 (pool_pre_ping like checkin.db.make_engine, so each request pays the same check-out
round trip), and answer with a one-message TwiML. Whatever checkin does beyond this is the
conversation itself: finding the patient and the check-in, parsing, storing, trend rules.

    BENCH_FLOOR_DATABASE_URL=... BENCH_FLOOR_PUBLIC_URL=http://127.0.0.1:PORT \\
    BENCH_FLOOR_AUTH_TOKEN=... gunicorn 'bench.floor_app:create_app()'

The table is created by `create_table` before gunicorn starts: two workers racing
CREATE TABLE IF NOT EXISTS can still collide in the catalog.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask, Response, abort, request
from sqlalchemy import Engine, create_engine, text
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

TABLE = "bench_floor_inbound"
REPLY = "Thanks, saved."  # about the size of one of checkin's question texts
INSERT = text(f"INSERT INTO {TABLE} (message_sid, from_number, body) VALUES (:sid, :sender, :body)")


def create_table(engine: Engine) -> None:
    """The bench-only table, unique on MessageSid so a double insert would show as a 500."""
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                " id bigserial PRIMARY KEY,"
                " message_sid varchar(64) NOT NULL UNIQUE,"
                " from_number varchar(254) NOT NULL,"
                " body text NOT NULL,"
                " received_at timestamptz NOT NULL DEFAULT now())"
            )
        )


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    """The WSGI app; settings from `env` (the environment by default, as under gunicorn)."""
    env = os.environ if env is None else env
    engine = create_engine(env["BENCH_FLOOR_DATABASE_URL"], pool_pre_ping=True)
    validator = RequestValidator(env["BENCH_FLOOR_AUTH_TOKEN"])
    public_url = env["BENCH_FLOOR_PUBLIC_URL"]
    app = Flask(__name__)

    @app.post("/twilio/sms")
    def inbound_sms() -> Response:
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(public_url + request.path, request.form, signature):
            abort(403)
        form = request.form
        with engine.begin() as conn:
            conn.execute(
                INSERT,
                {"sid": form["MessageSid"], "sender": form["From"], "body": form["Body"]},
            )
        twiml = MessagingResponse()
        twiml.message(REPLY)
        return Response(str(twiml), mimetype="text/xml")

    app.extensions["bench_floor_engine"] = engine  # for whoever builds it in-process to dispose
    return app
