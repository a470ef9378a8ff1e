"""The turn runner's capture of the runtime, exactly: what each phase snapshot and each frame carries.

Real SQLite turn store, real offline engine (and, for a provider failure that reports usage, the real
Anthropic engine against the fake provider). Expected model replies are computed by running the same
engine on the same input the runner gave it, so every usage figure is compared exactly.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.anthropic_fake import CACHE_READ_TOKENS, FakeAnthropic, served_model
from tests.fakes.engine_helpers import make_turn, provider_runtime, run_engine
from tests.fakes.harness import ThreadedServer
from webchat.conversations import runner
from webchat.conversations.runner import PendingTurn, _Clock, _inference_metadata, _run_tool, run_turn
from webchat.runtimes.anthropic_engine import AnthropicEngine
from webchat.runtimes.engine import EngineError, ModelReply, ToolCall, Usage, build_engine
from webchat.runtimes.offline import OfflineEngine
from webchat.runtimes.profiles import DEFAULT_PROVIDER_KEY_ENVS, allow_key_envs
from webchat.runtimes.resolve import ResolvedRuntime
from webchat.stores.protocol import Snapshot
from webchat.stores.turns import open_turn_store
from webchat.turns import keys
from webchat.turns.model import Block, Turn

Frame = tuple[str, str, dict[str, Any], dict[str, Any] | None]


def offline(
    key: str = "rt", *, model: str = "", tools: tuple[str, ...] = (), **options: Any
) -> ResolvedRuntime:
    return provider_runtime(
        "offline", None, model=model, tools=tools, system_prompt="You are terse.", key=key, **options
    )


def pending(runtime: ResolvedRuntime, prompt: str, turn_id: str = "t1", **kw: Any) -> PendingTurn:
    return PendingTurn(
        conv_id="c1",
        session_id="s1",
        turn_id=turn_id,
        prompt=prompt,
        runtime=runtime,
        idempotency_key="k",
        prompt_event_id="p",
        **kw,
    )


@dataclass
class Ran:
    outcome: runner.TurnOutcome
    stored: list[Snapshot]  # oldest first
    frames: list[Frame] = field(default_factory=list)
    # (phase, turn) as each save handed them to the store, oldest first: the store keeps one metadata
    # object per turn (the newest), so a phase's own metadata is only seen here.
    saved: list[tuple[str, Turn]] = field(default_factory=list)


def record_saves(store: Any) -> list[tuple[str, Turn]]:
    """Record each save; every one must name the turn's runtime and inference explicitly (not leave the
    store to read them back from the metadata) and run on the store's own writer thread."""
    saved: list[tuple[str, Turn]] = []
    save = store.save_snapshot

    def recording(conv_id: str, session_id: str, turn: Turn, phase: str, *args: Any, **kw: Any) -> None:
        assert threading.current_thread().name.startswith("webchat-turns-writer")
        assert kw == {
            "runtime_key": turn.metadata[keys.RUNTIME]["runtime_key"],
            "inference_id": turn.metadata[keys.INFERENCE_ID],
        }
        saved.append((phase, turn.copy()))
        save(conv_id, session_id, turn, phase, *args, **kw)

    store.save_snapshot = recording
    return saved


def run(
    data: Path,
    p: PendingTurn,
    history: list[Block] | None = None,
    *,
    fail_on: str = "",
    factory: Any = build_engine,
    **kw: Any,
) -> Ran:
    """Run one turn; ``fail_on`` makes the frame sink raise once on the second frame of that type."""
    store = open_turn_store(data / "turns.db")
    saved = record_saves(store)
    frames: list[Frame] = []
    seen: dict[str, int] = {}

    async def publish(type_: str, id_: str, data: dict[str, Any], meta: dict[str, Any] | None) -> None:
        frames.append((type_, id_, data, None if meta is None else dict(meta)))
        seen[type_] = seen.get(type_, 0) + 1
        if type_ == fail_on and seen[type_] == 2:
            raise RuntimeError()

    try:
        outcome = asyncio.run(run_turn(p, list(history or []), factory, store, publish, **kw))
        stored = list(reversed(store.load_turn(p.conv_id, p.session_id, p.turn_id)))
    finally:
        store.close()
    return Ran(outcome, stored, frames, saved)


