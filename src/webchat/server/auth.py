"""Who a request is, and what it may reach (security.md: modes, sign-in, the access matrix).

- **Local mode** (a loopback bind, the default): every request is the person at the machine, with no
  sign-in. The host and origin checks of :mod:`webchat.server.edge` still apply.
- **Team mode** (any other bind, or ``--auth required``): a request is a user when it carries
  ``Authorization: Bearer <api token>`` or the browser session cookie; anything else is anonymous and
  reaches only the open routes (health, sign-in, help, static assets).

:class:`AuthGate` is a pure ASGI middleware (it runs after :class:`~webchat.server.edge.EdgeGuard`): it
puts the :class:`Identity` in the request state and refuses what the matrix refuses by route (401 for
anonymous, 403 for a user on an admin route) before any route runs. Per-conversation checks (another
user's conversation is a 404) are made by the routes, which know the conversation.

Lookups of tokens and sessions are cached for :data:`CACHE_TTL_S`: a disabled user or a revoked token
is refused within that time, and a request with a known credential costs a dictionary lookup.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from webchat.auth.store import Principal, SQLiteAuthStore
from webchat.server.edge import STATE_CHANGING, refuse
from webchat.server.errors import ApiError
from webchat.server.settings import Settings
from webchat.server.validation import CheckedRoute

log = logging.getLogger("webchat.server.auth")

SESSION_COOKIE = "webchat_session"
# How long the browser keeps the cookie; the server ends an idle session earlier (--session-idle-s).
COOKIE_MAX_AGE_S = 30 * 24 * 3600
CACHE_TTL_S = 2.0
CACHE_MAX = 10_000
# Failed sign-ins allowed in LOGIN_WINDOW_S per username and per client address, then 429.
LOGIN_WINDOW_S = 300.0
LOGIN_FAILURES_PER_USER = 5
LOGIN_FAILURES_PER_ADDRESS = 20
# Password checks running at once: each argon2 check takes 64 MiB and a core for tens of milliseconds.
HASHING_AT_ONCE = 2

# Routes anyone may call in team mode.
OPEN_PATHS = frozenset(
    {
        "/healthz",
        "/login",
        "/favicon.ico",
        "/help",
        "/api/help",
        "/api/auth/login",
        "/api/auth/logout",
        "/api/auth/me",
        "/openapi.json",
        "/docs",
    }
)
OPEN_PREFIXES = ("/static/", "/help/", "/api/help/")
# Pages a browser opens: an anonymous visit is sent to the sign-in page instead of a JSON 401.
PAGES = frozenset({"/", "/debug"})


# Who a request is: the store's principal, whose ``via`` here is also "local" (local mode) or
# "debug_token".
Identity = Principal

# Local mode: the person at the machine. Conversations it creates have no owner id, so they belong to the
# first admin if the server is later run in team mode.
LOCAL = Principal(user_id="", username="local", role="admin", via="local")
# The --debug-token bearer: the debug API only (the gate never lets it reach another route).
DEBUG_TOKEN = Principal(user_id="", username="debug-token", role="debug", via="debug_token")


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def admin_only(path: str, method: str) -> bool:
    """Routes of the matrix's admin column: profile writes and the debug API (and its page)."""
    if path == "/debug" or path.startswith("/api/debug/") or path == "/api/debug":
        return True
    profiles = path == "/api/chat/profiles" or path.startswith("/api/chat/profiles/")
    return profiles and method in STATE_CHANGING


def is_debug_path(path: str) -> bool:
    return path == "/api/debug" or path.startswith("/api/debug/")


class CredentialCache:
    """Token and session lookups for a few seconds: the store is read once per credential per
    :data:`CACHE_TTL_S`, never on every request, and a change made by the CLI shows within that time."""

    def __init__(self, ttl_s: float = CACHE_TTL_S, max_entries: int = CACHE_MAX) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Identity | None]] = {}

    def get(self, key: str) -> tuple[bool, Identity | None]:
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, key: str, identity: Identity | None) -> None:
        if len(self._entries) >= self.max_entries:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl_s, identity)

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)


