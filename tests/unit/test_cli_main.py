"""The ``web-chat`` process itself: a closed stdout is not an error, usage errors are one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.cli_stores import T0, make_turns
from webchat.turns.model import Block, Turn


def web_chat(*args: str) -> list[str]:
    return [sys.executable, "-m", "webchat", *args]


def env() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}


@pytest.fixture(scope="module")
def many_snapshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One turn with 150 snapshots: ``turns show`` prints one block per snapshot, far more than a pipe
    holds (64 KiB on Linux), in many writes (one large write that meets a closed pipe is cut short
    silently; the next write is the one that fails)."""
    path = tmp_path_factory.mktemp("pipe") / "turns.db"
    text = "a line of stored text that is long enough to fill the pipe quickly. " * 30
    turn = Turn(id="t1", blocks=[Block(kind="llm_text", role="assistant", payload={"text": text})])
    return make_turns(path, [("c1", "s1", turn, "final", T0 + i, "fast", "i1") for i in range(150)])


def test_reader_closing_the_pipe_early_is_not_an_error(many_snapshots: Path) -> None:
    """``web-chat … | head -1``: exit 0, nothing on stderr (no BrokenPipeError traceback)."""
    proc = subprocess.Popen(
        web_chat("turns", "show", "c1", "s1", "t1", "--turns-db", str(many_snapshots)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert first.startswith(b"turn t1")  # it started writing; most of its output is still to come
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, stderr
    assert stderr == ""


def test_usage_error_is_one_line_exit_2() -> None:
    proc = subprocess.run(
        web_chat("timeline", "list", "--output", "bogus"), capture_output=True, text=True, env=env()
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("web-chat: error: Invalid value for '--output'")
    assert lines[0].endswith("(see 'web-chat timeline list --help')")


@pytest.mark.parametrize(
    ("args", "first_words"),
    [
        (["db", "check", "--bogus"], "web-chat: error: No such option: --bogus"),
        (["nonsense"], "web-chat: error: No such command 'nonsense'."),
        (["turns", "show", "c1"], "web-chat: error: Missing argument"),
    ],
)
def test_other_usage_errors(args: list[str], first_words: str) -> None:
    proc = subprocess.run(web_chat(*args), capture_output=True, text=True, env=env())
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(first_words), proc.stderr


def test_help_and_version_still_work() -> None:
    proc = subprocess.run(web_chat("--version"), capture_output=True, text=True, env=env())
    assert proc.returncode == 0 and proc.stdout.startswith("web-chat ")
    proc = subprocess.run(web_chat("db", "--help"), capture_output=True, text=True, env=env())
    assert proc.returncode == 0 and "migrate" in proc.stdout and proc.stderr == ""
