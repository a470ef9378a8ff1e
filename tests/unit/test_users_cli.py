"""``web-chat users …`` and ``web-chat tokens …`` on real auth.db files, in-process and as a script."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.unit.cli_stores import Result
from webchat.auth.passwords import make_hasher
from webchat.auth.store import AUTH_DB_NAME, SQLiteAuthStore
from webchat.cli.main import app

PASSWORD = "correct horse battery"
FAST = make_hasher(time_cost=1, memory_cost=8192, parallelism=1)
WEB_CHAT = Path(sys.executable).with_name("web-chat")


def invoke(*args: str, stdin: str | bytes | None = None) -> Result:
    runner = CliRunner(env={"COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"})
    result = runner.invoke(app, list(args), input=stdin)
    return Result(result.exit_code, result.stdout, result.stderr, result.exception)


def one_error(result: Result, text: str) -> None:
    assert result.code == 2, result
    assert result.stdout == ""
    assert result.stderr.startswith("web-chat: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert text in result.stderr, result.stderr


def open_store(data_dir: Path) -> SQLiteAuthStore:
    return SQLiteAuthStore(data_dir / AUTH_DB_NAME, hasher=FAST)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """auth.db with admin ``root``, user ``bob`` and one token of bob's (labelled ``ci``)."""
    base = tmp_path / "data"
    store = open_store(base)
    try:
        store.add_user("root", PASSWORD, admin=True)
        store.add_user("bob", PASSWORD)
        store.create_token("bob", label="ci")
    finally:
        store.close()
    return base


# -- users add ----------------------------------------------------------------------------------------


def test_users_add_creates_the_data_dir_and_an_admin(tmp_path: Path) -> None:
    base = tmp_path / "new" / "data"
    result = invoke(
        "users", "add", "alice", "--admin", "--password-stdin", "--data-dir", str(base), stdin=PASSWORD + "\n"
    )
    assert (result.code, result.stdout, result.stderr) == (0, "added user alice (admin)\n", "")
    store = open_store(base)
    try:
        user = store.check_password("alice", PASSWORD)
        assert user is not None and user.role == "admin"
    finally:
        store.close()


def test_users_add_reads_only_the_first_line_without_its_newline(data_dir: Path) -> None:
    result = invoke(
        "users",
        "add",
        "carol",
        "--password-stdin",
        "--data-dir",
        str(data_dir),
        stdin=" with spaces \r\nnext\n",
    )
    assert (result.code, result.stdout) == (0, "added user carol (user)\n")
    store = open_store(data_dir)
    try:
        assert store.check_password("carol", " with spaces ") is not None
    finally:
        store.close()


def test_users_add_without_terminal_or_password_stdin(tmp_path: Path) -> None:
    one_error(invoke("users", "add", "alice", "--data-dir", str(tmp_path / "d")), "--password-stdin")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("name", "stdin", "text"),
    [
        ("bad name!", PASSWORD, "invalid username 'bad name!'"),
        ("ROOT", PASSWORD, "a user named 'root' already exists"),
        ("carol", "short", "the password must have 8 to 1024 characters"),
        ("carol", "", "the password must have 8 to 1024 characters"),
    ],
)
def test_users_add_refusals(data_dir: Path, name: str, stdin: str, text: str) -> None:
    one_error(
        invoke("users", "add", name, "--password-stdin", "--data-dir", str(data_dir), stdin=stdin), text
    )
    store = open_store(data_dir)
    try:
        assert [u.username for u in store.list_users()] == ["root", "bob"]
    finally:
        store.close()


def test_users_add_refusals_create_nothing(tmp_path: Path) -> None:
    base = tmp_path / "d"
    one_error(
        invoke("users", "add", "alice", "--password-stdin", "--data-dir", str(base), stdin="short\n"), "8 to"
    )
    one_error(
        invoke(
            "users", "add", "alice", "--password-stdin", "--data-dir", str(base), stdin=b"pass\xffword1\n"
        ),
        "not UTF-8",
    )
    assert not base.exists()


# -- other commands on a missing or unusable store -----------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["users", "list"],
        ["users", "disable", "bob"],
        ["users", "enable", "bob"],
        ["users", "passwd", "bob", "--password-stdin"],
        ["tokens", "create", "bob"],
        ["tokens", "list"],
        ["tokens", "revoke", "tok_000000000000"],
    ],
)
def test_missing_auth_db_is_one_line_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = invoke(*args, "--data-dir", str(tmp_path / "none"), stdin=PASSWORD)
    one_error(
        result, "auth.db: no such auth store (create the first user with 'web-chat users add NAME --admin'"
    )
    assert not (tmp_path / "none").exists()


def test_corrupt_auth_db_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / AUTH_DB_NAME).write_bytes(b"not a database at all" * 100)
    one_error(invoke("users", "list", "--data-dir", str(tmp_path)), "auth.db")


# -- users list / disable / enable / passwd -------------------------------------------------------------