class LoginThrottle:
    """Failed sign-ins per username and per client address in a sliding window (in memory: a restart
    forgets them, which only helps someone who can restart the server)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, collections.deque[float]] = {}

    def _recent(self, key: str) -> collections.deque[float]:
        now = self._clock()
        times = self._failures.get(key)
        if times is None:
            return collections.deque()
        while times and times[0] <= now - LOGIN_WINDOW_S:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after_s(self, username: str, address: str) -> int:
        """0 when a sign-in may be tried now, else the seconds until it may."""
        wait = 0.0
        for key, limit in (
            (f"u:{username.lower()}", LOGIN_FAILURES_PER_USER),
            (f"a:{address}", LOGIN_FAILURES_PER_ADDRESS),
        ):
            times = self._recent(key)
            if len(times) >= limit:
                wait = max(wait, times[0] + LOGIN_WINDOW_S - self._clock())
        return max(1, int(wait) + 1) if wait > 0 else 0

    def failed(self, username: str, address: str) -> None:
        now = self._clock()
        if len(self._failures) > CACHE_MAX:
            self._failures.clear()  # bounded memory; a flood of names forgets the oldest counts
        for key in (f"u:{username.lower()}", f"a:{address}"):
            self._failures.setdefault(key, collections.deque()).append(now)

    def succeeded(self, username: str) -> None:
        self._failures.pop(f"u:{username.lower()}", None)


class Authenticator:
    """The credentials side of the gate: resolves a bearer token or a session cookie to an identity."""

    def __init__(self, settings: Settings, store: SQLiteAuthStore) -> None:
        self.settings = settings
        self.store = store
        self.cache = CredentialCache()
        self.throttle = LoginThrottle()
        self.hashing = asyncio.Semaphore(HASHING_AT_ONCE)

    async def by_token(self, secret: str) -> Identity | None:
        key = "t:" + secret
        hit, identity = self.cache.get(key)
        if hit:
            return identity
        identity = await asyncio.to_thread(self.store.principal_for_token, secret)
        self.cache.put(key, identity)
        return identity

    async def by_session(self, secret: str) -> Identity | None:
        key = "s:" + secret
        hit, identity = self.cache.get(key)
        if hit:
            return identity
        idle_ms = int(self.settings.session_idle_s * 1000)
        identity = await asyncio.to_thread(self.store.principal_for_session, secret, idle_timeout_ms=idle_ms)
        self.cache.put(key, identity)
        return identity


def _headers(scope: Scope) -> dict[str, str]:
    wanted = (b"authorization", b"cookie")
    return {k.decode(): v.decode("latin-1") for k, v in scope.get("headers") or [] if k in wanted}


def session_cookie(cookie_header: str) -> str:
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE:
            return value.strip()
    return ""


class AuthGate:
    """Identity for every request, and the matrix's per-route refusals (see the module doc)."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.team = settings.mode == "team"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if not self.team:
            state["identity"] = LOCAL
            await self.app(scope, receive, send)
            return
        auth: Authenticator | None = getattr(scope["app"].state, "authenticator", None)
        if auth is None:
            await refuse(scope, send, 503, "starting", "the server is starting; try again in a moment")
            return
        path = scope["path"]
        method = scope.get("method", "GET")  # a WebSocket scope has none
        headers = _headers(scope)
        identity: Identity | None = None
        bad_token = False
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() == "bearer" and credential:
            token = self.settings.debug_token
            if token and is_debug_path(path) and hmac.compare_digest(credential.encode(), token.encode()):
                identity = DEBUG_TOKEN
            else:
                identity = await auth.by_token(credential)
                bad_token = identity is None
        elif cookie := session_cookie(headers.get("cookie", "")):
            identity = await auth.by_session(cookie)
        state["identity"] = identity
        if is_open(path):
            await self.app(scope, receive, send)
            return
        if identity is None:
            if bad_token:
                message = "the bearer token is unknown, expired or revoked, or its user is disabled"
                await refuse(scope, send, 401, "invalid_token", message)
            elif scope["type"] == "http" and method == "GET" and path in PAGES:
                await _redirect_to_login(scope, receive, send, path)
            else:
                await refuse(scope, send, 401, "unauthorized", "sign in first (or send a bearer token)")
            return
        if admin_only(path, method) and not (identity.is_admin or identity is DEBUG_TOKEN):
            await refuse(scope, send, 403, "forbidden", f"{method} {path} is for admins only")
            return
        await self.app(scope, receive, send)


