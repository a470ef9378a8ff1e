"""What the provider engines (``openai``, ``anthropic``) share.

- :func:`read_conversation` turns a turn's blocks (see :mod:`webchat.runtimes.engine`) into a
  provider-neutral conversation: one system text and user / assistant / tool messages, with every tool
  call paired with a result, so that a history written by any runtime is a valid request for any provider;
- :func:`read_api_key` reads the key from the environment when a model is called, never earlier;
- option helpers (timeout, retries, sampling settings);
- :class:`StreamState`, what a streamed reply has produced so far (text, tool calls, provenance);
- :func:`provider_failure`, the mapping of an SDK failure to an :class:`EngineError` with a stable code;
- :func:`redact`, which keeps API keys out of every message.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from webchat.runtimes.engine import EngineError, ModelReply, ToolCall, Usage, error_class_name
from webchat.runtimes.profiles import api_key_env_for, key_env_allowed, key_env_refusal
from webchat.runtimes.resolve import ResolvedRuntime
from webchat.turns.model import Block

PLACEHOLDER_API_KEY: Final = "not-needed"
"""Sent to a ``base_url`` endpoint when the profile names no key variable (local servers need none)."""
DEFAULT_TIMEOUT_S: Final = 120.0
MAX_CONNECT_TIMEOUT_S: Final = 10.0
DEFAULT_MAX_RETRIES: Final = 2
MAX_DETAIL_CHARS: Final = 500
NOT_RUN_RESULT: Final = "(no result: the tool call was not run)"
REDACTED: Final = "[redacted]"

# Things that look like credentials even when they are not the key in use (a provider may echo a key).
_KEY_LIKE: Final = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{6,}|(?i:bearer)\s+[A-Za-z0-9_\-.~+/=]{6,}")

Role = Literal["user", "assistant", "tool"]


# --- the conversation --------------------------------------------------------------------------------


@dataclass
class ChatMessage:
    """One message of a provider-neutral conversation.

    ``assistant`` messages may carry tool calls; a ``tool`` message is the result of the call
    ``tool_call_id`` (``is_error`` when the tool failed) and always follows the assistant message that
    made the call.
    """

    role: Role
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str = ""
    is_error: bool = False


@dataclass
class Conversation:
    system: str
    messages: list[ChatMessage]


def _arguments_text(arguments: Any) -> str:
    return json.dumps(arguments, ensure_ascii=False, sort_keys=True)


def _tool_call_of(block: Block, ordinal: int) -> ToolCall:
    payload = block.payload
    call_id = str(payload.get("id") or f"call_{ordinal}")
    args = payload.get("args")
    return ToolCall(
        id=call_id, name=str(payload.get("name", "")), arguments=args if isinstance(args, dict) else {}
    )


def _tool_result_of(block: Block) -> tuple[str, bool]:
    payload = block.payload
    if "error" in payload:
        return f"error: {payload['error']}", True
    result = payload.get("result", "")
    return (result if isinstance(result, str) else _arguments_text(result)), False


def read_conversation(blocks: Iterable[Block], *, tools_enabled: bool) -> Conversation:
    """The conversation a provider is sent for ``blocks``.

    - ``system`` blocks make the system text; ``user`` and ``llm_text`` blocks become user and assistant
      messages (an empty answer is left out; consecutive answer texts join into one message);
    - a ``tool_call`` joins the assistant message in front of it, and each ``tool_use`` becomes the
      ``tool`` message of its call. A call with no result (a run that stopped before its tools ran) gets
      a stand-in result, and a result without its call is left out, since providers refuse both;
    - with ``tools_enabled`` false (the runtime offers no tools, yet earlier runtimes used some) calls and
      results are written into the assistant's text instead, so the model still sees what happened.
    """
    system_parts: list[str] = []
    messages: list[ChatMessage] = []
    pending: dict[str, ToolCall] = {}  # calls of the latest assistant message still waiting for a result
    names: dict[str, str] = {}  # call id -> tool name, for results written as text

    def close_pending() -> None:
        for call_id in list(pending):
            messages.append(
                ChatMessage(role="tool", text=NOT_RUN_RESULT, tool_call_id=call_id, is_error=True)
            )
        pending.clear()

    def assistant_message() -> ChatMessage:
        """The assistant message to add to: the last message when it is an assistant one, else a new one."""
        if messages and messages[-1].role == "assistant":
            return messages[-1]
        message = ChatMessage(role="assistant")
        messages.append(message)
        return message

    def add_assistant_text(text: str) -> None:
        message = assistant_message()
        message.text = f"{message.text}\n\n{text}" if message.text else text

    for ordinal, block in enumerate(blocks):
        if block.kind == "system":
            if block.text.strip():
                system_parts.append(block.text)
        elif block.kind == "user":
            close_pending()
            messages.append(ChatMessage(role="user", text=block.text))
        elif block.kind == "llm_text":
            if not block.text:
                continue
            close_pending()
            if messages and messages[-1].role == "assistant" and messages[-1].tool_calls:
                messages.append(ChatMessage(role="assistant", text=block.text))
            else:
                add_assistant_text(block.text)
        elif block.kind == "tool_call":
            call = _tool_call_of(block, ordinal)
            names[call.id] = call.name
            if not tools_enabled:
                add_assistant_text(f"(I called the tool {call.name} with {_arguments_text(call.arguments)}.)")
                continue
            if not (messages and messages[-1].role == "assistant"):
                close_pending()
            assistant_message().tool_calls.append(call)
            pending[call.id] = call
        elif block.kind == "tool_use":
            call_id = str(block.payload.get("id", ""))
            text, is_error = _tool_result_of(block)
            if not tools_enabled:
                if call_id in names:
                    add_assistant_text(f"(The tool {names[call_id]} returned: {text})")
                continue
            if call_id in pending:
                del pending[call_id]
                messages.append(ChatMessage(role="tool", text=text, tool_call_id=call_id, is_error=is_error))
    close_pending()
    return Conversation(system="\n\n".join(system_parts), messages=messages)


def parse_arguments(raw: str) -> dict[str, Any]:
    """A tool call's JSON arguments as an object. Text that is not a JSON object is kept under
    ``_invalid_arguments``, so that the tool reports the problem and the model can retry."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_invalid_arguments": raw}
    return value if isinstance(value, dict) else {"_invalid_arguments": raw}


