"""Helpers for engine tests: a provider runtime, a turn as the runner builds it, running one model call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from webchat.runtimes.engine import Engine, EngineError, ModelReply
from webchat.runtimes.resolve import ResolvedRuntime
from webchat.turns.model import Block, Turn


def provider_runtime(
    engine: str,
    base_url: str | None,
    *,
    model: str = "fake-model",
    key_env: str | None = None,
    tools: Sequence[str] = ("calculator",),
    system_prompt: str = "You are terse.",
    key: str = "",
    **options: Any,
) -> ResolvedRuntime:
    return ResolvedRuntime(
        runtime_key=key or engine,
        profile_slug=key or engine,
        registry_slug="test",
        profile_version=1,
        engine=engine,
        model=model,
        system_prompt=system_prompt,
        tools=tuple(tools),
        options={"timeout_s": 5, "max_retries": 2, **options},
        base_url=base_url,
        api_key_env=key_env,
    )


def user(text: str, block_id: str = "") -> Block:
    return Block(kind="user", role="user", payload={"text": text}, id=block_id)


def answer(text: str) -> Block:
    return Block(kind="llm_text", role="assistant", payload={"text": text})


def tool_call(call_id: str, name: str, args: dict[str, Any]) -> Block:
    return Block(kind="tool_call", role="assistant", payload={"id": call_id, "name": name, "args": args})


def tool_result(call_id: str, result: str = "", error: str = "") -> Block:
    payload: dict[str, Any] = {"id": call_id}
    payload["error" if error else "result"] = error or result
    return Block(kind="tool_use", role="tool", payload=payload)


def make_turn(runtime: ResolvedRuntime, prompt: str, history: Sequence[Block] = ()) -> Turn:
    blocks: list[Block] = []
    if runtime.system_prompt:
        blocks.append(Block(kind="system", role="system", payload={"text": runtime.system_prompt}))
    blocks.extend(history)
    blocks.append(user(prompt))
    return Turn(id="turn-1", blocks=blocks)


@dataclass
class Run:
    reply: ModelReply | None = None
    error: EngineError | None = None
    deltas: list[str] = field(default_factory=list)


def run_engine(engine: Engine, runtime: ResolvedRuntime, turn: Turn) -> Run:
    run = Run()

    async def sink(delta: str) -> None:
        run.deltas.append(delta)

    try:
        run.reply = asyncio.run(engine.complete(turn, runtime, sink))
    except EngineError as exc:
        run.error = exc
    return run


def reply_blocks(reply: ModelReply) -> list[Block]:
    """The blocks the runner appends for a reply (text, then tool calls)."""
    blocks = [answer(reply.text)] if reply.text else []
    blocks += [tool_call(c.id, c.name, c.arguments) for c in reply.tool_calls]
    return blocks
