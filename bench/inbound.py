"""Inbound replies: signed Twilio webhooks mid-conversation, `checkin serve` against a floor.

Each run: a fresh PostgreSQL database (a name of its own, dropped at the end even on failure),
migrated, then bulk-loaded (bench/inbound_data.py): N patients, each with an open
daily_symptoms check-in whose first question went out 20 minutes ago and four weeks of history.
Every request is the webhook Twilio would send for one patient's reply (every form field, a
unique MessageSid, a number 0-10 near the patient's usual, signed for CHECKIN_PUBLIC_URL +
/twilio/sms): fatigue, then pain, then mood, so each reply is parsed, stored, judged by the
trend rules and answered with the next question in TwiML (the third completes the check-in).

Two servers run side by side on loopback, both gunicorn with the same sync workers:
`checkin serve --workers N`, and the floor (bench/floor_app.py: verify the signature, insert
one row, one-message TwiML), fed the same requests. bench/loadgen.py, in its own process,
measures the generator's own ceiling against a trivial server, then, for each server:
closed loop (fixed connections, requests/s; floor and checkin alternate round by round, so a
noisy moment falls on both) and open loop (a constant rate on a fixed clock, latency from
the scheduled send time). gunicorn's own server time comes from each access log.

Afterwards: every response a 200 with TwiML, every MessageSid stored exactly once with its
answer and reply; then the webhook is profiled in-process (cProfile) to say where time goes.

    .venv/bin/python -m bench.inbound [--patients 5000] [--workers 2] [--rate 200]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import psycopg
from sqlalchemy import create_engine
from twilio.request_validator import RequestValidator

from bench import inbound_data as data
from bench.dashboard import code_version, create_database, drop_database
from bench.dispatch import report
from bench.floor_app import TABLE as FLOOR_TABLE
from bench.floor_app import create_table
from bench.inbound_profile import ProfileSummary, profile_webhook
from bench.loadgen import NO_ANSWER
from checkin.config import Settings, load_settings
from checkin.server import ACCESS_LOG_FORMAT
from checkin.simulate import twilio_inbound_params
from tests.procs import CHECKIN, base_env, free_port

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
TARGET_RATIO = 0.5  # checkin's requests/s against the floor's, closed loop
TARGET_P99_MS = 100.0  # at the open-loop rate
GROUP = 300  # patients per group of the request order: one patient's replies are ~900 apart
QUIET_S = 1.0  # a worker logs after it answers: a log this long unchanged means idle
DRAIN_TIMEOUT_S = 300.0  # an overloaded server works through its backlog after clients leave
BOOT_TIMEOUT_S = 60.0
CEILING_REQUESTS = 4000  # against the trivial server: a few seconds at the generator's pace
PROFILE_WARMUP = 30  # in-process replies before timing: imports, caches, the pool


# --- the requests ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    sid: str
    phone: str
    body: str
    patient_id: int
    step: int  # 0 fatigue, 1 pain, 2 mood


def plan_replies(everyone: list[data.Person], rng: random.Random) -> list[Reply]:
    """All replies in sending order, pipelined: patients in groups of GROUP; wave w sends
    group w's first answers, group w-1's second and group w-2's third, interleaved one by
    one. Any stretch of the order mixes the three questions evenly, and a patient's next
    reply comes a whole wave (about 3 x GROUP requests) after the last, seconds later even
    at the open loop's rate, so a patient's replies are not in flight together unless the
    server falls that far behind (then its row lock takes them in turn)."""
    groups = [everyone[i : i + GROUP] for i in range(0, len(everyone), GROUP)]
    answers = {p.id: [p.answer(m, rng) for m in data.MEASURES] for p in everyone}
    steps = len(data.MEASURES)
    order: list[Reply] = []
    for wave in range(len(groups) + steps - 1):
        lanes = [(s, groups[wave - s]) for s in range(steps) if 0 <= wave - s < len(groups)]
        for j in range(GROUP):
            for step, members in lanes:
                if j < len(members):
                    p = members[j]
                    sid = f"SM{secrets.token_hex(16)}"
                    order.append(Reply(sid, p.phone, str(answers[p.id][step]), p.id, step))
    return order


def inbound_form(settings: Settings, reply: Reply) -> dict[str, str]:
    """Every field Twilio posts for this reply (the signature goes in the header)."""
    return twilio_inbound_params(settings, reply.phone, reply.body, reply.sid)


def raw_requests(base: str, token: str, forms: Sequence[dict[str, str]]) -> list[bytes]:
    """Complete HTTP requests, signed for `base` + /twilio/sms as Twilio signs them."""
    validator = RequestValidator(token)
    url = f"{base}/twilio/sms"
    host = base.removeprefix("http://")
    out = []
    for form in forms:
        body = urlencode(form).encode()
        head = (
            f"POST /twilio/sms HTTP/1.1\r\nHost: {host}\r\nUser-Agent: TwilioProxy/1.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {validator.compute_signature(url, form)}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


# --- the servers -------------------------------------------------------------------------


class Server:
    """A gunicorn (or any) process group whose output goes to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log: IO[str] = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            env=base_env(env),
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self, since: int = 0) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            f.seek(since)
            return f.read()

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def wait_for(self, pattern: str, count: int, timeout: float = BOOT_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.log())) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()  # the caller never gets hold of a server that did not start
                raise RuntimeError(f"{self.name} did not start:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def wait_quiet(self) -> None:
        """Until the log stops growing: the last lines are in, and requests a timed-out
        client left in the listen queue have been worked through (they still write)."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        size = -1
        while size != self.log_size() and time.monotonic() < deadline:
            size = self.log_size()
            time.sleep(QUIET_S)

    def pids(self) -> list[int]:
        """The master and the workers it booted (whose CPU the generator samples)."""
        workers = re.findall(r"Booting worker with pid: (\d+)", self.log())
        return [self.proc.pid, *map(int, workers)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)
        self._log.close()


def checkin_env(url: str, base: str, token: str) -> dict[str, str]:
    return {
        "CHECKIN_DATABASE_URL": url,
        "CHECKIN_SECRET_KEY": secrets.token_hex(32),
        "CHECKIN_PUBLIC_URL": base,
        "CHECKIN_SMS_BACKEND": "console",  # pages are printed, nothing is sent
        "TWILIO_AUTH_TOKEN": token,  # real signatures, checked as in production
    }


def start_checkin(env: dict[str, str], port: int, workers: int, workdir: Path) -> Server:
    argv = [CHECKIN, "serve", "--port", str(port), "--workers", str(workers)]
    server = Server("checkin", argv, env, workdir)
    server.wait_for(r"Booting worker with pid", workers)
    return server


def floor_env(url: str, port: int, token: str) -> dict[str, str]:
    return {
        "BENCH_FLOOR_DATABASE_URL": url,
        "BENCH_FLOOR_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "BENCH_FLOOR_AUTH_TOKEN": token,
    }


def start_floor(env: dict[str, str], port: int, workers: int, workdir: Path) -> Server:
    engine = create_engine(env["BENCH_FLOOR_DATABASE_URL"])
    create_table(engine)
    engine.dispose()
    # checkin.server's settings: sync workers, a 30 s timeout, the same access log.
    argv = [GUNICORN, "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--timeout", "30"]
    argv += ["--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT]
    argv += ["--pythonpath", str(ROOT), "bench.floor_app:create_app()"]
    server = Server("floor", argv, env, workdir)
    server.wait_for(r"Booting worker with pid", workers)
    return server


def start_trivial(port: int, workdir: Path) -> Server:
    argv = [sys.executable, "-m", "bench.loadgen", "trivial", str(port)]
    server = Server("trivial", argv, {"PYTHONPATH": str(ROOT)}, workdir)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"the trivial server did not start:\n{server.log()}") from None
            time.sleep(0.05)


# --- one timed run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: int
    twiml: bool
    latency_ms: float
    lag_ms: float
    error: str


@dataclass(frozen=True)
class Timed:
    """One load run against one server."""

    label: str
    mode: str  # closed, open
    outcomes: list[Outcome]
    wall_s: float
    own_cpu_s: float
    cores: dict[str, float]  # cores busy while timing: machine, server, postgres, generator
    server_ms: list[float]  # gunicorn's own, from the access log

    @property
    def rps(self) -> float:
        """Requests answered (200 with TwiML) per second, first send to last answer."""
        return sum(1 for o in self.outcomes if o.status == 200 and o.twiml) / self.wall_s

    def cpu_ms(self, group: str) -> float:
        """CPU milliseconds per request that `group` spent in the window: unlike requests
        per second, this barely moves when other work shares the machine."""
        answered = sum(1 for o in self.outcomes if o.status == 200 and o.twiml)
        return self.cores.get(group, 0.0) * self.wall_s * 1000 / max(answered, 1)

    def latency(self, p: int) -> float:
        return percentile([o.latency_ms for o in self.outcomes], p)

    def server(self, p: int) -> float:
        return percentile(self.server_ms, p) if len(self.server_ms) > 1 else float("nan")

    def failures(self) -> Counter[str]:
        """What went wrong, by kind: an HTTP status, a 200 without TwiML, or no answer."""
        return Counter(
            o.error or f"HTTP {o.status}" if o.status != 200 else "200 without TwiML"
            for o in self.outcomes
            if o.status != 200 or not o.twiml
        )

    def unanswered(self) -> int:
        """Requests the generator gave up on after loadgen.TIMEOUT_S: overload, not a bug."""
        return sum(1 for o in self.outcomes if o.error.startswith(NO_ANSWER))


def percentile(values: Sequence[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


# checkin.server.ACCESS_LOG_FORMAT: '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
ACCESS_LINE = re.compile(r'^\S+ "POST /twilio/sms" \d{3} \S+ (?P<ms>\d+)ms$', re.MULTILINE)


def load_run(
    label: str,
    server: Server,
    port: int,
    payloads: list[bytes],
    workdir: Path,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
) -> Timed:
    """One bench/loadgen.py process: closed loop with `concurrency`, or open at `rate`."""
    mode = "closed" if rate is None else "open"
    requests_file, out = workdir / f"{label}.pickle", workdir / f"{label}.json"
    requests_file.write_bytes(pickle.dumps(payloads))
    server.wait_quiet()
    offset = server.log_size()
    argv = [sys.executable, "-m", "bench.loadgen", mode, str(requests_file), "127.0.0.1"]
    argv += [str(port), str(out), "--watch", ",".join(map(str, server.pids()))]
    argv += ["--concurrency", str(concurrency or 1), "--rate", str(rate or 1)]
    subprocess.run(argv, cwd=ROOT, check=True)
    server.wait_quiet()
    result = json.loads(out.read_text())
    return Timed(
        label,
        mode,
        [Outcome(**o) for o in result["outcomes"]],
        result["wall_s"],
        result["own_cpu_s"],
        cores_used(result),
        [float(m["ms"]) for m in ACCESS_LINE.finditer(server.log(offset))],
    )


def cores_used(result: dict[str, Any]) -> dict[str, float]:
    """Each CPU user's share of the window, in cores: the machine, the server's processes,
    PostgreSQL (every database's backends, others' too) and the generator itself. A process
    that started inside the window counts from zero; one that ended inside it is missed."""
    before, after = result["cpu_before"], result["cpu_after"]
    total = after["machine_total"] - before["machine_total"]
    cores = os.cpu_count() or 1
    if total <= 0:
        return {}

    def used(group: str) -> float:
        ticks = sum(t - before[group].get(pid, 0) for pid, t in after[group].items())
        return float(ticks / total * cores)

    window_s = total / os.sysconf("SC_CLK_TCK") / cores
    return {
        "machine": (after["machine_busy"] - before["machine_busy"]) / total * cores,
        "server": used("server"),
        "postgres": used("postgres"),
        "generator": result["own_cpu_s"] / window_s,
    }


def say(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def describe(run: Timed) -> str:
    return (
        f"{run.label}: {len(run.outcomes):,} requests, {run.rps:,.0f}/s, p50 "
        f"{run.latency(50):.1f} p99 {run.latency(99):.1f} ms, CPU busy "
        f"{run.cores.get('machine', 0):.2f} cores, {sum(run.failures().values())} failed"
    )


# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    warmup: int
    rounds: int
    per_round: int
    concurrency: int
    rate: float
    seconds: float
    ceiling: int

    @property
    def open_count(self) -> int:
        return int(self.rate * self.seconds)

    @property
    def used(self) -> int:
        """Requests each server gets: warm-up, closed rounds, the open run."""
        return self.warmup + self.rounds * self.per_round + self.open_count


@dataclass(frozen=True)
class Runs:
    ceiling: Timed
    warmup: dict[str, Timed]
    closed: dict[str, list[Timed]]
    open: dict[str, Timed]

    def every(self) -> list[Timed]:
        closed = [run for runs in self.closed.values() for run in runs]
        return [self.ceiling, *self.warmup.values(), *closed, *self.open.values()]

    def answered(self, name: str) -> list[bool]:
        """Per reply sent to `name`, in sending order: a 200 with TwiML or not."""
        runs = [self.warmup[name], *self.closed[name], self.open[name]]
        return [o.status == 200 and o.twiml for run in runs for o in run.outcomes]


def measure(
    plan: Plan,
    servers: dict[str, tuple[Server, int, list[bytes]]],
    workdir: Path,
    ceiling: Timed,
) -> Runs:
    runs = Runs(ceiling, {}, {name: [] for name in servers}, {})
    for name, (server, port, payloads) in servers.items():
        say(f"warm-up: {plan.warmup} requests to {name}")
        warm = payloads[: plan.warmup]
        runs.warmup[name] = load_run(f"{name}-warmup", server, port, warm, workdir, concurrency=8)
    for r in range(plan.rounds):
        start = plan.warmup + r * plan.per_round
        for name, (server, port, payloads) in servers.items():
            segment = payloads[start : start + plan.per_round]
            label = f"{name}-closed-{r + 1}"
            run = load_run(label, server, port, segment, workdir, concurrency=plan.concurrency)
            say(describe(run))
            runs.closed[name].append(run)
    start = plan.warmup + plan.rounds * plan.per_round
    for name, (server, port, payloads) in servers.items():
        segment = payloads[start : start + plan.open_count]
        say(f"{name}: open loop, {plan.rate:.0f}/s for {plan.seconds:.0f} s")
        run = load_run(f"{name}-open", server, port, segment, workdir, rate=plan.rate)
        say(describe(run))
        runs.open[name] = run
    return runs


def merged(runs: list[Timed]) -> Timed:
    """Closed-loop rounds as one run: all requests over the summed time."""
    cores: dict[str, float] = {}
    wall = sum(r.wall_s for r in runs)
    for key in runs[0].cores:
        cores[key] = sum(r.cores.get(key, 0) * r.wall_s for r in runs) / wall
    return Timed(
        runs[0].label.rsplit("-", 1)[0],
        "closed",
        [o for r in runs for o in r.outcomes],
        wall,
        sum(r.own_cpu_s for r in runs),
        cores,
        [ms for r in runs for ms in r.server_ms],
    )


def ceiling_run(plan: Plan, payloads: list[bytes], workdir: Path) -> Timed:
    port = free_port()
    trivial = start_trivial(port, workdir)
    try:
        run = load_run(
            "generator-ceiling",
            trivial,
            port,
            payloads[: plan.ceiling],
            workdir,
            concurrency=plan.concurrency,
        )
    finally:
        trivial.stop()
    say(describe(run))
    return run


# --- correctness ------------------------------------------------------------------------------


def check_responses(runs: Iterable[Timed]) -> list[str]:
    """Every answer that was not a 200 with TwiML; a request that got no answer in time is
    reported in the table instead (the server was overloaded, nothing was refused)."""
    problems = []
    for run in runs:
        for failure, count in run.failures().most_common():
            if not failure.startswith(NO_ANSWER):
                problems.append(f"{run.label}: {count} x {failure}")
    return problems


def check_checkin(url: str, sent: list[Reply], answered: list[bool]) -> list[str]:
    """Every reply answered with a 200: its MessageSid stored once, linked to the check-in,
    with one answer and one reply; every patient whose three replies were answered has a
    completed check-in. (A reply whose client gave up may or may not have been stored later:
    the generator's failures already report it.)"""
    sids = [r.sid for r, ok in zip(sent, answered, strict=True) if ok]
    with psycopg.connect(data.plain(url)) as conn:
        stored, distinct, linked = conn.execute(
            "SELECT count(*), count(DISTINCT twilio_sid), count(checkin_id) FROM messages "
            "WHERE direction = 'inbound' AND twilio_sid = ANY(%s)",
            (sids,),
        ).fetchone() or (0, 0, 0)
        answers = one(
            conn,
            "SELECT count(*) FROM answers a JOIN messages m ON m.id = a.message_id "
            "WHERE m.twilio_sid = ANY(%s) AND a.status = 'answered'",
            sids,
        )
        replies = one(
            conn,
            "SELECT count(*) FROM messages WHERE idempotency_key = ANY(%s)",
            [f"reply:{sid}:0" for sid in sids],
        )
        finished = fully_answered(sent, answered)
        completed = one(
            conn,
            "SELECT count(*) FROM checkins WHERE status = 'completed' "
            "AND patient_id = ANY(%s) AND expires_at > now()",
            finished,
        )
    expected = {
        "inbound messages stored": (stored, len(sids)),
        "distinct MessageSids stored": (distinct, len(sids)),
        "inbound messages linked to their check-in": (linked, len(sids)),
        "answers stored from them": (answers, len(sids)),
        "TwiML replies recorded": (replies, len(sids)),
        "check-ins completed by a third answer": (completed, len(finished)),
    }
    wrong = {what: counts for what, counts in expected.items() if counts[0] != counts[1]}
    return [f"checkin: {what}: {got:,}, expected {want:,}" for what, (got, want) in wrong.items()]


def fully_answered(sent: list[Reply], answered: list[bool]) -> list[int]:
    """Patients all of whose replies were sent and answered."""
    steps: Counter[int] = Counter()
    failed = set()
    for reply, ok in zip(sent, answered, strict=True):
        steps[reply.patient_id] += 1
        if not ok:
            failed.add(reply.patient_id)
    return [p for p, n in steps.items() if n == len(data.MEASURES) and p not in failed]


def check_floor(url: str, sent: list[Reply], answered: list[bool]) -> list[str]:
    sids = [r.sid for r, ok in zip(sent, answered, strict=True) if ok]
    with psycopg.connect(data.plain(url)) as conn:
        rows = one(conn, f"SELECT count(*) FROM {FLOOR_TABLE} WHERE message_sid = ANY(%s)", sids)
    return [] if rows == len(sids) else [f"floor: {rows:,} rows stored, expected {len(sids):,}"]


def one(conn: psycopg.Connection[Any], sql: str, values: list[Any]) -> int:
    row = conn.execute(sql, (values,)).fetchone()
    return int(row[0]) if row else 0


def tracebacks(servers: Iterable[Server]) -> list[str]:
    return [f"{s.name}: the server logged a traceback" for s in servers if "Traceback" in s.log()]


# --- the report ------------------------------------------------------------------------------


def row(label: str, run: Timed, ratio: str, verdict: str) -> str:
    server = "/".join(f"{run.server(p):.0f}" for p in (50, 95, 99)) if run.server_ms else "—"
    # A server still working through a backlog after the window closed: its CPU is not all
    # inside the window, so per request it would read low.
    cpu = f"{run.cpu_ms('server'):.1f} / {run.cpu_ms('postgres'):.1f}"
    return (
        f"| {label} | {len(run.outcomes):,} | {run.rps:,.0f} | {run.latency(50):,.1f} | "
        f"{run.latency(95):,.1f} | {run.latency(99):,.1f} | {server} | "
        f"{'—' if run.unanswered() else cpu} | {run.unanswered():,} | {ratio} | {verdict} |"
    )


def verdict(ok: bool, text: str) -> str:
    return f"{text}: met" if ok else f"{text}: **missed**"


def render(
    args: argparse.Namespace,
    plan: Plan,
    runs: Runs,
    found: ProfileSummary,
    problems: list[str],
    notes: dict[str, str],
) -> str:
    floor, checkin = merged(runs.closed["floor"]), merged(runs.closed["checkin"])
    ratio = checkin.rps / floor.rps
    p99 = runs.open["checkin"].latency(99)
    per_round = ", ".join(
        f"{c.rps / f.rps:.2f}"
        for f, c in zip(runs.closed["floor"], runs.closed["checkin"], strict=True)
    )
    lines = [
        f"### Inbound replies: signed Twilio webhooks mid-conversation, {args.patients:,} "
        "patients on PostgreSQL",
        "",
        intro(args, plan),
        "",
        "| run | requests | req/s | p50 ms | p95 ms | p99 ms | server p50/p95/p99 ms | "
        "CPU ms per request: server / PostgreSQL | no answer in 30 s | checkin / floor | "
        "target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        row(f"floor, closed loop, {plan.concurrency} connections", floor, "", "—"),
        row(
            f"**checkin**, closed loop, {plan.concurrency} connections",
            checkin,
            f"**{ratio:.2f}** (rounds: {per_round})",
            verdict(ratio >= TARGET_RATIO, f"≥ {TARGET_RATIO:.2f} of the floor"),
        ),
        row(f"floor, open loop, {plan.rate:.0f}/s", runs.open["floor"], "", "—"),
        row(
            f"**checkin**, open loop, {plan.rate:.0f}/s",
            runs.open["checkin"],
            "",
            verdict(p99 < TARGET_P99_MS, f"p99 < {TARGET_P99_MS:.0f} ms"),
        ),
        row(
            "generator ceiling: trivial asyncio server, closed loop",
            runs.ceiling,
            "",
            "—",
        ),
        "",
        summary(ratio, p99, plan, checkin.rps),
        "",
        cpu_note([runs.ceiling, floor, checkin, runs.open["floor"], runs.open["checkin"]]),
        "",
        capacity_note(floor, checkin),
        "",
        lag_note(runs.open),
        "",
        correctness_note(problems, runs),
        "",
        f"During the load the replies' alerts paged the on-call clinician {notes['pages']} "
        "times (texts printed by the console backend, after each response).",
        "",
        found.markdown(),
        "",
        notes["data"],
        "",
        f"Code: {notes['code']}. Whole run {notes['elapsed']}.",
    ]
    return "\n".join(lines)


def intro(args: argparse.Namespace, plan: Plan) -> str:
    cores = "this machine's cores" if args.workers == os.cpu_count() else "not the cores"
    return (
        f"`checkin serve --workers {args.workers}` (gunicorn, sync workers; {args.workers} = "
        f"{cores}) with "
        "`CHECKIN_SMS_BACKEND=console`, a real `TWILIO_AUTH_TOKEN` and `CHECKIN_PUBLIC_URL` "
        "its own address. Each request is the webhook Twilio sends for one reply (every form "
        "field, a unique MessageSid, a number 0-10 near the patient's usual, signed for "
        "`CHECKIN_PUBLIC_URL/twilio/sms`) answering the question the patient's open "
        "daily_symptoms check-in asked: fatigue, then pain, then mood, so each is parsed, "
        "stored, judged by the trend rules over four weeks of history and answered with TwiML; "
        "the third completes the check-in. The floor, same run and same requests: "
        "`bench/floor_app.py` under the same gunicorn (same worker count and class): verify the "
        "signature, insert one row, one-message TwiML. The load comes from `bench/loadgen.py` "
        "in its own process (raw asyncio, a new connection per request, as sync workers close "
        f"them). Closed loop: {plan.concurrency} connections, each sending as soon as it is "
        f"answered, {plan.rounds} rounds of {plan.per_round:,} requests with floor and checkin "
        f"alternating. Open loop: {plan.rate:.0f} requests/s on a fixed clock for "
        f"{plan.seconds:.0f} s, latency from each request's scheduled send time (so queueing "
        "counts). req/s: requests answered over the time from the first send to the last "
        "answer. Latency is client-side, request sent to TwiML read; server time is gunicorn's "
        "own, request read to response written, from its access log (whole ms). CPU per "
        "request: each group's CPU time in the window over the requests answered. "
        f"{plan.warmup} warm-up requests per server first."
    )


def summary(ratio: float, p99: float, plan: Plan, most: float) -> str:
    throughput = "met" if ratio >= TARGET_RATIO else "**missed**"
    latency = "met" if p99 < TARGET_P99_MS else "**missed**"
    text = (
        f"Targets: throughput {ratio:.0%} of the floor (at least {TARGET_RATIO:.0%}): "
        f"{throughput}. p99 at {plan.rate:.0f} requests/s: {p99:,.0f} ms (under "
        f"{TARGET_P99_MS:.0f} ms): {latency}."
    )
    if most < plan.rate:
        text += (
            f" checkin's most in the closed loop, {most:,.0f} requests/s, is below the "
            f"{plan.rate:.0f}/s offered, so in the open loop the queue grows for the whole "
            "run and its latency is mostly waiting (a request unanswered after 30 s counts "
            "as 30 s)."
        )
    return text


def cpu_note(runs: list[Timed]) -> str:
    cores = os.cpu_count() or 1
    parts = []
    for run in runs:
        c = run.cores
        other = c["machine"] - c["server"] - c["postgres"] - c["generator"]
        parts.append(
            f"{run.label} {c['machine'] / cores:.0%} (server {c['server']:.2f}, PostgreSQL "
            f"{c['postgres']:.2f}, generator {c['generator']:.2f}, other {max(other, 0):.2f})"
        )
    return (
        f"CPU busy while timing, share of {cores} cores (in cores: the server's processes, "
        "every PostgreSQL backend, the generator, the rest of the machine): "
        + "; ".join(parts)
        + ". Closed loop should fill the machine; 'other' is work that shared it (another "
        "engineer's tests) and slows both servers alike."
    )


def capacity_note(floor: Timed, checkin: Timed) -> str:
    """What each server could do with the whole machine to itself, from its CPU per request
    (server processes plus PostgreSQL): an estimate, for reading numbers taken on a busy
    machine, not a measurement."""
    cores = os.cpu_count() or 1

    def most(run: Timed) -> float:
        return cores * 1000 / (run.cpu_ms("server") + run.cpu_ms("postgres"))

    return (
        f"From CPU per request (closed loop), with all {cores} cores to itself and no load "
        f"generator on them, checkin could serve about {most(checkin):,.0f} requests/s and the "
        f"floor about {most(floor):,.0f} (ratio {most(checkin) / most(floor):.2f}): an "
        "estimate that ignores waits, for reading figures measured on a shared machine."
    )


def lag_note(runs: dict[str, Timed]) -> str:
    parts = [
        f"{name} p99 {percentile([o.lag_ms for o in run.outcomes], 99):.1f} ms, max "
        f"{max(o.lag_ms for o in run.outcomes):.1f} ms"
        for name, run in runs.items()
    ]
    return (
        "The generator's own clock in the open loop (how late a send left after its "
        "scheduled time, already inside the latencies above): " + "; ".join(parts) + "."
    )


def correctness_note(problems: list[str], runs: Runs) -> str:
    if problems:
        return "Correctness: **FAILED**: " + "; ".join(problems) + "."
    counts = {name: runs.answered(name) for name in runs.closed}
    answered = ", ".join(f"{name} {sum(ok):,} of {len(ok):,}" for name, ok in counts.items())
    return (
        f"Correctness, checked after the run: every answer was a 200 with TwiML and a message "
        f"(answered: {answered}; the rest got no answer within 30 s, counted in the table); "
        "on checkin every answered MessageSid is stored exactly once, linked to its check-in, "
        "with its answer and its TwiML reply recorded, and every patient whose three replies "
        "were answered has a completed check-in; the floor stored every answered MessageSid "
        "once."
    )


def data_note(args: argparse.Namespace, totals: dict[str, int], load_s: float) -> str:
    counts = ", ".join(f"{table} {count:,}" for table, count in totals.items())
    return (
        f"Data, seeded: {args.patients:,} patients in four US time zones, each with an open "
        "daily_symptoms check-in (first question sent 20 minutes before) and "
        f"{args.history_days} days of history ({data.COMPLETED_SHARE:.0%} completed with "
        "three answers and the texts both ways, the rest expired unanswered), an infusion "
        "every 28 days, one clinician on call (alerts the replies raise page her, printed by "
        f"the console backend). Rows: {counts}. COPY, then VACUUM ANALYZE: {load_s:.0f} s."
    )


# --- main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--patients", type=int, default=5_000)
    parser.add_argument("--history-days", type=int, default=28)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--profile-requests", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2026)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    plan = Plan(
        args.warmup,
        args.rounds,
        args.per_round,
        args.concurrency,
        args.rate,
        args.seconds,
        CEILING_REQUESTS,
    )
    everyone = data.people(args.patients, random.Random(args.seed))
    replies = plan_replies(everyone, random.Random(args.seed + 1))
    needed = plan.used + PROFILE_WARMUP + 2 * args.profile_requests
    if needed > len(replies):
        sys.exit(f"--patients {args.patients} gives {len(replies):,} replies; {needed:,} needed")
    name = f"checkin_bench_inbound_{os.getpid()}_{secrets.token_hex(3)}"
    began = time.monotonic()
    try:
        url = create_database(name)
        say(f"database {name}: loading {args.patients:,} patients")
        setting = data.set_up_program(url, datetime.now(UTC), args.history_days)
        totals = data.load(url, everyone, setting, random.Random(args.seed + 2))
        notes = {"data": data_note(args, totals, time.monotonic() - began), "code": code_version()}
        with tempfile.TemporaryDirectory(prefix="bench-inbound-") as tmp:
            served = serve_and_measure(args, plan, url, replies, Path(tmp))
        sent, runs = replies[: plan.used], served.runs
        problems = served.problems + check_checkin(url, sent, runs.answered("checkin"))
        problems += check_floor(url, sent, runs.answered("floor"))
        notes["pages"] = f"{served.pages:,}"
        say("profiling the webhook in-process")
        settings = load_settings(served.env)
        later = [inbound_form(settings, r) for r in replies[plan.used : needed]]
        found = profile_webhook(served.env, served.floor_env, later, PROFILE_WARMUP)
    finally:
        drop_database(name)
    notes["elapsed"] = f"{time.monotonic() - began:.0f} s"
    report("inbound", render(args, plan, runs, found, problems, notes))
    say(f"whole run: {notes['elapsed']}")
    if problems:
        sys.exit("correctness problems: " + "; ".join(problems))


@dataclass(frozen=True)
class Served:
    runs: Runs
    env: dict[str, str]  # checkin's
    floor_env: dict[str, str]
    problems: list[str]  # failed requests, tracebacks in the logs
    pages: int  # texts to the on-call clinician, printed by the console backend


def serve_and_measure(
    args: argparse.Namespace, plan: Plan, url: str, replies: list[Reply], workdir: Path
) -> Served:
    """Both servers up side by side, every load run, both servers down."""
    token = secrets.token_hex(16)
    checkin_port, floor_port = free_port(), free_port()
    env = checkin_env(url, f"http://127.0.0.1:{checkin_port}", token)
    floor = floor_env(url, floor_port, token)
    settings = load_settings(env)
    say(f"signing {plan.used:,} requests for each server")
    forms = [inbound_form(settings, r) for r in replies[: plan.used]]
    payloads = {
        "floor": raw_requests(f"http://127.0.0.1:{floor_port}", token, forms),
        "checkin": raw_requests(f"http://127.0.0.1:{checkin_port}", token, forms),
    }
    say("the generator's ceiling, against a trivial server")
    ceiling = ceiling_run(plan, payloads["checkin"], workdir)
    say(f"starting both servers, {args.workers} workers each")
    servers: list[Server] = []
    try:
        servers.append(start_floor(floor, floor_port, args.workers, workdir))
        servers.append(start_checkin(env, checkin_port, args.workers, workdir))
        by_name = {
            "floor": (servers[0], floor_port, payloads["floor"]),
            "checkin": (servers[1], checkin_port, payloads["checkin"]),
        }
        runs = measure(plan, by_name, workdir, ceiling)
    finally:
        for server in servers:
            server.stop()
    pages = len(re.findall(r"^\[sms to ", servers[1].log(), re.MULTILINE))
    problems = check_responses(runs.every()) + tracebacks(servers)
    return Served(runs, env, floor, problems, pages)


if __name__ == "__main__":
    main()
