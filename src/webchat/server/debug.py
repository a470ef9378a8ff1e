"""The debug API (http-api.md): conversations with their pointer, turns with their per-turn truth.

Conversation payloads carry ``resolved_runtime_key`` (the pointer only). Turn payloads carry the
``runtime_key`` and ``inference_id`` stored on each turn row; they are never derived from the pointer.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from webchat.conversations.service import Conversation
from webchat.server.auth import request_identity
from webchat.server.deps import Services, services
from webchat.server.errors import ApiError
from webchat.server.ids import MAX_SQLITE_INT, check_id
from webchat.server.timeline import timeline_document
from webchat.server.validation import CheckedRoute
from webchat.stores.protocol import Snapshot, TurnQuery, TurnRow
from webchat.stores.timeline import ConversationRecord
from webchat.turns.keys import phase_problem


def require_token(request: Request) -> None:
    """The debug API's own check. In team mode the gate already let only admins and the debug token's
    bearer through; in local mode a configured ``--debug-token`` must be sent."""
    identity = request_identity(request)
    if identity.via == "debug_token":
        return  # team mode: the gate compared the token
    if identity.via in ("token", "session"):
        if not identity.is_admin:
            raise ApiError(403, "forbidden", "the debug API is for admins only")
        return
    svc: Services = request.app.state.services
    token = svc.settings.debug_token
    if not token:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise ApiError(401, "unauthorized", "the debug API requires a bearer token")


router = APIRouter(
    prefix="/api/debug", tags=["debug"], dependencies=[Depends(require_token)], route_class=CheckedRoute
)

Svc = Annotated[Services, Depends(services)]


def _item(conv_id: str, record: ConversationRecord | None, live: Conversation | None) -> dict[str, Any]:
    source = "merged" if (record and live) else ("live" if live else "persisted")
    last = max(record.last_activity_ms if record else 0, live.last_activity_ms if live else 0)
    return {
        "conv_id": conv_id,
        "session_id": (live.session_id if live else "") or (record.session_id if record else ""),
        "resolved_runtime_key": (
            live.pointer if live and live.pointer else (record.runtime_key if record else "")
        ),
        "active_sockets": live.hub.subscriber_count if live else 0,
        "stream_running": bool(live and live.running),
        "queue_depth": len(live.queue) if live else 0,
        "buffered_events": live.hub.buffered_events if live else 0,
        "last_activity_ms": last,
        "source": source,
    }


@router.get("/conversations", summary="Conversations with their pointer (resolved_runtime_key)")
async def conversations(svc: Svc, limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> dict[str, Any]:
    records = await asyncio.to_thread(svc.timeline.list_conversations, limit)
    by_id: dict[str, ConversationRecord | None] = {r.conv_id: r for r in records}
    live = {c.conv_id: c for c in svc.conversations.live_items()}
    ids = set(by_id) | set(live)
    items = [_item(cid, by_id.get(cid), live.get(cid)) for cid in ids]
    items.sort(key=lambda i: (-i["last_activity_ms"], i["conv_id"]))
    return {"items": items[:limit]}


@router.get("/conversations/{conv_id}", summary="One conversation")
async def conversation(conv_id: str, svc: Svc) -> dict[str, Any]:
    check_id(conv_id, "conv_id")
    record = await asyncio.to_thread(svc.timeline.get_conversation, conv_id)
    live = svc.conversations.live(conv_id)
    if record is None and live is None:
        raise ApiError(404, "unknown_conversation", f"no conversation {conv_id}")
    item = _item(conv_id, record, live)
    item["active_request_key"] = live.running.idempotency_key if live and live.running else ""
    return item


def runtime_segments(rows: Iterable[TurnRow]) -> list[dict[str, Any]]:
    """Consecutive turns with the same stored ``runtime_key``, in the order given (oldest first).

    Only the turn rows count: a turn with an unknown runtime (``''``) stays in an unknown segment and is
    never filled from the conversation pointer or a neighbouring turn (runtime-truth.md §1).
    """
    segments: list[dict[str, Any]] = []
    for row in rows:
        if segments and segments[-1]["runtime_key"] == row.runtime_key:
            seg = segments[-1]
            seg["last_turn_id"] = row.turn_id
            seg["turns"] += 1
            seg["to_ms"] = row.updated_at_ms
        else:
            segments.append(
                {
                    "runtime_key": row.runtime_key,
                    "first_turn_id": row.turn_id,
                    "last_turn_id": row.turn_id,
                    "turns": 1,
                    "from_ms": row.updated_at_ms,
                    "to_ms": row.updated_at_ms,
                }
            )
    return segments


@router.get("/conversations/{conv_id}/runtime-history", summary="Runtime segments from turn rows only")
async def runtime_history(conv_id: str, svc: Svc) -> dict[str, Any]:
    check_id(conv_id, "conv_id")
    rows = await asyncio.to_thread(svc.turns.runtime_history, conv_id)
    record = await asyncio.to_thread(svc.timeline.get_conversation, conv_id)
    live = svc.conversations.live(conv_id)
    if not rows and record is None and live is None:
        raise ApiError(404, "unknown_conversation", f"no conversation {conv_id}")
    segments = runtime_segments(rows)
    pointer = (live.pointer if live and live.pointer else "") or (record.runtime_key if record else "")
    return {
        "conv_id": conv_id,
        "resolved_runtime_key": pointer,
        "segments": segments,
        "unknown_turns": sum(1 for r in rows if not r.runtime_key),
    }


def _snapshot_item(s: Snapshot) -> dict[str, Any]:
    return {**s.summary(), "payload": s.payload}


@router.get("/turns", summary="Phase snapshots, newest first, with per-turn runtime_key and inference_id")
async def turns(
    svc: Svc,
    conv_id: str = "",
    session_id: str = "",
    phase: str = "",
    runtime_key: str = "",
    inference_id: str = "",
    since_ms: Annotated[int, Query(ge=0, le=MAX_SQLITE_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    if not conv_id and not session_id:
        raise ApiError(400, "missing_filter", "conv_id or session_id is required")
    if problem := phase_problem(phase):
        raise ApiError(400, "invalid_phase", problem)
    for name, value in (("conv_id", conv_id), ("session_id", session_id)):
        if value:
            check_id(value, name)
    query = TurnQuery(
        conv_id=conv_id,
        session_id=session_id,
        phase=phase,
        runtime_key=runtime_key,
        inference_id=inference_id,
        since_ms=since_ms,
        limit=limit,
    )
    items = await asyncio.to_thread(svc.turns.list_snapshots, query)
    return {
        "conv_id": conv_id,
        "session_id": session_id,
        "phase": phase,
        "since_ms": since_ms,
        "items": [_snapshot_item(s) for s in items],
    }


@router.get("/turn/{conv_id}/{session_id}/{turn_id}", summary="Every phase snapshot of one turn")
async def turn(conv_id: str, session_id: str, turn_id: str, svc: Svc) -> dict[str, Any]:
    for name, value in (("conv_id", conv_id), ("session_id", session_id), ("turn_id", turn_id)):
        check_id(value, name)
    items = await asyncio.to_thread(svc.turns.load_turn, conv_id, session_id, turn_id)
    if not items:
        raise ApiError(404, "unknown_turn", f"no turn {turn_id} in {conv_id}/{session_id}")
    return {
        "conv_id": conv_id,
        "session_id": session_id,
        "turn_id": turn_id,
        "runtime_key": items[0].runtime_key,
        "inference_id": items[0].inference_id,
        "items": [
            {
                "phase": s.phase,
                "created_at_ms": s.created_at_ms,
                "runtime_key": s.runtime_key,
                "inference_id": s.inference_id,
                "payload": s.payload,
                "parsed": s.parsed(),
            }
            for s in items
        ],
    }


@router.get("/events/{conv_id}", summary="Recent stream frames of a live conversation")
async def events(
    conv_id: str,
    svc: Svc,
    since_seq: Annotated[int, Query(ge=0, le=MAX_SQLITE_INT)] = 0,
    type: str = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    check_id(conv_id, "conv_id")
    live = svc.conversations.live(conv_id)
    if live is None:
        raise ApiError(404, "not_live", f"conversation {conv_id} is not live in this server")
    frames = live.hub.recent(since_seq=since_seq, type=type or None, limit=limit)
    return {
        "conv_id": conv_id,
        "items": [{"seq": f.seq, "type": f.type, "id": f.id, "frame": f.frame()} for f in frames],
    }


@router.get("/timeline", summary="Same as /api/timeline")
async def debug_timeline(
    svc: Svc,
    conv_id: Annotated[str, Query(min_length=1, max_length=200)],
    since_version: Annotated[int, Query(ge=0, le=MAX_SQLITE_INT)] = 0,
) -> dict[str, Any]:
    return await timeline_document(svc, conv_id, since_version, None)


@router.get("/turn/{rest:path}", include_in_schema=False)
async def malformed_turn_path(rest: str) -> None:
    raise ApiError(
        400,
        "invalid_path",
        "expected /api/debug/turn/{conv_id}/{session_id}/{turn_id} with three non-empty segments",
    )
