"""``GET /api/timeline``: the hydration snapshot."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from webchat.conversations.service import may_use
from webchat.server.auth import request_identity
from webchat.server.deps import Services, services
from webchat.server.errors import ApiError
from webchat.server.ids import MAX_SQLITE_INT, check_id
from webchat.server.validation import CheckedRoute

router = APIRouter(tags=["timeline"], route_class=CheckedRoute)


async def timeline_document(
    svc: Services, conv_id: str, since_version: int, limit: int | None
) -> dict[str, Any]:
    check_id(conv_id, "conv_id")
    live = svc.conversations.live(conv_id)
    if live is not None:
        # Frames are written behind delivery; a snapshot must not lag a frame already sent.
        await live.hub.flush()
    snap = await asyncio.to_thread(svc.timeline.snapshot, conv_id, since_version, limit)
    return {
        "conv_id": conv_id,
        "version": snap.version,
        "server_time_ms": int(time.time() * 1000),
        "entities": [
            {
                "id": e.id,
                "kind": e.kind,
                "created_at_ms": e.created_at_ms,
                "updated_at_ms": e.updated_at_ms,
                "version": e.version,
                "props": e.props,
            }
            for e in snap.entities
        ],
    }


@router.get(
    "/api/timeline",
    summary="Hydration snapshot of a conversation's timeline",
    responses={404: {"description": "unknown_conversation: for a user, also another user's conversation"}},
)
async def get_timeline(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    conv_id: Annotated[str, Query(min_length=1, max_length=200)],
    since_version: Annotated[int, Query(ge=0, le=MAX_SQLITE_INT)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> dict[str, Any]:
    identity = request_identity(request)
    if not identity.is_admin:
        check_id(conv_id, "conv_id")
        if not may_use(await svc.conversations.owner_of(conv_id), identity.user_id, admin=False):
            raise ApiError(404, "unknown_conversation", f"no conversation {conv_id}")
    return await timeline_document(svc, conv_id, since_version, limit)
