"""The ASGI app factory: ``create_app(settings)`` wires stores, runtimes and routers together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from webchat import __version__
from webchat.auth.store import SQLiteAuthStore
from webchat.conversations.service import (
    ConversationNotFound,
    ConversationService,
    QueueFull,
    ServiceClosing,
    TooManyConversations,
    TooManyPrompts,
)
from webchat.runtimes.profiles import Registries, allow_key_envs, load_registries
from webchat.runtimes.sqlite_registry import PROFILES_DB_NAME, ProfileWriter, open_profile_store
from webchat.server import auth, chat, debug, help, profiles, timeline, web, ws
from webchat.server.auth import Authenticator, AuthGate, admin_only, is_open
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
SESSION_PURGE_INTERVAL_S = 3600.0


@dataclass
class OpenStores:
    """The stores of one serving process, opened under its owner lock (one serving process per store)."""

    owner: StoreOwner
    profile_store: ProfileWriter
    turns: TurnStore
    timeline: SQLiteTimelineStore
    prompts: PromptStore
    # Users, tokens and sessions (auth.db): outside the owner lock, the users/tokens commands write it
    # while the server runs.
    auth: SQLiteAuthStore

    def close(self) -> None:
        try:
            self.turns.close()
            self.timeline.close()
            self.profile_store.close()
            self.auth.close()
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
        auth_store = SQLiteAuthStore(settings.auth_path)
        opened.append(auth_store)
        return OpenStores(owner, profile_store, turns, timeline, SQLitePromptStore(timeline), auth_store)
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
    allow_key_envs(settings.provider_key_envs)
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
            max_conversations_per_user=settings.max_conversations_per_user,
            max_prompts_per_user=settings.max_prompts_per_user,
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
        app.state.authenticator = Authenticator(settings, opened.auth)
        # Check often enough that a conversation is never kept much past its idle limit.
        interval = min(EVICT_INTERVAL_S, max(0.5, settings.idle_evict_s / 2))
        evictor = asyncio.create_task(_evict_loop(conversations, interval, app.state.authenticator))
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
    app.state.settings = settings
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthGate, settings=settings)
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
    app.add_exception_handler(ConversationNotFound, _unknown_conversation)
    app.add_exception_handler(TooManyConversations, _too_many_conversations)
    app.add_exception_handler(TooManyPrompts, _too_many_prompts)

    @app.get("/healthz", tags=["health"], summary="Liveness and store status")
    async def healthz() -> dict[str, Any]:
        svc: Services | None = getattr(app.state, "services", None)
        return {
            "status": "ok" if svc else "starting",
            "version": __version__,
            "live_conversations": len(svc.conversations.live_items()) if svc else 0,
            "debug_api": settings.debug_enabled,
        }

    app.include_router(auth.router)
    app.include_router(chat.router)
    app.include_router(ws.router)
    app.include_router(timeline.router)
    app.include_router(profiles.router)
    app.include_router(help.router)
    app.include_router(web.router)
    if settings.debug_enabled:
        app.include_router(debug.router)
        app.include_router(web.debug_router)
    app.openapi = lambda: _openapi_with_edge_errors(app)  # type: ignore[method-assign]
    return app


# Answers every route can give before it runs (edge.py, auth.py), added to each operation's responses.
_EDGE_ERRORS: dict[str, str] = {
    "400": "invalid_host: the Host header does not name this server",
    "401": "unauthorized / invalid_token: team mode, and the request is not signed in",
    "403": "invalid_origin: a foreign Origin on a change; forbidden: a user on an admin route",
    "415": "unsupported_media_type: a body that is not application/json",
}


def _openapi_with_edge_errors(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            writes = method.upper() in ("POST", "PUT", "PATCH", "DELETE")
            responses = operation.setdefault("responses", {})
            for status, text in _EDGE_ERRORS.items():
                if (status == "401" and is_open(path)) or (status == "415" and not writes):
                    continue
                if status == "403" and not writes and not admin_only(path, method.upper()):
                    continue
                entry = responses.setdefault(status, {"description": text})
                if text not in entry.get("description", ""):
                    entry["description"] = f"{entry['description']}; {text}"
    app.openapi_schema = schema
    return schema


async def _idempotency_reused(_: Request, exc: Exception) -> JSONResponse:
    return error_response(409, "idempotency_key_reused", str(exc))


async def _closing(_: Request, exc: Exception) -> JSONResponse:
    return error_response(503, "shutting_down", str(exc) or "the server is shutting down")


async def _queue_full(_: Request, exc: Exception) -> JSONResponse:
    return error_response(429, "queue_full", str(exc))


async def _unknown_conversation(_: Request, exc: Exception) -> JSONResponse:
    # Another user's conversation gets exactly this answer too: its existence is not revealed.
    return error_response(404, "unknown_conversation", f"no conversation {exc}")


async def _too_many_conversations(_: Request, exc: Exception) -> JSONResponse:
    return error_response(429, "too_many_conversations", str(exc))


async def _too_many_prompts(_: Request, exc: Exception) -> JSONResponse:
    return error_response(429, "too_many_prompts", str(exc))


async def _evict_loop(conversations: ConversationService, interval: float, auth: Authenticator) -> None:
    purged_at = 0.0
    while True:
        await asyncio.sleep(interval)
        if time.monotonic() - purged_at >= SESSION_PURGE_INTERVAL_S:
            # Sessions nobody uses again are never looked up, so never deleted on lookup: sweep them.
            purged_at = time.monotonic()
            try:
                idle_ms = int(auth.settings.session_idle_s * 1000)
                await asyncio.to_thread(auth.store.purge_sessions, idle_timeout_ms=idle_ms)
            except Exception:
                log.exception("purging idle sessions failed")
        try:
            evicted = await conversations.evict_idle()
            if evicted:
                log.info("evicted %d idle conversations", len(evicted))
        except Exception:
            log.exception("eviction failed")
