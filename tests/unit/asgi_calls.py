"""Calling one ASGI app, or one piece of the middleware stack, directly (no server, no test client)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
App = Callable[
    [dict[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


def call(app: App, scope: dict[str, Any], *, body: bytes | None = b"") -> list[Message]:
    """Run ``app`` on ``scope`` and return every message it sent. ``body`` is the request body it may
    read; with ``None`` reading the request at all fails the test."""
    sent: list[Message] = []

    async def receive() -> Message:
        if body is None:
            raise AssertionError("this response must not read the request")
        return {"type": "http.request", "body": body}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def json_body(sent: list[Message]) -> Any:
    """The JSON of an HTTP response's body, from the messages that sent it."""
    return json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