def complete(turn: Turn, runtime: ResolvedRuntime) -> ModelReply:
    """What the engine answers for this input (the runner's own call, repeated)."""

    async def sink(delta: str) -> None:
        return None

    return asyncio.run(OfflineEngine().complete(turn.copy(), runtime, sink))


def meta_of(p: PendingTurn) -> dict[str, Any]:
    return {"runtime_key": p.runtime.runtime_key, "inference_id": p.inference_id, "turn_id": p.turn_id}


def deltas_of(frames: list[Frame], segment: str) -> list[Frame]:
    return [f for f in frames if f[0] == "llm.delta" and f[1] == segment]


def check_deltas(frames: list[Frame], segment: str, text: str, meta: dict[str, Any]) -> None:
    """Each delta frame carries its piece and the segment's text so far, starting afresh per segment."""
    cumulative = ""
    pieces = deltas_of(frames, segment)
    assert pieces
    for _type, _id, data, frame_meta in pieces:
        cumulative += data["delta"]
        assert data == {"id": segment, "delta": data["delta"], "cumulative": cumulative}
        assert frame_meta == meta
    assert cumulative == text


# -- _Clock and _inference_metadata -----------------------------------------------------------------


def test_clock_is_strictly_increasing_by_one_within_a_millisecond() -> None:
    clock = _Clock()
    assert clock.last == 0
    before = runner.now_ms()
    first = clock()
    assert before <= first <= runner.now_ms() and clock.last == first
    # A clock that is ahead of the wall clock advances by exactly one per call.
    clock.last = first + 10_000
    assert clock() == first + 10_001 and clock() == first + 10_002 and clock.last == first + 10_002


def test_now_ms_is_the_wall_clock_in_milliseconds() -> None:
    before = int(time.time() * 1000)
    assert before <= runner.now_ms() <= int(time.time() * 1000)


@pytest.fixture
def frozen_perf(monkeypatch: pytest.MonkeyPatch) -> float:
    # perf_counter is the stdlib's: pinning it makes duration_ms exact.
    monkeypatch.setattr(runner.time, "perf_counter", lambda: 10.0)
    return 10.0


def test_inference_metadata_of_a_reply_sums_the_earlier_usage(frozen_perf: float) -> None:
    runtime = offline(model="asked")
    reply = ModelReply(
        text="x",
        provider="prov",
        request_model="req",
        response_model="resp",
        response_id="id-1",
        finish_reason="stop",
        usage=Usage(input_tokens=3, output_tokens=5, cached_tokens=7),
    )
    earlier = Usage(input_tokens=100, output_tokens=200, cached_tokens=400)
    doc = _inference_metadata(runtime, reply, 7.5, 8.00123456, None, earlier)
    assert doc == {
        "provider": "prov",
        "request_model": "req",
        "response_model": "resp",
        "response_id": "id-1",
        "finish_reason": "stop",
        "usage": {"input_tokens": 103, "output_tokens": 205, "cached_tokens": 407},
        "model_calls": 0,
        "ttft_ms": 501.235,
        "duration_ms": 2500.0,
    }
    alone = _inference_metadata(runtime, reply, 9.99876544, None)
    assert alone["usage"] == {"input_tokens": 3, "output_tokens": 5, "cached_tokens": 7}
    assert alone["ttft_ms"] is None and alone["duration_ms"] == 1.235


