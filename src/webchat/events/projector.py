"""Turn stream events into timeline entities (what hydration returns and the UI renders).

:func:`project` is pure: given an event and a lookup of the entities as they stand, it returns the
entities the event creates or changes, with ``version = event.seq``. The hub runs it before persisting
and fanning out an event; a client can run the same function over replayed frames, which is how
"snapshot + replay of frames above the snapshot version" reproduces the live state.

Entity kinds and their props:

- ``message`` (user): ``role="user", content, turn_id, runtime_key`` and ``queued`` once a prompt was queued;
- ``message`` (assistant): ``role="assistant", content, streaming, runtime_key, inference_id, turn_id``,
  ``model`` and ``usage`` when known, ``error {message, code}`` after ``llm.error``;
- ``tool_call``: ``name, input, status (running|done|error)``, ``result`` and ``error`` once known,
  ``turn_id, runtime_key, inference_id``.

``runtime_key``, ``inference_id`` and ``turn_id`` come from the event's metadata: the runtime that
actually ran the inference, never the conversation pointer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from webchat.events.envelope import (
    CHAT_MESSAGE,
    CHAT_QUEUED,
    LLM_DELTA,
    LLM_ERROR,
    LLM_FINAL,
    LLM_START,
    TIMELINE_UPSERT,
    TOOL_DONE,
    TOOL_RESULT,
    TOOL_START,
    Event,
    jsonable,
)
from webchat.stores.timeline import Entity

Lookup = Callable[[str], Entity | None]

MESSAGE = "message"
TOOL_CALL = "tool_call"

_USER_IDS = ("turn_id", "runtime_key")
_LLM_IDS = ("runtime_key", "inference_id", "turn_id")


def _ids(event: Event, names: tuple[str, ...]) -> dict[str, str]:
    """The non-empty ids among ``names`` in the event metadata: an empty value never clears a known one."""
    meta = event.metadata or {}
    return {name: str(meta[name]) for name in names if meta.get(name) not in (None, "")}


def _entity(event: Event, prev: Entity | None, kind: str, props: dict[str, Any]) -> Entity:
    created = prev.created_at_ms if prev is not None else event.ts_ms
    return Entity(event.id, kind, created, event.ts_ms, event.seq, props)


def _base(prev: Entity | None, kind: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The props to update: the current ones when the entity exists with this kind, else the defaults."""
    if prev is not None and prev.kind == kind:
        return dict(prev.props)
    return dict(defaults)


def _assistant_defaults() -> dict[str, Any]:
    return {"role": "assistant", "content": "", "streaming": True, **dict.fromkeys(_LLM_IDS, "")}


def _user_message(event: Event, prev: Entity | None) -> list[Entity]:
    props = _base(prev, MESSAGE, {"role": "user", "content": "", **dict.fromkeys(_USER_IDS, "")})
    content = event.data.get("content")
    if isinstance(content, str):
        props["content"] = content
    props.update(_ids(event, _USER_IDS))
    # A queued prompt is shown as such until the same message is published again without the flag.
    queued = bool(event.data.get("queued", event.type == CHAT_QUEUED))
    if queued or "queued" in props:
        props["queued"] = queued
    return [_entity(event, prev, MESSAGE, props)]


def _llm_start(event: Event, prev: Entity | None) -> list[Entity]:
    props = _assistant_defaults()
    props.update(_ids(event, _LLM_IDS))
    model = (event.metadata or {}).get("model")
    if model:
        props["model"] = str(model)
    return [_entity(event, prev, MESSAGE, props)]


def _llm_delta(event: Event, prev: Entity | None) -> list[Entity]:
    props = _base(prev, MESSAGE, _assistant_defaults())
    cumulative = event.data.get("cumulative")
    if isinstance(cumulative, str):
        props["content"] = cumulative
    else:
        props["content"] = str(props.get("content", "")) + str(event.data.get("delta", ""))
    props["streaming"] = True
    props.update(_ids(event, _LLM_IDS))
    return [_entity(event, prev, MESSAGE, props)]