# --- key and options ---------------------------------------------------------------------------------


async def load_sdk(module: str) -> None:
    """Import a provider SDK in a worker thread: its first import takes a second or more and must not
    stall the event loop (other conversations keep streaming meanwhile)."""
    try:
        await asyncio.to_thread(importlib.import_module, module)
    except ImportError as exc:
        raise EngineError(
            f"engine {module!r} cannot run: the {module!r} package is not installed (pip install {module})",
            code="engine_unavailable",
            error_class=error_class_name(exc),
        ) from None


def read_api_key(runtime: ResolvedRuntime) -> str:
    """The runtime's API key, read from the environment now; never stored by the caller.

    A runtime with a ``base_url`` and no ``api_key_env`` gets :data:`PLACEHOLDER_API_KEY`.
    """
    env_name = api_key_env_for(runtime.engine, runtime.base_url, runtime.api_key_env)
    if env_name is None:
        return PLACEHOLDER_API_KEY
    if not key_env_allowed(env_name):
        # The last check before a key leaves the process: whatever path produced this runtime.
        raise EngineError(key_env_refusal(env_name), code="api_key_env_not_allowed")
    value = os.environ.get(env_name, "").strip()
    if not value:
        raise EngineError(
            f"environment variable {env_name} is not set: profile {runtime.profile_slug!r} "
            f"(engine {runtime.engine}) reads its API key from it",
            code="missing_api_key",
        )
    return value


def timeout_s(runtime: ResolvedRuntime) -> float:
    """``options.timeout_s``: the longest wait for a connection or for the next part of the response."""
    value = runtime.options.get("timeout_s")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return DEFAULT_TIMEOUT_S
    return float(value)


def connect_timeout_s(runtime: ResolvedRuntime) -> float:
    return min(timeout_s(runtime), MAX_CONNECT_TIMEOUT_S)


def max_retries(runtime: ResolvedRuntime) -> int:
    """``options.max_retries``: how often the SDK retries a 408/409/429/5xx or a connection failure."""
    value = runtime.options.get("max_retries")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return DEFAULT_MAX_RETRIES
    return value


