"""A real PostgreSQL server for the tests: Debian's binaries, a temporary directory, a free loopback port.

``make test`` installs Debian's ``postgresql`` when it is missing. When it is still missing the tests that
need PostgreSQL fail with the reason; they are never skipped. As root, initdb and the server run as the
``postgres`` user (through ``runuser``), since PostgreSQL refuses to run as root. The server runs with
fsync off: the tests check behaviour, not crash safety of the disk.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

MISSING = (
    "PostgreSQL's server binaries are not installed (make test installs them with "
    "apt-get install -y postgresql)"
)
START_TIMEOUT_S = 60.0
SUPERUSER = "postgres"


def bindir() -> Path:
    """The newest ``/usr/lib/postgresql/N/bin`` (Debian's layout), else where ``initdb`` on PATH is."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True
    )
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError(MISSING)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class PostgresServer:
    """One throwaway cluster: ``start()``, then ``dsn(dbname)``, ``create_database()``, ``stop()``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="webchat-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log = self.root / "server.log"
        self._counter = 0

    def start(self) -> PostgresServer:
        bin_dir = bindir()
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres", group="postgres")
        os.chmod(self.root, 0o700)
        subprocess.run(
            _as_server_user(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ]
            ),
            check=True,
            capture_output=True,
        )
        for _attempt in range(5):
            self.port = free_port()
            with self._log.open("ab") as log:
                self.process = subprocess.Popen(
                    _as_server_user(
                        [
                            str(bin_dir / "postgres"),
                            "-D",
                            str(self.data),
                            "-p",
                            str(self.port),
                            "-c",
                            "listen_addresses=127.0.0.1",
                            "-c",
                            f"unix_socket_directories={self.root}",
                            "-c",
                            "fsync=off",
                            "-c",
                            "synchronous_commit=off",
                            "-c",
                            "full_page_writes=off",
                            "-c",
                            "max_connections=300",
                        ]
                    ),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_ready():
                return self
            self._kill()
        raise RuntimeError(f"PostgreSQL did not start: {self._log.read_text(errors='replace')[-2000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False  # e.g. the port was taken between choosing and binding it
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def dsn(self, dbname: str, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "webchat_test") -> str:
        """A new empty database; returns its DSN."""
        self._counter += 1
        name = f"{prefix}_{os.getpid()}_{self._counter}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        name = dsn.rsplit("/", 1)[1]
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _kill(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            # SIGINT is PostgreSQL's fast shutdown: sessions are ended, nothing waits for clients.
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.root, ignore_errors=True)
