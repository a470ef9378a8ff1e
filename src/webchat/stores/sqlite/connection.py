"""SQLite connections with web-chat's settings, and the single writer every write goes through.

All writes to a database file from one process go through one :class:`Writer`, which owns one
connection and runs each unit of work, one at a time, in ``BEGIN IMMEDIATE`` … ``COMMIT``. That
keeps "database is locked" away inside a process; between processes, ``BEGIN IMMEDIATE`` plus
``busy_timeout`` (and a bounded retry on top) serialise writers. Reads use their own connections,
one per thread.

Async callers hand a store's writes to that file's own thread (:attr:`Writer.executor`, via
:func:`webchat.stores.offload.write_call`): a write queued there waits only for writes to the same file.
In the shared default pool, writes blocked on this lock held every thread, and a prompt's acceptance in
timeline.db waited behind snapshot saves to turns.db.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

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


class Writer:
    """One connection and one lock: every write of this process to one database file, one at a time.

    The unit of work runs in the calling thread while it holds the lock (async callers are already on a
    worker thread). A dedicated writer thread was measured first: handing each write to it and waiting
    for its result cost about a third more CPU per snapshot save than the same statements run inline
    (two thread wake-ups per write), and the lock keeps the single-writer discipline without them.
    """

    def __init__(self, path: str | Path, *, name: str = "webchat-sqlite-writer") -> None:
        self.path = Path(path)
        self.name = name
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = connect(self.path)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    @property
    def executor(self) -> Executor:
        """The one thread async callers run this file's writes on, in the order they were queued."""
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
            return self._executor

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``); return its result."""
        with self._lock:
            if self._conn is None:
                raise StoreError("store is closed")
            return run_in_transaction(self._conn, fn)

    def close(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            # Queued writes finish before the connections close: a write still running on the lane
            # while another thread closes the store's connections crashes the interpreter in SQLite.
            # (A write that closes its own store cannot wait for itself.)
            on_lane = threading.current_thread().name.startswith(self.name)
            executor.shutdown(wait=not on_lane)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


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