def sampling_options(runtime: ResolvedRuntime) -> dict[str, float]:
    """``temperature`` and ``top_p`` when the profile sets them (else the provider's defaults apply)."""
    out: dict[str, float] = {}
    for key in ("temperature", "top_p"):
        value = runtime.options.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    return out


def max_tokens(runtime: ResolvedRuntime) -> int | None:
    value = runtime.options.get("max_tokens")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


# --- streaming ---------------------------------------------------------------------------------------


@dataclass
class ToolCallDraft:
    """A tool call being streamed. ``provisional`` arguments (sent whole at the start of the call) give
    way to argument fragments when fragments follow."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    provisional: bool = False

    def add_arguments(self, fragment: str) -> None:
        if self.provisional:
            self.arguments.clear()
            self.provisional = False
        self.arguments.append(fragment)


@dataclass
class StreamState:
    """What one streamed model call has produced so far."""

    provider: str
    request_model: str
    text: list[str] = field(default_factory=list)
    response_id: str = ""
    response_model: str = ""
    finish_reason: str = ""
    usage: Usage = field(default_factory=Usage)
    started: bool = False  # any event of the response was read
    completed: bool = False  # the provider said the reply is complete
    drafts: dict[int, ToolCallDraft] = field(default_factory=dict)

    @property
    def streamed_text(self) -> str:
        return "".join(self.text)

    def draft(self, index: int) -> ToolCallDraft:
        found = self.drafts.get(index)
        if found is None:
            found = self.drafts[index] = ToolCallDraft()
        return found

    def tool_calls(self) -> list[ToolCall]:
        calls = []
        for position, index in enumerate(sorted(self.drafts)):
            draft = self.drafts[index]
            call_id = draft.id or f"call_{self.response_id or 'unknown'}_{position}"
            calls.append(
                ToolCall(id=call_id, name=draft.name, arguments=parse_arguments("".join(draft.arguments)))
            )
        return calls

    def reply(self) -> ModelReply:
        return ModelReply(
            text=self.streamed_text,
            tool_calls=self.tool_calls(),
            provider=self.provider,
            request_model=self.request_model,
            response_model=self.response_model,
            response_id=self.response_id,
            finish_reason=self.finish_reason,
            usage=Usage(
                input_tokens=self.usage.input_tokens,
                output_tokens=self.usage.output_tokens,
                cached_tokens=self.usage.cached_tokens,
            ),
        )


# --- failures ----------------------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each secret, and anything that looks like an API key or bearer token, replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret != PLACEHOLDER_API_KEY:
            text = text.replace(secret, REDACTED)
    return _KEY_LIKE.sub(REDACTED, text)


def provider_detail(body: object, fallback: str) -> str:
    """The provider's own error message from an error body (``{"error": {"message": …}}`` and the like)."""
    detail = ""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            message = inner.get("message")
            kind = inner.get("type") or inner.get("code")
            if isinstance(message, str) and message.strip():
                detail = f"{kind}: {message.strip()}" if isinstance(kind, str) and kind else message.strip()
        elif isinstance(inner, str):
            detail = inner.strip()
    elif isinstance(body, str):
        detail = body.strip()
    detail = " ".join((detail or fallback).split())
    return detail if len(detail) <= MAX_DETAIL_CHARS else detail[: MAX_DETAIL_CHARS - 1] + "…"


FailureKind = Literal["timeout", "connection", "status", "api", "other"]

_DISPLAY: Final = {"openai": "OpenAI-compatible endpoint", "anthropic": "Anthropic endpoint"}