def test_inference_metadata_without_a_reply_names_the_runtime(frozen_perf: float) -> None:
    doc = _inference_metadata(offline(model=""), None, 10.0, None)
    assert doc == {
        "provider": "offline",
        "request_model": "offline",
        "response_model": "",
        "response_id": "",
        "finish_reason": "",
        "usage": {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0},
        "model_calls": 0,
        "ttft_ms": None,
        "duration_ms": 0.0,
    }
    assert _inference_metadata(offline(model="asked"), None, 10.0, None)["request_model"] == "asked"
    # A reply that names no provider or model falls back to the runtime's.
    blank = ModelReply(text="", usage=Usage(1, 2, 3))
    doc = _inference_metadata(offline(model="asked"), blank, 10.0, 10.0, None, Usage(10, 20, 30))
    assert (doc["provider"], doc["request_model"], doc["ttft_ms"]) == ("offline", "asked", 0.0)
    assert doc["usage"] == {"input_tokens": 11, "output_tokens": 22, "cached_tokens": 33}


def test_inference_metadata_of_a_failure_records_what_the_failed_call_reported(frozen_perf: float) -> None:
    previous = ModelReply(text="", provider="prov", response_id="old", usage=Usage(1, 1, 1))
    known = ModelReply(text="", provider="p2", request_model="r2", response_model="m2", response_id="new")
    failure = EngineError("boom", reply=known)
    doc = _inference_metadata(offline(), previous, 10.0, None, failure)
    assert (doc["provider"], doc["request_model"], doc["response_model"], doc["response_id"]) == (
        "p2",
        "r2",
        "m2",
        "new",
    )
    # A failure that learned nothing keeps the previous call's reply.
    doc = _inference_metadata(offline(), previous, 10.0, None, EngineError("boom"))
    assert (doc["provider"], doc["response_id"]) == ("prov", "old")


# -- run_turn: success ------------------------------------------------------------------------------


def test_a_plain_turn_records_its_runtime_in_every_phase_and_frame(tmp_path: Path) -> None:
    runtime = offline("fast-rt")
    p = pending(runtime, "hello there")
    history = [
        Block(kind="user", role="user", payload={"text": "earlier"}, id="h1"),
        Block(kind="llm_text", role="assistant", payload={"text": "ok"}, metadata={"m": 1}, id="h2"),
    ]
    ran = run(tmp_path, p, history)
    assert uuid.UUID(p.inference_id).version == 4
    assert (ran.outcome.ok, ran.outcome.error, ran.outcome.code) == (True, "", "")

    pre, post, final = ran.stored
    assert [s.phase for s in ran.stored] == ["pre_inference", "post_inference", "final"]
    assert {(s.runtime_key, s.inference_id) for s in ran.stored} == {("fast-rt", p.inference_id)}
    assert pre.created_at_ms < post.created_at_ms < final.created_at_ms
    assert [b.to_dict() for b in pre.turn.blocks] == [
        {
            "id": "system:test/fast-rt",
            "kind": "system",
            "role": "system",
            "payload": {"text": "You are terse."},
            "metadata": {},
        },
        history[0].to_dict(),
        history[1].to_dict(),
        {"id": "t1#user", "kind": "user", "role": "user", "payload": {"text": "hello there"}, "metadata": {}},
    ]
    assert [phase for phase, _ in ran.saved] == ["pre_inference", "post_inference", "final"]
    assert ran.saved[0][1].metadata == {
        keys.SESSION_ID: "s1",
        keys.INFERENCE_ID: p.inference_id,
        keys.RUNTIME: runtime.metadata(),
    }

    expected = complete(pre.turn, runtime)
    turn = ran.outcome.turn
    assert turn.id == "t1"
    assert [b.to_dict() for b in turn.blocks] == [b.to_dict() for b in pre.turn.blocks] + [
        {
            "id": "t1#4",
            "kind": "llm_text",
            "role": "assistant",
            "payload": {"text": expected.text},
            "metadata": {},
        }
    ]
    inference = turn.metadata[keys.INFERENCE]
    assert inference == {
        "provider": "offline",
        "request_model": "offline",
        "response_model": "offline-fast-rt",
        "response_id": inference["response_id"],
        "finish_reason": "stop",
        "usage": expected.usage.to_dict(),
        "model_calls": 1,
        "ttft_ms": inference["ttft_ms"],
        "duration_ms": inference["duration_ms"],
    }
    assert inference["response_id"].startswith("offline-")
    assert 0 <= inference["ttft_ms"] <= inference["duration_ms"]
    assert set(turn.metadata) == {keys.SESSION_ID, keys.INFERENCE_ID, keys.RUNTIME, keys.INFERENCE}
    assert post.turn.to_dict() == final.turn.to_dict() == turn.to_dict()

    meta = meta_of(p)
    assert ran.frames[0] == (
        "llm.start",
        "t1:assistant",
        {"id": "t1:assistant", "turn_id": "t1"},
        dict(meta, model="offline"),
    )
    check_deltas(ran.frames, "t1:assistant", expected.text, meta)
    assert ran.frames[-1] == (
        "llm.final",
        "t1:assistant",
        {"id": "t1:assistant", "text": expected.text},
        dict(meta, model="offline-fast-rt", usage=inference["usage"], inference=inference),
    )
    assert len(ran.frames) == 2 + len(deltas_of(ran.frames, "t1:assistant"))


