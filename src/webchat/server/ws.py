"""``GET /ws?conv_id=``: the conversation's event stream (http-api.md envelope)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from webchat.events.hub import Subscription
from webchat.server.deps import ws_services
from webchat.server.errors import ApiError
from webchat.server.ids import check_id

router = APIRouter()


def _frame(type_: str, id_: str, seq: int, data: dict[str, object]) -> str:
    return json.dumps({"sem": True, "event": {"type": type_, "id": id_, "seq": seq, "data": data}})


@router.websocket("/ws")
async def stream(websocket: WebSocket) -> None:
    svc = ws_services(websocket)
    await websocket.accept()
    try:
        conv_id = check_id(websocket.query_params.get("conv_id"), "conv_id")
    except ApiError as exc:
        await websocket.send_text(json.dumps({"error": exc.message, "code": exc.code}))
        await websocket.close(code=1008)
        return
    conv = await svc.conversations.open(conv_id, create=True)
    subscription = conv.hub.subscribe()
    try:
        await websocket.send_text(
            _frame(
                "ws.hello",
                f"hello:{conv_id}",
                conv.hub.version,
                {"conv_id": conv_id, "runtime_key": conv.pointer, "server_time_ms": int(time.time() * 1000)},
            )
        )
        sender = asyncio.create_task(_forward(websocket, subscription))
        try:
            while True:
                text = await websocket.receive_text()
                if _is_ping(text):
                    await websocket.send_text(
                        _frame(
                            "ws.pong",
                            f"pong:{conv_id}",
                            conv.hub.version,
                            {"server_time_ms": int(time.time() * 1000)},
                        )
                    )
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
    except WebSocketDisconnect:
        pass
    finally:
        conv.hub.unsubscribe(subscription)
        conv.last_activity_ms = int(time.time() * 1000)


def _is_ping(text: str) -> bool:
    if text.strip() == "ping":
        return True
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("type") == "ws.ping"


async def _forward(websocket: WebSocket, subscription: Subscription) -> None:
    """Send every frame of the subscription; a dropped (too slow) subscription closes the socket."""
    async for event in subscription:
        await websocket.send_text(event.frame_json)
    with contextlib.suppress(Exception):
        await websocket.close(code=1013, reason="client too slow; reconnect and hydrate from /api/timeline")
