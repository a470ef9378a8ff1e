"""The projector: stream events to timeline entities."""

from __future__ import annotations

from typing import Any

from webchat.events.envelope import Event
from webchat.events.projector import project
from webchat.stores.timeline import Entity


class Client:
    """Applies the projector to a dict of entities, as a browser replaying frames would."""

    def __init__(self) -> None:
        self.entities: dict[str, Entity] = {}
        self.seq = 0

    def apply(
        self, type: str, id: str, data: dict[str, Any], metadata: dict[str, Any] | None = None, ts: int = 0
    ) -> list[Entity]:
        self.seq += 1
        changed = project(Event(type, id, self.seq, data, metadata, ts or 1000 + self.seq), self.entities.get)
        for entity in changed:
            self.entities[entity.id] = entity
        return changed

    def props(self, entity_id: str) -> dict[str, Any]:
        return self.entities[entity_id].props


META = {"runtime_key": "planner", "inference_id": "inf-1", "turn_id": "t1"}


def test_a_turn_with_a_tool_call() -> None:
    c = Client()
    c.apply(
        "chat.message",
        "t1:user",
        {"id": "t1:user", "content": "weather?", "turn_id": "t1", "queued": False},
        {"runtime_key": "planner", "turn_id": "t1"},
    )
    c.apply("llm.start", "t1:a", {"id": "t1:a"}, dict(META, model="gpt-x"))
    c.apply("llm.delta", "t1:a", {"id": "t1:a", "delta": "Let", "cumulative": "Let"}, META)
    c.apply("llm.delta", "t1:a", {"id": "t1:a", "delta": " me", "cumulative": "Let me"}, META)
    c.apply(
        "llm.final", "t1:a", {"id": "t1:a", "text": "Let me check."}, dict(META, usage={"output_tokens": 3})
    )
    c.apply(
        "tool.start", "t1:tool:1", {"id": "t1:tool:1", "name": "weather", "input": {"city": "Oslo"}}, META
    )
    assert c.props("t1:tool:1")["status"] == "running"
    c.apply("tool.result", "t1:tool:1", {"id": "t1:tool:1", "result": {"temp": 3}}, META)
    c.apply("tool.done", "t1:tool:1", {"id": "t1:tool:1"}, META)
    assert c.apply("chat.turn_done", "t1", {}) == []

    assert list(c.entities) == ["t1:user", "t1:a", "t1:tool:1"]
    assert c.props("t1:user") == {
        "role": "user",
        "content": "weather?",
        "turn_id": "t1",
        "runtime_key": "planner",
    }
    assert c.props("t1:a") == {
        "role": "assistant",
        "content": "Let me check.",
        "streaming": False,
        "runtime_key": "planner",
        "inference_id": "inf-1",
        "turn_id": "t1",
        "model": "gpt-x",
        "usage": {"output_tokens": 3},
    }
    assert c.props("t1:tool:1") == {
        "name": "weather",
        "input": {"city": "Oslo"},
        "status": "done",
        "result": {"temp": 3},
        "runtime_key": "planner",
        "inference_id": "inf-1",
        "turn_id": "t1",
    }
    assistant = c.entities["t1:a"]
    assert (assistant.kind, assistant.version, assistant.created_at_ms, assistant.updated_at_ms) == (
        "message",
        5,
        1002,
        1005,
    )


def test_delta_without_cumulative_appends_and_streams() -> None:
    c = Client()
    c.apply("llm.start", "a", {}, META)
    c.apply("llm.delta", "a", {"delta": "he"}, META)
    c.apply("llm.delta", "a", {"delta": "llo"}, META)
    assert c.props("a")["content"] == "hello" and c.props("a")["streaming"] is True


def test_error_ends_streaming_and_keeps_partial_content() -> None:
    c = Client()
    c.apply("llm.start", "a", {}, META)
    c.apply("llm.delta", "a", {"cumulative": "par"}, META)
    c.apply("llm.error", "a", {"id": "a", "error": "provider timeout", "code": "timeout"}, META)
    props = c.props("a")
    assert props["content"] == "par" and props["streaming"] is False
    assert props["error"] == {"message": "provider timeout", "code": "timeout"}


def test_error_before_start_creates_the_message() -> None:
    c = Client()
    c.apply("llm.error", "a", {"error": "no engine", "code": "engine"}, META)
    assert c.entities["a"].kind == "message" and c.props("a")["role"] == "assistant"


def test_tool_error_status_survives_done() -> None:
    c = Client()
    c.apply("tool.start", "t", {"name": "calc", "input": {"x": 1}}, META)
    c.apply("tool.result", "t", {"result": "", "error": "tool 'calc' is not enabled"}, META)
    c.apply("tool.done", "t", {}, META)
    assert c.props("t")["status"] == "error" and c.props("t")["error"] == "tool 'calc' is not enabled"


def test_queued_prompt_then_started() -> None:
    c = Client()
    c.apply("chat.queued", "u", {"content": "later"}, {"runtime_key": "planner"})
    assert c.props("u")["queued"] is True and c.props("u")["turn_id"] == ""
    c.apply("chat.message", "u", {"content": "later"}, {"runtime_key": "planner", "turn_id": "t9"})
    assert c.props("u") == {
        "role": "user",
        "content": "later",
        "turn_id": "t9",
        "runtime_key": "planner",
        "queued": False,
    }
    assert c.entities["u"].created_at_ms == 1001


def test_empty_metadata_never_clears_known_ids() -> None:
    c = Client()
    c.apply("llm.start", "a", {}, META)
    c.apply("llm.final", "a", {"text": "done"}, {"runtime_key": ""})
    assert c.props("a")["runtime_key"] == "planner" and c.props("a")["inference_id"] == "inf-1"


def test_props_are_plain_json() -> None:
    c = Client()
    c.apply("tool.start", "t", {"name": "x", "input": {"when": {1, 2}, "path": object}}, META)
    props = c.props("t")
    assert props["input"]["when"] == [1, 2] and isinstance(props["input"]["path"], str)


def test_timeline_upsert_is_projected() -> None:
    c = Client()
    c.apply(
        "timeline.upsert", "n1", {"conv_id": "c", "entity": {"id": "n1", "kind": "notice", "props": {"t": 1}}}
    )
    assert c.entities["n1"].kind == "notice" and c.props("n1") == {"t": 1}
    assert c.apply("timeline.upsert", "bad", {"entity": {"id": "bad"}}) == []


def test_events_without_entities() -> None:
    c = Client()
    for type in ("ws.hello", "ws.pong", "chat.turn_done", "something.else"):
        assert c.apply(type, "x", {}) == []
    assert c.apply("llm.delta", "", {"cumulative": "x"}) == []
