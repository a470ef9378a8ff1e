"""One owner per store file: the serving process (or a migration) holds an OS file lock for as long as it
uses the store, and says who it is in a sidecar file so the next one can name it.

The lock is ``<store>.lock`` (an ``flock``; the kernel releases it when the holder dies, even by
``kill -9``, so a crash never leaves a store locked). ``<store>.owner`` holds a JSON description of the
holder; it is informative only and may be stale after a crash — the lock decides.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from webchat.stores.protocol import StoreError


class StoreBusy(StoreError):
    """Another process holds the store."""


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def owner_path(path: Path) -> Path:
    return path.with_name(path.name + ".owner")


def describe_holder(path: Path) -> str:
    """Who holds ``path``, from its owner file ('' when unknown)."""
    try:
        doc = json.loads(owner_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if not isinstance(doc, dict):
        return ""
    since = doc.get("since_ms")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since / 1000))
        if isinstance(since, int | float)
        else "?"
    )
    return (
        f"{doc.get('role', 'web-chat')} (pid {doc.get('pid', '?')} on {doc.get('host', '?')}, since {when})"
    )


class StoreOwner:
    """Exclusive use of one or more store files by this process.

    ``acquire`` takes every lock or none; ``timeout_s`` 0 fails at once when a lock is held.
    """

    def __init__(self, paths: Iterable[str | Path], role: str) -> None:
        # Sorted and de-duplicated, so two processes locking overlapping sets cannot deadlock.
        self.paths = sorted({Path(p).resolve() for p in paths})
        self.role = role
        self._locks: list[tuple[Path, FileLock]] = []

    @property
    def held(self) -> bool:
        return bool(self._locks)

    def acquire(self, timeout_s: float = 0.0) -> None:
        if self._locks:
            return
        try:
            for path in self.paths:
                path.parent.mkdir(parents=True, exist_ok=True)
                lock = FileLock(str(lock_path(path)), timeout=timeout_s)
                try:
                    lock.acquire()
                except Timeout as exc:
                    holder = describe_holder(path) or "another process"
                    raise StoreBusy(f"{path} is in use by {holder}") from exc
                self._locks.append((path, lock))
                self._write_owner(path)
        except BaseException:
            self.release()
            raise

    def _write_owner(self, path: Path) -> None:
        doc: dict[str, Any] = {
            "role": self.role,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since_ms": int(time.time() * 1000),
            "argv": sys.argv[:8],
        }
        tmp = owner_path(path).with_suffix(".owner.tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, owner_path(path))

    def release(self) -> None:
        while self._locks:
            path, lock = self._locks.pop()
            with contextlib.suppress(OSError):
                owner_path(path).unlink()
            lock.release()

    def __enter__(self) -> StoreOwner:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
