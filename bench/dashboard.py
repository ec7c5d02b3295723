"""Staff dashboard server time: the patient list over 10,000 patients, and one patient's page
over a year of daily data, served by `checkin serve --workers 2` (gunicorn) on PostgreSQL.

Each run: a fresh database migrated to head, then bulk-loaded with COPY: every patient has a
month of daily check-ins (mostly completed, some expired, failed or missed) with their answers
and texts, a weekly PHQ-2, an infusion every ~4 weeks, consent events and some alerts; some are
paused, opted out or undeliverable. One of them has a whole year of the same. A staff member
signs in through the real login form; after a warm-up every URL is requested N times, round by
round, so a noisy moment on the machine falls on every URL alike.

Reported: p50 and p95 server time (gunicorn's own measure, from the access log `checkin serve`
writes: request read to response sent) and client wall time over loopback, and each p95
against a floor measured in the same run against the same gunicorn: GET /healthz, one
database round trip, no template.

    .venv/bin/python -m bench.dashboard [--patients 10000] [--requests 50]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import monotonic, perf_counter
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

import psycopg
import requests
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from bench.copyload import Batch, copy_batch, finish_load, plain
from bench.dispatch import PG, report
from checkin.db import Database
from checkin.migrate import upgrade
from checkin.models import Schedule, StaffUser
from checkin.programs import default_program
from tests.procs import Process, free_port, healthy, wait_until

TARGET_P95_MS = 200.0  # the target, for both pages
WARMUP_ROUNDS = 10  # enough for both workers to load templates, pygal and a pooled connection
CHUNK = 500  # patients per COPY round: memory stays flat, round trips stay few
LIST_DAYS = 30
YEAR_DAYS = 365
YEAR_PATIENT = 0  # the index of the patient with a year of history
PHQ2_WEEKDAY = 0  # the weekly PHQ-2 on Mondays at 10:00, as the README sets a clinic up
SENDER = "+15005550006"
STAFF_EMAIL = "bench.clinician@example.org"
STAFF_PASSWORD = secrets.token_urlsafe(16)
CONSENT_TEXT = "Agreed in clinic to check-in texts from Care Team; reply STOP to end them."

ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
AREA_CODES = ("617", "508", "781", "978", "413")
FIRST_NAMES = (
    "Maria", "James", "Aisha", "Wei", "Olivia", "Mateo", "Fatima", "Liam", "Sofia", "Noah",
    "Priya", "Ethan", "Chloe", "Omar", "Grace", "Lucas", "Hana", "Daniel", "Amara", "Jonas",
    "Elena", "Samuel", "Yara", "Henry", "Nadia", "Isaac", "Leila", "Oscar", "Ruth", "Tomás",
)  # fmt: skip
LAST_NAMES = (
    "Garcia", "Smith", "Okafor", "Nguyen", "Johnson", "Patel", "Brown", "Kowalski", "Rossi",
    "Kim", "Murphy", "Haddad", "Silva", "Cohen", "Novak", "Williams", "Tanaka", "Mensah",
    "Lopez", "Schmidt", "O'Brien", "Dubois", "Ivanova", "Andersen", "Chen", "Reyes", "Walsh",
    "Moreau", "Sato", "Adeyemi", "Fischer", "Hughes", "Costa", "Larsen", "Yilmaz", "Bauer",
    "Quinn", "Ortiz", "Baker", "Ferreira",
)  # fmt: skip
NAME_QUERY = "okafor"  # one surname in forty: about 250 matches, five pages
PHONE_QUERY_PATIENT = 4321  # staff type this patient's number as it is printed on a chart

# Drawn per patient; "active" is the rest.
STATUS_SHARES = (("paused", 0.08), ("opted_out", 0.05), ("number_invalid", 0.02))
# A sent daily check-in's outcome, cumulative: completed, expired, failed, else missed.
OUTCOMES = (("completed", 0.80), ("expired", 0.93), ("failed", 0.96), ("missed", 1.0))
SENT = ("completed", "expired", "open", "failed")
DAILY = ("fatigue", "pain", "mood")
PHQ2 = ("phq2_interest", "phq2_down")
QUESTION = {
    "daily_symptoms": "Fatigue, pain and mood today, 0-10 each? Reply e.g. 5 3 7.",
    "weekly_mood": "Over 2 weeks: little interest? feeling down? 0-3 each, e.g. 1 0.",
}
ALERT_SEVERITY = {
    "worsening": "high",
    "severe": "high",
    "phq2_positive": "high",
    "side_effect": "high",
    "non_response": "routine",
}

# Explicit column lists: COPY fills only these, so a column another branch adds (nullable or
# with a default) does not break the load.
COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": (
        "id", "program_id", "phone", "name", "timezone", "language", "status", "paused_until",
        "consented_at", "enrolled_at",
    ),
    "treatment_events": ("id", "patient_id", "kind", "occurred_on", "recorded_by", "created_at"),
    "checkins": (
        "id", "patient_id", "schedule_id", "flow", "flow_version", "idempotency_key",
        "local_date", "due_at", "expires_at", "status", "state", "sent_at", "completed_at",
        "created_at",
    ),
    "messages": (
        "id", "direction", "patient_id", "checkin_id", "to_number", "from_number", "body",
        "purpose", "status", "twilio_sid", "error_code", "error_message", "attempts",
        "created_at", "sent_at", "status_updated_at",
    ),
    "answers": (
        "id", "checkin_id", "patient_id", "measure", "value", "status", "raw_text",
        "message_id", "recorded_at",
    ),
    "alerts": (
        "id", "ref", "patient_id", "kind", "severity", "status", "evidence", "created_at",
        "updated_at", "acknowledged_at", "acknowledged_by_id", "resolved_at", "resolved_by_id",
        "resolution_note",
    ),
    "consent_events": (
        "id", "patient_id", "kind", "source", "detail", "recorded_by", "message_id",
        "created_at",
    ),
}  # fmt: skip


# --- the data set ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """What every patient's history refers to: the clock, the program and its staff."""

    now: datetime
    program_id: int
    staff_id: int
    daily_schedule: int
    weekly_schedule: int


