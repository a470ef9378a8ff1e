"""``GET /ws?conv_id=``: the conversation's event stream (http-api.md envelope)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from webchat.conversations.service import ConversationNotFound, may_use
from webchat.events.hub import Subscription
from webchat.server.auth import socket_identity
from webchat.server.deps import ws_services
from webchat.server.errors import ApiError
from webchat.server.ids import check_id
from webchat.server.validation import check_scope, parse_json

router = APIRouter()
log = logging.getLogger("webchat.server.ws")
BINARY_REFUSED = "binary frames are not supported; send text frames"


def _control_frame(type_: str, id_: str, data: Mapping[str, object]) -> str:
    # Connection messages carry no seq: a seq names one frame of the conversation's stream (scale-out.md
    # §1), and two sockets' hellos or pongs must never claim the number of a real event.
    return json.dumps({"sem": True, "event": {"type": type_, "id": id_, "data": data}})


def _now_ms() -> int:
    return int(time.time() * 1000)


@router.websocket("/ws")
async def stream(websocket: WebSocket) -> None:
    svc = ws_services(websocket)
    await websocket.accept()
    try:
        check_scope(websocket.scope)
        identity = socket_identity(websocket)
        conv_id = check_id(websocket.query_params.get("conv_id"), "conv_id")
        since_seq = _since_seq(websocket.query_params.get("since_seq"))
        # A socket never creates a conversation (security.md, bounds): only an accepted prompt does.
        # Another user's conversation answers exactly as one that does not exist.
        owner = await svc.conversations.owner_of(conv_id)
        if not may_use(owner, identity.user_id, identity.is_admin):
            raise ApiError(404, "unknown_conversation", f"no conversation {conv_id}")
        if svc.sockets.get(identity.user_id, 0) >= svc.settings.max_sockets_per_user:
            raise ApiError(
                429,
                "too_many_sockets",
                f"{svc.settings.max_sockets_per_user} sockets of yours are already open; close one first",
            )
        conv = await svc.conversations.open(conv_id, create=False)
    except (ApiError, ConversationNotFound) as exc:
        if isinstance(exc, ConversationNotFound):
            exc = ApiError(404, "unknown_conversation", f"no conversation {conv_id}")
        await websocket.send_text(json.dumps({"error": exc.message, "code": exc.code}))
        await websocket.close(code=1008)
        return
    user_id = identity.user_id
    svc.sockets[user_id] = svc.sockets.get(user_id, 0) + 1
    # Subscribe first, then look at what is held: a frame published in between is in both, and the
    # forwarder skips what the replay already sent.
    subscription = conv.hub.subscribe()
    replay = conv.hub.held_since(since_seq) if since_seq is not None else []
    try:
        hello: dict[str, object] = {
            "conv_id": conv_id,
            "runtime_key": conv.pointer,
            "version": conv.hub.version,
            "server_time_ms": _now_ms(),
        }
        if since_seq is not None:
            # "stream": the frames after since_seq follow; "snapshot": some are no longer held, so the
            # client rehydrates from /api/timeline?since_version=since_seq (http-api.md, stream resume).
            hello["resume"] = "stream" if replay is not None else "snapshot"
        await websocket.send_text(_control_frame("ws.hello", f"hello:{conv_id}", hello))
        sent = since_seq or 0
        for event in replay or []:
            await websocket.send_text(event.frame_json)
            sent = event.seq
        sender = asyncio.create_task(_forward(websocket, subscription, sent if replay else 0))
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    log.info("ws %s: binary frame refused, closing with 1003", conv_id)
                    await websocket.close(code=1003, reason=BINARY_REFUSED)
                    break
                if _is_ping(text):
                    pong = {"server_time_ms": _now_ms()}
                    await websocket.send_text(_control_frame("ws.pong", f"pong:{conv_id}", pong))
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
    except WebSocketDisconnect:
        pass
    finally:
        conv.hub.unsubscribe(subscription)
        conv.last_activity_ms = _now_ms()
        left = svc.sockets.get(user_id, 1) - 1
        if left > 0:
            svc.sockets[user_id] = left
        else:
            svc.sockets.pop(user_id, None)


def _is_ping(text: str) -> bool:
    if text.strip() == "ping":
        return True
    try:
        doc = parse_json(text.encode("utf-8", "surrogatepass"), "frame")
    except ApiError:
        return False
    return isinstance(doc, dict) and doc.get("type") == "ws.ping"


def _since_seq(raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 16 or int(text) >= 2**53:
        raise ApiError(400, "invalid_since_seq", "since_seq must be a non-negative integer below 2^53")
    return int(text)


async def _forward(websocket: WebSocket, subscription: Subscription, after_seq: int = 0) -> None:
    """Send every frame of the subscription with seq above ``after_seq`` (a resume already sent those);
    a dropped (too slow) subscription closes the socket."""
    async for event in subscription:
        if event.seq > after_seq:
            await websocket.send_text(event.frame_json)
    with contextlib.suppress(Exception):
        await websocket.close(code=1013, reason="client too slow; reconnect and hydrate from /api/timeline")