def _llm_final(event: Event, prev: Entity | None) -> list[Entity]:
    props = _base(prev, MESSAGE, _assistant_defaults())
    text = event.data.get("text")
    if isinstance(text, str):
        props["content"] = text
    props["streaming"] = False
    props.update(_ids(event, _LLM_IDS))
    meta = event.metadata or {}
    if meta.get("model"):
        props["model"] = str(meta["model"])
    if meta.get("usage") is not None:
        props["usage"] = jsonable(meta["usage"])
    return [_entity(event, prev, MESSAGE, props)]


def _llm_error(event: Event, prev: Entity | None) -> list[Entity]:
    props = _base(prev, MESSAGE, _assistant_defaults())
    props["streaming"] = False
    props["error"] = {"message": str(event.data.get("error", "")), "code": str(event.data.get("code", ""))}
    props.update(_ids(event, _LLM_IDS))
    return [_entity(event, prev, MESSAGE, props)]


def _tool_defaults() -> dict[str, Any]:
    return {"name": "", "input": None, "status": "running", **dict.fromkeys(_LLM_IDS, "")}


def _tool_start(event: Event, prev: Entity | None) -> list[Entity]:
    props = _tool_defaults()
    props["name"] = str(event.data.get("name", ""))
    props["input"] = jsonable(event.data.get("input"))
    props.update(_ids(event, _LLM_IDS))
    return [_entity(event, prev, TOOL_CALL, props)]


def _tool_result(event: Event, prev: Entity | None) -> list[Entity]:
    props = _base(prev, TOOL_CALL, _tool_defaults())
    props["result"] = jsonable(event.data.get("result"))
    error = event.data.get("error")
    if error:
        props["error"] = str(error)
    props["status"] = "error" if error else "done"
    props.update(_ids(event, _LLM_IDS))
    return [_entity(event, prev, TOOL_CALL, props)]


def _tool_done(event: Event, prev: Entity | None) -> list[Entity]:
    props = _base(prev, TOOL_CALL, _tool_defaults())
    if props.get("status") != "error":
        props["status"] = "done"
    props.update(_ids(event, _LLM_IDS))
    return [_entity(event, prev, TOOL_CALL, props)]


def _timeline_upsert(event: Event, current: Lookup) -> list[Entity]:
    """An explicit entity upsert ``{entity: {id, kind, props}}``: persisted like any projection, so a
    frame a client receives live is also in the hydration snapshot."""
    raw = event.data.get("entity")
    if not isinstance(raw, dict) or not raw.get("kind") or not isinstance(raw.get("props", {}), dict):
        return []
    entity_id = str(raw.get("id") or event.id)
    prev = current(entity_id)
    created = prev.created_at_ms if prev is not None else event.ts_ms
    return [
        Entity(entity_id, str(raw["kind"]), created, event.ts_ms, event.seq, jsonable(raw.get("props", {})))
    ]


_BY_TYPE: dict[str, Callable[[Event, Entity | None], list[Entity]]] = {
    CHAT_MESSAGE: _user_message,
    CHAT_QUEUED: _user_message,
    LLM_START: _llm_start,
    LLM_DELTA: _llm_delta,
    LLM_FINAL: _llm_final,
    LLM_ERROR: _llm_error,
    TOOL_START: _tool_start,
    TOOL_RESULT: _tool_result,
    TOOL_DONE: _tool_done,
}


def project(event: Event, current: Lookup) -> list[Entity]:
    """The entities ``event`` creates or changes (empty for events that change no entity)."""
    if event.type == TIMELINE_UPSERT:
        return _timeline_upsert(event, current)
    handler = _BY_TYPE.get(event.type)
    if handler is None or not event.id:
        return []
    return handler(event, current(event.id))
