"""A throwaway PostgreSQL server a test owns, so it can stop and start it at will.

`initdb` into a fresh data directory, trust authentication, TCP on 127.0.0.1 and a free port
only (no Unix socket), `pg_ctl` to start and stop it. PostgreSQL refuses to run as root: when
the tests run as root, every PostgreSQL command runs as the `postgres` user (through
`runuser -u postgres --`, else `su postgres -c`), in a directory under the system temporary
directory that the user owns (pytest's tmp_path is private to root). The directory is removed
when the server is cleaned up.

`temporary_postgres(tmp_path)` skips the test with the reason when no server can be made here,
or fails it when CHECKIN_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_PG
from tests.procs import free_port

# How long any one pg_ctl or initdb may take before the test gives up on it.
COMMAND_TIMEOUT = 60
# Off for speed: a test server holds nothing worth an fsync, and the outage tests stop the
# server process, never the machine, so the operating system still holds every write.
SERVER_OPTIONS = "-c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off"


class PostgresUnavailable(RuntimeError):
    """No temporary PostgreSQL can be made on this machine (the reason is the message)."""


def bindir() -> Path:
    """Where initdb and pg_ctl live: on PATH, or the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise PostgresUnavailable("initdb is neither on PATH nor under /usr/lib/postgresql")
    return Path(candidates[-1]).parent


def _as_postgres_user() -> list[tuple[str, list[str] | None]]:
    """Ways to run a command as a non-root user: (how, prefix); prefix None means `su -c`."""
    ways: list[tuple[str, list[str] | None]] = []
    runuser = shutil.which("runuser")
    if runuser:
        ways.append(("runuser -u postgres --", [runuser, "-u", "postgres", "--"]))
    if shutil.which("su"):
        ways.append(("su postgres -c", None))
    return ways


class TemporaryPostgres:
    """One PostgreSQL cluster in its own directory; call `cleanup()` when done."""

    def __init__(self, root: Path, bin_dir: Path, prefix: list[str] | None, as_user: bool):
        self.root = root
        self.data = root / "data"
        self.logfile = root / "server.log"
        self.bin = bin_dir
        self.port = free_port()
        self._prefix = prefix  # None with as_user: `su postgres -c`
        self._as_user = as_user

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _command(self, args: list[str]) -> list[str]:
        if not self._as_user:
            return args
        if self._prefix is not None:
            return [*self._prefix, *args]
        return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(args)]

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._command(args),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
            cwd=self.root,
        )

    def initdb(self) -> subprocess.CompletedProcess[str]:
        return self._run(
            [
                str(self.bin / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )

    def start(self) -> None:
        done = self._run(
            [
                str(self.bin / "pg_ctl"),
                "--pgdata",
                str(self.data),
                "--log",
                str(self.logfile),
                "--wait",
                "--timeout",
                str(COMMAND_TIMEOUT - 5),
                "-o",
                f"-p {self.port} {SERVER_OPTIONS}",
                "start",
            ]
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}\n{self.log()}")

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session and shuts down cleanly; `immediate` is a crash."""
        done = self._run(
            [
                str(self.bin / "pg_ctl"),
                "--pgdata",
                str(self.data),
                "--mode",
                mode,
                "--wait",
                "--timeout",
                str(COMMAND_TIMEOUT - 5),
                "stop",
            ]
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {done.stdout}{done.stderr}\n{self.log()}")

    def running(self) -> bool:
        status = self._run([str(self.bin / "pg_ctl"), "--pgdata", str(self.data), "status"])
        return status.returncode == 0

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def cleanup(self) -> None:
        try:
            if self.data.exists() and self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def make_cluster(tmp_path: Path) -> TemporaryPostgres:
    """initdb a new cluster (not started yet); raises PostgresUnavailable with the reasons."""
    bin_dir = bindir()
    if os.geteuid() != 0:
        cluster = TemporaryPostgres(tmp_path / "postgres", bin_dir, None, as_user=False)
        cluster.root.mkdir()
        done = cluster.initdb()
        if done.returncode != 0:
            shutil.rmtree(cluster.root, ignore_errors=True)
            raise PostgresUnavailable(f"initdb failed: {done.stderr.strip()}")
        return cluster
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no 'postgres' user") from None
    reasons = []
    for how, prefix in _as_postgres_user():
        # pytest's tmp_path is private to root: the postgres user gets a directory of its own.
        root = Path(tempfile.mkdtemp(prefix="checkin-pg-"))
        os.chown(root, user.pw_uid, user.pw_gid)
        cluster = TemporaryPostgres(root, bin_dir, prefix, as_user=True)
        try:
            done = cluster.initdb()
        except (OSError, subprocess.TimeoutExpired) as exc:
            done = subprocess.CompletedProcess([], 1, "", str(exc))
        if done.returncode == 0:
            return cluster
        shutil.rmtree(root, ignore_errors=True)
        reasons.append(f"{how}: {(done.stderr or done.stdout).strip()}")
    if not reasons:
        reasons.append("neither runuser nor su is installed")
    raise PostgresUnavailable("as root, initdb must run as 'postgres': " + "; ".join(reasons))


@contextmanager
def temporary_postgres(tmp_path: Path) -> Iterator[TemporaryPostgres]:
    """A started temporary PostgreSQL, stopped and removed afterwards."""
    try:
        cluster = make_cluster(tmp_path)
    except PostgresUnavailable as exc:
        if REQUIRE_PG:  # read at import: the tests' own environment drops CHECKIN_*
            pytest.fail(f"a temporary PostgreSQL is required (CHECKIN_REQUIRE_POSTGRES=1): {exc}")
        pytest.skip(f"cannot make a temporary PostgreSQL here: {exc}")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()
