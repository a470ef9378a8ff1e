"""The ``openai`` engine: any OpenAI-compatible chat-completions endpoint through the official SDK.

OpenAI itself, or a local server given as ``runtime.base_url`` (vLLM, Ollama, llama.cpp server, LM
Studio…). Each model call is one streamed ``chat.completions.create`` with ``stream_options.include_usage``:
text deltas go to ``on_delta`` as they arrive, tool calls are assembled from their streamed fragments,
and the reply records the served model (the ``model`` of the response chunks), the response id, the
finish reason and the usage (with ``prompt_tokens_details.cached_tokens``).

Settings from ``runtime.options``: ``temperature``, ``top_p``, ``max_tokens`` (sent as
``max_completion_tokens`` to OpenAI's own API, as ``max_tokens`` to a ``base_url`` endpoint, which is
what compatible servers understand), ``timeout_s`` (connect and per-read timeout) and ``max_retries`` (the
SDK retries 408/409/429/5xx and connection failures with backoff, honouring ``Retry-After``).

The API key is read from the environment at each call (see :func:`provider_common.read_api_key`) and
lives only in the SDK client of that call.
"""

from __future__ import annotations

import json
from typing import Any, Final

from webchat.runtimes.engine import DeltaSink, EngineError, ModelReply
from webchat.runtimes.provider_common import (
    ChatMessage,
    Conversation,
    StreamState,
    connect_timeout_s,
    interrupted,
    load_sdk,
    max_retries,
    max_tokens,
    read_api_key,
    read_conversation,
    sampling_options,
    sdk_failure,
    timeout_s,
)
from webchat.runtimes.resolve import ResolvedRuntime
from webchat.runtimes.tools import ToolError, default_tool_registry
from webchat.turns.model import Turn

PROVIDER: Final = "openai"
OPENAI_BASE_URL: Final = "https://api.openai.com/v1"


def endpoint(runtime: ResolvedRuntime) -> str:
    return runtime.base_url or OPENAI_BASE_URL


def _message(message: ChatMessage) -> dict[str, Any] | None:
    if message.role == "user":
        return {"role": "user", "content": message.text}
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text}
    if not message.text and not message.tool_calls:
        return None
    doc: dict[str, Any] = {"role": "assistant", "content": message.text or None}
    if message.tool_calls:
        doc["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)},
            }
            for call in message.tool_calls
        ]
    return doc


def build_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """Chat-completions ``messages`` for a conversation."""
    messages: list[dict[str, Any]] = []
    if conversation.system:
        messages.append({"role": "system", "content": conversation.system})
    for message in conversation.messages:
        doc = _message(message)
        if doc is not None:
            messages.append(doc)
    return messages


def build_tools(runtime: ResolvedRuntime) -> list[dict[str, Any]]:
    try:
        specs = default_tool_registry().specs(runtime.tools)
    except ToolError as exc:
        raise EngineError(f"runtime {runtime.runtime_key!r}: {exc}", code="engine_failed") from None
    return [{"type": "function", "function": spec} for spec in specs]


def build_request(runtime: ResolvedRuntime, turn: Turn) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` for one model call over ``turn.blocks``."""
    tools = build_tools(runtime)
    conversation = read_conversation(turn.blocks, tools_enabled=bool(tools))
    request: dict[str, Any] = {
        "model": runtime.model,
        "messages": build_messages(conversation),
        "stream": True,
        "stream_options": {"include_usage": True},
        **sampling_options(runtime),
    }
    if tools:
        request["tools"] = tools
    limit = max_tokens(runtime)
    if limit is not None:
        request["max_tokens" if runtime.base_url else "max_completion_tokens"] = limit
    return request


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def read_chunk(state: StreamState, chunk: Any) -> str:
    """Fold one ``chat.completion.chunk`` into ``state``; returns the text delta it carries."""
    state.started = True
    if getattr(chunk, "id", None) and not state.response_id:
        state.response_id = str(chunk.id)
    if getattr(chunk, "model", None):
        state.response_model = str(chunk.model)
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        state.usage.input_tokens = _int(getattr(usage, "prompt_tokens", 0))
        state.usage.output_tokens = _int(getattr(usage, "completion_tokens", 0))
        details = getattr(usage, "prompt_tokens_details", None)
        state.usage.cached_tokens = _int(getattr(details, "cached_tokens", 0)) if details is not None else 0
    text = ""
    for choice in getattr(chunk, "choices", None) or []:
        if _int(getattr(choice, "index", 0)) != 0:
            continue  # one choice is asked for; ignore any other
        delta = getattr(choice, "delta", None)
        if delta is not None:
            content = getattr(delta, "content", None)
            if isinstance(content, str) and content:
                text += content
            refusal = getattr(delta, "refusal", None)  # a refusal is the answer the user gets to see
            if isinstance(refusal, str) and refusal:
                text += refusal
            for fragment in getattr(delta, "tool_calls", None) or []:
                index = getattr(fragment, "index", None)
                if not isinstance(index, int):
                    # Some servers leave the index out: a fragment with an id starts the next call.
                    starts = bool(getattr(fragment, "id", None))
                    index = (
                        (max(state.drafts) + 1 if state.drafts else 0)
                        if starts
                        else max(state.drafts, default=0)
                    )
                draft = state.draft(index)
                if getattr(fragment, "id", None):
                    draft.id = str(fragment.id)
                function = getattr(fragment, "function", None)
                if function is not None:
                    if getattr(function, "name", None):
                        draft.name = str(function.name)
                    if getattr(function, "arguments", None):
                        draft.add_arguments(str(function.arguments))
        finish = getattr(choice, "finish_reason", None)
        if finish:
            state.finish_reason = str(finish)
            state.completed = True
    if text:
        state.text.append(text)
    return text


class OpenAIEngine:
    """Streams chat completions from an OpenAI-compatible endpoint (see the module documentation)."""

    provider = PROVIDER

    async def complete(self, turn: Turn, runtime: ResolvedRuntime, on_delta: DeltaSink) -> ModelReply:
        if not runtime.model:
            raise EngineError(
                f"profile {runtime.profile_slug!r} has no runtime.model (engine openai needs one)",
                code="engine_failed",
            )
        request = build_request(runtime, turn)
        await load_sdk("openai")
        import httpx2
        import openai

        state = StreamState(provider=PROVIDER, request_model=runtime.model)
        api_key = read_api_key(runtime)
        client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=endpoint(runtime),
            timeout=openai.Timeout(timeout_s(runtime), connect=connect_timeout_s(runtime)),
            max_retries=max_retries(runtime),
        )
        try:
            async with client:
                stream = await client.chat.completions.create(**request)
                async with stream:
                    async for chunk in stream:
                        text = read_chunk(state, chunk)
                        if text:
                            await on_delta(text)
        except (openai.OpenAIError, httpx2.TimeoutException, httpx2.TransportError) as exc:
            raise sdk_failure(
                openai, exc, state, endpoint=endpoint(runtime), timeout=timeout_s(runtime), api_key=api_key
            ) from None
        if not state.completed:
            raise interrupted(state, endpoint(runtime))
        return state.reply()