def test_users_list_table(data_dir: Path) -> None:
    result = invoke("users", "list", "--data-dir", str(data_dir))
    assert result.code == 0, result
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "username" in line)
    assert "created" in header and "created_at_ms" not in header
    root = next(line for line in lines if " root " in line)
    assert "admin" in root and "enabled" in root
    store = open_store(data_dir)
    try:
        user_id = store.list_users()[0].user_id
    finally:
        store.close()
    assert user_id not in result.stdout and f"{user_id[:10]}…" in root
    assert time.strftime("%Y-") in root  # a local date-time, not epoch milliseconds


def test_users_list_json_csv_yaml(data_dir: Path) -> None:
    store = open_store(data_dir)
    try:
        store.set_disabled("bob", True)
        users = store.list_users()
    finally:
        store.close()
    doc = json.loads(invoke("users", "list", "--data-dir", str(data_dir), "--output", "json").stdout)
    assert doc == [
        {
            "username": u.username,
            "role": u.role,
            "status": "enabled" if u.enabled else "disabled",
            "created_at_ms": u.created_at_ms,
            "disabled_at_ms": u.disabled_at_ms,
            "user_id": u.user_id,
        }
        for u in users
    ]
    assert doc[1]["status"] == "disabled"
    assert yaml.safe_load(invoke("users", "list", "--data-dir", str(data_dir), "-o", "yaml").stdout) == doc
    rows = list(
        csv.DictReader(io.StringIO(invoke("users", "list", "--data-dir", str(data_dir), "-o", "csv").stdout))
    )
    assert [r["user_id"] for r in rows] == [u.user_id for u in users]
    assert rows[0]["created_at_ms"] == str(users[0].created_at_ms)


def test_users_disable_enable(data_dir: Path) -> None:
    assert invoke("users", "disable", "BOB", "--data-dir", str(data_dir)).stdout == "disabled user bob\n"
    store = open_store(data_dir)
    try:
        bob = store.get_user("bob")
        assert bob is not None and not bob.enabled
        assert invoke("users", "enable", "bob", "--data-dir", str(data_dir)).stdout == "enabled user bob\n"
        bob = store.get_user("bob")
        assert bob is not None and bob.enabled
    finally:
        store.close()
    one_error(invoke("users", "disable", "nobody", "--data-dir", str(data_dir)), "no user named 'nobody'")


def test_users_passwd(data_dir: Path) -> None:
    store = open_store(data_dir)
    try:
        bob = store.get_user("bob")
        assert bob is not None
        cookie = store.create_session(bob.user_id)
        result = invoke(
            "users", "passwd", "bob", "--password-stdin", "--data-dir", str(data_dir), stdin="new password\n"
        )
        assert result.code == 0 and result.stdout.startswith("changed the password of bob"), result
        assert store.check_password("bob", "new password") is not None
        assert store.principal_for_session(cookie, idle_timeout_ms=10**9) is None
    finally:
        store.close()
    one_error(
        invoke("users", "passwd", "nobody", "--password-stdin", "--data-dir", str(data_dir), stdin=PASSWORD),
        "no user named 'nobody'",
    )
    one_error(
        invoke("users", "passwd", "bob", "--password-stdin", "--data-dir", str(data_dir), stdin="short"),
        "8 to 1024",
    )


# -- tokens ---------------------------------------------------------------------------------------------


def test_tokens_create_prints_the_secret_alone_on_the_last_stdout_line(data_dir: Path) -> None:
    result = invoke(
        "tokens", "create", "root", "--label", "deploy", "--expires-days", "7", "--data-dir", str(data_dir)
    )
    assert result.code == 0, result
    secret = result.stdout.splitlines()[-1]
    assert result.stdout == secret + "\n" and secret.startswith("wct_")
    assert "created token tok_" in result.stderr and "(deploy) for root" in result.stderr
    store = open_store(data_dir)
    try:
        principal = store.principal_for_token(secret)
        assert principal is not None and principal.username == "root" and principal.is_admin
        created = store.list_tokens("root")[0]
        assert created.label == "deploy" and created.expires_at_ms - created.created_at_ms == 7 * 86_400_000
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["nobody"], "no user named 'nobody'"),
        (["bob", "--expires-days", "0"], "--expires-days must be a whole number of days from 1 to 3650"),
        (["bob", "--expires-days", "3651"], "from 1 to 3650"),
        (["bob", "--label", "x" * 201], "at most 200 characters"),
    ],
)
def test_tokens_create_refusals(data_dir: Path, args: list[str], text: str) -> None:
    one_error(invoke("tokens", "create", *args, "--data-dir", str(data_dir)), text)


def test_tokens_create_for_a_disabled_user_says_so(data_dir: Path) -> None:
    invoke("users", "disable", "bob", "--data-dir", str(data_dir))
    result = invoke("tokens", "create", "bob", "--data-dir", str(data_dir))
    assert result.code == 0 and "bob is disabled" in result.stderr