def test_a_given_inference_id_is_kept_and_no_system_prompt_means_no_system_block(tmp_path: Path) -> None:
    runtime = provider_runtime("offline", None, model="tiny", tools=(), system_prompt="", key="bare")
    p = pending(runtime, "hi", inference_id="inf-given")
    ran = run(tmp_path, p)
    assert p.inference_id == "inf-given"
    assert {(s.runtime_key, s.inference_id) for s in ran.stored} == {("bare", "inf-given")}
    assert [b.kind for b in ran.outcome.turn.blocks] == ["user", "llm_text"]
    assert ran.outcome.turn.blocks[1].id == "t1#1"
    inference = ran.outcome.turn.metadata[keys.INFERENCE]
    assert (inference["request_model"], inference["response_model"]) == ("tiny", "tiny")
    assert ran.frames[0][3] == dict(meta_of(p), model="tiny")


def test_a_tool_loop_sums_usage_over_its_model_calls(tmp_path: Path) -> None:
    runtime = offline("calc", tools=("calculator",))
    p = pending(runtime, "compute 6 * 7")
    ran = run(tmp_path, p)
    assert ran.outcome.ok
    assert [s.phase for s in ran.stored] == [
        "pre_inference",
        "post_inference",
        "post_tools",
        "post_inference",
        "final",
    ]
    times = [s.created_at_ms for s in ran.stored]
    assert times == sorted(set(times))
    pre, _post1, tools, post2, final = ran.stored
    first = complete(pre.turn, runtime)
    second = complete(tools.turn, runtime)
    call = first.tool_calls[0]

    assert [phase for phase, _ in ran.saved] == [s.phase for s in ran.stored]
    one = ran.saved[1][1].metadata[keys.INFERENCE]
    assert one["model_calls"] == 1 and one["usage"] == first.usage.to_dict()
    assert one["finish_reason"] == "tool_calls"
    two = final.turn.metadata[keys.INFERENCE]
    assert two["model_calls"] == 2 and two["finish_reason"] == "stop"
    assert two["usage"] == {
        "input_tokens": first.usage.input_tokens + second.usage.input_tokens,
        "output_tokens": first.usage.output_tokens + second.usage.output_tokens,
        "cached_tokens": 0,
    }
    assert post2.turn.to_dict() == final.turn.to_dict() == ran.outcome.turn.to_dict()
    assert [b.to_dict() for b in final.turn.blocks[2:]] == [
        {
            "id": "t1#2",
            "kind": "llm_text",
            "role": "assistant",
            "payload": {"text": first.text},
            "metadata": {},
        },
        {
            "id": "t1#3",
            "kind": "tool_call",
            "role": "assistant",
            "payload": {"id": call.id, "name": "calculator", "args": {"expression": "6 * 7"}},
            "metadata": {},
        },
        {
            "id": "t1#4",
            "kind": "tool_use",
            "role": "tool",
            "payload": {"id": call.id, "result": "42"},
            "metadata": {},
        },
        {
            "id": "t1#5",
            "kind": "llm_text",
            "role": "assistant",
            "payload": {"text": second.text},
            "metadata": {},
        },
    ]
    assert [b.kind for b in tools.turn.blocks] == ["system", "user", "llm_text", "tool_call", "tool_use"]

    meta = meta_of(p)
    tool_id = f"t1:tool:{call.id}"
    no_deltas = [f for f in ran.frames if f[0] != "llm.delta"]
    assert no_deltas == [
        ("llm.start", "t1:assistant", {"id": "t1:assistant", "turn_id": "t1"}, dict(meta, model="offline")),
        (
            "llm.final",
            "t1:assistant",
            {"id": "t1:assistant", "text": first.text},
            dict(meta, model="offline-calc", usage=one["usage"], inference=one),
        ),
        (
            "tool.start",
            tool_id,
            {"id": tool_id, "name": "calculator", "input": {"expression": "6 * 7"}},
            meta,
        ),
        ("tool.result", tool_id, {"id": tool_id, "result": "42"}, meta),
        ("tool.done", tool_id, {"id": tool_id}, meta),
        ("llm.start", "t1:assistant:1", {"id": "t1:assistant:1", "turn_id": "t1"}, meta),
        (
            "llm.final",
            "t1:assistant:1",
            {"id": "t1:assistant:1", "text": second.text},
            dict(meta, model="offline-calc", usage=two["usage"], inference=two),
        ),
    ]
    check_deltas(ran.frames, "t1:assistant", first.text, meta)
    check_deltas(ran.frames, "t1:assistant:1", second.text, meta)


