"""Missing test prerequisites: a skip on a developer's machine, a failure under ``CI=true``.

CI must never go green by skipping what it could not run (Chromium missing, a dev dependency not
installed). Call :func:`missing_prerequisite` instead of ``pytest.skip``; the report hook below also turns
any other skip (a ``skipif`` mark, ``importorskip``) into a failure when ``CI`` is true.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any, NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing_prerequisite(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"missing test prerequisite under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which never skips a test: {reason}"
