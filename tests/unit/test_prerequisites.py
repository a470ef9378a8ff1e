"""Under CI=true a skipped test fails the run; elsewhere it stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SKIPPING = """
import pytest

from tests.prerequisites import missing_prerequisite


@pytest.mark.skipif(True, reason="no widget")
def test_marked():
    pass


def test_helper():
    missing_prerequisite("no gadget")


def test_importorskip():
    pytest.importorskip("a_module_that_is_not_installed_anywhere")


@pytest.mark.xfail(reason="expected")
def test_xfail():
    raise AssertionError


def test_runs():
    pass
"""


def run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.prerequisites",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
            "-c",
            os.devnull,
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_ci_turns_every_skip_into_a_failure(tmp_path: Path, ci: str) -> None:
    proc = run(tmp_path, ci)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # A skip mark acts in setup, so it becomes an error there; either way the run fails.
    assert "2 failed, 1 passed, 1 xfailed, 1 error" in proc.stdout, proc.stdout
    assert "no widget" in proc.stdout and "no gadget" in proc.stdout
    assert "a_module_that_is_not_installed_anywhere" in proc.stdout
    assert "skipped" not in proc.stdout.splitlines()[-1]


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_outside_ci_a_missing_prerequisite_is_a_skip(tmp_path: Path, ci: str | None) -> None:
    proc = run(tmp_path, ci)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 3 skipped, 1 xfailed" in proc.stdout, proc.stdout
