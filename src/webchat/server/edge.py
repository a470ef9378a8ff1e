"""Host and Origin checks for every request and WebSocket upgrade (security.md, "Rules that hold in both
modes"), as a pure ASGI middleware so nothing of the app runs for a refused request.

- A ``Host`` that is not an allowed host is 400 ``invalid_host``: a page on another site that rebinds its
  DNS name to 127.0.0.1 reaches the socket, but not the app.
- A WebSocket upgrade, or a POST/PUT/PATCH/DELETE, that carries an ``Origin`` other than the server's own
  (the origin whose host is the request's ``Host``) or an allowed one is 403 ``invalid_origin``; a
  refused upgrade is answered 403 before it is accepted. Requests without ``Origin`` (programs, curl) pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from webchat.server.settings import is_wildcard

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def host_name(value: str) -> str:
    """The host part of a ``Host`` header value (``name``, ``name:port``, ``[v6]``, ``[v6]:port``, or a
    bare v6 address), lower-cased, without a trailing dot; "" for a malformed bracketed value."""
    value = value.strip()
    if value.startswith("["):
        host, closed, rest = value[1:].partition("]")
        if not (closed and host) or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return ""
        return host.lower()
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".").lower()


def normal_origin(origin: str) -> str:
    """``scheme://host[:port]`` lower-cased, without a trailing slash or path ("" when unparsable)."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return ""
    if not parts.scheme or not parts.netloc:
        return ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def allowed_host_names(bind_host: str, extra: Iterable[str]) -> frozenset[str]:
    """The names a ``Host`` header may carry: the loopback names, the bind address (unless it means every
    interface) and the operator's extra names, each read like a ``Host`` value (a port is dropped)."""
    names = {*LOOPBACK_NAMES, *(host_name(h) for h in extra)}
    if not is_wildcard(bind_host):
        names.add(host_name(bind_host))
    return frozenset(n for n in names if n)


class EdgeGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        bind_host: str,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.hosts = allowed_host_names(bind_host, allowed_hosts)
        self.origins = frozenset(o for o in (normal_origin(x) for x in allowed_origins) if o)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode(): v.decode("latin-1")
            for k, v in scope.get("headers") or []
            if k in (b"host", b"origin")
        }
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            await refuse(scope, send, 400, "invalid_host", f"host {host!r} is not an allowed host")
            return
        origin = headers.get("origin")
        checks_origin = kind == "websocket" or scope["method"] in STATE_CHANGING
        if checks_origin and origin is not None and not self._origin_ok(origin, host):
            await refuse(scope, send, 403, "invalid_origin", f"origin {origin!r} is not allowed")
            return
        await self.app(scope, receive, send)

    def _origin_ok(self, origin: str, host: str) -> bool:
        normal = normal_origin(origin)
        if not normal:
            return False
        if normal in self.origins:
            return True
        # The server's own origin: the page was loaded from the host this request is addressed to.
        return urlsplit(normal).netloc == host.strip().lower()


async def refuse(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    """Answer an HTTP request, or refuse a WebSocket upgrade, with a JSON error; the app never runs."""
    body = json.dumps({"error": message, "code": code}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "websocket":
        # The WebSocket Denial Response extension answers the upgrade with a plain HTTP response;
        # without it, closing before accepting makes the server answer 403.
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