@dataclass(frozen=True)
class Profile:
    """One patient's fixed traits; their history is drawn from these."""

    id: int
    phone: str
    name: str
    zone: ZoneInfo
    status: str
    history_days: int
    inactive_days: int  # the newest N days went unsent: paused, opted out, undeliverable
    stop_window: tuple[int, int] | None  # texted STOP, then START, this many days ago
    centre: dict[str, int]  # the patient's usual fatigue, pain and mood
    infusion_phase: int


def phone_for(index: int) -> str:
    # 7919 is prime to 100,000, so numbers are unique and do not run in patient order.
    return f"+1{AREA_CODES[index % len(AREA_CODES)]}55{index * 7919 % 100_000:05d}"


def printed(phone: str) -> str:
    """+16175512345 as a chart prints it: (617) 551-2345."""
    return f"({phone[2:5]}) {phone[5:8]}-{phone[8:]}"


def profile(index: int, rng: random.Random) -> Profile:
    status, inactive = "active", 0
    draw = rng.random()
    for name, share in STATUS_SHARES:
        if draw < share:
            status, inactive = name, rng.randint(2, 20)
            break
        draw -= share
    year = index == YEAR_PATIENT
    return Profile(
        id=index + 1,
        phone=phone_for(index),
        name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
        zone=ZoneInfo(rng.choice(ZONES)),
        status="active" if year else status,
        history_days=YEAR_DAYS if year else LIST_DAYS,
        inactive_days=0 if year else inactive,
        stop_window=(200, 196) if year else None,
        centre={"fatigue": rng.randint(2, 7), "pain": rng.randint(1, 7), "mood": rng.randint(3, 8)},
        infusion_phase=rng.randrange(28),
    )


def add_patient(batch: Batch, p: Profile, s: Setting, rng: random.Random) -> None:
    today = s.now.astimezone(p.zone).date()
    enrolled = s.now - timedelta(days=p.history_days + rng.randint(1, 14))
    batch.add(
        "patients",
        program_id=s.program_id,
        phone=p.phone,
        name=p.name,
        timezone=p.zone.key,
        language="es" if rng.random() < 0.1 else "en",
        status=p.status,
        paused_until=today + timedelta(days=rng.randint(3, 30)) if p.status == "paused" else None,
        consented_at=enrolled,
        enrolled_at=enrolled,
    )
    add_consents(batch, p, s, enrolled)
    add_infusions(batch, p, s, today)
    for days_ago in range(p.history_days, -1, -1):
        day = today - timedelta(days=days_ago)
        add_checkin(batch, p, s, "daily_symptoms", day, days_ago, rng)
        if day.weekday() == PHQ2_WEEKDAY:
            add_checkin(batch, p, s, "weekly_mood", day, days_ago, rng)
    add_alerts(batch, p, s, rng)


