"""One validator for everything a client sends: refuse at the edge what the stores cannot hold.

SQLite stores text as UTF-8, so a lone surrogate (JSON ``"\\ud800"``) cannot be written at all, and
PostgreSQL refuses NUL in text. A request carrying either used to be accepted and then failed on its
first write (a 500, or a prompt lost after its 200). Such requests are now refused before any route
code runs, with 400 and a stable code:

- ``invalid_text``: a NUL character or lone surrogate in a string anywhere in a JSON body (keys too), or
  in a path segment, query parameter or header we read; or percent-encoded bytes that are not UTF-8
  (they would otherwise be silently replaced by U+FFFD, naming a different conversation or profile);
- ``nesting_too_deep``: JSON nested deeper than :data:`MAX_JSON_DEPTH`;
- ``invalid_number``: an integer outside the signed 64-bit range, a float that overflows, or the
  non-JSON literals ``NaN``/``Infinity``;
- ``malformed_json``: a body that is not JSON at all (for routes that read JSON bodies themselves).

The text and depth rule itself is :mod:`webchat.storable` (profile documents from YAML files use it
too). Routers opt in with ``APIRouter(route_class=CheckedRoute)``; the WebSocket route calls
:func:`check_scope` itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Scope

from webchat.server.errors import ApiError, error_response
from webchat.storable import MAX_JSON_DEPTH, Unstorable, check_json, check_text, printable

MAX_JSON_INT = 2**63 - 1
# Headers and cookies a route reads as text; every other header is ignored, so it is not checked.
CHECKED_HEADERS = (b"idempotency-key",)
CHECKED_COOKIES = ("chat_profile",)
_JSON_STATE_KEY = "webchat_json_body"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _BadNumber(Exception):
    """Raised from the JSON parser hooks; deliberately not a ValueError (JSONDecodeError is one)."""


def _parse_int(text: str) -> int:
    # Length first: int() of thousands of digits is slow and past 4300 digits raises ValueError.
    if len(text.lstrip("-")) > 19 or abs(value := int(text)) > MAX_JSON_INT:
        raise _BadNumber(f"integer {printable(text, 24)} is outside the signed 64-bit range")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"number {printable(text, 24)} is too large")
    return value


def _parse_constant(text: str) -> Any:
    raise _BadNumber(f"{text} is not a JSON number")


def parse_json(raw: bytes, where: str = "body") -> Any:
    """Decode a JSON body and :func:`check_json` it; every failure is a 400 :class:`ApiError`."""
    try:
        doc = json.loads(raw, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except _BadNumber as exc:
        raise ApiError(400, "invalid_number", f"{where}: {exc}") from exc
    except RecursionError as exc:
        # The C decoder gives up near the interpreter's recursion limit, far past MAX_JSON_DEPTH.
        raise ApiError(
            400, "nesting_too_deep", f"{where} is nested deeper than {MAX_JSON_DEPTH} levels"
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"{where} is not valid JSON") from exc
    try:
        check_json(doc, where)
    except Unstorable as exc:
        raise ApiError(400, exc.code, exc.message) from None
    return doc


async def json_body(request: Request) -> Any:
    """The request's JSON body, parsed and checked once per request (``CheckedRoute`` may have already)."""
    if _JSON_STATE_KEY not in request.scope:
        request.scope[_JSON_STATE_KEY] = parse_json(await request.body())
    return request.scope[_JSON_STATE_KEY]


def _decoded(raw: bytes, where: str) -> str:
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise Unstorable("invalid_text", f"{where} is not valid UTF-8 once percent-decoded") from None
    return check_text(text, where)


def check_scope(scope: Scope) -> None:
    """Path, query string and the headers we read, from the raw bytes the client sent."""
    try:
        _check_scope(scope)
    except Unstorable as exc:
        raise ApiError(400, exc.code, exc.message) from None


def _check_scope(scope: Scope) -> None:
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes):
        _decoded(raw_path, "the path")
    for pair in bytes(scope.get("query_string", b"")).split(b"&"):
        name, _, value = pair.replace(b"+", b" ").partition(b"=")
        label = printable(unquote_to_bytes(name).decode("utf-8", "replace"))
        _decoded(name, "a query parameter name")
        _decoded(value, f"query parameter {label}")
    for header, value in scope.get("headers", ()):
        if header in CHECKED_HEADERS:
            check_text(value.decode("latin-1"), f"header {header.decode()}")


async def check_request(request: Request) -> None:
    check_scope(request.scope)
    for name in CHECKED_COOKIES:
        cookie = request.cookies.get(name)
        if cookie is not None:
            try:
                check_text(cookie, f"cookie {name}")
            except Unstorable as exc:
                raise ApiError(400, exc.code, exc.message) from None
    if request.method in _BODY_METHODS:
        raw = await request.body()
        if not raw.strip():
            return
        # JSON only: a cross-site form or text/plain post (sent without a CORS preflight) starts nothing.
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
            raise ApiError(
                415, "unsupported_media_type", f"the body must be application/json, not {media or 'untyped'}"
            )
        try:
            request.scope[_JSON_STATE_KEY] = parse_json(raw)
        except ApiError as exc:
            # Not JSON at all is for the route to judge (it may say 400 or 415 in its own words).
            if exc.code != "malformed_json":
                raise


class CheckedRoute(APIRoute):
    """An API route that runs :func:`check_request` before FastAPI parses or validates anything."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            try:
                await check_request(request)
            except ApiError as exc:
                return error_response(exc.status, exc.code, exc.message)
            return await handler(request)

        return checked
