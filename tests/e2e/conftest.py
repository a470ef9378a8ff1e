"""A real server for end-to-end tests: ``web-chat serve`` in a subprocess on 127.0.0.1, stopped after."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base_url: str
    ws_url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra_args: tuple[str, ...] = ()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    data_dir: Path, *extra: str, port: int | None = None, env: dict[str, str] | None = None
) -> Server:
    port = port or free_port()
    log_path = data_dir.parent / f"server-{port}-{time.monotonic_ns()}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, WEBCHAT_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", **(env or {}))
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "webchat", "serve", "--host", "127.0.0.1", "--port", str(port), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", data_dir, proc, log_path, extra)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.base_url + "/healthz", timeout=1).json().get("status") == "ok":
                return server
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not become healthy:\n{server.log()}")


# Users the team-mode tests make with the real CLI, and their passwords.
PASSWORDS = {"root": "root-password-1", "alice": "alice-password-1", "bob": "bob-password-1"}


def cli(data: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``web-chat ARGS`` on the data dir ``data``."""
    env = dict(os.environ, WEBCHAT_DATA_DIR=str(data))
    return subprocess.run(
        [sys.executable, "-m", "webchat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def add_user(data: Path, name: str, *, admin: bool = False, password: str | None = None) -> None:
    args = ["users", "add", name, "--password-stdin", "--data-dir", str(data)]
    done = cli(data, *args, *(["--admin"] if admin else []), stdin=(password or PASSWORDS[name]) + "\n")
    assert done.returncode == 0, done.stderr


def new_token(data: Path, name: str) -> str:
    """A token made by ``web-chat tokens create`` (the last line of its stdout)."""
    done = cli(data, "tokens", "create", name, "--label", "tests", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "data")
    try:
        yield srv
    finally:
        srv.stop()