async def _redirect_to_login(scope: Scope, receive: Receive, send: Send, path: str) -> None:
    query = scope.get("query_string", b"").decode("latin-1")
    target = path + (f"?{query}" if query else "")
    response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    await response(scope, receive, send)


# -- what the routes use --------------------------------------------------------------------------


def request_identity(request: Request) -> Identity:
    """The identity the gate put on a request that reached a route: the gate sets one on every request,
    None for an anonymous one, which only reaches the open routes (401 from those that need one)."""
    identity: Identity | None = request.state.identity
    if identity is None:
        raise ApiError(401, "unauthorized", "sign in first (or send a bearer token)")
    return identity


def socket_identity(websocket: WebSocket) -> Identity:
    """The identity the gate put on a socket: every socket passes the gate, which refuses anonymous ones
    in team mode before they reach a route."""
    identity: Identity = websocket.scope["state"]["identity"]
    return identity


def owner_scope(identity: Identity) -> str | None:
    """The owner whose conversations a user sees in lists (None: every conversation)."""
    return None if identity.is_admin else identity.user_id


# -- /api/auth ------------------------------------------------------------------------------------

router = APIRouter(prefix="/api/auth", tags=["auth"], route_class=CheckedRoute)


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Me(BaseModel):
    username: str
    role: str
    mode: str


def _auth(request: Request) -> Authenticator:
    # Set at startup, before the server takes a request (and the gate answers 503 "starting" otherwise).
    auth: Authenticator = request.app.state.authenticator
    return auth


def _mode(request: Request) -> str:
    settings: Settings = request.app.state.settings
    return settings.mode


def _client_address(request: Request) -> str:
    return request.client.host if request.client else ""


@router.post(
    "/login",
    summary="Sign in: sets the HttpOnly session cookie (team mode)",
    response_model=Me,
    responses={
        401: {"description": "invalid_credentials"},
        409: {"description": "local_mode: nobody signs in on a local-mode server"},
        429: {"description": "too_many_attempts (Retry-After says when to try again)"},
    },
)
async def login(body: LoginRequest, request: Request) -> Response:
    if _mode(request) != "team":
        raise ApiError(409, "local_mode", "this server runs in local mode: nobody needs to sign in")
    auth = _auth(request)
    address = _client_address(request)
    wait = auth.throttle.retry_after_s(body.username, address)
    if wait:
        response = JSONResponse(
            {"error": f"too many failed sign-ins; try again in {wait} s", "code": "too_many_attempts"},
            status_code=429,
            headers={"Retry-After": str(wait)},
        )
        return response
    async with auth.hashing:
        user = await asyncio.to_thread(auth.store.check_password, body.username, body.password)
    if user is None:
        auth.throttle.failed(body.username, address)
        log.info("failed sign-in for %r from %s", body.username, address)
        raise ApiError(401, "invalid_credentials", "wrong username or password, or the user is disabled")
    auth.throttle.succeeded(body.username)
    secret = await asyncio.to_thread(auth.store.create_session, user.user_id)
    response = JSONResponse({"username": user.username, "role": user.role, "mode": "team"})
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", summary="Sign out: ends the session server-side and clears its cookie")
async def logout(request: Request) -> Response:
    secret = request.cookies.get(SESSION_COOKIE, "")
    auth = _auth(request)
    if secret:
        await asyncio.to_thread(auth.store.end_session, secret)
        auth.cache.forget("s:" + secret)
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


@router.get(
    "/me",
    summary="Who this request is: {username, role, mode}",
    response_model=Me,
    responses={401: {"description": "unauthorized: not signed in (team mode)"}},
)
async def me(request: Request) -> dict[str, Any]:
    identity = request_identity(request)
    return {"username": identity.username, "role": identity.role, "mode": _mode(request)}