def add_consents(batch: Batch, p: Profile, s: Setting, enrolled: datetime) -> None:
    given = {"patient_id": p.id, "recorded_by": STAFF_EMAIL, "detail": CONSENT_TEXT}
    batch.add(
        "consent_events",
        **given,
        kind="consent_given",
        source="staff_enrolment",
        created_at=enrolled,
    )
    stops = []
    if p.status == "opted_out":
        stops.append(("opted_out", "STOP", p.inactive_days))
    if p.stop_window:
        stops += [("opted_out", "STOP", p.stop_window[0]), ("opted_in", "START", p.stop_window[1])]
    for kind, word, days_ago in stops:
        at = s.now - timedelta(days=days_ago, hours=-2)
        inbound = batch.add(
            "messages",
            direction="inbound",
            patient_id=p.id,
            to_number=SENDER,
            from_number=p.phone,
            body=word,
            purpose="patient",
            status="received",
            twilio_sid=batch.twilio_sid(),
            attempts=0,
            created_at=at,
        )
        batch.add(
            "consent_events",
            patient_id=p.id,
            kind=kind,
            source="sms_keyword",
            recorded_by="patient",
            message_id=inbound,
            created_at=at,
        )


def add_infusions(batch: Batch, p: Profile, s: Setting, today: date) -> None:
    """An infusion every ~4 weeks (+-2 days), recorded by staff the same day."""
    day = today - timedelta(days=p.history_days - p.infusion_phase % 28)
    jitter = random.Random(p.id)
    while day <= today:
        occurred = day + timedelta(days=jitter.randint(-2, 2))
        if occurred <= today:
            recorded = datetime.combine(occurred, time(15), tzinfo=p.zone)
            batch.add(
                "treatment_events",
                patient_id=p.id,
                kind="infusion",
                occurred_on=occurred,
                recorded_by=STAFF_EMAIL,
                created_at=recorded,
            )
        day += timedelta(days=28)


def outcome(p: Profile, days_ago: int, due: datetime, now: datetime, rng: random.Random) -> str:
    if due > now:
        return "pending"
    if days_ago < p.inactive_days:
        # An undeliverable number keeps failing; paused and opted-out patients are not sent.
        return "failed" if p.status == "number_invalid" else "skipped"
    if p.stop_window and p.stop_window[1] < days_ago <= p.stop_window[0]:
        return "skipped"
    if days_ago == 0:
        return "open"
    draw = rng.random()
    return next(name for name, upto in OUTCOMES if draw < upto)


def add_checkin(
    batch: Batch, p: Profile, s: Setting, flow: str, day: date, days_ago: int, rng: random.Random
) -> None:
    weekly = flow == "weekly_mood"
    due = datetime.combine(day, time(10 if weekly else 9), tzinfo=p.zone).astimezone(UTC)
    expires = datetime.combine(day + timedelta(days=1), time(0), tzinfo=p.zone).astimezone(UTC)
    status = outcome(p, days_ago, due, s.now, rng)
    replied = due + timedelta(minutes=rng.randint(2, 240))
    checkin_id = batch.add(
        "checkins",
        patient_id=p.id,
        flow=flow,
        flow_version=1,
        schedule_id=s.weekly_schedule if weekly else s.daily_schedule,
        idempotency_key=f"{p.id}:{flow}:{day}:{due.astimezone(p.zone):%H:%M}",
        local_date=day,
        due_at=due,
        expires_at=expires,
        status=status,
        state="{}",
        sent_at=due if status in SENT else None,
        completed_at=replied if status == "completed" else None,
        created_at=due - timedelta(days=1),
    )
    if status in SENT:
        add_question(batch, p, checkin_id, flow, status, due)
    values = answered_values(p, flow, status, rng)
    said = [str(v) for v in values.values() if v is not None]
    reply = None
    if said:
        reply = batch.add(
            "messages",
            direction="inbound",
            patient_id=p.id,
            checkin_id=checkin_id,
            to_number=SENDER,
            from_number=p.phone,
            body=" ".join(said),
            purpose="patient",
            status="received",
            twilio_sid=batch.twilio_sid(),
            attempts=0,
            created_at=replied,
        )
    for measure, value in values.items():
        # As the app records them: what was never answered is 'missing' when the run expires.
        batch.add(
            "answers",
            checkin_id=checkin_id,
            patient_id=p.id,
            measure=measure,
            value=value,
            status="answered" if value is not None else "missing",
            raw_text=str(value) if value is not None else None,
            message_id=reply if value is not None else None,
            recorded_at=replied if value is not None else expires,
        )


