"""One PostgreSQL database shared by every store of a process: a bounded psycopg pool, explicit timeouts.

Every store of a deployment lives in the database ``--database-url`` names (scale-out.md §2). The stores
of one process share one :class:`Database` per DSN, so the pool bound is the process's bound on
connections to the server. Errors a caller can cause or an operator can fix (unreachable server, bad
credentials, a missing database) become :class:`~webchat.stores.protocol.StoreError` with the DSN's
password left out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from webchat.stores.protocol import StoreError

SCHEMES: Final = ("postgresql://", "postgres://")
# Connections one process keeps at most; a serving process runs at most this many store calls at once.
DEFAULT_POOL_MAX: Final = 10
DEFAULT_POOL_MIN: Final = 1
# How long a store call waits for a free connection before it fails (seconds).
POOL_TIMEOUT_S: Final = 30.0
# How long opening a connection may take before the server counts as unreachable (seconds).
CONNECT_TIMEOUT_S: Final = 10
# No statement of the stores runs for long; one that does is stuck behind a lock and fails loudly.
STATEMENT_TIMEOUT_MS: Final = 60_000


def is_postgres_url(text: str | None) -> bool:
    return bool(text) and str(text).startswith(SCHEMES)


def redacted(dsn: str) -> str:
    """The DSN as messages show it: the password replaced by ``***``."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "postgresql://…"
    if parts.password is None:
        return dsn
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class Database:
    """A pool of connections to one PostgreSQL database.

    ``connection()`` lends a connection for one transaction: committed when the block ends, rolled back
    when it raises. Opening checks that the server answers, so a wrong URL is one error at start.
    """

    def __init__(
        self,
        dsn: str,
        *,
        max_size: int = DEFAULT_POOL_MAX,
        min_size: int = DEFAULT_POOL_MIN,
        timeout_s: float = POOL_TIMEOUT_S,
        application_name: str = "web-chat",
    ) -> None:
        if not is_postgres_url(dsn):
            raise StoreError(f"{redacted(dsn)}: not a PostgreSQL URL (postgresql://USER@HOST:PORT/DB)")
        self.dsn = dsn
        self.label = redacted(dsn)
        self.timeout_s = timeout_s
        try:
            self.pool = ConnectionPool(
                dsn,
                min_size=max(0, min(min_size, max_size)),
                max_size=max(1, max_size),
                timeout=timeout_s,
                kwargs={
                    "connect_timeout": CONNECT_TIMEOUT_S,
                    "application_name": application_name,
                    "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                },
                name=application_name,
                open=False,
            )
        except (psycopg.ProgrammingError, ValueError) as exc:
            raise StoreError(f"{self.label}: invalid database URL: {_first_line(exc)}") from exc
        self._closed = False
        self._lock = threading.Lock()
        self.pool.open(wait=False)
        self._check_reachable()

    def _check_reachable(self) -> None:
        try:
            with psycopg.connect(self.dsn, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            self.pool.close()
            raise StoreError(f"{self.label}: cannot connect: {_first_line(exc)}") from exc

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection inside one transaction (commit on success, rollback on error)."""
        try:
            with self.pool.connection(timeout=self.timeout_s) as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreError(
                f"{self.label}: no free database connection after {self.timeout_s:g} s "
                f"(pool of {self.pool.max_size})"
            ) from exc
        except psycopg.OperationalError as exc:
            raise StoreError(f"{self.label}: {_first_line(exc)}") from exc

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.pool.close()


__all__ = ["DEFAULT_POOL_MAX", "Database", "is_postgres_url", "redacted"]
