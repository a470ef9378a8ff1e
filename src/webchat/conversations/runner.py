"""The turn runner: one inference of one runtime for one turn, persisted phase by phase.

The runtime is the one resolved for the turn's own request and captured before the inference starts;
the runner never looks at the conversation pointer, so a switch while a turn runs cannot relabel it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from webchat.runtimes.engine import Engine, EngineError, ModelReply, ToolCall, Usage
from webchat.runtimes.resolve import ResolvedRuntime
from webchat.runtimes.tools import ToolError, get_tool
from webchat.stores.offload import write_call
from webchat.stores.protocol import TurnStore
from webchat.turns import keys
from webchat.turns.model import Block, Turn

log = logging.getLogger("webchat.conversations")

Publish = Callable[[str, str, dict[str, Any], dict[str, Any] | None], Awaitable[Any]]

DEFAULT_MAX_TOOL_ITERATIONS = 5


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class PendingTurn:
    """A prompt accepted for a conversation, with the runtime its own request resolved."""

    conv_id: str
    session_id: str
    turn_id: str
    prompt: str
    runtime: ResolvedRuntime
    idempotency_key: str
    prompt_event_id: str
    inference_id: str = ""
    queued: bool = False
    position: int = 0
    accept_seq: int = 0
    marked_running: bool = False  # its prompt row already says running
    # The code a cancellation of this turn is recorded with: ``interrupted`` when the server stops,
    # ``cancelled`` when a user stops it.
    cancel_code: str = "cancelled"


@dataclass
class TurnOutcome:
    turn: Turn
    ok: bool
    error: str = ""
    code: str = ""


class _Clock:
    """Strictly increasing snapshot timestamps within a turn (two saves in one millisecond must not merge)."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        t = max(now_ms(), self.last + 1)
        self.last = t
        return t


