"""Property-based fuzzing of every HTTP operation in ``/openapi.json`` against a real server: no input,
valid or not, may produce a 5xx (schemathesis' ``not_a_server_error`` check), and every 4xx must be
JSON ``{error, code}``.

Bounded and deterministic: per operation and generation mode (positive, negative) at most
``MAX_EXAMPLES`` examples, derandomized, no example database, no shrinking. The server listens on
127.0.0.1 only; its debug API is on (the loopback default), so the debug routes are fuzzed too.

The operations are driven one by one through ``APIOperation.as_strategy`` rather than
``schemathesis.pytest.from_fixture``: the latter's lazy loader sets ``node._nodeid``, which pytest 9
no longer has. Every failure is collected, so one run reports all 5xx (and non-JSON refusals) found,
with a curl command each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode

from tests.e2e.conftest import Server, add_user, new_token, start_server

MAX_EXAMPLES = 25
SQLITE_INT_MAX = 2**63 - 1
# Paths whose integer query parameters once overflowed SQLite (fixed: le=2**63-1); kept as a regression
# test below, no longer exempt from the fuzz verdict.
KNOWN_OVERFLOW: dict[tuple[str, str], str] = {}
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


@pytest.fixture
def team_fuzz_server(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """A team-mode server (--auth required) and an admin's bearer token made by the real CLI."""
    data = tmp_path / "team"
    data.mkdir()
    add_user(data, "fuzz", admin=True, password="fuzz-password-1")
    token = new_token(data, "fuzz")
    srv = start_server(data, "--auth", "required", "--debug-api")
    try:
        yield srv, token
    finally:
        srv.stop()


def _known_overflow(case: schemathesis.Case) -> bool:
    param = KNOWN_OVERFLOW.get((case.operation.method.upper(), case.operation.path))
    if param is None or not isinstance(case.query, dict):
        return False
    try:
        return int(str(case.query.get(param))) > SQLITE_INT_MAX
    except ValueError:
        return False


def _is_error_body(content: bytes) -> bool:
    """Every refusal is JSON ``{error, code}`` (http-api.md), never plain text."""
    try:
        doc = json.loads(content)
    except ValueError:
        return False
    return isinstance(doc, dict) and set(doc) == {"error", "code"} and bool(doc["code"])


def _fuzz(
    operation: schemathesis.APIOperation, mode: GenerationMode, base_url: str, headers: dict[str, str]
) -> list[str]:
    """Run one operation in one generation mode; the 5xx responses found (at most 3), as curl commands."""
    label = f"{operation.method.upper()} {operation.path} ({mode.value})"
    found: list[str] = []

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, timeout=10, headers=headers)
        if response.status_code >= 500 and _known_overflow(case):
            return
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except (Failure, FailureGroup):  # recorded, and the search goes on
            if len(found) < 3:
                found.append(f"{label}: {response.status_code}\n    {case.as_curl_command()}")
            return
        if response.status_code >= 400 and not _is_error_body(response.content) and len(found) < 3:
            found.append(
                f"{label}: {response.status_code} without {{error, code}}\n    {case.as_curl_command()}"
            )

    try:
        run()
    except Unsatisfiable:
        # Negative mode on an operation with nothing to break (no parameters, no body).
        assert mode is GenerationMode.NEGATIVE, f"{label}: no example could be generated"
    return found


def test_no_server_errors(fuzz_server: Server) -> None:
    _fuzz_every_operation(fuzz_server, {})


def test_no_server_errors_signed_in_on_a_team_server(team_fuzz_server: tuple[Server, str]) -> None:
    """The same against team mode, every request carrying an admin's bearer token: the auth routes and
    every other route behind the gate."""
    server, token = team_fuzz_server
    _fuzz_every_operation(server, {"Authorization": f"Bearer {token}"})


def _fuzz_every_operation(fuzz_server: Server, headers: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json", timeout=10)
    failures: list[str] = []
    tested: list[str] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"invalid operation in /openapi.json: {result}"
        operation = result.ok()
        tested.append(f"{operation.method.upper()} {operation.path}")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures.extend(_fuzz(operation, mode, fuzz_server.base_url, headers))
    print(f"fuzzed {len(tested)} operations, {len(failures)} failures")
    assert len(tested) >= 10, f"too few operations in /openapi.json: {tested}"
    if failures:
        log_tail = fuzz_server.log()[-6000:]
        pytest.fail(
            "server errors (5xx) found:\n" + "\n".join(failures) + f"\n--- server log (tail) ---\n{log_tail}",
            pytrace=False,
        )


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/timeline", "since_version"),
        ("/api/debug/timeline", "since_version"),
        ("/api/debug/turns", "since_ms"),
    ],
)
def test_known_overflow_is_not_a_server_error(fuzz_server: Server, path: str, param: str) -> None:
    params = {"conv_id": "c1", param: str(2**64)}
    status = httpx.get(fuzz_server.base_url + path, params=params, timeout=10).status_code
    assert status == 400, f"GET {path}?{param}=2**64 -> {status}"
