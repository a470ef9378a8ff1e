"""Run a blocking store call from async code on the thread the store says its writes belong on.

A store may expose ``write_executor``: the executor sized to what it can write at once (SQLite: one
thread per database file). Writes queued there wait only for writes to the same store, in order; the
shared default pool stays free for reads, tools and other stores. A store without one uses the default.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def write_call(store: object, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``await write_call(store, store.method, *args)``: run a write of ``store`` off the event loop."""
    executor = getattr(store, "write_executor", None)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))
