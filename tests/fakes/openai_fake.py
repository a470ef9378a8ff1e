"""A fake OpenAI-compatible provider: ``POST /v1/chat/completions`` streamed as the real API streams it.

Server-sent events ``data: {chat.completion.chunk}`` with ``choices[].delta.content``, tool calls as
``delta.tool_calls[]`` fragments (``index``, ``id``, ``function.name``, ``function.arguments`` pieces), a
last chunk with ``finish_reason``, a usage chunk with empty ``choices`` when
``stream_options.include_usage`` is set, then ``data: [DONE]``. The served model is the requested one with
a date suffix, as after OpenAI's aliasing. Requests are checked like the real API checks them (key,
roles, every tool call answered by a tool message) and refused with its error body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes import common
from tests.fakes.common import BrokenStream, FakeBase, pieces

SERVED_SUFFIX = "-2025-08-07"
CACHED_TOKENS = 4


def served_model(requested: str) -> str:
    return requested + SERVED_SUFFIX


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def check_request(body: Any) -> str:
    """Why the real API would refuse this request with HTTP 400, or ''."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    if body.get("stream") is not True:
        return "this fake only streams: set stream=true"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    outstanding: list[str] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'tool'."
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in outstanding:
                return (
                    f"Invalid parameter: messages[{i}]: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'."
                )
            outstanding.remove(call_id)
            if not isinstance(message.get("content"), str):
                return f"messages[{i}].content must be a string"
            continue
        if outstanding:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {outstanding}"
            )
        content = message.get("content")
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if content is None and not calls:
                return f"messages[{i}]: an assistant message needs content or tool_calls"
            for call in calls:
                function = call.get("function") or {}
                if call.get("type") != "function" or not function.get("name"):
                    return f"messages[{i}].tool_calls: each call needs type 'function' and a name"
                if not isinstance(function.get("arguments"), str):
                    return f"messages[{i}].tool_calls: function.arguments must be a string"
                outstanding.append(call.get("id"))
        elif not isinstance(content, str):
            return f"messages[{i}].content must be a string"
    if outstanding:
        return f"The following tool_call_ids did not have response messages: {outstanding}"
    for tool in body.get("tools") or []:
        if tool.get("type") != "function" or not (tool.get("function") or {}).get("name"):
            return "tools: each tool needs type 'function' and function.name"
    return ""


def _sse(doc: Any) -> bytes:
    return f"data: {json.dumps(doc)}\n\n".encode()


class FakeOpenAI(FakeBase):
    """The fake; ``app()`` is its ASGI application."""

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.chat_completions, methods=["POST"])])

    async def chat_completions(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.record(request.url.path, dict(request.headers), body)
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if given != self.api_key:
            # Echoes the key it was given: the engine must keep it out of its error message.
            return JSONResponse(
                error_body(
                    f"Incorrect API key provided: {given}.", "invalid_request_error", "invalid_api_key"
                ),
                status_code=401,
            )
        problem = check_request(body)
        if problem:
            return JSONResponse(error_body(problem, "invalid_request_error"), status_code=400)
        messages = body["messages"]
        prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        marker = common.marker_of(prompt)
        if marker == common.ERROR400:
            return JSONResponse(
                error_body(
                    "Invalid value for 'temperature': too hot.", "invalid_request_error", None, "temperature"
                ),
                status_code=400,
            )
        if marker == common.ERROR500:
            return JSONResponse(error_body("The server had an error.", "server_error"), status_code=500)
        if marker == common.RATE_ALWAYS or (marker == common.RATE_ONCE and self.attempt(prompt) == 1):
            return JSONResponse(
                error_body("Rate limit reached for requests per min.", "requests", "rate_limit_exceeded"),
                status_code=429,
                headers={"retry-after-ms": "20"},
            )
        if marker == common.SLOW:
            await asyncio.sleep(self.slow_s)
        return StreamingResponse(self._stream(body, prompt, marker), media_type="text/event-stream")

    async def _stream(self, body: dict[str, Any], prompt: str, marker: str) -> AsyncIterator[bytes]:
        messages = body["messages"]
        number = self.next_id()
        base = {
            "id": f"chatcmpl-fake{number:04d}",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000 + number,
            "model": served_model(body["model"]),
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return _sse({**base, "choices": [choice]})

        tool_round = marker in (common.TOOL, common.TOOLS2) and messages[-1]["role"] == "user"
        if tool_round:
            text = ""
            yield chunk({"role": "assistant", "content": None})
            for fragment in self._tool_fragments(number, prompt, marker):
                yield chunk({"tool_calls": fragment})
            finish = "tool_calls"
        else:
            text = self._answer(messages, prompt, marker)
            yield chunk({"role": "assistant", "content": ""})
            parts = pieces(text)
            for i, part in enumerate(parts):
                yield chunk({"content": part})
                if i == 1 and marker in (common.CUT, common.STALL, common.NO_FINISH, common.ERROR_EVENT):
                    if marker == common.CUT:
                        raise BrokenStream("the fake drops the connection")
                    if marker == common.STALL:
                        await asyncio.sleep(self.slow_s)
                    if marker == common.NO_FINISH:
                        return
                    if marker == common.ERROR_EVENT:
                        yield _sse(error_body("The model is overloaded mid-stream.", "server_error"))
                        return
                await asyncio.sleep(0)
            finish = "stop"
        yield chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
            completion_tokens = max(1, len(text.split()))
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            }
            yield _sse({**base, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    @staticmethod
    def _tool_fragments(number: int, prompt: str, marker: str) -> list[list[dict[str, Any]]]:
        """The ``delta.tool_calls`` of each chunk: a call's id and name first, then argument pieces."""
        if marker == common.TOOL:
            args = json.dumps({"expression": common.expression_after(prompt, common.TOOL)})
            head = {"index": 0, "id": f"call_fake{number}a", "type": "function"}
            out: list[list[dict[str, Any]]] = [
                [{**head, "function": {"name": "calculator", "arguments": ""}}]
            ]
            out += [
                [{"index": 0, "function": {"arguments": args[i : i + 7]}}] for i in range(0, len(args), 7)
            ]
            return out
        first, second = json.dumps({"expression": "1 + 2"}), json.dumps({"expression": "3 * 4"})
        return [
            [
                {
                    "index": 0,
                    "id": f"call_fake{number}a",
                    "type": "function",
                    "function": {"name": "calculator"},
                }
            ],
            [
                {
                    "index": 1,
                    "id": f"call_fake{number}b",
                    "type": "function",
                    "function": {"name": "calculator"},
                }
            ],
            [{"index": 0, "function": {"arguments": first[:9]}}],
            [{"index": 1, "function": {"arguments": second[:5]}}],
            [{"index": 1, "function": {"arguments": second[5:]}}],
            [{"index": 0, "function": {"arguments": first[9:]}}],
        ]

    @staticmethod
    def _answer(messages: list[dict[str, Any]], prompt: str, marker: str) -> str:
        users = sum(1 for m in messages if m["role"] == "user")
        if marker in (common.TOOL, common.TOOLS2):
            results = []
            for message in reversed(messages):
                if message["role"] != "tool":
                    break
                results.insert(0, message["content"])
            return f"The calculator says {' and '.join(results)}."
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        style = " (system prompt received)" if system else ""
        return f"Hello from the fake OpenAI{style}. You said: {prompt} I see {users} user messages."
