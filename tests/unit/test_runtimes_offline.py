"""The offline engine: streaming, determinism, tool loop, recall and failure mode."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from webchat.runtimes.engine import Engine, EngineError, ModelReply, build_engine
from webchat.runtimes.offline import OfflineEngine, find_arithmetic
from webchat.runtimes.profiles import load_registries
from webchat.runtimes.resolve import ResolvedRuntime, resolve_runtime
from webchat.runtimes.tools import default_tool_registry
from webchat.turns.model import Block, Turn

REGS = load_registries()


def runtime(slug: str = "default", **changes: Any) -> ResolvedRuntime:
    rt = resolve_runtime(REGS, profile=slug, registry="builtin")
    options = {**rt.options, "token_delay_ms": 0, **changes.pop("options", {})}
    return dataclasses.replace(rt, options=options, **changes)


def make_turn(rt: ResolvedRuntime, *prompts: str, extra: tuple[Block, ...] = ()) -> Turn:
    """System prompt, then user/assistant pairs for all but the last prompt, then the last prompt."""
    blocks = [Block("system", "system", {"text": rt.system_prompt})]
    for i, prompt in enumerate(prompts):
        blocks.append(Block("user", "user", {"text": prompt}))
        if i < len(prompts) - 1:
            blocks.append(Block("llm_text", "assistant", {"text": f"answer {i}"}))
    return Turn(id="turn-1", blocks=[*blocks, *extra])


def complete(rt: ResolvedRuntime, turn: Turn) -> tuple[ModelReply, list[str]]:
    deltas: list[str] = []

    async def sink(delta: str) -> None:
        deltas.append(delta)

    reply = asyncio.run(build_engine(rt).complete(turn, rt, sink))
    return reply, deltas


def test_build_engine() -> None:
    engine = build_engine(runtime())
    assert isinstance(engine, OfflineEngine) and isinstance(engine, Engine)
    assert engine.provider == "offline"
    # Provider engines are built the same way (they read their key only when they make a call).
    assert build_engine(runtime(engine="openai")).provider == "openai"


def test_streams_exactly_the_final_text_word_by_word() -> None:
    rt = runtime()
    reply, deltas = complete(rt, make_turn(rt, "Hello there, how are you today?"))
    assert "".join(deltas) == reply.text
    assert len(deltas) == len(reply.text.split())
    assert reply.finish_reason == "stop" and reply.tool_calls == []
    assert "[default]" in reply.text and "Hello there, how are you today?" in reply.text
    assert "0 earlier messages" in reply.text


def test_reply_metadata() -> None:
    rt = runtime()
    reply, _ = complete(rt, make_turn(rt, "one two three"))
    assert reply.provider == "offline"
    assert reply.request_model == "offline"
    assert reply.response_model == "offline-default"
    assert reply.response_id.startswith("offline-") and len(reply.response_id) == len("offline-") + 32
    assert reply.usage.output_tokens == len(reply.text.split())
    assert reply.usage.input_tokens == len(rt.system_prompt.split()) + 3
    modelled = runtime(model="my-model")
    reply, _ = complete(modelled, make_turn(modelled, "hi"))
    assert reply.request_model == reply.response_model == "my-model"


def test_deterministic() -> None:
    rt = runtime("planner")
    turn = make_turn(rt, "first", "build a shed")
    a, da = complete(rt, turn)
    b, db = complete(rt, turn)
    assert (a.text, da) == (b.text, db)
    assert a.response_id != b.response_id


def test_style_follows_the_runtime() -> None:
    texts = {}
    for slug in ("default", "fast", "planner"):
        rt = runtime(slug)
        texts[slug], _ = complete(rt, make_turn(rt, "earlier one", "build a shed"))
    assert texts["fast"].text == '[fast] Noted: "build a shed". 1 earlier message.'
    assert "\n1. " in texts["planner"].text and "Plan for" in texts["planner"].text
    assert "Hello!" in texts["default"].text and "1 earlier message" in texts["default"].text
    styled = runtime("default", options={"style": "terse"})
    assert complete(styled, make_turn(styled, "x"))[0].text.startswith('[default] Noted: "x"')


def test_tool_call_then_answer() -> None:
    rt = runtime()
    turn = make_turn(rt, "Please compute (17 * 23) + 1?")
    first, deltas = complete(rt, turn)
    assert first.finish_reason == "tool_calls"
    assert "".join(deltas) == first.text
    assert len(first.tool_calls) == 1
    call = first.tool_calls[0]
    assert call.name == "calculator" and call.arguments == {"expression": "(17 * 23) + 1"}
    assert call.id.startswith("call_")
    assert complete(rt, turn)[0].tool_calls[0].id == call.id  # deterministic id

    result = default_tool_registry().run(call.name, call.arguments)
    turn.blocks += [
        Block("llm_text", "assistant", {"text": first.text}),
        Block("tool_call", "assistant", {"id": call.id, "name": call.name, "args": call.arguments}),
        Block("tool_use", "tool", {"id": call.id, "result": result}),
    ]
    second, _ = complete(rt, turn)
    assert second.finish_reason == "stop" and second.tool_calls == []
    assert "392" in second.text


def test_tool_error_is_reported() -> None:
    rt = runtime()
    turn = make_turn(rt, "what is 1/0")
    call = complete(rt, turn)[0].tool_calls[0]
    turn.blocks += [
        Block("tool_call", "assistant", {"id": call.id, "name": "calculator", "args": call.arguments}),
        Block("tool_use", "tool", {"id": call.id, "error": "division by zero"}),
    ]
    reply, _ = complete(rt, turn)
    assert reply.tool_calls == [] and "division by zero" in reply.text


def test_earlier_tool_results_do_not_answer_a_new_request() -> None:
    rt = runtime()
    old = (
        Block("tool_call", "assistant", {"id": "c1", "name": "calculator", "args": {"expression": "1+1"}}),
        Block("tool_use", "tool", {"id": "c1", "result": "2"}),
    )
    turn = Turn(
        id="t",
        blocks=[
            Block("system", "system", {"text": rt.system_prompt}),
            Block("user", "user", {"text": "compute 1+1"}),
            *old,
            Block("llm_text", "assistant", {"text": "2"}),
            Block("user", "user", {"text": "compute 2+2"}),
        ],
    )
    reply, _ = complete(rt, turn)
    assert reply.tool_calls and reply.tool_calls[0].arguments == {"expression": "2+2"}


def test_no_calculator_no_tool_call() -> None:
    rt = runtime("fast")
    assert "calculator" not in rt.tools
    reply, _ = complete(rt, make_turn(rt, "calculate 2 ^ 8"))
    assert reply.tool_calls == [] and reply.finish_reason == "stop"
    assert "calculator" in reply.text


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("compute 17 * 23", "17 * 23"),
        ("What is (2+3)*4?", "(2+3)*4"),
        ("what's 2 ^ 10", "2 ** 10"),
        ("calculate 6 × 7 please", "6 * 7"),
        ("2 + 2 =", "2 + 2"),
        ("what is -3 * 4?", "-3 * 4"),
        ("what is the answer to life", None),
        ("what is 42?", None),
        ("I have 2 cats and 3-4 dogs", None),
    ],
)
def test_find_arithmetic(prompt: str, expected: str | None) -> None:
    assert find_arithmetic(prompt) == expected


def test_recall_lists_earlier_prompts_across_runtimes() -> None:
    # History produced by other runtimes is still in the blocks: the new runtime sees and lists it.
    rt = runtime("fast")
    turn = Turn(
        id="t",
        blocks=[
            Block("system", "system", {"text": rt.system_prompt}),
            Block("user", "user", {"text": "my name is Ada"}),
            Block("llm_text", "assistant", {"text": "[default] hello"}),
            Block("user", "user", {"text": "I like tea"}),
            Block("llm_text", "assistant", {"text": "[planner] 1. drink tea"}),
            Block("user", "user", {"text": "What did I say earlier?"}),
        ],
    )
    reply, deltas = complete(rt, turn)
    assert "".join(deltas) == reply.text
    assert reply.text == '[fast] Earlier you said:\n1. "my name is Ada"\n2. "I like tea"'
    empty, _ = complete(rt, make_turn(rt, "recall the history"))
    assert "no earlier messages" in empty.text


@pytest.mark.parametrize("how", ["option", "marker"])
def test_failure_mode_streams_then_raises_with_partial_text(how: str) -> None:
    rt = runtime(options={"fail": True}) if how == "option" else runtime()
    prompt = "tell me a long story please" if how == "option" else "tell me [[fail]] a story please"
    deltas: list[str] = []

    async def sink(delta: str) -> None:
        deltas.append(delta)

    with pytest.raises(EngineError) as info:
        asyncio.run(OfflineEngine().complete(make_turn(rt, prompt), rt, sink))
    err = info.value
    assert err.code == "engine_failed"
    assert deltas and len(deltas) <= 3
    assert err.partial_text == "".join(deltas)


def test_token_delay_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine asks for the configured pause between words (recorded, not timed: no clock in tests)."""
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float) -> None:
        pauses.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    rt = runtime("fast", options={"token_delay_ms": 20})
    _, deltas = complete(rt, make_turn(rt, "a b c"))
    assert len(deltas) > 1
    assert pauses == [0.02] * (len(deltas) - 1)


def test_zero_delay_still_yields_to_the_event_loop() -> None:
    rt = runtime("default", options={"token_delay_ms": 0})
    ticks = 0

    async def main() -> str:
        nonlocal ticks
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())

        async def sink(_: str) -> None:
            return None

        reply = await OfflineEngine().complete(make_turn(rt, "word " * 50), rt, sink)
        stop.set()
        await task
        return reply.text

    asyncio.run(main())
    assert ticks >= 3