def test_tokens_list_never_shows_secrets_and_revoke(data_dir: Path) -> None:
    created = invoke("tokens", "create", "root", "--data-dir", str(data_dir))
    secret = created.stdout.strip()
    table = invoke("tokens", "list", "--data-dir", str(data_dir))
    assert table.code == 0 and secret not in table.stdout and secret[4:20] not in table.stdout
    assert "ci" in table.stdout and "never" in table.stdout
    doc = json.loads(invoke("tokens", "list", "--data-dir", str(data_dir), "-o", "json").stdout)
    assert [(t["username"], t["status"]) for t in doc] == [("bob", "active"), ("root", "active")]
    assert secret not in json.dumps(doc)
    root_token = doc[1]["token_id"]
    revoked = invoke("tokens", "revoke", root_token, "--data-dir", str(data_dir))
    assert revoked.code == 0 and revoked.stdout == f"revoked token {root_token} of root\n"
    only_root = json.loads(invoke("tokens", "list", "root", "--data-dir", str(data_dir), "-o", "json").stdout)
    assert [(t["token_id"], t["status"]) for t in only_root] == [(root_token, "revoked")]
    assert only_root[0]["revoked_at_ms"] > 0
    store = open_store(data_dir)
    try:
        assert store.principal_for_token(secret) is None
    finally:
        store.close()
    one_error(invoke("tokens", "revoke", "tok_000000000000", "--data-dir", str(data_dir)), "no token with id")
    one_error(invoke("tokens", "list", "nobody", "--data-dir", str(data_dir)), "no user named 'nobody'")


def test_tokens_list_csv_keeps_epoch_milliseconds(data_dir: Path) -> None:
    rows = list(
        csv.DictReader(io.StringIO(invoke("tokens", "list", "--data-dir", str(data_dir), "-o", "csv").stdout))
    )
    assert len(rows) == 1 and rows[0]["label"] == "ci" and rows[0]["expires_at_ms"] == "0"
    assert rows[0]["created_at_ms"].isdigit()


# -- the console script -------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}


def test_console_script_password_stdin_and_tokens_create_tail_1(tmp_path: Path) -> None:
    base = tmp_path / "data"
    script = (
        'printf "%s\\n" "$PW" | "$WEB_CHAT" users add alice --admin --password-stdin --data-dir "$DIR" >&2'
        ' && "$WEB_CHAT" tokens create alice --label script --data-dir "$DIR" | tail -1'
    )
    proc = subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        env={**_env(), "PW": PASSWORD, "WEB_CHAT": str(WEB_CHAT), "DIR": str(base)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "added user alice (admin)" in proc.stderr
    token = proc.stdout.strip()
    store = open_store(base)
    try:
        principal = store.principal_for_token(token)
        assert principal is not None and (principal.username, principal.role, principal.via) == (
            "alice",
            "admin",
            "token",
        )
        assert store.check_password("alice", PASSWORD) is not None
    finally:
        store.close()


def _read_until(fd: int, text: bytes, seen: bytearray, deadline_s: float = 60.0) -> None:
    stop = time.monotonic() + deadline_s
    while text not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, stop - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {text!r} in {bytes(seen)!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            chunk = b""
        if not chunk:
            raise AssertionError(f"no {text!r} in {bytes(seen)!r}")
        seen.extend(chunk)


def _add_on_a_terminal(base: Path, first: str, second: str) -> tuple[int, bytes]:
    """``web-chat users add alice`` with a pseudo-terminal as stdin/stdout; types the two passwords."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(WEB_CHAT), "users", "add", "alice", "--data-dir", str(base)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=_env(),
        start_new_session=True,
    )
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, b"Password: ", seen)
        os.write(master, first.encode() + b"\n")
        _read_until(master, b"Repeat password: ", seen)
        os.write(master, second.encode() + b"\n")
        code = proc.wait(timeout=60)
        # The rest of the output, up to the closed terminal.
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen.extend(chunk)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, bytes(seen)


def test_users_add_prompts_twice_on_a_terminal_without_echo(tmp_path: Path) -> None:
    base = tmp_path / "data"
    code, output = _add_on_a_terminal(base, PASSWORD, PASSWORD)
    assert code == 0, output
    assert b"added user alice (user)" in output
    assert PASSWORD.encode() not in output  # typed, but not echoed
    store = open_store(base)
    try:
        assert store.check_password("alice", PASSWORD) is not None
    finally:
        store.close()


def test_users_add_on_a_terminal_refuses_different_passwords(tmp_path: Path) -> None:
    base = tmp_path / "data"
    code, output = _add_on_a_terminal(base, PASSWORD, PASSWORD + "!")
    assert code == 2, output
    assert b"web-chat: error: the passwords do not match; nothing was changed" in output
    assert not base.exists()


def test_tokens_list_into_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    base = tmp_path / "data"
    store = open_store(base)
    try:
        store.add_user("alice", PASSWORD)
        for i in range(400):  # far more JSON than a pipe holds (64 KiB on Linux)
            store.create_token("alice", label=f"token number {i} with a label long enough to fill the pipe")
    finally:
        store.close()
    proc = subprocess.Popen(
        [str(WEB_CHAT), "tokens", "list", "-o", "json", "--data-dir", str(base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == b"[\n"
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr
    assert stderr == ""
