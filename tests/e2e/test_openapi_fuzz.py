"""Property-based fuzzing of every HTTP operation in ``/openapi.json`` against a real server: no input,
valid or not, may produce a 5xx (schemathesis' ``not_a_server_error`` check).

Bounded and deterministic: per operation and generation mode (positive, negative) at most
``MAX_EXAMPLES`` examples, derandomized, no example database, no shrinking. The server listens on
127.0.0.1 only; its debug API is on (the loopback default), so the debug routes are fuzzed too.

The operations are driven one by one through ``APIOperation.as_strategy`` rather than
``schemathesis.pytest.from_fixture``: the latter's lazy loader sets ``node._nodeid``, which pytest 9
no longer has. Every failure is collected, so one run reports all 5xx found, with a curl command each.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation.modes import GenerationMode

from tests.e2e.conftest import Server, start_server

MAX_EXAMPLES = 25
TIME_BUDGET_S = 90.0
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: keeps a failing run bounded as well
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def fuzz_server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "data")
    try:
        yield srv
    finally:
        srv.stop()


def _fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, base_url: str) -> list[str]:
    """Run one operation in one generation mode; the 5xx responses found (at most 3), as curl commands."""
    label = f"{operation.method.upper()} {operation.path} ({mode.value})"
    found: list[str] = []

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, timeout=10)
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except (Failure, FailureGroup) as exc:  # recorded, and the search goes on
            if len(found) < 3:
                found.append(f"{label}: {response.status_code}\n    {case.as_curl_command()}")

    try:
        run()
    except Unsatisfiable:
        # Negative mode on an operation with nothing to break (no parameters, no body).
        assert mode is GenerationMode.NEGATIVE, f"{label}: no example could be generated"
    return found


def test_no_server_errors(fuzz_server: Server) -> None:
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json", timeout=10)
    failures: list[str] = []
    tested: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        tested.append(f"{operation.method.upper()} {operation.path}")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures.extend(_fuzz(operation, mode, fuzz_server.base_url))
    assert len(tested) >= 10, f"too few operations in /openapi.json: {tested}"
    if failures:
        log_tail = fuzz_server.log()[-6000:]
        pytest.fail(
            "server errors (5xx) found:\n" + "\n".join(failures) + f"\n--- server log (tail) ---\n{log_tail}",
            pytrace=False,
        )
    elapsed = time.monotonic() - started
    assert elapsed < TIME_BUDGET_S, f"fuzzing {len(tested)} operations took {elapsed:.0f}s"
