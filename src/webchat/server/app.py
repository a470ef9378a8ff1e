"""The ASGI app factory: ``create_app(settings)`` wires stores, runtimes and routers together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from webchat import __version__
from webchat.conversations.service import ConversationService
from webchat.runtimes.profiles import load_registries
from webchat.runtimes.sqlite_registry import PROFILES_DB_NAME, open_profile_store
from webchat.server import chat, debug, help, profiles, timeline, web, ws
from webchat.server.deps import Services
from webchat.server.errors import ApiError, api_error_handler, http_error_handler, validation_error_handler
from webchat.server.limits import BodyLimitMiddleware
from webchat.server.settings import Settings
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.turns import open_turn_store

log = logging.getLogger("webchat.server")

EVICT_INTERVAL_S = 30.0


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()  # type: ignore[call-arg]  # every field has a default
    settings.validate_security()
    registries = load_registries(settings.profiles)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # The writable registry (profiles.db) loads after the built-in one and before --profiles files.
        profile_store = await asyncio.to_thread(
            open_profile_store, settings.data_dir / PROFILES_DB_NAME, registries
        )
        app.state.profile_store = profile_store
        turns = await asyncio.to_thread(open_turn_store, settings.turns_path)
        timeline_store = await asyncio.to_thread(SQLiteTimelineStore, settings.timeline_path)
        conversations = ConversationService(turns, timeline_store, idle_evict_s=settings.idle_evict_s)
        app.state.services = Services(settings, turns, timeline_store, registries, conversations)
        # Check often enough that a conversation is never kept much past its idle limit.
        interval = min(EVICT_INTERVAL_S, max(0.5, settings.idle_evict_s / 2))
        evictor = asyncio.create_task(_evict_loop(conversations, interval))
        try:
            yield
        finally:
            evictor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await evictor
            await conversations.shutdown(settings.shutdown_grace_s)
            await asyncio.to_thread(turns.close)
            await asyncio.to_thread(timeline_store.close)
            await asyncio.to_thread(profile_store.close)

    app = FastAPI(
        title="web-chat",
        version=__version__,
        description="Chat server with per-turn runtime truth. Errors are JSON {error, code}.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)

    @app.get("/healthz", tags=["health"], summary="Liveness and store status")
    async def healthz() -> dict[str, Any]:
        svc: Services | None = getattr(app.state, "services", None)
        return {
            "status": "ok" if svc else "starting",
            "version": __version__,
            "live_conversations": len(svc.conversations.live_items()) if svc else 0,
            "debug_api": settings.debug_enabled,
        }

    app.include_router(chat.router)
    app.include_router(ws.router)
    app.include_router(timeline.router)
    app.include_router(profiles.router)
    app.include_router(help.router)
    app.include_router(web.router)
    if settings.debug_enabled:
        app.include_router(debug.router)
        app.include_router(web.debug_router)
    return app


async def _evict_loop(conversations: ConversationService, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            evicted = await conversations.evict_idle()
            if evicted:
                log.info("evicted %d idle conversations", len(evicted))
        except Exception:
            log.exception("eviction failed")
