"""The ``anthropic`` engine: the Anthropic Messages API through the official SDK.

Each model call is one streamed ``messages.create(stream=True)``; the raw stream events are read as they
arrive: ``message_start`` (response id, served model, input usage), ``content_block_start`` /
``content_block_delta`` (``text_delta`` goes to ``on_delta``; ``input_json_delta`` fragments build a
``tool_use`` call), ``message_delta`` (``stop_reason``, recorded as the finish reason, and the output
usage) and ``message_stop``. Thinking blocks are not shown or recorded.

The system prompt is sent as ``system``. Tool calls of the turn's history are sent as ``tool_use``
blocks and their results as ``tool_result`` blocks; ids are made to fit Anthropic's id alphabet, so a
history written by another runtime is accepted.

Usage is recorded as ``input_tokens`` = every input token (uncached + ``cache_read_input_tokens`` +
``cache_creation_input_tokens``, as OpenAI counts them too) and ``cached_tokens`` = the cache reads.

Settings from ``runtime.options``: ``max_tokens`` (required by the API; default 4096), ``timeout_s`` and
``max_retries``. The API version the SDK speaks (2026-10-21) refuses sampling settings, so there is no
``temperature`` or ``top_p`` (profiles that set them are refused when they load). The API key is read
from the environment at each call and lives only in the SDK client of that call.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from webchat.runtimes.engine import DeltaSink, EngineError, ModelReply
from webchat.runtimes.provider_common import (
    Conversation,
    StreamState,
    connect_timeout_s,
    interrupted,
    load_sdk,
    max_retries,
    max_tokens,
    read_api_key,
    read_conversation,
    sdk_failure,
    timeout_s,
)
from webchat.runtimes.resolve import ResolvedRuntime
from webchat.runtimes.tools import ToolError, default_tool_registry
from webchat.turns.model import Turn

PROVIDER: Final = "anthropic"
ANTHROPIC_BASE_URL: Final = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS: Final = 4096
EMPTY_TEXT: Final = "(empty message)"  # the API refuses empty text blocks
_ID_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")


def endpoint(runtime: ResolvedRuntime) -> str:
    return runtime.base_url or ANTHROPIC_BASE_URL


def tool_id(call_id: str) -> str:
    """A tool call id in the alphabet Anthropic accepts (``^[a-zA-Z0-9_-]+$``); the same id maps the
    same way, so a call and its result still match."""
    return _ID_UNSAFE.sub("_", call_id) or "toolu_unnamed"


def build_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """Messages API ``messages``: alternating user/assistant turns of content blocks, starting with user.

    Tool results are ``tool_result`` blocks of the user turn right after the assistant's ``tool_use``
    blocks, in front of any text of that turn.
    """
    out: list[dict[str, Any]] = []
    for message in conversation.messages:
        blocks: list[dict[str, Any]]
        if message.role == "user":
            role = "user"
            blocks = [{"type": "text", "text": message.text if message.text.strip() else EMPTY_TEXT}]
        elif message.role == "tool":
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": tool_id(message.tool_call_id),
                    "content": message.text or EMPTY_TEXT,
                    "is_error": message.is_error,
                }
            ]
        else:
            role = "assistant"
            blocks = [{"type": "text", "text": message.text}] if message.text.strip() else []
            blocks += [
                {"type": "tool_use", "id": tool_id(call.id), "name": call.name, "input": call.arguments}
                for call in message.tool_calls
            ]
            if not blocks:
                continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    if out and out[0]["role"] != "user":
        out.insert(0, {"role": "user", "content": [{"type": "text", "text": "(the conversation continues)"}]})
    return out


def build_tools(runtime: ResolvedRuntime) -> list[dict[str, Any]]:
    try:
        specs = default_tool_registry().specs(runtime.tools)
    except ToolError as exc:
        raise EngineError(f"runtime {runtime.runtime_key!r}: {exc}", code="engine_failed") from None
    return [
        {"name": spec["name"], "description": spec["description"], "input_schema": spec["parameters"]}
        for spec in specs
    ]


def build_request(runtime: ResolvedRuntime, turn: Turn) -> dict[str, Any]:
    """The keyword arguments of ``messages.create`` for one model call over ``turn.blocks``."""
    tools = build_tools(runtime)
    conversation = read_conversation(turn.blocks, tools_enabled=bool(tools))
    request: dict[str, Any] = {
        "model": runtime.model,
        "max_tokens": max_tokens(runtime) or DEFAULT_MAX_TOKENS,
        "messages": build_messages(conversation),
        "stream": True,
    }
    if conversation.system:
        request["system"] = conversation.system
    if tools:
        request["tools"] = tools
    return request


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _read_usage(state: StreamState, usage: Any, seen: dict[str, int]) -> None:
    """Fold a usage object into ``state``. Values are cumulative; ``seen`` keeps the latest of each."""
    if usage is None:
        return
    for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        value = _int(getattr(usage, name, None))
        if value is not None:
            seen[name] = value
    state.usage.input_tokens = (
        seen.get("input_tokens", 0)
        + seen.get("cache_read_input_tokens", 0)
        + seen.get("cache_creation_input_tokens", 0)
    )
    state.usage.output_tokens = seen.get("output_tokens", 0)
    state.usage.cached_tokens = seen.get("cache_read_input_tokens", 0)


def read_event(state: StreamState, event: Any, seen: dict[str, int]) -> str:
    """Fold one raw stream event into ``state``; returns the text delta it carries."""
    state.started = True
    kind = getattr(event, "type", "")
    if kind == "message_start":
        message = getattr(event, "message", None)
        if getattr(message, "id", None):
            state.response_id = str(message.id)  # type: ignore[union-attr]
        if getattr(message, "model", None):
            state.response_model = str(message.model)  # type: ignore[union-attr]
        _read_usage(state, getattr(message, "usage", None), seen)
    elif kind == "content_block_start":
        block = getattr(event, "content_block", None)
        index = _int(getattr(event, "index", None)) or 0
        block_type = getattr(block, "type", "")
        if block_type == "text":
            text = getattr(block, "text", "")
            if isinstance(text, str) and text:
                state.text.append(text)
                return text
        elif block_type == "tool_use":
            draft = state.draft(index)
            draft.id = str(getattr(block, "id", "") or "")
            draft.name = str(getattr(block, "name", "") or "")
            start_input = getattr(block, "input", None)
            if isinstance(start_input, dict) and start_input:
                draft.arguments = [json.dumps(start_input)]
                draft.provisional = True
    elif kind == "content_block_delta":
        delta = getattr(event, "delta", None)
        delta_type = getattr(delta, "type", "")
        if delta_type == "text_delta":
            text = getattr(delta, "text", "")
            if isinstance(text, str) and text:
                state.text.append(text)
                return text
        elif delta_type == "input_json_delta":
            index = _int(getattr(event, "index", None)) or 0
            fragment = getattr(delta, "partial_json", "")
            if isinstance(fragment, str) and fragment:
                state.draft(index).add_arguments(fragment)
    elif kind == "message_delta":
        stop_reason = getattr(getattr(event, "delta", None), "stop_reason", None)
        if stop_reason:
            state.finish_reason = str(stop_reason)
        _read_usage(state, getattr(event, "usage", None), seen)
    elif kind == "message_stop":
        state.completed = True
    return ""


class AnthropicEngine:
    """Streams a reply from the Anthropic Messages API (see the module documentation)."""

    provider = PROVIDER

    async def complete(self, turn: Turn, runtime: ResolvedRuntime, on_delta: DeltaSink) -> ModelReply:
        if not runtime.model:
            raise EngineError(
                f"profile {runtime.profile_slug!r} has no runtime.model (engine anthropic needs one)",
                code="engine_failed",
            )
        request = build_request(runtime, turn)
        await load_sdk("anthropic")
        import anthropic
        import httpx2

        state = StreamState(provider=PROVIDER, request_model=runtime.model)
        seen: dict[str, int] = {}
        api_key = read_api_key(runtime)
        client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=endpoint(runtime),
            timeout=anthropic.Timeout(timeout_s(runtime), connect=connect_timeout_s(runtime)),
            max_retries=max_retries(runtime),
        )
        try:
            async with client:
                stream = await client.messages.create(**request)
                async with stream:
                    async for event in stream:
                        text = read_event(state, event, seen)
                        if text:
                            await on_delta(text)
        except (anthropic.AnthropicError, httpx2.TimeoutException, httpx2.TransportError) as exc:
            raise sdk_failure(
                anthropic, exc, state, endpoint=endpoint(runtime), timeout=timeout_s(runtime), api_key=api_key
            ) from None
        if not state.completed:
            raise interrupted(state, endpoint(runtime))
        return state.reply()
