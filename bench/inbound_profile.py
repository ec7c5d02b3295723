"""Where an inbound reply's time goes: the webhook in-process, one request at a time.

The app is built with the server's own settings (same database, same token, same public URL)
and driven through Flask's test client: first unprofiled (the service time without queueing
or HTTP), then under cProfile, which times each function's inclusive wall time (so a database
round trip counts where it is waited for). cProfile slows Python code down more than it slows
waiting, so the shares are indicative and the milliseconds are the profiled ones; the
statement count is exact.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import Engine, event
from twilio.request_validator import RequestValidator

from bench import floor_app
from checkin import create_app
from checkin.config import load_settings
from checkin.transports.console_sms import ConsoleSms

# (label, path suffix of the file, function name): inclusive time per request. Nested parts
# are indented in the table; a part's time is inside its parent's.
PARTS: tuple[tuple[str, str, str], ...] = (
    ("whole request (Flask WSGI app)", "flask/app.py", "wsgi_app"),
    ("signature check (RequestValidator.validate)", "twilio/request_validator.py", "validate"),
    ("handle_inbound (one transaction)", "checkin/conversations.py", "handle_inbound"),
    ("  patient by phone (phonenumbers + query)", "checkin/conversations.py", "_patient"),
    ("  crisis language check", "checkin/crisis.py", "detect"),
    ("  keywords", "checkin/keywords.py", "classify"),
    ("  open check-in (SELECT ... FOR UPDATE)", "checkin/conversations.py", "open_checkin"),
    ("  flow engine: parse and advance", "checkin/flows/engine.py", "advance"),
    ("  store the answer", "checkin/conversations.py", "store_readings"),
    ("  trend rules with their queries", "checkin/evaluation.py", "after_answers"),
    ("    the pure rules (trends.evaluate)", "checkin/trends.py", "evaluate"),
    ("    loss of response", "checkin/evaluation.py", "_loss_of_response"),
    ("  alerts raised", "checkin/alerts.py", "raise_alert"),
    ("  ORM flushes (INSERT/UPDATE)", "sqlalchemy/orm/session.py", "flush"),
    ("  commit", "sqlalchemy/orm/session.py", "commit"),
    ("TwiML (MessagingResponse to XML)", "twilio/twiml/__init__.py", "to_xml"),
    ("pages sent after the response", "checkin/webhooks.py", "_send_pages"),
    ("all SQL: psycopg execute, incl. the wait", "psycopg/cursor.py", "execute"),
    ("pool check-out (pre-ping round trip)", "sqlalchemy/pool/base.py", "_checkout"),
)
ROOT = Path(__file__).resolve().parent.parent
TOP = 8  # functions by own time, for the report
TOP_STATEMENTS = 12


class StatementLog:
    """Each SQL statement the engine sends, by a short label, with the time from the cursor
    call to its return (the round trip, PostgreSQL's work and psycopg's). The pool's pre-ping
    and COMMIT do not go through a cursor and are not here."""

    def __init__(self, engine: Engine) -> None:
        self.count: dict[str, int] = {}
        self.millis: dict[str, float] = {}
        self._started: dict[int, float] = {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def clear(self) -> None:
        self.count.clear()
        self.millis.clear()

    def total(self) -> int:
        return sum(self.count.values())

    def _before(self, _conn: Any, cursor: Any, *_: Any) -> None:
        self._started[id(cursor)] = time.perf_counter()

    def _after(self, _conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        elapsed = (time.perf_counter() - self._started.pop(id(cursor))) * 1000
        label = statement_label(statement)
        self.count[label] = self.count.get(label, 0) + 1
        self.millis[label] = self.millis.get(label, 0.0) + elapsed


def statement_label(sql: str) -> str:
    """'SELECT messages WHERE twilio_sid', 'INSERT messages', 'UPDATE checkins SET state'."""
    verb = sql.split(None, 1)[0].upper()
    if verb == "INSERT":
        found = re.search(r"INSERT INTO (\w+)", sql)
        return f"INSERT {found[1]}" if found else verb
    if verb == "UPDATE":
        found = re.search(r"UPDATE (\w+) SET (\w+)", sql)
        return f"UPDATE {found[1]} SET {found[2]}" if found else verb
    if verb == "SELECT":
        table = re.search(r"\bFROM (\w+)", sql)
        where = re.search(r"\bWHERE (?:\w+\.)?(\w+)", sql)
        lock = " FOR UPDATE" if "FOR UPDATE" in sql else ""
        text = f"SELECT {table[1] if table else '?'}"
        return text + (f" WHERE {where[1]}" if where else "") + lock
    return verb


@dataclass(frozen=True)
class Part:
    label: str
    ms: float  # inclusive, per request, under the profiler
    share: float  # of the whole request


@dataclass(frozen=True)
class ProfileSummary:
    requests: int
    plain_ms: list[float]  # checkin's service time per request, unprofiled
    floor_ms: list[float]  # the floor app's, same way
    statements: float  # SQL statements per request
    by_statement: list[tuple[str, float, float]]  # (label, per request, ms per request)
    parts: list[Part]
    packages: list[tuple[str, float]]  # (package, own ms per request), largest first
    own_time: list[tuple[str, float]]  # (function, own ms per request), largest first

    def markdown(self) -> str:
        checkin, floor = statistics.mean(self.plain_ms), statistics.mean(self.floor_ms)
        lines = [
            f"Where the time goes: both apps in-process with the servers' settings, one reply "
            f"at a time (no HTTP, no queueing), {self.requests} more replies each: checkin "
            f"{checkin:.1f} ms mean (p50 {statistics.median(self.plain_ms):.1f}), the floor "
            f"{floor:.1f} ms (p50 {statistics.median(self.floor_ms):.1f}), a ratio of "
            f"{floor / checkin:.2f}. checkin runs {self.statements:.1f} SQL statements per "
            "reply besides the pool's pre-ping and the commit, which the floor pays too around "
            "its one INSERT. checkin "
            "under cProfile (inclusive wall time per reply; nested parts are inside their "
            "parent's):",
            "",
            "| part | ms per reply (profiled) | share |",
            "|---|---|---|",
        ]
        for part in self.parts:
            label = part.label.replace("  ", "&nbsp;&nbsp;")
            lines.append(f"| {label} | {part.ms:.2f} | {part.share:.0%} |")
        lines += [
            "",
            self.in_short(),
            "",
            "Own time by package (ms per reply, profiled): "
            + ", ".join(f"{name} {ms:.2f}" for name, ms in self.packages)
            + ". Most own time by function: "
            + "; ".join(f"`{name}` {ms:.2f}" for name, ms in self.own_time)
            + ".",
            "",
            "SQL per reply, unprofiled, timed from the cursor call to its return (pre-ping and "
            "COMMIT excluded): "
            + "; ".join(f"{label} {n:.2f} x, {ms:.2f} ms" for label, n, ms in self.by_statement)
            + ".",
        ]
        return "\n".join(lines)

    def in_short(self) -> str:
        whole = self.parts[0].ms or 1.0
        share = {part.label.strip(): part.share for part in self.parts}
        own = dict(self.packages)
        logic = own.get("checkin", 0.0) / whole
        return (
            f"In short: checkin's own code is {logic:.0%} of a reply (the trend rules "
            f"{share['the pure rules (trends.evaluate)']:.0%}, parsing "
            f"{share['flow engine: parse and advance']:.0%}, the signature "
            f"{share['signature check (RequestValidator.validate)']:.0%}); the time is in "
            f"the database layer: {share['all SQL: psycopg execute, incl. the wait']:.0%} "
            f"sending {self.statements:.1f} statements and waiting for them, and "
            f"{own.get('sqlalchemy', 0.0) / whole:.0%} in SQLAlchemy's own Python building "
            "them and reading their rows, where the floor sends one INSERT."
        )


def profile_webhook(
    env: dict[str, str],
    floor_env: dict[str, str],
    forms: Sequence[dict[str, str]],
    warm: int,
) -> ProfileSummary:
    """`forms`: inbound webhooks (unsigned) that advance open check-ins, in a valid order;
    the first `warm` load code paths and caches, the rest are split between the plain
    timing and the profiled one. The floor replays the plain half."""
    settings = load_settings(env)
    app = create_app(settings=settings)
    ctx = app.extensions["checkin"]
    ctx.sms = ConsoleSms(io.StringIO())  # pages, if any, are kept out of the bench's output
    statements = StatementLog(ctx.db.engine)
    post = poster(app, env["TWILIO_AUTH_TOKEN"], f"{settings.public_url}/twilio/sms")
    half = (len(forms) - warm) // 2
    plain_forms, profiled_forms = forms[warm : warm + half], forms[warm + half : warm + 2 * half]
    for form in forms[:warm]:
        post(form)
    statements.clear()
    plain = [post(form) for form in plain_forms]
    n_plain = len(plain_forms)
    by_statement = [
        (label, count / n_plain, statements.millis[label] / n_plain)
        for label, count in sorted(statements.count.items(), key=lambda kv: -kv[1])
    ][:TOP_STATEMENTS]
    per_reply = statements.total() / n_plain
    profiler = cProfile.Profile()
    for form in profiled_forms:
        post(form, profiler)
    ctx.db.dispose()
    n = len(profiled_forms)
    floor = floor_times(floor_env, plain_forms, warm)
    found = summarise(pstats.Stats(profiler), n, plain, floor, per_reply)
    return replace(found, by_statement=by_statement)


def floor_times(env: dict[str, str], forms: Sequence[dict[str, str]], warm: int) -> list[float]:
    app = floor_app.create_app(env)
    post = poster(app, env["BENCH_FLOOR_AUTH_TOKEN"], f"{env['BENCH_FLOOR_PUBLIC_URL']}/twilio/sms")
    times = [post(form) for form in forms]
    app.extensions["bench_floor_engine"].dispose()
    return times[warm:]  # its first requests pay the imports and the pool's first connection


def poster(app: Flask, token: str, url: str) -> Callable[..., float]:
    """POST a signed webhook through the test client (read and closed as a WSGI server
    does, so pages deferred to after the response run); returns milliseconds. The
    signature is computed outside the timing, as Twilio computes it elsewhere."""
    validator = RequestValidator(token)
    client = app.test_client()

    def post(form: dict[str, str], profiler: cProfile.Profile | None = None) -> float:
        headers = {"X-Twilio-Signature": validator.compute_signature(url, form)}
        began = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        response = client.post("/twilio/sms", data=form, headers=headers, buffered=True)
        if profiler is not None:
            profiler.disable()
        elapsed = (time.perf_counter() - began) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"in-process webhook: HTTP {response.status_code}")
        return elapsed

    return post


def summarise(
    stats: pstats.Stats, n: int, plain: list[float], floor: list[float], statements: float
) -> ProfileSummary:
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]

    def inclusive(suffix: str, name: str) -> float:
        return float(
            sum(v[3] for (f, _, fn), v in table.items() if fn == name and f.endswith(suffix))
        )

    whole = inclusive(PARTS[0][1], PARTS[0][2]) or 1.0
    parts = [
        Part(label, inclusive(suffix, name) / n * 1000, inclusive(suffix, name) / whole)
        for label, suffix, name in PARTS
    ]
    packages: dict[str, float] = {}
    for (f, _, _), v in table.items():
        packages[_package(f)] = packages.get(_package(f), 0.0) + v[2] / n * 1000
    by_own = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:TOP]
    own = [(f"{_short(f)}:{fn}", v[2] / n * 1000) for (f, _, fn), v in by_own]
    top = sorted(((name, ms) for name, ms in packages.items() if ms >= 0.05), key=lambda x: -x[1])
    return ProfileSummary(n, plain, floor, statements, [], parts, top, own)


def _package(path: str) -> str:
    """The top-level package a function lives in: sqlalchemy, psycopg, checkin, stdlib..."""
    short = _short(path)
    if short.startswith(("~", "<")):
        return "builtins (C)"
    if short == path:  # neither site-packages nor this repository: the standard library
        return "stdlib"
    return short.split("/", 1)[0].removesuffix(".py")


def _short(path: str) -> str:
    """.../site-packages/sqlalchemy/orm/session.py -> sqlalchemy/orm/session.py"""
    if "site-packages/" in path:
        return path.rsplit("site-packages/", 1)[1]
    return path.removeprefix(f"{ROOT}/")