def _inference_metadata(
    runtime: ResolvedRuntime,
    reply: ModelReply | None,
    started: float,
    ttft: float | None,
    failure: BaseException | None = None,
    earlier: Usage | None = None,
) -> dict[str, Any]:
    """The ``webchat.inference@v1`` object. For a failed model call, what the engine learned of it before
    the failure (served model, response id, usage so far; :attr:`EngineError.reply`) is recorded in
    place of the previous call's reply. ``earlier`` is the usage of the turn's previous model calls (a
    tool loop makes several): the recorded usage is the whole turn's."""
    known = getattr(failure, "reply", None)
    if isinstance(known, ModelReply):
        reply = known
    doc: dict[str, Any] = {
        "provider": (reply.provider if reply else "") or runtime.engine,
        "request_model": (reply.request_model if reply else "") or runtime.model or runtime.engine,
        "response_model": reply.response_model if reply else "",
        "response_id": reply.response_id if reply else "",
        "finish_reason": reply.finish_reason if reply else "",
        "usage": {
            "input_tokens": (reply.usage.input_tokens if reply else 0)
            + (earlier.input_tokens if earlier else 0),
            "output_tokens": (reply.usage.output_tokens if reply else 0)
            + (earlier.output_tokens if earlier else 0),
            "cached_tokens": (reply.usage.cached_tokens if reply else 0)
            + (earlier.cached_tokens if earlier else 0),
        },
        "model_calls": 0,
        "ttft_ms": None if ttft is None else round((ttft - started) * 1000, 3),
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    return doc


async def run_turn(
    pending: PendingTurn,
    history: list[Block],
    engine_factory: Callable[[ResolvedRuntime], Engine],
    store: TurnStore,
    publish: Publish,
    *,
    max_tool_iterations: int = DEFAULT_MAX_TOOL_ITERATIONS,
) -> TurnOutcome:
    runtime = pending.runtime
    inference_id = pending.inference_id or str(uuid.uuid4())
    pending.inference_id = inference_id
    clock = _Clock()
    blocks: list[Block] = []
    if runtime.system_prompt:
        # One id per runtime: the same system prompt is stored once however many turns use it.
        blocks.append(
            Block(
                kind="system",
                role="system",
                payload={"text": runtime.system_prompt},
                id=f"system:{runtime.registry_slug}/{runtime.runtime_key}",
            )
        )
    # History blocks keep their ids, so repeated history costs a membership row, not a copy.
    blocks.extend(
        Block(kind=b.kind, role=b.role, payload=dict(b.payload), metadata=dict(b.metadata), id=b.id)
        for b in history
    )
    blocks.append(
        Block(kind="user", role="user", payload={"text": pending.prompt}, id=f"{pending.turn_id}#user")
    )
    turn = Turn(
        id=pending.turn_id,
        blocks=blocks,
        metadata={
            keys.SESSION_ID: pending.session_id,
            keys.INFERENCE_ID: inference_id,
            keys.RUNTIME: runtime.metadata(),
        },
    )
    meta = {"runtime_key": runtime.runtime_key, "inference_id": inference_id, "turn_id": pending.turn_id}

    def save(phase: str) -> Awaitable[None]:
        # The turn is copied and timestamped now, at the call, not when the write runs.
        return write_call(
            store,
            store.save_snapshot,
            pending.conv_id,
            pending.session_id,
            turn.copy(),
            phase,
            clock(),
            runtime_key=runtime.runtime_key,
            inference_id=inference_id,
        )

    message_id = f"{pending.turn_id}:assistant"
    started = time.perf_counter()
    ttft: float | None = None
    reply: ModelReply | None = None
    used: Usage | None = None  # usage of the turn's model calls so far
    calls = 0
    cumulative = ""

    def add(block: Block) -> None:
        block.id = block.id or f"{pending.turn_id}#{len(turn.blocks)}"
        turn.blocks.append(block)

    # The pre_inference snapshot is written while the engine starts streaming (first-token latency);
    # it is always complete before any later snapshot of the turn is written.
    pre_saved = asyncio.ensure_future(save("pre_inference"))

    async def save_after_pre(phase: str) -> None:
        await asyncio.shield(pre_saved)
        await save(phase)

    await publish(
        "llm.start",
        message_id,
        {"id": message_id, "turn_id": pending.turn_id},
        dict(meta, model=runtime.model or runtime.engine),
    )
    try:
        engine = engine_factory(runtime)
        for iteration in range(max(1, max_tool_iterations) + 1):
            segment_id = message_id if iteration == 0 else f"{message_id}:{iteration}"
            if iteration:
                await publish(
                    "llm.start", segment_id, {"id": segment_id, "turn_id": pending.turn_id}, dict(meta)
                )

            async def on_delta(delta: str, segment_id: str = segment_id) -> None:
                nonlocal ttft, cumulative
                if ttft is None:
                    ttft = time.perf_counter()
                cumulative += delta
                await publish(
                    "llm.delta",
                    segment_id,
                    {"id": segment_id, "delta": delta, "cumulative": cumulative},
                    meta,
                )

            calls += 1
            reply = await engine.complete(turn.copy(), runtime, on_delta)
            # The reply is recorded whole below: its text is no longer partial if a later step fails
            # (the tool loop's limit, a tool, a cancellation), and the next segment streams afresh.
            cumulative = ""
            if reply.text:
                add(Block(kind="llm_text", role="assistant", payload={"text": reply.text}))
            for call in reply.tool_calls:
                add(
                    Block(
                        kind="tool_call",
                        role="assistant",
                        payload={"id": call.id, "name": call.name, "args": call.arguments},
                    )
                )
            turn.metadata[keys.INFERENCE] = inference = _inference_metadata(
                runtime, reply, started, ttft, None, used
            )
            inference["model_calls"] = calls
            used = Usage(
                input_tokens=inference["usage"]["input_tokens"],
                output_tokens=inference["usage"]["output_tokens"],
                cached_tokens=inference["usage"]["cached_tokens"],
            )
            await save_after_pre("post_inference")
            # llm.final frames carry the provenance record too (runtime-truth.md §2).
            final_meta = dict(meta, model=reply.response_model, usage=inference["usage"], inference=inference)
            if not reply.tool_calls:
                # The final snapshot is on disk before the client hears the turn is over.
                await save_after_pre("final")
                await publish("llm.final", segment_id, {"id": segment_id, "text": reply.text}, final_meta)
                return TurnOutcome(turn=turn, ok=True)
            await publish("llm.final", segment_id, {"id": segment_id, "text": reply.text}, final_meta)
            if iteration >= max_tool_iterations:
                raise EngineError("tool loop exceeded max iterations", code="max_tool_iterations")
            for call in reply.tool_calls:
                add(await _run_tool(call, runtime, publish, meta))
            await save_after_pre("post_tools")
        raise EngineError("the tool loop ended without a final answer", code="max_tool_iterations")
    except (EngineError, asyncio.CancelledError, Exception) as exc:
        cancelled = isinstance(exc, asyncio.CancelledError)
        code = getattr(exc, "code", "") or (pending.cancel_code if cancelled else "internal_error")
        if cancelled:
            message = (
                "the server stopped while this turn was running"
                if code == "interrupted"
                else "the turn was stopped before it finished"
            )
        else:
            message = str(exc) or exc.__class__.__name__
        # What was streamed before the failure is kept, marked partial.
        partial = getattr(exc, "partial_text", "") or cumulative
        if partial:
            add(
                Block(
                    kind="llm_text", role="assistant", payload={"text": partial}, metadata={"partial": True}
                )
            )
        inference = _inference_metadata(runtime, reply, started, ttft, exc)
        # Usage of the whole turn: completed calls, plus what the failed call reported (if anything).
        known = getattr(exc, "reply", None)
        failed_call = known.usage if isinstance(known, ModelReply) else Usage()
        done = used or Usage()
        inference["model_calls"] = calls
        inference["usage"] = {
            "input_tokens": done.input_tokens + failed_call.input_tokens,
            "output_tokens": done.output_tokens + failed_call.output_tokens,
            "cached_tokens": done.cached_tokens + failed_call.cached_tokens,
        }
        # The underlying error's class (``openai.RateLimitError``) when the engine names one.
        inference["error"] = {
            "class": getattr(exc, "error_class", "") or exc.__class__.__name__,
            "code": code,
            "message": message,
        }
        status = getattr(exc, "status", None)
        if isinstance(status, int):
            inference["error"]["status"] = status
        turn.metadata[keys.INFERENCE] = inference
        turn.metadata[keys.ERROR] = {"code": code, "message": message}
        try:
            with contextlib.suppress(Exception):
                await asyncio.shield(pre_saved)
            try:
                await asyncio.shield(save("post_inference"))
            except Exception as save_exc:
                # The client still hears that the turn ended; the operator finds the reason in the log.
                log.error("turn %s: could not record its failure: %s", pending.turn_id, save_exc)
            await asyncio.shield(
                publish(
                    "llm.error",
                    message_id,
                    {"id": message_id, "error": message, "code": code},
                    dict(meta, inference=inference),
                )
            )
        finally:
            if cancelled:
                raise
        return TurnOutcome(turn=turn, ok=False, error=message, code=code)


async def _run_tool(
    call: ToolCall, runtime: ResolvedRuntime, publish: Publish, meta: dict[str, Any]
) -> Block:
    tool_event_id = f"{meta['turn_id']}:tool:{call.id}"
    await publish(
        "tool.start", tool_event_id, {"id": tool_event_id, "name": call.name, "input": call.arguments}, meta
    )
    payload: dict[str, Any] = {"id": call.id}
    try:
        if call.name not in runtime.tools:
            raise ToolError(f"tool {call.name!r} is not enabled for runtime {runtime.runtime_key}")
        tool = get_tool(call.name)
        payload["result"] = await asyncio.to_thread(tool.run, call.arguments)
    except ToolError as exc:
        payload["error"] = str(exc)
    result = payload.get("result", "")
    await publish(
        "tool.result",
        tool_event_id,
        {
            "id": tool_event_id,
            "result": result,
            **({"error": payload["error"]} if "error" in payload else {}),
        },
        meta,
    )
    await publish("tool.done", tool_event_id, {"id": tool_event_id}, meta)
    return Block(kind="tool_use", role="tool", payload=payload)