def add_question(
    batch: Batch, p: Profile, checkin_id: int, flow: str, status: str, due: datetime
) -> None:
    failed = status == "failed"
    error = (
        (30006, "Landline or unreachable carrier")
        if p.status == "number_invalid"
        else (30003, "Unreachable destination handset")
    )
    batch.add(
        "messages",
        direction="outbound",
        patient_id=p.id,
        checkin_id=checkin_id,
        to_number=p.phone,
        from_number=SENDER,
        body=QUESTION[flow],
        purpose="checkin",
        status="failed" if failed else "delivered",
        twilio_sid=batch.twilio_sid(),
        error_code=error[0] if failed else None,
        error_message=error[1] if failed else None,
        attempts=1,
        created_at=due,
        sent_at=due,
        status_updated_at=due + timedelta(seconds=4),
    )


def answered_values(
    p: Profile, flow: str, status: str, rng: random.Random
) -> dict[str, int | None]:
    """Each measure's answer (None: missing): all of them, or the first few of an expired run.
    Other outcomes stored no answers at all."""
    if status not in ("completed", "expired"):
        return {}
    if flow == "weekly_mood":
        low_mood = (10 - p.centre["mood"]) / 4  # a lower mood, higher PHQ-2 items
        drawn = [clip(round(low_mood + rng.choice((-1, 0, 0, 1))), 3) for _ in PHQ2]
        measures: tuple[str, ...] = PHQ2
    else:
        drawn = [clip(p.centre[m] + rng.choice((-2, -1, 0, 0, 0, 1, 2)), 10) for m in DAILY]
        measures = DAILY
    # An expired check-in lacks at least its last answer; a completed one has them all.
    kept = rng.randrange(len(drawn)) if status == "expired" else len(drawn)
    values: dict[str, int | None] = {
        m: v if i < kept else None for i, (m, v) in enumerate(zip(measures, drawn, strict=True))
    }
    if flow == "weekly_mood" and kept == len(drawn):
        values["phq2_total"] = sum(drawn)  # computed once both items are in, as the flow does
    return values


def clip(value: int, top: int) -> int:
    return min(top, max(0, value))


def add_alerts(batch: Batch, p: Profile, s: Setting, rng: random.Random) -> None:
    """About 1 patient in 10 has an unresolved alert (a few two), 1 in 5 a resolved one; the
    year-long patient has a history of them."""
    if p.history_days == YEAR_DAYS:
        plan = [("worsening", 300, "resolved"), ("phq2_positive", 230, "resolved"),
                ("non_response", 198, "resolved"), ("side_effect", 120, "resolved"),
                ("worsening", 60, "resolved"), ("severe", 9, "acknowledged"),
                ("worsening", 2, "open")]  # fmt: skip
    else:
        kinds = rng.sample(sorted(ALERT_SEVERITY), 3)
        plan = []
        if rng.random() < 0.10:
            plan.append((kinds[0], rng.randint(0, 6), rng.choice(("open", "open", "acknowledged"))))
            if rng.random() < 0.25:
                plan.append((kinds[1], rng.randint(0, 6), "open"))
        if rng.random() < 0.20:
            plan.append((kinds[2], rng.randint(8, p.history_days), "resolved"))
    for number, (kind, days_ago, status) in enumerate(plan):
        at = s.now - timedelta(days=days_ago, hours=rng.randint(0, 20))
        add_alert(batch, p, s, alert_ref(p.id * 8 + number), kind, at, status)


