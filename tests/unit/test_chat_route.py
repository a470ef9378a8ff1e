"""``POST /chat``'s request resolution, exactly: the checks of ``_parse``, selector precedence, the pointer,
and the idempotency key (http-api.md). The real app in process, with real SQLite stores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from webchat.server.app import create_app
from webchat.server.settings import Settings
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.timeline import ConversationRecord

MAX_PROMPT = 40


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    # One app for the module (its start-up is most of a test's time); every test uses its own
    # conversations and idempotency keys, and starts with no cookie.
    data = tmp_path_factory.mktemp("chat-route") / "data"
    app = create_app(Settings(data_dir=data, host="127.0.0.1", max_prompt_chars=MAX_PROMPT))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def client(app_client: TestClient) -> TestClient:
    app_client.cookies.clear()
    return app_client


def error(resp: Any, status: int, code: str, message: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json() == {"error": message, "code": code}


def started(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    doc: dict[str, Any] = resp.json()
    assert doc["status"] == "started"
    return doc


@pytest.mark.parametrize("selector", ["runtime_key", "registry_slug"])
def test_a_legacy_selector_in_the_body_or_query_is_refused(client: TestClient, selector: str) -> None:
    message = f"unsupported legacy selector: {selector}"
    error(
        client.post("/chat", json={"prompt": "hi", selector: "fast"}),
        400,
        "unsupported_legacy_selector",
        message,
    )
    resp = client.post(f"/chat?{selector}=fast", json={"prompt": "hi"})
    error(resp, 400, "unsupported_legacy_selector", message)
    resp = client.post(f"/chat/fast?{selector}=", json={"prompt": "hi"})
    error(resp, 400, "unsupported_legacy_selector", message)


def test_a_body_that_is_not_an_object_is_refused(client: TestClient) -> None:
    error(client.post("/chat", json=["hi"]), 400, "invalid_request", "request body must be a JSON object")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "prompt: Field required"),
        ({"prompt": 3}, "prompt: Input should be a valid string"),
        ({"prompt": "hi", "bogus": 1}, "bogus: Extra inputs are not permitted"),
        (
            {"prompt": "hi", "request_overrides": {"a": {}}, "conv_id": 5},
            "conv_id: Input should be a valid string",
        ),
    ],
)
def test_a_body_of_the_wrong_shape_names_the_first_field(
    client: TestClient, body: dict[str, Any], message: str
) -> None:
    error(client.post("/chat", json=body), 400, "invalid_request", message)


@pytest.mark.parametrize("prompt", ["", " ", " \n\t "])
def test_a_blank_prompt_is_refused(client: TestClient, prompt: str) -> None:
    error(client.post("/chat", json={"prompt": prompt}), 400, "blank_prompt", "prompt must not be blank")


def test_a_prompt_over_the_limit_is_413_and_one_at_the_limit_runs(client: TestClient) -> None:
    too_long = "x" * (MAX_PROMPT + 1)
    message = f"prompt is longer than {MAX_PROMPT} characters"
    error(client.post("/chat", json={"prompt": too_long}), 413, "prompt_too_large", message)
    started(client.post("/chat", json={"prompt": "x" * MAX_PROMPT, "profile": "fast"}))


def test_selection_precedence_path_body_query_cookie_default(client: TestClient) -> None:
    def key(url: str, **body: Any) -> str:
        return str(started(client.post(url, json={"prompt": "hi", **body}))["runtime_key"])

    assert key("/chat") == "default"
    client.cookies.set("chat_profile", "builtin/planner")
    assert key("/chat") == "planner"
    assert key("/chat?profile=fast") == "fast"
    assert key("/chat?profile=fast", profile="default") == "default"
    assert key("/chat/planner?profile=fast", profile="default") == "planner"
    client.cookies.clear()
    assert key("/chat?registry=builtin", profile="fast") == "fast"
    assert key("/chat", profile="fast", registry="builtin") == "fast"


def test_an_unknown_registry_or_profile_is_404_from_either_place(client: TestClient) -> None:
    for url, body in (("/chat?registry=nosuch", {}), ("/chat?registry=builtin", {"registry": "nosuch"})):
        resp = client.post(url, json={"prompt": "hi", "profile": "fast", **body})
        assert resp.status_code == 404 and resp.json()["code"] == "unknown_registry", resp.text
        assert "nosuch" in resp.json()["error"]
    resp = client.post("/chat", json={"prompt": "hi", "profile": "nosuch"})
    assert resp.status_code == 404 and resp.json()["code"] == "unknown_profile", resp.text


def test_an_invalid_conv_id_is_refused(client: TestClient) -> None:
    resp = client.post("/chat", json={"prompt": "hi", "conv_id": "bad id/"})
    error(resp, 400, "invalid_id", "conv_id is not a valid id")


def test_with_nothing_selected_the_conversation_keeps_its_pointer(client: TestClient) -> None:
    conv = f"c-{uuid.uuid4().hex[:8]}"
    first = started(client.post("/chat/planner", json={"prompt": "hi", "conv_id": conv}))
    assert first["runtime_key"] == "planner" and first["conv_id"] == conv
    client.cookies.clear()
    # Queued or started, the second prompt runs on the pointer's runtime, not the default.
    again = client.post("/chat", json={"prompt": "again", "conv_id": conv})
    assert again.status_code in (200, 202) and again.json()["runtime_key"] == "planner", again.text
    # A selection beats the pointer; a new conversation starts on the default.
    chosen = client.post("/chat", json={"prompt": "third", "conv_id": conv, "profile": "fast"})
    assert chosen.status_code in (200, 202) and chosen.json()["runtime_key"] == "fast", chosen.text
    assert started(client.post("/chat", json={"prompt": "hi"}))["runtime_key"] == "default"


def test_the_body_key_beats_the_header_and_a_missing_key_is_generated(client: TestClient) -> None:
    headers = {"Idempotency-Key": "header-key-route"}
    doc = started(
        client.post(
            "/chat",
            json={"prompt": "a", "profile": "fast", "idempotency_key": "body-key-r"},
            headers=headers,
        )
    )
    assert doc["idempotency_key"] == "body-key-r"
    doc = started(client.post("/chat", json={"prompt": "b", "profile": "fast"}, headers=headers))
    assert doc["idempotency_key"] == "header-key-route"
    doc = started(
        client.post(
            "/chat",
            json={"prompt": "c", "profile": "fast", "idempotency_key": ""},
            headers={"Idempotency-Key": "header-2"},
        )
    )
    assert doc["idempotency_key"] == "header-2"
    doc = started(client.post("/chat", json={"prompt": "d", "profile": "fast"}))
    assert uuid.UUID(doc["idempotency_key"]).version == 4
    doc = started(client.post("/chat", json={"prompt": "e", "profile": "fast", "idempotency_key": "k" * 200}))
    assert doc["idempotency_key"] == "k" * 200


@pytest.mark.parametrize(
    ("body_key", "header_key"), [("   ", None), ("k" * 201, None), (None, " "), (None, "h" * 201)]
)
def test_a_blank_or_overlong_idempotency_key_is_refused(
    client: TestClient, body_key: str | None, header_key: str | None
) -> None:
    body: dict[str, Any] = {"prompt": "hi", "profile": "fast"}
    if body_key is not None:
        body["idempotency_key"] = body_key
    headers = {"Idempotency-Key": header_key} if header_key is not None else {}
    error(
        client.post("/chat", json=body, headers=headers),
        400,
        "invalid_idempotency_key",
        "idempotency key must be 1-200 characters",
    )


def test_a_pointer_that_no_longer_resolves_falls_back_to_the_default(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    timeline = SQLiteTimelineStore(data / "timeline.db")
    # Pointers a store can hold from older versions or removed profiles.
    for conv_id, pointer in (("c-gone", "nosuch"), ("c-bad-slug", "Bad Slug!")):
        timeline.upsert_conversation(ConversationRecord(conv_id=conv_id, session_id="s", runtime_key=pointer))
    timeline.close()
    app = create_app(Settings(data_dir=data, host="127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        for conv_id in ("c-gone", "c-bad-slug"):
            doc = started(c.post("/chat", json={"prompt": "hi", "conv_id": conv_id}))
            assert (doc["conv_id"], doc["runtime_key"]) == (conv_id, "default")


def test_request_overrides_are_checked_on_the_pointer_and_on_a_selection(client: TestClient) -> None:
    conv = f"c-{uuid.uuid4().hex[:8]}"
    started(client.post("/chat/fast", json={"prompt": "hi", "conv_id": conv}))
    overrides = {"request_overrides": {"temperature": 1}}
    message = client.post("/chat", json={"prompt": "x", "profile": "fast", **overrides}).json()["error"]
    assert "temperature" in message
    for body in ({"conv_id": conv}, {"conv_id": conv, "profile": "fast"}, {"profile": "planner"}):
        resp = client.post("/chat", json={"prompt": "again", **body, **overrides})
        assert resp.status_code == 400 and resp.json()["code"] == "unsupported_override_key", resp.text
