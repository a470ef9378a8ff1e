"""One owner per store, unusable stores refused in one line, durable idempotency over HTTP."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.client import wait_turns_final
from tests.e2e.conftest import Server, free_port, start_server


def serve(data: Path, *extra: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``web-chat serve`` expected to refuse to start."""
    env = dict(os.environ, WEBCHAT_DATA_DIR=str(data))
    return subprocess.run(
        [sys.executable, "-m", "webchat", "serve", "--host", "127.0.0.1", "--port", str(free_port()), *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("web-chat: error: ")
    return lines[0]


def test_a_second_server_on_the_same_store_exits_2_naming_the_holder(server: Server) -> None:
    line = one_error_line(serve(server.data_dir))
    assert "in use by web-chat serve" in line and f"pid {server.proc.pid}" in line
    # The first server is unharmed.
    assert httpx.get(server.base_url + "/healthz").json()["status"] == "ok"


def test_db_migrate_refuses_a_store_a_server_is_using(server: Server) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "webchat",
            "db",
            "migrate",
            "--turns-db",
            str(server.data_dir / "turns.db"),
            "--lock-timeout",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = one_error_line(proc)
    assert "in use by web-chat serve" in line


def test_the_lock_is_released_on_a_clean_stop_and_after_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = start_server(data)
    assert srv.stop() == 0
    srv = start_server(data)
    srv.proc.kill()
    srv.proc.wait(timeout=10)
    srv = start_server(data)  # the kernel dropped the dead holder's lock
    srv.stop()


def newer_schema(data: Path, name: str) -> None:
    data.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(data / name)
    conn.execute(
        "CREATE TABLE webchat_schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, "
        "name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL, PRIMARY KEY (component, version))"
    )
    component = "turns" if name == "turns.db" else "timeline"
    conn.execute("INSERT INTO webchat_schema_migrations VALUES (?, 99, 'from the future', 0)", (component,))
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("corrupt_turns", "turns.db"),
        ("corrupt_timeline", "timeline.db"),
        ("newer_turns", "newer than this web-chat supports"),
        ("newer_timeline", "newer than this web-chat supports"),
        ("data_dir_is_a_file", "not a directory"),
        ("turns_db_is_a_directory", "is a directory"),
    ],
)
def test_serve_on_an_unusable_store_is_one_line_and_exit_2(tmp_path: Path, case: str, expect: str) -> None:
    data = tmp_path / "data"
    if case.startswith("corrupt"):
        data.mkdir()
        name = "turns.db" if case == "corrupt_turns" else "timeline.db"
        (data / name).write_bytes(b"this is not a database at all" * 100)
    elif case == "newer_turns":
        newer_schema(data, "turns.db")
    elif case == "newer_timeline":
        newer_schema(data, "timeline.db")
    elif case == "data_dir_is_a_file":
        data.write_text("not a directory")
    else:
        (data / "turns.db").mkdir(parents=True)
    line = one_error_line(serve(data))
    assert expect in line, line
    if data.is_dir():
        # Nothing is left locked: the same store, repaired, serves.
        assert not any(p.name.endswith(".owner") for p in data.iterdir())


def test_idempotency_over_http_survives_a_restart_and_refuses_reuse(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = start_server(data)
    conv = str(uuid.uuid4())
    try:
        first = httpx.post(
            srv.base_url + "/chat",
            json={"prompt": "once", "conv_id": conv, "profile": "fast", "idempotency_key": "abc"},
        )
        assert first.status_code == 200
        wait_turns_final(srv.base_url, conv, 1)
    finally:
        assert srv.stop() == 0
    srv = start_server(data)
    try:
        again = httpx.post(
            srv.base_url + "/chat",
            json={"prompt": "once", "conv_id": conv},
            headers={"Idempotency-Key": "abc"},
        )
        assert (again.status_code, again.json()) == (200, first.json())
        other_conv = httpx.post(
            srv.base_url + "/chat",
            json={"prompt": "once", "conv_id": str(uuid.uuid4()), "idempotency_key": "abc"},
        )
        assert other_conv.status_code == 409
        assert other_conv.json()["code"] == "idempotency_key_reused"
        other_text = httpx.post(
            srv.base_url + "/chat", json={"prompt": "twice", "conv_id": conv, "idempotency_key": "abc"}
        )
        assert (other_text.status_code, other_text.json()["code"]) == (409, "idempotency_key_reused")
        # Nothing ran: still one turn in the conversation, and none in the other.
        items = httpx.get(srv.base_url + "/api/debug/turns", params={"conv_id": conv}).json()["items"]
        assert {i["turn_id"] for i in items} == {first.json()["turn_id"]}
    finally:
        srv.stop()
