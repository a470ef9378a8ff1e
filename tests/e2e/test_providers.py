"""End to end: a real ``web-chat serve`` with offline, OpenAI and Anthropic profiles, the providers being the
fake ASGI apps of ``tests/fakes`` on 127.0.0.1 reached through the real SDKs.

One conversation switches offline → openai → anthropic → offline and back; every turn records the runtime
that ran it, its inference id and the requested and served model. Provider failures reach the client as
``llm.error`` frames, are persisted with the error, and leave the conversation usable. The fake API keys
appear nowhere: not in the stores, the server log, the stream frames or any debug API response.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.client import FrameCollector, wait_turns_final
from tests.e2e.conftest import Server, start_server
from tests.fakes import anthropic_fake, openai_fake
from tests.fakes.anthropic_fake import FakeAnthropic
from tests.fakes.harness import ThreadedServer
from tests.fakes.openai_fake import FakeOpenAI

OPENAI_KEY = "sk-e2e-openai-SECRET-4b1d9c0e7f5a"
ANTHROPIC_KEY = "sk-ant-e2e-SECRET-93ad01c2b7e4"
KEYS = (OPENAI_KEY, ANTHROPIC_KEY)

PROFILES = """\
slug: e2e
profiles:
  local:
    display_name: Local
    runtime:
      engine: offline
      system_prompt: You are terse.
      tools: [calculator]
      options: {{token_delay_ms: 0}}
  gpt:
    display_name: GPT (fake)
    runtime:
      engine: openai
      model: gpt-fake
      base_url: {openai_url}
      api_key_env: E2E_OPENAI_KEY
      system_prompt: You are a helpful assistant.
      tools: [calculator]
      options: {{timeout_s: 5, max_retries: 1, temperature: 0.2}}
  claude:
    display_name: Claude (fake)
    runtime:
      engine: anthropic
      model: claude-fake
      base_url: {anthropic_url}
      api_key_env: E2E_ANTHROPIC_KEY
      system_prompt: You are a careful assistant.
      tools: [calculator]
      options: {{timeout_s: 5, max_retries: 1, max_tokens: 256}}
