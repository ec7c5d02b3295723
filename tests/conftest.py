"""The test world: real SQLite and PostgreSQL, a fake Twilio on loopback, a frozen clock.

Named people (STYLE.md): patient alice, clinician bob (on call), admin carol, and dave from
another program, who must never see alice or be paged about her.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from twilio.request_validator import RequestValidator
from werkzeug.security import generate_password_hash

from checkin import create_app
from checkin.clock import FrozenClock
from checkin.config import Settings, load_settings
from checkin.context import Context, make_context
from checkin.db import Base
from checkin.migrate import upgrade
from checkin.models import Program, StaffUser
from checkin.patients import NewPatient, enrol
from checkin.programs import default_program
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio

PG_URL = os.environ.get(
    "CHECKIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("CHECKIN_REQUIRE_POSTGRES") == "1"
PUBLIC_URL = "https://checkin.example.org"
# 10:00 in New York on a Tuesday after the March 2026 DST change: inside texting hours.
T0 = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)

ALICE = "+16175550101"
ERIN = "+16175550102"  # dave's patient, in the other program
BOB = "+16175550199"
DAVE = "+16175550198"


# --- guards -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_real_twilio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the real Twilio fails loudly instead of texting someone."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and (host == "twilio.com" or host.endswith(".twilio.com")):
            raise RuntimeError(f"test tried to reach the real Twilio at {host}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own CHECKIN_* / TWILIO_* variables never leak into a test."""
    for name in list(os.environ):
        if name.startswith(("CHECKIN_", "TWILIO_")):
            monkeypatch.delenv(name)


# --- databases ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    url = make_url(PG_URL)
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required (CHECKIN_REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    return PG_URL


@pytest.fixture(scope="session")
def pg_database(pg_server_url: str) -> Iterator[str]:
    """A database of this run's own, migrated once, dropped at the end."""
    url = make_url(pg_server_url)
    name = f"checkin_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    own = url.set(database=name).render_as_string(hide_password=False)
    upgrade(own)
    yield own
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _libpq(url: Any) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def empty_tables(url: str) -> None:
    from checkin.db import make_engine

    engine = make_engine(url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "checkin.sqlite3"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def postgres_url(pg_database: str) -> str:
    empty_tables(pg_database)
    return pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test that takes this runs on SQLite and on PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


# --- Twilio, settings, context --------------------------------------------------------------


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


def twilio_env(db_url: str, fake: FakeTwilio, **extra: str) -> dict[str, str]:
    return {
        "CHECKIN_DATABASE_URL": db_url,
        "CHECKIN_SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_BASE_URL": fake.base_url,
        "CHECKIN_PUBLIC_URL": PUBLIC_URL,
        "CHECKIN_SECRET_KEY": "test-secret-key",
        **extra,
    }


@pytest.fixture
def settings(db_url: str, fake_twilio: FakeTwilio) -> Settings:
    return load_settings(twilio_env(db_url, fake_twilio))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def ctx(settings: Settings, clock: FrozenClock) -> Iterator[Context]:
    context = make_context(settings)
    context.clock = clock
    yield context
    context.db.dispose()


@pytest.fixture
def app(ctx: Context) -> Flask:
    application = create_app({"TESTING": True}, settings=ctx.settings)
    application.extensions["checkin"].db.dispose()
    application.extensions["checkin"] = ctx  # share the frozen clock and the engine
    return application


class ServerLikeClient(FlaskClient):
    """Reads and closes every response as a WSGI server does, so work a view defers until
    the response is sent (pages after a webhook reply) runs before the call returns."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    app.test_client_class = ServerLikeClient
    return app.test_client()


# --- the named world ---------------------------------------------------------------------


@dataclass
class World:
    program_id: int
    other_program_id: int
    alice_id: int
    erin_id: int
    bob_id: int
    carol_id: int
    dave_id: int


@pytest.fixture
def world(ctx: Context) -> World:
    enrolled = T0 - timedelta(days=14)
    with ctx.db.session() as session:
        program = default_program(session, enrolled)
        alice = enrol(
            session,
            NewPatient(ALICE, "Alice Example", "America/New_York"),
            enrolled,
            actor="test",
            sender=FROM_NUMBER,
            welcome=False,
        )
        bob = _staff(session, program.id, "bob@example.org", "Bob", "clinician", BOB, True)
        carol = _staff(session, program.id, "carol@example.org", "Carol", "admin", None, False)
        other = Program(name="Other Clinic", support_contact="555-0000", created_at=enrolled)
        session.add(other)
        session.flush()
        erin = enrol(
            session,
            NewPatient(ERIN, "Erin Other", "America/Chicago"),
            enrolled,
            actor="test",
            sender=FROM_NUMBER,
            welcome=False,
        )
        erin.program_id = other.id
        dave = StaffUser(
            program_id=other.id,
            email="dave@example.org",
            name="Dave",
            role="clinician",
            phone=DAVE,
            on_call=True,
            password_hash="x",
            created_at=enrolled,
        )
        session.add(dave)
        session.flush()
        return World(program.id, other.id, alice.id, erin.id, bob.id, carol.id, dave.id)


@functools.cache
def _password_hash() -> str:
    # scrypt is slow on purpose; hashing once keeps the per-test world cheap. The CLI tests
    # exercise `staff add` and its hashing for real.
    return generate_password_hash("a-long-test-password")


def _staff(
    session: Any,
    program_id: int,
    email: str,
    name: str,
    role: str,
    phone: str | None,
    on_call: bool,
) -> StaffUser:
    member = StaffUser(
        program_id=program_id,
        email=email,
        name=name,
        role=role,
        phone=phone,
        on_call=on_call,
        password_hash=_password_hash(),
        created_at=T0,
    )
    session.add(member)
    session.flush()
    return member


def enrol_many(url: str, count: int, first: int) -> set[str]:
    """Enrol `count` New York patients a week before T0 straight into the database (the
    bulk worlds of the real-process tests); returns their phones, +1617<first>, ..."""
    from checkin.db import Database
    from checkin.models import Patient

    db = Database(url)
    phones = {f"+1617{first + i}" for i in range(count)}
    enrolled = T0 - timedelta(days=7)
    with db.session() as session:
        program = default_program(session, enrolled)
        session.add_all(
            Patient(
                program_id=program.id,
                phone=phone,
                name=f"Patient {i}",
                timezone="America/New_York",
                language="en",
                status="active",
                consented_at=enrolled,
                enrolled_at=enrolled,
            )
            for i, phone in enumerate(sorted(phones))
        )
    db.dispose()
    return phones


# --- the browser (tests/browser.py) ---------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from tests.browser import launch

    yield from launch()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    from tests.browser import new_page

    yield from new_page(browser)


# --- signed requests ---------------------------------------------------------------------


def signed_post(
    client: FlaskClient, path: str, params: dict[str, str], token: str = AUTH_TOKEN
) -> Any:
    """POST form `params` to `path` with the X-Twilio-Signature Twilio would compute."""
    signature = RequestValidator(token).compute_signature(PUBLIC_URL + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})
