"""A fake Anthropic provider: ``POST /v1/messages`` streamed as the Messages API streams it.

Named server-sent events: ``message_start`` (id, served model, input usage with cache reads),
``content_block_start`` / ``content_block_delta`` (``text_delta``; ``input_json_delta`` for ``tool_use``) /
``content_block_stop``, ``ping``, ``message_delta`` (``stop_reason`` and output usage), ``message_stop``;
errors as ``{"type": "error", "error": {"type", "message"}}`` bodies or ``event: error`` in a stream.
Requests are checked like the real API checks them (the key, ``anthropic-version``, no sampling settings
since API version 2026-10-21, alternating roles starting with user, non-empty text, ``tool_result`` right
after its ``tool_use``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes import common
from tests.fakes.common import BrokenStream, FakeBase, pieces

SERVED_SUFFIX = "-20250929"
CACHE_READ_TOKENS = 5
UNCACHED_INPUT_TOKENS = 11
_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def served_model(requested: str) -> str:
    return requested + SERVED_SUFFIX


def error_body(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_fake"}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []


def check_request(body: Any) -> str:
    """Why the real API would refuse this request with HTTP 400, or ''."""
    if not isinstance(body, dict):
        return "invalid JSON body"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    for sampling in ("temperature", "top_p", "top_k"):
        if sampling in body:
            return f"{sampling}: Extra inputs are not permitted"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: Field required"
    if body.get("stream") is not True:
        return "this fake only streams: set stream=true"
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        return "system: Input should be a valid string or list"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    expected_role = "user"
    open_calls: list[str] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if role != expected_role:
            return f"messages.{i}: roles must alternate between 'user' and 'assistant', starting with 'user'"
        expected_role = "assistant" if role == "user" else "user"
        blocks = _blocks(message.get("content"))
        if not blocks:
            return f"messages.{i}: all messages must have non-empty content"
        answered: list[str] = []
        for j, block in enumerate(blocks):
            kind = block.get("type")
            if kind == "text":
                if not str(block.get("text", "")).strip():
                    return f"messages.{i}.content.{j}: text content blocks must contain non-whitespace text"
            elif kind == "tool_use":
                if role != "assistant" or not _ID.match(str(block.get("id", ""))):
                    return (
                        f"messages.{i}.content.{j}.tool_use.id: String should match pattern '{_ID.pattern}'"
                    )
                if not isinstance(block.get("input"), dict):
                    return f"messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary"
            elif kind == "tool_result":
                if role != "user" or block.get("tool_use_id") not in open_calls:
                    return (
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message."
                    )
                if any(b.get("type") != "tool_result" for b in blocks[:j]):
                    return f"messages.{i}: tool_result blocks must come first in the content"
                answered.append(block["tool_use_id"])
            else:
                return f"messages.{i}.content.{j}.type: unknown block type {kind!r}"
        if role == "user" and sorted(answered) != sorted(open_calls):
            missing = sorted(set(open_calls) - set(answered))
            return (
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}"
            )
        open_calls = [b["id"] for b in blocks if b.get("type") == "tool_use"] if role == "assistant" else []
    if expected_role == "user" and open_calls:
        return "the last assistant message has tool_use blocks without results"
    for tool in body.get("tools") or []:
        if not tool.get("name") or not isinstance(tool.get("input_schema"), dict):
            return "tools: each tool needs a name and an input_schema"
    return ""


def _event(name: str, doc: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(doc)}\n\n".encode()


class FakeAnthropic(FakeBase):
    """The fake; ``app()`` is its ASGI application."""

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])

    async def messages(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.record(request.url.path, dict(request.headers), body)
        # The API takes the key as ``x-api-key`` or, as SDK 2.x sends it, ``Authorization: Bearer``.
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix(
            "Bearer "
        )
        if given != self.api_key:
            return JSONResponse(
                error_body("authentication_error", f"invalid x-api-key {given}"), status_code=401
            )
        if not request.headers.get("anthropic-version"):
            return JSONResponse(
                error_body("invalid_request_error", "anthropic-version: header is required"), 400
            )
        problem = check_request(body)
        if problem:
            return JSONResponse(error_body("invalid_request_error", problem), status_code=400)
        messages = body["messages"]
        last_user = next(m for m in reversed(messages) if m["role"] == "user")
        prompt = next((b["text"] for b in reversed(_blocks(last_user["content"])) if b["type"] == "text"), "")
        if not prompt:  # a tool-result turn: the prompt is in the last user message with text
            for message in reversed(messages):
                texts = [b["text"] for b in _blocks(message["content"]) if b["type"] == "text"]
                if message["role"] == "user" and texts:
                    prompt = texts[-1]
                    break
        marker = common.marker_of(prompt)
        if marker == common.ERROR400:
            return JSONResponse(
                error_body("invalid_request_error", "max_tokens: 999999 > 64000, the maximum for this model"),
                400,
            )
        if marker == common.ERROR500:
            return JSONResponse(error_body("api_error", "Internal server error"), status_code=500)
        if marker == common.RATE_ALWAYS or (marker == common.RATE_ONCE and self.attempt(prompt) == 1):
            return JSONResponse(
                error_body(
                    "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"
                ),
                status_code=429,
                headers={"retry-after-ms": "20"},
            )
        if marker == common.SLOW:
            await asyncio.sleep(self.slow_s)
        return StreamingResponse(self._stream(body, prompt, marker), media_type="text/event-stream")

    async def _stream(self, body: dict[str, Any], prompt: str, marker: str) -> AsyncIterator[bytes]:
        messages = body["messages"]
        number = self.next_id()
        last_blocks = _blocks(messages[-1]["content"])
        tool_round = marker in (common.TOOL, common.TOOLS2) and not any(
            b["type"] == "tool_result" for b in last_blocks
        )
        usage_start = {
            "input_tokens": UNCACHED_INPUT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": CACHE_READ_TOKENS,
            "output_tokens": 1,
        }
        yield _event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_fake{number:04d}",
                    "type": "message",
                    "role": "assistant",
                    "model": served_model(body["model"]),
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage_start,
                },
            },
        )
        text = "Let me calculate that." if tool_round else self._answer(body, prompt, marker)
        yield _event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        yield _event("ping", {"type": "ping"})
        for i, part in enumerate(pieces(text)):
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}}
            yield _event("content_block_delta", delta)
            if i == 1 and marker in (common.CUT, common.STALL, common.NO_FINISH, common.ERROR_EVENT):
                if marker == common.CUT:
                    raise BrokenStream("the fake drops the connection")
                if marker == common.STALL:
                    await asyncio.sleep(self.slow_s)
                if marker == common.NO_FINISH:
                    return
                if marker == common.ERROR_EVENT:
                    yield _event("error", error_body("overloaded_error", "Overloaded"))
                    return
            await asyncio.sleep(0)
        yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        stop_reason = "end_turn"
        if tool_round:
            stop_reason = "tool_use"
            calls = (
                [{"expression": common.expression_after(prompt, common.TOOL)}]
                if marker == common.TOOL
                else [{"expression": "1 + 2"}, {"expression": "3 * 4"}]
            )
            for offset, args in enumerate(calls, start=1):
                start = {
                    "type": "content_block_start",
                    "index": offset,
                    "content_block": {
                        "type": "tool_use",
                        "id": f"toolu_fake{number}{offset}",
                        "name": "calculator",
                        "input": {},
                    },
                }
                yield _event("content_block_start", start)
                raw = json.dumps(args)
                for fragment in ["", raw[:6], raw[6:15], raw[15:]]:
                    delta = {"type": "input_json_delta", "partial_json": fragment}
                    yield _event(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": offset, "delta": delta},
                    )
                yield _event("content_block_stop", {"type": "content_block_stop", "index": offset})
        output_tokens = max(1, len(text.split()))
        yield _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
        yield _event("message_stop", {"type": "message_stop"})

    @staticmethod
    def _answer(body: dict[str, Any], prompt: str, marker: str) -> str:
        messages = body["messages"]
        if marker in (common.TOOL, common.TOOLS2):
            results = [
                str(b.get("content")) for b in _blocks(messages[-1]["content"]) if b["type"] == "tool_result"
            ]
            return f"The calculator says {' and '.join(results)}."
        users = sum(
            1
            for m in messages
            if m["role"] == "user" and any(b["type"] == "text" for b in _blocks(m["content"]))
        )
        style = " (system prompt received)" if body.get("system") else ""
        return f"Hello from the fake Anthropic{style}. You said: {prompt} I see {users} user messages."