# -- run_turn: failures -----------------------------------------------------------------------------


def test_an_engine_failure_keeps_the_partial_text_and_records_the_error(tmp_path: Path) -> None:
    runtime = offline("boom", model="tiny", fail=True)
    p = pending(runtime, "tell me a long story please")
    ran = run(tmp_path, p)
    message = "offline engine failed on purpose: options.fail is set"
    assert (ran.outcome.ok, ran.outcome.error, ran.outcome.code) == (False, message, "engine_failed")
    streamed = "".join(f[2]["delta"] for f in deltas_of(ran.frames, "t1:assistant"))
    assert streamed
    turn = ran.outcome.turn
    assert turn.blocks[-1].to_dict() == {
        "id": "t1#2",
        "kind": "llm_text",
        "role": "assistant",
        "payload": {"text": streamed},
        "metadata": {"partial": True},
    }
    inference = turn.metadata[keys.INFERENCE]
    assert inference == {
        "provider": "offline",
        "request_model": "tiny",
        "response_model": "",
        "response_id": "",
        "finish_reason": "",
        "usage": {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0},
        "model_calls": 1,
        "ttft_ms": inference["ttft_ms"],
        "duration_ms": inference["duration_ms"],
        "error": {"class": "EngineError", "code": "engine_failed", "message": message},
    }
    assert inference["ttft_ms"] is not None
    assert turn.metadata[keys.ERROR] == {"code": "engine_failed", "message": message}
    assert [s.phase for s in ran.stored] == ["pre_inference", "post_inference"]
    assert ran.stored[1].turn.to_dict() == turn.to_dict()
    assert {(s.runtime_key, s.inference_id) for s in ran.stored} == {("boom", p.inference_id)}
    assert ran.frames[-1] == (
        "llm.error",
        "t1:assistant",
        {"id": "t1:assistant", "error": message, "code": "engine_failed"},
        dict(meta_of(p), inference=inference),
    )