def add_alert(
    batch: Batch, p: Profile, s: Setting, ref: str, kind: str, at: datetime, status: str
) -> None:
    acked = at + timedelta(minutes=11) if status != "open" else None
    resolved = at + timedelta(hours=5) if status == "resolved" else None
    evidence = [{"at": at.isoformat(), "rule": kind, "measure": "pain", "value": 8}]
    batch.add(
        "alerts",
        ref=ref,
        patient_id=p.id,
        kind=kind,
        severity=ALERT_SEVERITY[kind],
        status=status,
        evidence=json.dumps(evidence),
        created_at=at,
        updated_at=resolved or acked or at,
        acknowledged_at=acked,
        acknowledged_by_id=s.staff_id if acked else None,
        resolved_at=resolved,
        resolved_by_id=s.staff_id if resolved else None,
        resolution_note="Called the patient; plan agreed." if resolved else None,
    )


def alert_ref(n: int) -> str:
    """A unique ref in the app's own shape, letter-digit three times (192**3 of them)."""
    letters, digits = "ABCDEFGHJKLMNPQRSTUVWXYZ", "23456789"
    pairs = []
    for _ in range(3):
        n, pair = divmod(n, len(letters) * len(digits))
        pairs.append(letters[pair // len(digits)] + digits[pair % len(digits)])
    return "".join(pairs)


# --- loading ------------------------------------------------------------------------------


def create_database(name: str) -> str:
    with psycopg.connect(plain(PG) + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG}/{name}"
    upgrade(url)
    return url


def drop_database(name: str) -> None:
    with psycopg.connect(plain(PG) + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def set_up_program(url: str, now: datetime) -> Setting:
    """The program, its two schedules and the staff member, through the app's own models."""
    db = Database(url)
    try:
        with db.session() as session:
            program = default_program(session, now)
            weekly = Schedule(
                program_id=program.id,
                flow="weekly_mood",
                local_time=time(10),
                days="mon",
                created_at=now,
            )
            staff = StaffUser(
                program_id=program.id,
                email=STAFF_EMAIL,
                name="Bench Clinician",
                role="clinician",
                password_hash=generate_password_hash(STAFF_PASSWORD),
                created_at=now,
            )
            session.add_all([weekly, staff])
            session.flush()
            daily = session.scalar(select(Schedule.id).where(Schedule.flow == "daily_symptoms"))
            assert daily is not None  # default_program creates it
            return Setting(now, program.id, staff.id, daily, weekly.id)
    finally:
        db.dispose()


def load(url: str, patients: int, setting: Setting, seed: int) -> dict[str, int]:
    """COPY every table a chunk of patients at a time; returns rows per table."""
    rng = random.Random(seed)
    ids = {table: itertools.count(1) for table in COLUMNS}
    sids = itertools.count(1)
    totals = dict.fromkeys(COLUMNS, 0)
    with psycopg.connect(plain(url)) as conn:
        for start in range(0, patients, CHUNK):
            batch = Batch(COLUMNS, ids, sids)
            for index in range(start, min(start + CHUNK, patients)):
                add_patient(batch, profile(index, rng), setting, rng)
            copy_batch(conn, batch, totals)
            print(
                f"  loaded {min(start + CHUNK, patients):,}/{patients:,} patients",
                file=sys.stderr,
                flush=True,
            )
        conn.commit()
    finish_load(url, COLUMNS)
    return totals


# --- serving and timing ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    label: str
    path: str


@dataclass(frozen=True)
class Result:
    target: Target
    millis: list[float]  # client wall time
    server: list[float]  # gunicorn's request time, from its access log
    size: int  # bytes of the last response

    def percentile(self, p: int) -> float:
        return _percentile(self.millis, p)

    def server_percentile(self, p: int) -> float:
        return _percentile(self.server, p)


def _percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


# checkin.server.ACCESS_LOG_FORMAT: '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
ACCESS_LINE = re.compile(r'^\S+ "GET (?P<path>/\S*)" (?P<status>\d{3}) \d+ (?P<ms>\d+)ms$')


def server_times(log: str, order: list[str]) -> list[float]:
    """gunicorn's milliseconds for the last requests in the log, which came one at a time in
    `order` (paths without their query strings, as logged). The last ones: a worker writes its
    line after the response, so the warm-up's last line can land after timing began."""
    lines = [m for m in map(ACCESS_LINE.match, log.splitlines()) if m][-len(order) :]
    if [m["path"] for m in lines] != order:
        raise RuntimeError("the access log does not match the requests made")
    return [float(m["ms"]) for m in lines]


def targets(year_patient: int, phone: str) -> list[Target]:
    return [
        Target("floor: `GET /healthz`", "/healthz"),
        Target("patient list, page 1", "/patients"),
        Target("patient list, page 100", "/patients?page=100"),
        Target("patient list, name search", f"/patients?q={NAME_QUERY}"),
        Target("patient list, phone search", f"/patients?q={quote_plus(printed(phone))}"),
        Target("patient list, status filter", "/patients?status=paused"),
        Target("patient page, 30 days", f"/patients/{year_patient}?days=30"),
        Target("patient page, 90 days (default)", f"/patients/{year_patient}"),
        Target("patient page, 365 days", f"/patients/{year_patient}?days=365"),
    ]


def start_server(url: str, workdir: Path) -> tuple[Process, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "CHECKIN_DATABASE_URL": url,
        "CHECKIN_SECRET_KEY": secrets.token_hex(32),
        "CHECKIN_PUBLIC_URL": base,
        "CHECKIN_SMS_BACKEND": "console",
        "CHECKIN_DEMO": "1",  # only so the session cookie is not Secure over plain http
    }
    web = Process(["serve", "--port", str(port), "--workers", "2"], env, workdir, "web")
    try:
        wait_until(lambda: healthy(base), 30, "checkin serve to answer /healthz")
    except AssertionError:
        web.stop()
        raise RuntimeError(f"checkin serve did not start:\n{web.log()}") from None
    return web, base


def sign_in(base: str) -> requests.Session:
    """The real login form: its CSRF token, then the POST that sets the session cookie."""
    client = requests.Session()
    form = client.get(f"{base}/login", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if token is None:
        raise RuntimeError("no csrf_token on /login")
    data = {"csrf_token": token.group(1), "email": STAFF_EMAIL, "password": STAFF_PASSWORD}
    response = client.post(f"{base}/login", data=data, allow_redirects=False, timeout=30)
    if response.status_code != 303:
        raise RuntimeError(f"sign-in failed: HTTP {response.status_code}")
    return client


def fetch(client: requests.Session, url: str) -> tuple[float, int]:
    """Milliseconds and bytes; anything but a 200 (a redirect to /login above all) is fatal,
    or a fast sign-in page would be timed as a fast dashboard."""
    began = perf_counter()
    response = client.get(url, allow_redirects=False, timeout=60)
    elapsed = (perf_counter() - began) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: HTTP {response.status_code}")
    return elapsed, len(response.content)


@dataclass(frozen=True)
class Run:
    results: list[Result]
    cpu_busy: float | None  # share of all cores busy while timing; None off Linux


def cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU time of the whole machine since boot, from /proc/stat."""
    try:
        line = Path("/proc/stat").read_text().split("\n", 1)[0]
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, line.split()[1:9])
    except (OSError, ValueError):
        return None
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return total - idle - iowait, total


def measure(client: requests.Session, base: str, wanted: list[Target], n: int, web: Process) -> Run:
    for _ in range(WARMUP_ROUNDS):
        for target in wanted:
            fetch(client, base + target.path)
    millis: dict[str, list[float]] = {t.path: [] for t in wanted}
    sizes: dict[str, int] = {}
    before = cpu_jiffies()
    for done in range(1, n + 1):
        for target in wanted:
            ms, sizes[target.path] = fetch(client, base + target.path)
            millis[target.path].append(ms)
        if done % 10 == 0 or done == n:
            print(f"  round {done}/{n}", file=sys.stderr, flush=True)
    after = cpu_jiffies()
    busy = None
    if before and after and after[1] > before[1]:
        busy = (after[0] - before[0]) / (after[1] - before[1])
    web.stop()  # flushes the access log
    order = [t.path.split("?")[0] for _ in range(n) for t in wanted]
    logged = server_times(web.log(), order)
    server = {t.path: logged[i :: len(wanted)] for i, t in enumerate(wanted)}
    results = [Result(t, millis[t.path], server[t.path], sizes[t.path]) for t in wanted]
    return Run(results, busy)


# --- the report ------------------------------------------------------------------------------


def render(
    run: Run, patients: int, totals: dict[str, int], load_s: float, n: int, code: str
) -> str:
    results = run.results
    floor_p95 = max(results[0].server_percentile(95), 1.0)  # gunicorn counts whole ms
    lines = [
        f"### Staff dashboard: patient list over {patients:,} patients, patient page over a year",
        "",
        "Served by `checkin serve --workers 2` (gunicorn, sync workers) on PostgreSQL, signed "
        f"in as a clinician; {n} requests per URL after {WARMUP_ROUNDS} warm-up rounds, one at "
        "a time, interleaved round by round. Server time is gunicorn's own (request read to "
        "response written, whole milliseconds, from the access log); client time adds the "
        "HTTP exchange over loopback. The floor is `GET /healthz` on the same gunicorn (one "
        "database round trip, no template); a floor under 1 ms counts as 1 ms. Target: server "
        f"p95 under {TARGET_P95_MS:.0f} ms for both pages.",
        "",
        "| URL | server p50 ms | server p95 ms | p95 / floor p95 | client p95 ms | KiB | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p95 = r.server_percentile(95)
        verdict = "—" if r is results[0] else ("met" if p95 < TARGET_P95_MS else "**missed**")
        lines.append(
            f"| {r.target.label}<br>`{r.target.path}` | {r.server_percentile(50):.0f} | "
            f"{p95:.0f} | {p95 / floor_p95:.1f} | {r.percentile(95):.1f} | "
            f"{r.size / 1024:.0f} | {verdict} |"
        )
    lines += [
        "",
        machine_note(run.cpu_busy),
        "",
        dataset_note(patients, totals, load_s),
        "",
        f"Code: {code}.",
    ]
    return "\n".join(lines)


def machine_note(busy: float | None) -> str:
    if busy is None:
        return "CPU use while timing: not measured (no /proc/stat)."
    cores = os.cpu_count() or 1
    return (
        f"CPU busy while timing: {busy:.0%} of {cores} cores. One request at a time keeps "
        f"about one core busy (client, worker and database take turns), so much above "
        f"{1 / cores:.0%} means other work shared the machine and the times are inflated."
    )


def code_version() -> str:
    """The commit measured, flagged when the app's code differed from it (work in progress)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = git(root, "rev-parse", "--short", "HEAD")
        dirty = git(root, "status", "--porcelain", "--", "checkin", "migrations")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} plus uncommitted changes to checkin/ or migrations/" if dirty else head


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def dataset_note(patients: int, totals: dict[str, int], load_s: float) -> str:
    counts = ", ".join(f"{table} {count:,}" for table, count in totals.items())
    return (
        f"Data, seeded: {patients:,} patients in one program ({LIST_DAYS} days of daily "
        "check-ins each, ~80% completed, 13% expired, some failed or missed; a weekly PHQ-2; "
        "an infusion every ~4 weeks; 8% paused, 5% opted out, 2% undeliverable; ~10% with an "
        f"unresolved alert); the patient page's patient has {YEAR_DAYS} days of the same, a "
        f"STOP/START and seven alerts. Rows: {counts}. COPY, then VACUUM ANALYZE: "
        f"{load_s:.0f} s. Searches: name `{NAME_QUERY}`, a number typed as printed."
    )


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    if args.patients <= PHONE_QUERY_PATIENT:
        parser.error(f"--patients must be more than {PHONE_QUERY_PATIENT}")
    name = f"checkin_bench_dashboard_{os.getpid()}_{secrets.token_hex(3)}"
    web: Process | None = None
    try:
        began = monotonic()
        url = create_database(name)
        print(f"  database {name}: loading {args.patients:,} patients", file=sys.stderr)
        totals = load(url, args.patients, set_up_program(url, datetime.now(UTC)), args.seed)
        load_s = monotonic() - began
        with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as workdir:
            code = code_version()  # what the server is about to load
            web, base = start_server(url, Path(workdir))
            client = sign_in(base)
            wanted = targets(YEAR_PATIENT + 1, phone_for(PHONE_QUERY_PATIENT))
            run = measure(client, base, wanted, args.requests, web)
            if "Traceback" in web.log():
                print(web.log(), file=sys.stderr)
                raise RuntimeError("the server logged a traceback")
    finally:
        if web is not None:
            web.stop()
        drop_database(name)
    report("dashboard", render(run, args.patients, totals, load_s, args.requests, code))
    print(f"  whole run: {monotonic() - began:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
