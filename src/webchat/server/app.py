"""The ASGI app factory: ``create_app(settings)`` wires stores, runtimes and routers together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from webchat import __version__
from webchat.conversations.service import ConversationService, QueueFull, ServiceClosing
from webchat.runtimes.profiles import Registries, load_registries
from webchat.runtimes.sqlite_registry import PROFILES_DB_NAME, ProfileWriter, open_profile_store
from webchat.server import chat, debug, help, profiles, timeline, web, ws
from webchat.server.deps import Services
from webchat.server.edge import EdgeGuard
from webchat.server.errors import (
    ApiError,
    api_error_handler,
    error_response,
    http_error_handler,
    validation_error_handler,
)
from webchat.server.limits import BodyLimitMiddleware
from webchat.server.settings import Settings
from webchat.stores.owner import StoreOwner
from webchat.stores.prompts import IdempotencyKeyReused, PromptStore
from webchat.stores.protocol import StoreError, TurnStore
from webchat.stores.sqlite.prompt_store import SQLitePromptStore
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.turns import open_turn_store

log = logging.getLogger("webchat.server")

EVICT_INTERVAL_S = 30.0


@dataclass
class OpenStores:
    """The stores of one serving process, opened under its owner lock (one serving process per store)."""

    owner: StoreOwner
    profile_store: ProfileWriter
    turns: TurnStore
    timeline: SQLiteTimelineStore
    prompts: PromptStore

    def close(self) -> None:
        try:
            self.turns.close()
            self.timeline.close()
            self.profile_store.close()
        finally:
            self.owner.release()


def open_stores(settings: Settings, registries: Registries) -> OpenStores:
    """Take the owner lock of every store file, then open (and upgrade) the stores.

    Raises :class:`StoreError` (a store is unusable or held by another process) or ``OSError`` with a
    message fit for one line; nothing stays locked or open after a failure.
    """
    data_dir = settings.data_dir
    if data_dir.exists() and not data_dir.is_dir():
        raise StoreError(f"{data_dir}: the data directory is not a directory")
    data_dir.mkdir(parents=True, exist_ok=True)
    profiles_path = data_dir / PROFILES_DB_NAME
    for path in (settings.turns_path, settings.timeline_path):
        if path.is_dir():
            raise StoreError(f"{path}: is a directory, not a store file")
    owner = StoreOwner([settings.turns_path, settings.timeline_path, profiles_path], "web-chat serve")
    owner.acquire()
    opened: list[Any] = []
    try:
        # The writable registry (profiles.db) loads after the built-in one and before --profiles files.
        profile_store = open_profile_store(profiles_path, registries)
        opened.append(profile_store)
        turns = open_turn_store(settings.turns_path, owned=True)
        opened.append(turns)
        timeline = SQLiteTimelineStore(settings.timeline_path)
        opened.append(timeline)
        return OpenStores(owner, profile_store, turns, timeline, SQLitePromptStore(timeline))
    except sqlite3.DatabaseError as exc:
        _close_all(opened, owner)
        raise StoreError(f"cannot open the stores: {exc}") from exc
    except BaseException:
        _close_all(opened, owner)
        raise


def _close_all(opened: list[Any], owner: StoreOwner) -> None:
    for store in reversed(opened):
        with contextlib.suppress(Exception):
            store.close()
    owner.release()


def create_app(settings: Settings | None = None, stores: OpenStores | None = None) -> FastAPI:
    """The app. ``stores``: already opened by the caller (``web-chat serve`` opens them before the server
    starts, so an unusable store is one line and exit 2); otherwise the app opens them as it starts."""
    settings = settings or Settings()  # type: ignore[call-arg]  # every field has a default
    settings.validate_security()
    # Opened stores carry the registries they were opened with (profiles.db attaches to them).
    registries = stores.profile_store.registries if stores else load_registries(settings.profiles)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = stores if stores is not None else await asyncio.to_thread(open_stores, settings, registries)
        app.state.profile_store = opened.profile_store
        conversations = ConversationService(
            opened.turns,
            opened.timeline,
            opened.prompts,
            idle_evict_s=settings.idle_evict_s,
            max_running=settings.max_running,
            max_queue=settings.max_queue,
        )
        try:
            recovered = await conversations.recover()
            if any(recovered.values()):
                log.info(
                    "recovered after an unclean stop: %(interrupted)d interrupted turns recorded, "
                    "%(completed)d finished turns confirmed, %(queued)d queued prompts to run, "
                    "%(not_run)d not run",
                    recovered,
                )
        except BaseException:
            await asyncio.to_thread(opened.close)
            raise
        app.state.services = Services(settings, opened.turns, opened.timeline, registries, conversations)
        # Check often enough that a conversation is never kept much past its idle limit.
        interval = min(EVICT_INTERVAL_S, max(0.5, settings.idle_evict_s / 2))
        evictor = asyncio.create_task(_evict_loop(conversations, interval))
        try:
            yield
        finally:
            evictor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await evictor
            try:
                await conversations.shutdown(settings.shutdown_grace_s)
            finally:
                await asyncio.to_thread(opened.close)

    app = FastAPI(
        title="web-chat",
        version=__version__,
        description="Chat server with per-turn runtime truth. Errors are JSON {error, code}.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Added last, so it runs first: a refused Host or Origin reaches nothing else.
    app.add_middleware(
        EdgeGuard,
        bind_host=settings.host,
        allowed_hosts=settings.allowed_hosts,
        allowed_origins=settings.allowed_origins,
    )
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(IdempotencyKeyReused, _idempotency_reused)
    app.add_exception_handler(ServiceClosing, _closing)
    app.add_exception_handler(QueueFull, _queue_full)

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


async def _idempotency_reused(_: Request, exc: Exception) -> JSONResponse:
    return error_response(409, "idempotency_key_reused", str(exc))


async def _closing(_: Request, exc: Exception) -> JSONResponse:
    return error_response(503, "shutting_down", str(exc) or "the server is shutting down")


async def _queue_full(_: Request, exc: Exception) -> JSONResponse:
    return error_response(429, "queue_full", str(exc))


async def _evict_loop(conversations: ConversationService, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            evicted = await conversations.evict_idle()
            if evicted:
                log.info("evicted %d idle conversations", len(evicted))
        except Exception:
            log.exception("eviction failed")
