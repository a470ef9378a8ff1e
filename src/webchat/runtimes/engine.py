"""The provider-neutral engine interface the turn runner calls.

An engine gets the turn's blocks as they will be recorded and returns one model reply, streaming text
deltas as they arrive. Block conventions in ``turn.blocks``:

=============  =========  ==========================================
kind           role       payload
=============  =========  ==========================================
``system``     system     ``{text}`` — the runtime's system prompt
``user``       user       ``{text}`` — history prompts and the new prompt (the last one)
``llm_text``   assistant  ``{text}`` — earlier answers
``tool_call``  assistant  ``{id, name, args}``
``tool_use``   tool       ``{id, result}`` or ``{id, error}``
=============  =========  ==========================================

Tool calls and results after the last ``user`` block belong to the current turn's tool loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from webchat.runtimes.resolve import ResolvedRuntime
from webchat.turns.model import Turn

DeltaSink = Callable[[str], Awaitable[None]]
"""Called with each text delta, in order; the deltas of one reply concatenate to its ``text``."""


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
        }


@dataclass
class ModelReply:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    provider: str = ""
    request_model: str = ""
    response_model: str = ""
    response_id: str = ""
    finish_reason: str = ""
    usage: Usage = field(default_factory=Usage)


class EngineError(Exception):
    """An inference that failed.

    - ``code``: a stable code (``engine_failed``, ``engine_unavailable``, ``missing_api_key``,
      ``auth_failed``, ``rate_limited``, ``provider_timeout``, ``provider_unreachable``,
      ``provider_error``, ``stream_interrupted``…);
    - ``message``: for people; never holds an API key;
    - ``partial_text``: what was streamed before the failure;
    - ``error_class``: the underlying error's class, e.g. ``openai.RateLimitError`` (empty: this class);
    - ``status``: the provider's HTTP status when there was one;
    - ``reply``: what is known of the failed model call (provider, requested and served model, response
      id, usage so far), for the turn's provenance; None when nothing is known.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "engine_failed",
        partial_text: str = "",
        error_class: str = "",
        status: int | None = None,
        reply: ModelReply | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.partial_text = partial_text
        self.error_class = error_class
        self.status = status
        self.reply = reply


def error_class_name(exc: BaseException) -> str:
    """``package.ClassName`` of an exception (``openai.RateLimitError``); builtins by bare name."""
    package = type(exc).__module__.split(".", 1)[0]
    name = type(exc).__qualname__
    return name if package in ("builtins", "") else f"{package}.{name}"


@runtime_checkable
class Engine(Protocol):
    provider: str

    async def complete(self, turn: Turn, runtime: ResolvedRuntime, on_delta: DeltaSink) -> ModelReply:
        """Run one model call over ``turn.blocks``; raise :class:`EngineError` on failure."""
        ...


def build_engine(runtime: ResolvedRuntime) -> Engine:
    """The engine for a runtime: ``offline``, ``openai`` or ``anthropic``.

    Provider SDKs are imported here, on first use, so that commands that run no model stay quick. The
    API key is not read here: a provider engine reads it from the environment when it calls the model.
    """
    if runtime.engine == "offline":
        from webchat.runtimes.offline import OfflineEngine

        return OfflineEngine()
    if runtime.engine in ("openai", "anthropic"):
        try:
            if runtime.engine == "openai":
                from webchat.runtimes.openai_engine import OpenAIEngine

                return OpenAIEngine()
            from webchat.runtimes.anthropic_engine import AnthropicEngine

            return AnthropicEngine()
        except ImportError as exc:
            raise EngineError(
                f"engine {runtime.engine!r} cannot run (profile {runtime.profile_slug!r}): "
                f"the {runtime.engine!r} package is not installed ({exc.name or exc})",
                code="engine_unavailable",
                error_class=error_class_name(exc),
            ) from None
    raise EngineError(f"unknown engine {runtime.engine!r}", code="engine_unavailable")