def provider_failure(
    *,
    state: StreamState,
    kind: FailureKind,
    detail: str,
    error_class: str,
    endpoint: str,
    status: int | None = None,
    retries: int | None = None,
    timeout: float | None = None,
    secrets: Iterable[str] = (),
) -> EngineError:
    """The :class:`EngineError` for an SDK failure, with a stable code and a message free of secrets.

    ============================  ==========================================================
    code                          when
    ============================  ==========================================================
    ``provider_timeout``          connect or read timeout (after the SDK's retries)
    ``provider_unreachable``      no connection could be made (after the SDK's retries)
    ``stream_interrupted``        the connection broke after the response had started
    ``auth_failed``               HTTP 401 / 403
    ``rate_limited``              HTTP 429, still after the SDK's retries
    ``provider_error``            any other HTTP error, or an error event inside the stream
    ============================  ==========================================================
    """
    where = f"{_DISPLAY.get(state.provider, state.provider)} {endpoint}"
    after = f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries else ""
    if kind == "timeout":
        code = "provider_timeout"
        limit = f" within {timeout:g} s" if timeout else ""
        stage = " while streaming" if state.started else ""
        message = f"{where} timed out: no answer{limit}{stage}{',' if after else ''}{after}"
    elif kind == "connection" and state.started:
        code = "stream_interrupted"
        message = f"the stream from {where} broke off after {len(state.streamed_text)} characters: {detail}"
    elif kind == "connection":
        code = "provider_unreachable"
        message = f"cannot connect to {where}{after}: {detail}"
    elif kind == "status" and status in (401, 403):
        code = "auth_failed"
        message = f"{where} refused the API key (HTTP {status}): {detail}"
    elif kind == "status" and status == 429:
        code = "rate_limited"
        message = f"{where} is rate limiting requests (HTTP 429){after}: {detail}"
    elif kind == "status":
        code = "provider_error"
        message = f"{where} returned HTTP {status}{after}: {detail}"
    elif kind == "api":
        code = "provider_error"
        message = f"{where} reported an error in the stream: {detail}"
    else:
        code = "provider_error"
        message = f"{where} failed: {detail}"
    secrets = list(secrets)
    return EngineError(
        redact(message, secrets),
        code=code,
        partial_text=state.streamed_text,
        error_class=error_class,
        status=status,
        reply=state.reply(),
    )


def sdk_failure(
    sdk: Any, exc: BaseException, state: StreamState, *, endpoint: str, timeout: float, api_key: str
) -> EngineError:
    """Classify an exception raised through the ``openai`` or ``anthropic`` SDK (``sdk`` is the module).

    Both SDKs share one client design: the same exception classes (timeout, connection, HTTP status,
    in-stream API error) with the same attributes; their HTTP layer's own timeouts and transport errors
    are classified the same way when they escape unwrapped.
    """
    import httpx2

    common: dict[str, Any] = {
        "state": state,
        "error_class": error_class_name(exc),
        "endpoint": endpoint,
        "secrets": [api_key],
    }
    if isinstance(exc, sdk.APITimeoutError):
        return provider_failure(
            kind="timeout", detail=str(exc), timeout=timeout, retries=retries_taken(exc.request), **common
        )
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__
        detail = f"{exc.message} ({cause})" if cause is not None and str(cause) else exc.message
        return provider_failure(
            kind="connection", detail=detail, retries=retries_taken(exc.request), **common
        )
    if isinstance(exc, sdk.APIStatusError) and exc.status_code >= 400:
        return provider_failure(
            kind="status",
            status=exc.status_code,
            detail=provider_detail(exc.body, exc.message),
            retries=retries_taken(exc.request),
            **common,
        )
    if isinstance(exc, sdk.APIError):
        # e.g. an ``error`` event inside a stream that had started with HTTP 200
        return provider_failure(kind="api", detail=provider_detail(exc.body, exc.message), **common)
    if isinstance(exc, httpx2.TimeoutException):
        return provider_failure(kind="timeout", detail=str(exc), timeout=timeout, **common)
    if isinstance(exc, httpx2.TransportError):
        return provider_failure(kind="connection", detail=str(exc) or type(exc).__name__, **common)
    return provider_failure(kind="other", detail=str(exc) or type(exc).__name__, **common)


def interrupted(state: StreamState, endpoint: str) -> EngineError:
    """The error for a stream that ended without the provider saying the reply was complete."""
    where = f"{_DISPLAY.get(state.provider, state.provider)} {endpoint}"
    return EngineError(
        f"the stream from {where} ended before the reply was complete "
        f"({len(state.streamed_text)} characters received)",
        code="stream_interrupted",
        partial_text=state.streamed_text,
        error_class="",
        reply=state.reply(),
    )


def retries_taken(request: object) -> int | None:
    """How many retries the SDK had made when it gave up (its ``x-stainless-retry-count`` header)."""
    headers = getattr(request, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("x-stainless-retry-count")
    except Exception:
        return None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
