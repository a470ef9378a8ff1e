"""The ``openai`` engine over real HTTP, through the unmodified SDK, against the fake provider."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import common
from tests.fakes.engine_helpers import (
    make_turn,
    provider_runtime,
    reply_blocks,
    run_engine,
    tool_result,
)
from tests.fakes.harness import ThreadedServer
from tests.fakes.openai_fake import CACHED_TOKENS, FakeOpenAI, served_model
from webchat.conversations.runner import PendingTurn, run_turn
from webchat.runtimes.engine import build_engine
from webchat.runtimes.openai_engine import OpenAIEngine
from webchat.runtimes.profiles import DEFAULT_PROVIDER_KEY_ENVS, allow_key_envs
from webchat.runtimes.resolve import ResolvedRuntime
from webchat.stores.protocol import Snapshot
from webchat.stores.turns import open_turn_store
from webchat.turns import keys

KEY = "sk-fake-openai-key-0123456789abcdef"
KEY_ENV = "WEBCHAT_TEST_OPENAI_KEY"


@pytest.fixture(autouse=True)
def _allow_test_key_env() -> None:
    # The operator's allow-list (--provider-key-env) must name the variable these tests read the key from.
    allow_key_envs([*DEFAULT_PROVIDER_KEY_ENVS, KEY_ENV])


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    provider = FakeOpenAI(api_key=KEY, slow_s=2.0)
    with ThreadedServer(provider.app()) as server:
        yield provider, server.url + "/v1"


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def rt(base_url: str, **kw: Any) -> ResolvedRuntime:
    return provider_runtime("openai", base_url, model="gpt-fake", key_env=KEY_ENV, **kw)


def requests_for(provider: FakeOpenAI, prompt: str) -> list[dict[str, Any]]:
    return [b for b in provider.bodies() if b and b["messages"][-1].get("content") == prompt]


def test_streams_text_with_full_provenance(fake: tuple[FakeOpenAI, str]) -> None:
    provider, url = fake
    runtime = rt(url, temperature=0.3, max_tokens=64)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, "hello there"))
    reply = run.reply
    assert reply is not None, run.error
    assert len(run.deltas) > 3 and "".join(run.deltas) == reply.text
    assert reply.text.startswith("Hello from the fake OpenAI (system prompt received). You said: hello there")
    assert reply.provider == "openai"
    assert reply.request_model == "gpt-fake"
    assert reply.response_model == served_model("gpt-fake") != reply.request_model
    assert reply.response_id.startswith("chatcmpl-fake")
    assert reply.finish_reason == "stop" and reply.tool_calls == []
    assert reply.usage.cached_tokens == CACHED_TOKENS
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    sent = requests_for(provider, "hello there")[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 64
    headers = next(r.headers for r in provider.requests if r.body is sent)
    assert headers["authorization"] == f"Bearer {KEY}"


def test_tool_call_assembled_from_fragments_then_answer(fake: tuple[FakeOpenAI, str]) -> None:
    _, url = fake
    runtime = rt(url)
    turn = make_turn(runtime, "[[tool]] 6 * 7")
    first = run_engine(OpenAIEngine(), runtime, turn)
    assert first.reply is not None, first.error
    assert first.reply.finish_reason == "tool_calls" and first.reply.text == "" and first.deltas == []
    (call,) = first.reply.tool_calls
    assert call.name == "calculator" and call.arguments == {"expression": "6 * 7"}
    assert call.id.startswith("call_fake")
    turn.blocks += [*reply_blocks(first.reply), tool_result(call.id, "42")]
    second = run_engine(OpenAIEngine(), runtime, turn)
    assert second.reply is not None, second.error
    assert second.reply.text == "The calculator says 42." and second.reply.finish_reason == "stop"


def test_two_interleaved_tool_calls(fake: tuple[FakeOpenAI, str]) -> None:
    _, url = fake
    runtime = rt(url)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, "[[tools2]] both"))
    assert run.reply is not None, run.error
    assert [(c.name, c.arguments) for c in run.reply.tool_calls] == [
        ("calculator", {"expression": "1 + 2"}),
        ("calculator", {"expression": "3 * 4"}),
    ]
    assert len({c.id for c in run.reply.tool_calls}) == 2


def test_bad_request_is_not_retried(fake: tuple[FakeOpenAI, str]) -> None:
    provider, url = fake
    runtime = rt(url)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, "[[error400]] hot"))
    error = run.error
    assert error is not None
    assert error.code == "provider_error" and error.status == 400
    assert error.error_class == "openai.BadRequestError"
    assert "too hot" in error.message and "HTTP 400" in error.message
    assert len(requests_for(provider, "[[error400]] hot")) == 1


def test_rate_limit_once_is_retried(fake: tuple[FakeOpenAI, str]) -> None:
    provider, url = fake
    runtime = rt(url)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, "[[429-once]] busy"))
    assert run.reply is not None, run.error
    assert "You said: [[429-once]] busy" in run.reply.text
    assert len(requests_for(provider, "[[429-once]] busy")) == 2


def test_rate_limit_forever_fails_after_bounded_retries(fake: tuple[FakeOpenAI, str]) -> None:
    provider, url = fake
    runtime = rt(url, max_retries=2)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, "[[429-always]] busy"))
    error = run.error
    assert error is not None
    assert error.code == "rate_limited" and error.status == 429
    assert error.error_class == "openai.RateLimitError"
    assert "after 2 retries" in error.message and "Rate limit reached" in error.message
    assert len(requests_for(provider, "[[429-always]] busy")) == 3
    assert (
        error.reply is not None and error.reply.request_model == "gpt-fake" and error.reply.response_id == ""
    )


def test_server_error_retried_then_reported(fake: tuple[FakeOpenAI, str]) -> None:
    provider, url = fake
    runtime = rt(url, max_retries=1)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, "[[error500]] boom"))
    assert run.error is not None and run.error.code == "provider_error" and run.error.status == 500
    assert run.error.error_class == "openai.InternalServerError"
    assert len(requests_for(provider, "[[error500]] boom")) == 2


def test_timeout_before_the_first_byte(fake: tuple[FakeOpenAI, str]) -> None:
    _, url = fake
    runtime = rt(url, timeout_s=0.3, max_retries=0)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, "[[slow]] wait"))
    assert run.error is not None and run.error.code == "provider_timeout"
    assert run.error.error_class == "openai.APITimeoutError"
    assert "0.3 s" in run.error.message and run.error.partial_text == ""


def test_timeout_mid_stream_keeps_the_partial_text(fake: tuple[FakeOpenAI, str]) -> None:
    _, url = fake
    runtime = rt(url, timeout_s=0.3, max_retries=0)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, "[[stall]] wait"))
    error = run.error
    assert error is not None and error.code == "provider_timeout"
    assert error.partial_text == "".join(run.deltas) == "Hello from "
    assert error.reply is not None and error.reply.response_model == served_model("gpt-fake")
    assert error.reply.response_id.startswith("chatcmpl-fake")


@pytest.mark.parametrize("marker", [common.CUT, common.NO_FINISH])
def test_stream_cut_mid_way(fake: tuple[FakeOpenAI, str], marker: str) -> None:
    _, url = fake
    runtime = rt(url)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, f"{marker} go"))
    error = run.error
    assert error is not None and error.code == "stream_interrupted", error
    assert error.partial_text == "".join(run.deltas) == "Hello from "
    assert error.reply is not None and error.reply.response_model == served_model("gpt-fake")


def test_error_event_inside_the_stream(fake: tuple[FakeOpenAI, str]) -> None:
    _, url = fake
    runtime = rt(url)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, "[[error-event]] go"))
    assert run.error is not None and run.error.code == "provider_error"
    assert "overloaded mid-stream" in run.error.message and run.error.partial_text == "Hello from "


def test_wrong_key_is_auth_failed_and_never_echoed(
    fake: tuple[FakeOpenAI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = fake
    wrong = "sk-wrong-key-9876543210zyxwvu"
    monkeypatch.setenv(KEY_ENV, wrong)
    runtime = rt(url)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, "hi"))
    error = run.error
    assert error is not None and error.code == "auth_failed" and error.status == 401
    assert wrong not in error.message and wrong not in repr(error) and "[redacted]" in error.message
    assert error.__cause__ is None and error.__suppress_context__


def test_missing_key_makes_no_request(fake: tuple[FakeOpenAI, str], monkeypatch: pytest.MonkeyPatch) -> None:
    provider, url = fake
    monkeypatch.delenv(KEY_ENV)
    before = len(provider.requests)
    runtime = rt(url)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, "hi"))
    assert run.error is not None and run.error.code == "missing_api_key" and KEY_ENV in run.error.message
    assert len(provider.requests) == before


def test_local_server_without_key_gets_a_placeholder(fake: tuple[FakeOpenAI, str]) -> None:
    provider, url = fake
    runtime = provider_runtime("openai", url, model="llama", key_env=None)
    run_engine(OpenAIEngine(), runtime, make_turn(runtime, "placeholder please"))
    headers = next(r.headers for r in provider.requests if r.body and r.body["model"] == "llama")
    assert headers["authorization"] == "Bearer not-needed"


def test_unreachable_endpoint() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runtime = rt(f"http://127.0.0.1:{port}/v1", max_retries=0)
    run = run_engine(OpenAIEngine(), runtime, make_turn(runtime, "hi"))
    assert run.error is not None and run.error.code == "provider_unreachable"
    assert run.error.error_class == "openai.APIConnectionError"


# --- through the turn runner -------------------------------------------------------------------------


def run_runner(
    runtime: ResolvedRuntime, prompt: str, data_dir: Path, turn_id: str = "t1"
) -> tuple[Any, list[Snapshot], list[tuple[str, dict[str, Any]]]]:
    """Run one turn through the real runner into the real SQLite turn store; returns what it stored."""
    store = open_turn_store(data_dir / "turns.db")
    frames: list[tuple[str, dict[str, Any]]] = []

    async def publish(type_: str, id_: str, data: dict[str, Any], meta: dict[str, Any] | None) -> None:
        frames.append((type_, data))

    pending = PendingTurn(
        conv_id="c",
        session_id="s",
        turn_id=turn_id,
        prompt=prompt,
        runtime=runtime,
        idempotency_key="",
        prompt_event_id="p",
    )
    try:
        outcome = asyncio.run(run_turn(pending, [], build_engine, store, publish))
        stored = store.load_turn("c", "s", turn_id)
    finally:
        store.close()
    # Every phase carries the runtime that ran the turn and this inference's id.
    assert stored and {(s.runtime_key, s.inference_id) for s in stored} == {
        (runtime.runtime_key, pending.inference_id)
    }
    return outcome, stored, frames


def test_runner_tool_loop_records_provenance(fake: tuple[FakeOpenAI, str], tmp_path: Path) -> None:
    _, url = fake
    outcome, stored, _ = run_runner(rt(url), "[[tool]] 6 * 7", tmp_path)
    assert outcome.ok, outcome.error
    inference = outcome.turn.metadata[keys.INFERENCE]
    assert inference["provider"] == "openai" and inference["request_model"] == "gpt-fake"
    assert inference["response_model"] == served_model("gpt-fake")
    assert inference["response_id"].startswith("chatcmpl-fake") and inference["finish_reason"] == "stop"
    # two model calls (tool call, answer): usage is the turn total
    assert inference["model_calls"] == 2 and inference["usage"]["cached_tokens"] == 2 * CACHED_TOKENS
    assert "error" not in inference
    kinds = [b.kind for b in outcome.turn.blocks]
    assert kinds == ["system", "user", "tool_call", "tool_use", "llm_text"]
    assert outcome.turn.blocks[3].payload["result"] == "42"
    assert outcome.turn.blocks[-1].text == "The calculator says 42."
    # Newest first: the final snapshot holds the whole turn, provenance included.
    assert stored[0].phase == "final" and {s.phase for s in stored} >= {"pre_inference", "post_tools"}
    assert stored[0].runtime_key == rt(url).runtime_key and stored[0].inference_id
    assert [b.kind for b in stored[0].turn.blocks] == kinds
    assert stored[0].turn.metadata[keys.INFERENCE] == inference


def test_runner_failure_records_the_provider_error(fake: tuple[FakeOpenAI, str], tmp_path: Path) -> None:
    _, url = fake
    outcome, stored, frames = run_runner(rt(url), "[[cut]] go", tmp_path)
    assert not outcome.ok and outcome.code == "stream_interrupted"
    inference = outcome.turn.metadata[keys.INFERENCE]
    assert inference["response_model"] == served_model("gpt-fake")
    assert inference["response_id"].startswith("chatcmpl-fake")
    assert inference["error"]["code"] == "stream_interrupted"
    assert inference["error"]["class"] == "openai.APIConnectionError"
    assert (
        outcome.turn.blocks[-1].payload == {"text": "Hello from "}
        and outcome.turn.blocks[-1].metadata["partial"]
    )
    assert any(t == "llm.error" for t, _ in frames)

    # The failed run is stored too, with what it had and its error; only a success gets a final phase.
    assert [s.phase for s in stored] == ["post_inference", "pre_inference"]
    assert stored[0].turn.metadata[keys.INFERENCE]["error"]["code"] == "stream_interrupted"

    limited, _, _ = run_runner(rt(url, max_retries=0), "[[429-always]] again", tmp_path, "t2")
    error = limited.turn.metadata[keys.INFERENCE]["error"]
    assert error == {
        "class": "openai.RateLimitError",
        "code": "rate_limited",
        "message": error["message"],
        "status": 429,
    }
    assert KEY not in repr(limited.turn.metadata)