def test_an_engine_that_cannot_start_records_no_model_call(tmp_path: Path) -> None:
    runtime = provider_runtime("nosuch", None, model="", tools=(), system_prompt="", key="gone")
    p = pending(runtime, "hi")
    ran = run(tmp_path, p)
    assert (ran.outcome.ok, ran.outcome.code) == (False, "engine_unavailable")
    inference = ran.outcome.turn.metadata[keys.INFERENCE]
    assert (inference["provider"], inference["request_model"], inference["model_calls"]) == (
        "nosuch",
        "nosuch",
        0,
    )
    assert inference["ttft_ms"] is None
    assert inference["error"] == {
        "class": "EngineError",
        "code": "engine_unavailable",
        "message": "unknown engine 'nosuch'",
    }
    assert [b.kind for b in ran.outcome.turn.blocks] == ["user"]
    assert [f[0] for f in ran.frames] == ["llm.start", "llm.error"]


def test_the_tool_loop_limit_keeps_the_completed_calls_usage(tmp_path: Path) -> None:
    runtime = offline("calc", tools=("calculator",))
    p = pending(runtime, "compute 6 * 7")
    ran = run(tmp_path, p, max_tool_iterations=0)
    message = "tool loop exceeded max iterations"
    assert (ran.outcome.ok, ran.outcome.error, ran.outcome.code) == (False, message, "max_tool_iterations")
    pre = ran.stored[0]
    first = complete(pre.turn, runtime)
    inference = ran.outcome.turn.metadata[keys.INFERENCE]
    assert inference["model_calls"] == 1 and inference["usage"] == first.usage.to_dict()
    assert inference["finish_reason"] == "tool_calls" and inference["response_model"] == "offline-calc"
    assert inference["error"] == {"class": "EngineError", "code": "max_tool_iterations", "message": message}
    # The answer so far is recorded once, as the completed reply it was, not again as partial text.
    assert [b.kind for b in ran.outcome.turn.blocks] == ["system", "user", "llm_text", "tool_call"]
    assert [s.phase for s in ran.stored] == ["pre_inference", "post_inference", "post_inference"]
    assert [f[0] for f in ran.frames if f[0] != "llm.delta"] == ["llm.start", "llm.final", "llm.error"]


def test_one_tool_iteration_is_allowed_when_the_limit_is_one(tmp_path: Path) -> None:
    runtime = offline("calc", tools=("calculator",))
    ran = run(tmp_path, pending(runtime, "compute 6 * 7"), max_tool_iterations=1)
    assert ran.outcome.ok and ran.outcome.turn.metadata[keys.INFERENCE]["model_calls"] == 2


def test_an_unexpected_error_is_internal_and_named_by_its_class(tmp_path: Path) -> None:
    runtime = offline("oops")
    p = pending(runtime, "a prompt with several words in it")
    # The frame sink fails on the second delta: the first delta is what was streamed.
    ran = run(tmp_path, p, fail_on="llm.delta")
    first = deltas_of(ran.frames, "t1:assistant")[0][2]["delta"]
    assert (ran.outcome.ok, ran.outcome.error, ran.outcome.code) == (False, "RuntimeError", "internal_error")
    turn = ran.outcome.turn
    assert turn.blocks[-1].payload == {"text": first + deltas_of(ran.frames, "t1:assistant")[1][2]["delta"]}
    assert turn.blocks[-1].metadata == {"partial": True}
    assert turn.metadata[keys.INFERENCE]["error"] == {
        "class": "RuntimeError",
        "code": "internal_error",
        "message": "RuntimeError",
    }
    assert turn.metadata[keys.ERROR] == {"code": "internal_error", "message": "RuntimeError"}


