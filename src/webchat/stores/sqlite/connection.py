"""SQLite connections with web-chat's settings, and the single writer every write goes through.

All writes to a database file from one process go through one :class:`Writer` thread that owns one
connection and runs each unit of work in ``BEGIN IMMEDIATE`` … ``COMMIT``. That keeps "database is
locked" away inside a process; between processes, ``BEGIN IMMEDIATE`` plus ``busy_timeout`` (and a
bounded retry on top) serialise writers. Reads use their own connections, one per thread.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from webchat.stores.protocol import StoreError

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
# How long a writer keeps retrying BEGIN IMMEDIATE while another process holds the write lock.
LOCK_WAIT_S = 60.0


def connect(
    path: str | Path, *, readonly: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """Open a connection in autocommit mode (transactions are explicit) with the contract's pragmas."""
    path = Path(path)
    try:
        if readonly:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: could not switch to WAL journal mode (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open SQLite database: {exc}") from exc
    return conn


def begin_immediate(conn: sqlite3.Connection, deadline_s: float = LOCK_WAIT_S) -> None:
    """``BEGIN IMMEDIATE``, retrying past busy_timeout until the deadline (another process may be writing)."""
    stop = time.monotonic() + deadline_s
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= stop:
                raise StoreError(f"database stayed locked for more than {deadline_s:.0f}s") from exc


def run_in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    begin_immediate(conn)
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


_STOP = object()


class Writer:
    """One thread, one connection, every write of this process to one database file."""

    def __init__(self, path: str | Path, *, name: str = "webchat-sqlite-writer") -> None:
        self.path = Path(path)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=name, daemon=True)
        self._closed = False
        self._thread.start()
        ready.result()

    def _run(self, ready: Future[None]) -> None:
        try:
            conn = connect(self.path)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                fn, fut = item
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    fut.set_result(run_in_transaction(conn, fn))
                except BaseException as exc:
                    fut.set_exception(exc)
        finally:
            conn.close()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        if self._closed:
            raise StoreError("store is closed")
        fut: Future[T] = Future()
        self._queue.put((fn, fut))
        return fut

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one write transaction on the writer thread and return its result."""
        return self.submit(fn).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()


class Readers:
    """One read connection per thread, all closed together."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
