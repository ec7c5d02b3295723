"""A wrk-style HTTP load generator for bench/inbound.py, run in its own process.

Requests are precomputed bytes (signed webhooks, `Connection: close`) sent over raw asyncio
streams: no HTTP client library in the loop, so the generator costs little CPU on a machine
it shares with the server and the database. gunicorn's sync workers close every connection
anyway, so a fresh connection per request is what the server sees from Twilio too.

- closed: a fixed number of connections, each sending its next request as soon as the last
  one answered; gives the most requests per second the server sustains.
- open: sends on a fixed clock (request i at start + i / rate) whether or not earlier ones
  have answered, and measures latency from the scheduled time, so a server that falls behind
  shows its queueing instead of slowing the generator down (no coordinated omission).
- trivial: a server that answers every request with a fixed TwiML at once, for measuring the
  generator's own ceiling.

    python -m bench.loadgen closed REQUESTS.pickle HOST PORT OUT.json --concurrency 32
    python -m bench.loadgen open REQUESTS.pickle HOST PORT OUT.json --rate 200
    python -m bench.loadgen trivial PORT

The timed window's CPU use (the machine's, the watched server processes', PostgreSQL's and
this process's own) is sampled here, at the window's edges, so process start-up and pickling
are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

TIMEOUT_S = 30.0  # gunicorn's own timeout in `checkin serve`; Twilio gives up after 15 s
NO_ANSWER = "no answer within"  # how a timed-out request's error begins
TRIVIAL_BODY = b'<?xml version="1.0" encoding="UTF-8"?><Response><Message>ok</Message></Response>'


@dataclass
class Outcome:
    """One request: status 0 means no HTTP answer (`error` says why)."""

    status: int
    twiml: bool  # the body is a TwiML <Response> with a <Message>
    latency_ms: float  # closed: from the send; open: from the scheduled send time
    lag_ms: float  # open: how late the send left after its scheduled time
    error: str = ""


@dataclass
class CpuSample:
    """Clock ticks since boot: the machine's busy and total, and per process."""

    machine_busy: int
    machine_total: int
    server: dict[str, int] = field(default_factory=dict)  # pid (JSON keys are str): ticks
    postgres: dict[str, int] = field(default_factory=dict)


@dataclass
class Report:
    mode: str
    wall_s: float  # first send to last answer
    own_cpu_s: float  # this process's CPU time in that window
    cpu_before: CpuSample
    cpu_after: CpuSample
    outcomes: list[Outcome]


# --- one exchange ------------------------------------------------------------------------


async def exchange(host: str, port: int, payload: bytes) -> tuple[int, bool]:
    """Send one request and read its answer: the head, then Content-Length bytes. The answer
    counts once the body is in, as it does for Twilio; work the server does after it (pages
    sent once the response is written) still occupies its worker, not this clock."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = _content_length(head)
        body = await reader.readexactly(length) if length is not None else await reader.read()
    finally:
        writer.close()
    return status, b"<Response>" in body and b"<Message>" in body


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


async def attempt(host: str, port: int, payload: bytes) -> tuple[int, bool, str]:
    try:
        status, twiml = await asyncio.wait_for(exchange(host, port, payload), TIMEOUT_S)
    except TimeoutError:  # first: it is an OSError too
        return 0, False, f"{NO_ANSWER} {TIMEOUT_S:.0f} s"
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        return 0, False, f"{type(exc).__name__}: {exc}"[:200]
    return status, twiml, ""


# --- the two loops -----------------------------------------------------------------------


async def closed_loop(
    host: str, port: int, payloads: list[bytes], concurrency: int
) -> tuple[list[Outcome], float]:
    outcomes: list[Outcome | None] = [None] * len(payloads)
    indexes = iter(range(len(payloads)))  # shared: each connection takes the next request

    async def connection() -> None:
        for i in indexes:
            began = time.perf_counter()
            status, twiml, error = await attempt(host, port, payloads[i])
            outcomes[i] = Outcome(status, twiml, (time.perf_counter() - began) * 1000, 0.0, error)

    began = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return [o for o in outcomes if o is not None], time.perf_counter() - began


async def open_loop(
    host: str, port: int, payloads: list[bytes], rate: float
) -> tuple[list[Outcome], float]:
    outcomes: list[Outcome | None] = [None] * len(payloads)

    async def send(i: int, scheduled: float) -> None:
        lag = time.perf_counter() - scheduled
        status, twiml, error = await attempt(host, port, payloads[i])
        latency = (time.perf_counter() - scheduled) * 1000
        outcomes[i] = Outcome(status, twiml, latency, lag * 1000, error)

    start = time.perf_counter() + 0.01
    tasks = []
    for i in range(len(payloads)):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, scheduled)))
    await asyncio.gather(*tasks)
    return [o for o in outcomes if o is not None], time.perf_counter() - start


# --- CPU accounting ---------------------------------------------------------------------


def cpu_sample(watched: list[int]) -> CpuSample:
    """/proc/stat for the machine; utime + stime of the watched pids and of every process
    named postgres, per pid, so the caller can count what each did inside the window."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields)
    total = user + nice + system + idle + iowait + irq + softirq + steal
    server = {str(pid): _ticks(pid)[1] for pid in watched}
    postgres = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            name, ticks = _ticks(int(entry))
            if name == "postgres":
                postgres[entry] = ticks
    return CpuSample(total - idle - iowait, total, server, postgres)


def _ticks(pid: int) -> tuple[str, int]:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", 0
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    return name, int(rest[11]) + int(rest[12])  # utime, stime (fields 14 and 15)


# --- entry points -------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    payloads: list[bytes] = pickle.loads(Path(args.requests).read_bytes())
    watched = [int(p) for p in args.watch.split(",") if p]
    before = cpu_sample(watched)
    own = time.process_time()
    if args.mode == "closed":
        outcomes, wall = asyncio.run(closed_loop(args.host, args.port, payloads, args.concurrency))
    else:
        outcomes, wall = asyncio.run(open_loop(args.host, args.port, payloads, args.rate))
    own_cpu = time.process_time() - own
    report = Report(args.mode, wall, own_cpu, before, cpu_sample(watched), outcomes)
    Path(args.out).write_text(json.dumps(asdict(report)))


async def trivial_server(port: int) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(_content_length(head) or 0)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(TRIVIAL_BODY), TRIVIAL_BODY)
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    for mode in ("closed", "open"):
        sub = modes.add_parser(mode)
        sub.add_argument("requests", help="a pickled list of raw HTTP requests")
        sub.add_argument("host")
        sub.add_argument("port", type=int)
        sub.add_argument("out", help="where the JSON report goes")
        sub.add_argument("--concurrency", type=int, default=32)
        sub.add_argument("--rate", type=float, default=200.0)
        sub.add_argument("--watch", default="", help="comma-separated server pids")
    modes.add_parser("trivial").add_argument("port", type=int)
    args = parser.parse_args()
    if args.mode == "trivial":
        try:
            asyncio.run(trivial_server(args.port))
        except KeyboardInterrupt:
            sys.exit(0)
    else:
        run(args)


if __name__ == "__main__":
    main()