def test_a_failure_that_cannot_be_stored_is_logged_and_still_heard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_turn_store(tmp_path / "turns.db")
    # A real SQLite failure on every write of a turn row.
    with sqlite3.connect(tmp_path / "turns.db") as db:
        db.execute(
            "CREATE TRIGGER no_turns BEFORE INSERT ON turns BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    frames: list[Frame] = []

    async def publish(type_: str, id_: str, data: dict[str, Any], meta: dict[str, Any] | None) -> None:
        frames.append((type_, id_, data, meta))

    p = pending(offline("closed"), "hi")
    try:
        with caplog.at_level(logging.ERROR, logger="webchat.conversations"):
            outcome = asyncio.run(run_turn(p, [], build_engine, store, publish))
    finally:
        store.close()
    assert (outcome.ok, outcome.code) == (False, "internal_error")
    assert frames[-1][0] == "llm.error" and frames[-1][2]["code"] == "internal_error"
    records = [r for r in caplog.records if r.name == "webchat.conversations"]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    assert records[0].getMessage().startswith("turn t1: could not record its failure: ")
    assert records[0].getMessage().endswith("disk says no")


@pytest.mark.parametrize(
    ("cancel_code", "message"),
    [
        ("cancelled", "the turn was stopped before it finished"),
        ("interrupted", "the server stopped while this turn was running"),
    ],
)
def test_a_cancelled_tool_loop_keeps_the_finished_calls_usage(
    tmp_path: Path, cancel_code: str, message: str
) -> None:
    runtime = offline("slow", tools=("calculator",), token_delay_ms=5)
    p = pending(runtime, "compute 6 * 7", cancel_code=cancel_code)
    store = open_turn_store(tmp_path / "turns.db")
    frames: list[Frame] = []

    async def main() -> None:
        task: asyncio.Task[Any]

        async def publish(type_: str, id_: str, data: dict[str, Any], meta: dict[str, Any] | None) -> None:
            frames.append((type_, id_, data, meta))
            # Stop the turn during its second model call, once it has streamed a word.
            if type_ == "llm.delta" and id_ == "t1:assistant:1":
                task.cancel()

        task = asyncio.ensure_future(run_turn(p, [], build_engine, store, publish))
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
        stored = list(reversed(store.load_turn("c1", "s1", "t1")))
    finally:
        store.close()
    pre, _post1, _tools, failed = stored
    assert [s.phase for s in stored] == ["pre_inference", "post_inference", "post_tools", "post_inference"]
    first = complete(pre.turn, runtime)
    inference = failed.turn.metadata[keys.INFERENCE]
    assert inference["model_calls"] == 2 and inference["usage"] == first.usage.to_dict()
    assert inference["error"] == {"class": "CancelledError", "code": cancel_code, "message": message}
    assert failed.turn.metadata[keys.ERROR] == {"code": cancel_code, "message": message}
    partial = failed.turn.blocks[-1]
    assert partial.payload == {"text": deltas_of(frames, "t1:assistant:1")[0][2]["delta"]}
    assert partial.metadata == {"partial": True}
    assert frames[-1] == (
        "llm.error",
        "t1:assistant",
        {"id": "t1:assistant", "error": message, "code": cancel_code},
        dict(meta_of(p), inference=inference),
    )


# -- a provider failure that reports usage ------------------------------------------------------------

KEY = "sk-ant-fake-key-runner-0123456789"
KEY_ENV = "WEBCHAT_TEST_RUNNER_ANTHROPIC_KEY"


@pytest.fixture(autouse=True)
def _allow_test_key_env() -> None:
    # The operator's allow-list (--provider-key-env) must name the variable these tests read the key from.
    allow_key_envs([*DEFAULT_PROVIDER_KEY_ENVS, KEY_ENV])


@pytest.fixture(scope="module")
def anthropic_url() -> Iterator[str]:
    with ThreadedServer(FakeAnthropic(api_key=KEY, slow_s=2.0).app()) as server:
        yield server.url


def test_a_provider_failure_records_its_status_class_and_reported_usage(
    anthropic_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    runtime = provider_runtime(
        "anthropic", anthropic_url, model="claude-fake", key_env=KEY_ENV, max_retries=0
    )
    # The same call straight to the engine: what the failed call reported.
    direct = run_engine(AnthropicEngine(), runtime, make_turn(runtime, "[[cut]] go"))
    assert direct.error is not None and direct.error.reply is not None
    reported = direct.error.reply.usage.to_dict()
    assert reported["input_tokens"] > 0

    ran = run(tmp_path, pending(runtime, "[[cut]] go"))
    inference = ran.outcome.turn.metadata[keys.INFERENCE]
    assert inference["usage"] == reported and inference["model_calls"] == 1
    assert inference["response_model"] == served_model("claude-fake")
    assert inference["error"]["class"] == direct.error.error_class
    assert "status" not in inference["error"]

    limited = run(tmp_path, pending(runtime, "[[429-always]] again", turn_id="t2"))
    error = limited.outcome.turn.metadata[keys.INFERENCE]["error"]
    assert error == {
        "class": "anthropic.RateLimitError",
        "code": "rate_limited",
        "message": limited.outcome.error,
        "status": 429,
    }


# -- _run_tool --------------------------------------------------------------------------------------


def tool_frames(call: ToolCall, runtime: ResolvedRuntime) -> tuple[Block, list[Frame]]:
    frames: list[Frame] = []
    meta = {"runtime_key": runtime.runtime_key, "inference_id": "i", "turn_id": "t9"}

    async def publish(type_: str, id_: str, data: dict[str, Any], m: dict[str, Any] | None) -> None:
        frames.append((type_, id_, data, m))

    block = asyncio.run(_run_tool(call, runtime, publish, meta))
    assert all(f[3] == meta for f in frames)
    return block, frames


def test_a_tool_the_runtime_lacks_is_refused_as_a_tool_error() -> None:
    runtime = offline("plain")
    block, frames = tool_frames(
        ToolCall(id="c1", name="calculator", arguments={"expression": "1+1"}), runtime
    )
    error = "tool 'calculator' is not enabled for runtime plain"
    assert block.to_dict() == {
        "id": "",
        "kind": "tool_use",
        "role": "tool",
        "payload": {"id": "c1", "error": error},
        "metadata": {},
    }
    assert frames == [
        (
            "tool.start",
            "t9:tool:c1",
            {"id": "t9:tool:c1", "name": "calculator", "input": {"expression": "1+1"}},
            frames[0][3],
        ),
        ("tool.result", "t9:tool:c1", {"id": "t9:tool:c1", "result": "", "error": error}, frames[1][3]),
        ("tool.done", "t9:tool:c1", {"id": "t9:tool:c1"}, frames[2][3]),
    ]


def test_a_failing_tool_is_recorded_with_its_error() -> None:
    runtime = offline("calc", tools=("calculator",))
    block, frames = tool_frames(
        ToolCall(id="c2", name="calculator", arguments={"expression": "1/0"}), runtime
    )
    assert set(block.payload) == {"id", "error"} and block.payload["id"] == "c2" and block.payload["error"]
    assert frames[1][2] == {"id": "t9:tool:c2", "result": "", "error": block.payload["error"]}
    ok, frames = tool_frames(ToolCall(id="c3", name="calculator", arguments={"expression": "2+3"}), runtime)
    assert ok.payload == {"id": "c3", "result": "5"}
    assert frames[1][2] == {"id": "t9:tool:c3", "result": "5"}


def test_a_provider_tool_loop_sums_every_usage_field(
    anthropic_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    runtime = provider_runtime("anthropic", anthropic_url, model="claude-fake", key_env=KEY_ENV)
    ran = run(tmp_path, pending(runtime, "[[tool]] 6 * 7"))
    assert ran.outcome.ok, ran.outcome.error
    one = ran.saved[1][1].metadata[keys.INFERENCE]["usage"]
    total = ran.outcome.turn.metadata[keys.INFERENCE]["usage"]
    # The fake reports cached tokens on every call: the second call's are added to the first's.
    assert one["cached_tokens"] == CACHE_READ_TOKENS
    assert total["cached_tokens"] == 2 * CACHE_READ_TOKENS
    assert (
        total["input_tokens"] > one["input_tokens"] > 0 and total["output_tokens"] > one["output_tokens"] > 0
    )
