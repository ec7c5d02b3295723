"""Scheduler dispatch throughput: N due check-ins on PostgreSQL, 1 and 2 worker processes.

Each run: a fresh database with N patients enrolled in New York, every worker's clock set to
09:00:00 local so all N daily check-ins fall due at once, the fake Twilio API in its own
process, no rate limit. Reported: sends per second (first to last send), peak RSS per worker,
duplicates (must be 0), and the ratio against a floor measured in the same run: the official
Twilio client alone, same threads, no database.

    .venv/bin/python -m bench.dispatch [--patients 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from checkin.db import Database
from checkin.migrate import upgrade
from checkin.models import Patient
from checkin.outbox import SEND_CONCURRENCY
from checkin.programs import default_program
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER

PG = os.environ.get("CHECKIN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
CLOCK_START = "2026-03-10T09:00:00-04:00"
CHECKIN = str(Path(sys.executable).parent / "checkin")


def start_fake() -> tuple[subprocess.Popen[bytes], str]:
    """The aiohttp fake API in its own process (see bench/fast_fake.py)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "bench.fast_fake", str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            count_sent(url)
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the fake Twilio API did not start")


def count_sent(base_url: str) -> tuple[int, int]:
    with urllib.request.urlopen(f"{base_url}/_stats", timeout=10) as response:
        data = json.load(response)
    return int(data["sent"]), int(data["distinct_to"])


def fresh_database(name: str, patients: int) -> str:
    admin = PG.replace("+psycopg", "") + "/test"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG}/{name}"
    upgrade(url)
    db = Database(url)
    enrolled = datetime(2026, 3, 1, tzinfo=UTC)
    with db.session() as session:
        program = default_program(session, enrolled)
        session.bulk_insert_mappings(
            Patient,
            [  # type: ignore[arg-type]
                {
                    "program_id": program.id,
                    "phone": f"+1617{2000000 + i}",
                    "name": f"P{i}",
                    "timezone": "America/New_York",
                    "language": "en",
                    "status": "active",
                    "consented_at": enrolled,
                    "enrolled_at": enrolled,
                }
                for i in range(patients)
            ],
        )
    db.dispose()
    return url


def peak_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_workers(url: str, fake_url: str, workers: int, patients: int) -> dict[str, float]:
    env = {
        **os.environ,
        "CHECKIN_DATABASE_URL": url,
        "CHECKIN_SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_BASE_URL": fake_url,
        "CHECKIN_PUBLIC_URL": "https://checkin.example.org",
        "CHECKIN_CLOCK_START": CLOCK_START,
        "CHECKIN_SCHEDULER_TICK_SECONDS": "0.2",
    }
    urllib.request.urlopen(f"{fake_url}/_reset", timeout=10).close()
    start_sent = 0
    procs = [
        subprocess.Popen(
            [CHECKIN, "scheduler"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(workers)
    ]
    began = time.monotonic()
    first_send = last_send = None
    rss = [0] * workers
    last_report = began
    while True:
        sent, _ = count_sent(fake_url)
        sent -= start_sent
        now = time.monotonic()
        if sent and first_send is None:
            first_send = now
        rss = [max(r, peak_rss_kib(p.pid)) for r, p in zip(rss, procs, strict=True)]
        if now - last_report > 5:
            print(f"    {workers} worker(s): {sent:,}/{patients:,} sent", flush=True)
            last_report = now
        if sent >= patients:
            last_send = now
            break
        if now - began > 1800:
            break
        time.sleep(0.1)
    time.sleep(2)  # let workers tick again: a duplicate would show here
    for proc in procs:
        proc.terminate()
        proc.wait(30)
    sent, distinct = count_sent(fake_url)
    sent -= start_sent
    span = (last_send or time.monotonic()) - (first_send or began)
    return {
        "sent": sent,
        "distinct": distinct,
        "seconds": span,
        "per_second": sent / span if span else 0.0,
        "peak_rss_mib": max(rss) / 1024,
    }


def floor(fake_url: str, sends: int) -> float:
    """The official client alone against the same fake: the most any sender could do here."""
    from checkin.transports.twilio_sms import TwilioSms

    sms = TwilioSms(
        ACCOUNT_SID,
        AUTH_TOKEN,
        from_number=FROM_NUMBER,
        messaging_service_sid=None,
        api_base_url=fake_url,
    )
    numbers = [f"+1312{3000000 + i}" for i in range(sends)]
    began = time.monotonic()
    with ThreadPoolExecutor(SEND_CONCURRENCY * 2) as pool:
        list(pool.map(lambda n: sms.send_sms(n, "floor", status_callback=None), numbers))
    return sends / (time.monotonic() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100_000)
    args = parser.parse_args()
    server, fake_url = start_fake()
    rows = []
    try:
        floor_rate = floor(fake_url, min(20_000, args.patients))
        print(f"  floor (client alone, 2 processes' worth of threads): {floor_rate:,.0f}/s")
        for workers in (1, 2):
            url = fresh_database(f"checkin_bench_dispatch_{workers}", args.patients)
            print(f"  {workers} worker(s), {args.patients:,} due check-ins", flush=True)
            result = run_workers(url, fake_url, workers, args.patients)
            result["duplicates"] = result["sent"] - result["distinct"] if workers else 0
            rows.append((workers, result))
    finally:
        server.terminate()
        server.wait(10)
    print_table(args.patients, floor_rate, rows)


def print_table(patients: int, floor_rate: float, rows: list[tuple[int, dict[str, float]]]) -> None:
    lines = [
        f"### Scheduler dispatch: {patients:,} due check-ins on PostgreSQL",
        "",
        f"Floor, measured in the same run: the official Twilio client alone, "
        f"{SEND_CONCURRENCY * 2} threads, no database: **{floor_rate:,.0f} sends/s**.",
        "",
        "| workers | sends/s | ratio to floor | peak RSS per worker | duplicates |",
        "|---|---|---|---|---|",
    ]
    for workers, r in rows:
        lines.append(
            f"| {workers} | {r['per_second']:,.0f} | {r['per_second'] / floor_rate:.2f} | "
            f"{r['peak_rss_mib']:.0f} MiB | {r['sent'] - r['distinct']:.0f} |"
        )
    report("dispatch", "\n".join(lines))


def report(name: str, markdown: str) -> None:
    """Print a section and keep it in docs/benchmarks.md under its own heading."""
    print()
    print(markdown)
    path = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    sections = _sections(path.read_text() if path.exists() else "")
    stamp = (
        f"<!-- {name} -->\n{markdown}\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}), command: `{' '.join(sys.argv)}`.\n"
    )
    sections[name] = stamp
    header = (
        "# Benchmarks\n\nProduced by `make bench`; each figure is set against a floor "
        "measured in the same run, so ratios hold on a noisy machine.\n\n"
    )
    path.write_text(header + "\n".join(sections[k] for k in sorted(sections)))


def _sections(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    parts = text.split("<!-- ")
    for part in parts[1:]:
        name, _, rest = part.partition(" -->")
        found[name] = f"<!-- {name} -->{rest}".rstrip() + "\n"
    return found


if __name__ == "__main__":
    main()