"""


@dataclass
class Stack:
    server: Server
    openai: FakeOpenAI
    anthropic: FakeAnthropic


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    oai = FakeOpenAI(api_key=OPENAI_KEY)
    ant = FakeAnthropic(api_key=ANTHROPIC_KEY)
    with ThreadedServer(oai.app()) as oai_server, ThreadedServer(ant.app()) as ant_server:
        profiles = tmp_path / "profiles.yaml"
        profiles.write_text(
            PROFILES.format(openai_url=oai_server.url + "/v1", anthropic_url=ant_server.url), encoding="utf-8"
        )
        server = start_server(
            tmp_path / "data",
            "--profiles",
            str(profiles),
            # The operator allows the profiles' key variables (security.md, provider keys).
            "--provider-key-env",
            "E2E_OPENAI_KEY",
            "--provider-key-env",
            "E2E_ANTHROPIC_KEY",
            env={"E2E_OPENAI_KEY": OPENAI_KEY, "E2E_ANTHROPIC_KEY": ANTHROPIC_KEY},
        )
        try:
            yield Stack(server, oai, ant)
        finally:
            server.stop()


def chat(server: Server, conv: str, profile: str, prompt: str) -> dict[str, Any]:
    resp = httpx.post(
        server.base_url + "/chat", json={"prompt": prompt, "conv_id": conv, "profile": profile}, timeout=10
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["runtime_key"] == profile
    return body


def turn_doc(server: Server, conv: str, started: dict[str, Any]) -> dict[str, Any]:
    url = f"{server.base_url}/api/debug/turn/{conv}/{started['session_id']}/{started['turn_id']}"
    doc: dict[str, Any] = httpx.get(url, timeout=10).json()
    return doc


def latest(doc: dict[str, Any], phase: str) -> dict[str, Any]:
    items = [i for i in doc["items"] if i["phase"] == phase]
    assert items, [i["phase"] for i in doc["items"]]
    return max(items, key=lambda i: i.get("created_at_ms", 0))


def wait_error_snapshot(server: Server, conv: str, started: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        doc = turn_doc(server, conv, started)
        for item in doc.get("items", []):
            inference = item["parsed"]["metadata"].get("webchat.inference@v1", {})
            if "error" in inference:
                return item
        time.sleep(0.05)
    raise AssertionError("the failed turn was not persisted with its error")


def texts(item: dict[str, Any], kind: str) -> list[str]:
    return [b["payload"].get("text", "") for b in item["parsed"]["blocks"] if b["kind"] == kind]


def test_switch_offline_openai_anthropic_offline_with_failures_and_no_secrets(stack: Stack) -> None:
    server = stack.server
    conv = str(uuid.uuid4())
    # offline → openai (with a tool call) → anthropic → offline; the first prompt creates the
    # conversation, and the socket (opened right after it) replays its frames.
    first = chat(server, conv, "local", "My name is Ada and I like tea")
    ws = FrameCollector(server.ws_url, conv, since_seq=0)
    try:
        ws.wait_for(lambda evs: any(e["type"] == "ws.hello" for e in evs))

        plan = [
            ("local", "My name is Ada and I like tea"),
            ("gpt", "[[tool]] 6 * 7"),
            ("claude", "What did I tell you?"),
            ("local", "what did I say earlier?"),
        ]
        started = [first]
        wait_turns_final(server.base_url, conv, 1)
        for n, (profile, prompt) in enumerate(plan[1:], start=2):
            started.append(chat(server, conv, profile, prompt))
            wait_turns_final(server.base_url, conv, n)

        expected = [
            ("local", "offline", "offline", "offline-local", "offline-"),
            ("gpt", "openai", "gpt-fake", openai_fake.served_model("gpt-fake"), "chatcmpl-fake"),
            ("claude", "anthropic", "claude-fake", anthropic_fake.served_model("claude-fake"), "msg_fake"),
            ("local", "offline", "offline", "offline-local", "offline-"),
        ]
        finals = []
        for begun, (key, provider, request_model, response_model, id_prefix) in zip(
            started, expected, strict=True
        ):
            doc = turn_doc(server, conv, begun)
            assert doc["runtime_key"] == key and doc["inference_id"] == begun["inference_id"]
            final = latest(doc, "final")
            finals.append(final)
            assert final["runtime_key"] == key and final["inference_id"] == begun["inference_id"]
            meta = final["parsed"]["metadata"]
            assert meta["webchat.runtime@v1"]["runtime_key"] == key
            assert meta["webchat.inference_id@v1"] == begun["inference_id"]
            inference = meta["webchat.inference@v1"]
            assert inference["provider"] == provider
            assert inference["request_model"] == request_model
            assert inference["response_model"] == response_model
            assert inference["response_id"].startswith(id_prefix)
            assert "error" not in inference and inference["duration_ms"] >= 0
        assert len({b["inference_id"] for b in started}) == 4
        # The provider turns' served models differ from the requested ones, and usage was recorded.
        gpt_inference = finals[1]["parsed"]["metadata"]["webchat.inference@v1"]
        # Two model calls (tool call, then the answer): the turn's usage is their sum.
        assert gpt_inference["model_calls"] == 2
        assert gpt_inference["usage"]["cached_tokens"] == 2 * openai_fake.CACHED_TOKENS
        claude_inference = finals[2]["parsed"]["metadata"]["webchat.inference@v1"]
        assert claude_inference["usage"]["cached_tokens"] == anthropic_fake.CACHE_READ_TOKENS
        assert claude_inference["finish_reason"] == "end_turn"

        # The OpenAI turn ran the tool loop; the Anthropic turn was given the whole history, tools included.
        assert texts(finals[1], "llm_text")[-1] == "The calculator says 42."
        assert [b["kind"] for b in finals[1]["parsed"]["blocks"]][-3:] == [
            "tool_call",
            "tool_use",
            "llm_text",
        ]
        assert "I see 3 user messages" in texts(finals[2], "llm_text")[-1]
        claude_body = next(
            b for b in stack.anthropic.bodies() if "What did I tell you?" in json.dumps(b["messages"][-1])
        )
        sent = json.dumps(claude_body["messages"])
        assert "My name is Ada and I like tea" in sent and '"tool_result"' in sent and '"42"' in sent
        assert claude_body["system"] == "You are a careful assistant."
        assert "Ada" in texts(finals[3], "llm_text")[-1]  # offline again, history still there

        hist = httpx.get(
            f"{server.base_url}/api/debug/conversations/{conv}/runtime-history", timeout=10
        ).json()
        assert [s["runtime_key"] for s in hist["segments"]] == ["local", "gpt", "claude", "local"]

        # Failures: a stream cut mid-way (OpenAI) and a rate limit that outlasts the retries (Anthropic).
        for profile, prompt, code, error_class in [
            ("gpt", "[[cut]] tell me a story", "stream_interrupted", "openai.APIConnectionError"),
            ("claude", "[[429-always]] are you there?", "rate_limited", "anthropic.RateLimitError"),
        ]:
            before = len(ws.events("llm.error"))
            begun = chat(server, conv, profile, prompt)
            ws.wait_for(lambda evs, before=before: sum(e["type"] == "llm.error" for e in evs) > before)
            frame = ws.events("llm.error")[-1]
            assert frame["data"]["code"] == code and frame["metadata"]["runtime_key"] == profile
            item = wait_error_snapshot(server, conv, begun)
            assert item["runtime_key"] == profile and item["inference_id"] == begun["inference_id"]
            error = item["parsed"]["metadata"]["webchat.inference@v1"]["error"]
            assert error["code"] == code and error["class"] == error_class and error["message"]

        # The conversation stays usable after both failures, on each provider.
        again = chat(server, conv, "claude", "[[429-once]] still there?")
        wait_turns_final(server.base_url, conv, len(plan) + 1)
        final = latest(turn_doc(server, conv, again), "final")
        assert final["parsed"]["metadata"]["webchat.inference@v1"]["response_model"].startswith("claude-fake")

        # No API key anywhere a user or operator can look.
        replies = [
            httpx.get(f"{server.base_url}{path}", params=params, timeout=10)
            for path, params in [
                ("/api/debug/conversations", {}),
                (f"/api/debug/conversations/{conv}", {}),
                (f"/api/debug/conversations/{conv}/runtime-history", {}),
                ("/api/debug/turns", {"conv_id": conv, "limit": 1000}),
                (f"/api/debug/events/{conv}", {}),
                ("/api/debug/timeline", {"conv_id": conv}),
                ("/api/timeline", {"conv_id": conv}),
                ("/api/chat/profiles", {}),
                ("/api/chat/profiles/gpt", {}),
                ("/api/chat/profiles/claude", {}),
            ]
        ]
        assert all(r.status_code == 200 for r in replies), [(str(r.url), r.status_code) for r in replies]
        responses = [r.text for r in replies]
        responses += [json.dumps(turn_doc(server, conv, b)) for b in [*started, again]]
        responses.append(json.dumps(ws.events()))
        for text in responses:
            for key in KEYS:
                assert key not in text
    finally:
        ws.close()
    assert server.stop() == 0
    log = server.log()
    assert "Traceback" not in log
    for key in KEYS:
        assert key not in log
        for path in server.data_dir.rglob("*"):
            if path.is_file():
                assert key.encode() not in path.read_bytes(), path
