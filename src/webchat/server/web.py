"""The web UI: the chat page (``/``), the debug page (``/debug``), static assets and the conversation list.

- ``router``: ``GET /`` (chat page), ``GET /static/{path}`` (files under ``webchat/web/``) and
  ``GET /api/conversations`` (the conversation index for the chat sidebar; works with the debug API off).
- ``debug_router``: ``GET /debug``. The app includes it only when the debug API is mounted, so without
  the debug API ``/debug`` is a 404 like every ``/api/debug/*`` path.

The assets ship inside the package (no build step, no network): the pages load vendored Preact + htm
through an import map and the app's own ES modules from ``/static/js/``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from webchat.conversations.service import Conversation
from webchat.server.auth import owner_scope, request_identity
from webchat.server.deps import Services, services
from webchat.server.errors import ApiError
from webchat.stores.timeline import ConversationRecord, TimelineStore

router = APIRouter()
debug_router = APIRouter()

WEB_PACKAGE = "webchat"
WEB_DIR = "web"
TITLE_CHARS = 80
# Entities read (first-seen order) to find a conversation's first prompt for its title.
TITLE_SCAN = 4

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
# Path segments of a static file: no dot files, no parent references, nothing outside web/.
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# Served by /static/ without an extension-based type: licenses and the like.
_PLAIN_NAMES = {"LICENSE", "NOTICE"}
# The pages' inline import maps (the only inline scripts) are allowed by their hash in the CSP.
_INLINE_SCRIPT_RE = re.compile(rb"<script type=\"importmap\">(.*?)</script>", re.DOTALL)


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


def _web_root() -> Traversable:
    return resources.files(WEB_PACKAGE).joinpath(WEB_DIR)


def _media_type(name: str) -> str | None:
    if name in _PLAIN_NAMES:
        return "text/plain; charset=utf-8"
    dot = name.rfind(".")
    return _MEDIA_TYPES.get(name[dot:].lower()) if dot > 0 else None


def _load(path: str) -> _Asset | None:
    """The asset at ``path`` (relative to ``webchat/web``), or None when it is not a servable file.

    Read on every request (the files are small): an edited or upgraded file is served at once.
    """
    segments = path.split("/")
    if not segments or not all(_SEGMENT_RE.match(s) and ".." not in s for s in segments):
        return None
    media_type = _media_type(segments[-1])
    if media_type is None:
        return None
    node = _web_root()
    for segment in segments:
        node = node.joinpath(segment)
    if not node.is_file():
        return None
    body = node.read_bytes()
    return _Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _respond(request: Request, asset: _Asset) -> Response:
    # no-cache: the browser revalidates every time (cheap with the ETag), so an upgraded server never
    # runs against stale modules.
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


async def _page(request: Request, name: str) -> Response:
    asset = await asyncio.to_thread(_load, name)
    if asset is None:  # a broken installation
        raise ApiError(404, "not_found", f"the web UI file {name} is missing from this installation")
    response = _respond(request, asset)
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()}'"
        for m in _INLINE_SCRIPT_RE.finditer(asset.body)
    )
    # The pages load nothing from other origins and run no inline script but their import map.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self'{hashes}; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def chat_page(request: Request) -> Response:
    return await _page(request, "index.html")


@debug_router.get("/debug", response_class=HTMLResponse, include_in_schema=False)
async def debug_page(request: Request) -> Response:
    return await _page(request, "debug.html")


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page(request: Request) -> Response:
    settings = request.app.state.settings
    if settings.mode != "team":
        return RedirectResponse("/", status_code=303)  # local mode: nobody signs in
    return await _page(request, "login.html")


@router.get("/favicon.ico", include_in_schema=False)
async def favicon(request: Request) -> Response:
    """The icon for pages that do not name one (the help pages, /docs): an SVG, which browsers accept."""
    asset = await asyncio.to_thread(_load, "favicon.svg")
    if asset is None:
        raise ApiError(404, "not_found", "no favicon")
    return _respond(request, asset)


@router.get("/static/{path:path}", include_in_schema=False)
async def static_file(path: str, request: Request) -> Response:
    asset = await asyncio.to_thread(_load, path)
    if asset is None:
        raise ApiError(404, "not_found", f"no static file {path!r}")
    return _respond(request, asset)


# --- the conversation list ------------------------------------------------------------------------


def _title(store: TimelineStore, conv_id: str) -> str:
    """The conversation's first prompt (shortened), read from the first few timeline entities."""
    for entity in store.snapshot(conv_id, 0, TITLE_SCAN).entities:
        props = entity.props
        if entity.kind == "message" and props.get("role") == "user":
            text = " ".join(str(props.get("content", "")).split())
            return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"
    return ""


def _list(store: TimelineStore, limit: int, owner_id: str | None) -> list[tuple[ConversationRecord, str]]:
    records = store.list_conversations(limit, owner_id=owner_id)
    return [(record, _title(store, record.conv_id)) for record in records]


def _item(record: ConversationRecord, title: str, live: Conversation | None) -> dict[str, Any]:
    pointer = live.pointer if live is not None and live.pointer else record.runtime_key
    last = max(record.last_activity_ms, live.last_activity_ms if live is not None else 0)
    return {
        "conv_id": record.conv_id,
        "resolved_runtime_key": pointer,
        "last_activity_ms": last,
        "created_at_ms": record.created_at_ms,
        "title": title,
    }


@router.get(
    "/api/conversations",
    tags=["conversations"],
    summary="Conversations from the conversation index, most recent activity first",
)
async def list_conversations(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """``{items: [{conv_id, resolved_runtime_key, last_activity_ms, created_at_ms, title}]}``.

    ``resolved_runtime_key`` is the conversation pointer (the runtime of the next prompt), never the
    runtime of any past turn; ``title`` is the first prompt, or ``""`` when the timeline has none. A user
    sees their own conversations; an admin (and local mode) sees every one.
    """
    owner = owner_scope(request_identity(request))
    rows = await asyncio.to_thread(_list, svc.timeline, limit, owner)
    items = [_item(record, title, svc.conversations.live(record.conv_id)) for record, title in rows]
    items.sort(key=lambda i: (-i["last_activity_ms"], i["conv_id"]))
    return {"items": items}
