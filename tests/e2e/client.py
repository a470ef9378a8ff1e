"""Small helpers for talking to a running server: a WebSocket frame collector and polling."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from websockets.sync.client import connect


class FrameCollector:
    """Collects every frame of one conversation's socket in a background thread."""

    def __init__(self, ws_url: str, conv_id: str, since_seq: int | None = None) -> None:
        """``since_seq=0``: the frames the conversation already sent are replayed first (a socket opens
        only once the first prompt has created the conversation)."""
        self.frames: list[dict[str, Any]] = []
        resume = f"&since_seq={since_seq}" if since_seq is not None else ""
        self._ws = connect(f"{ws_url}/ws?conv_id={conv_id}{resume}", open_timeout=10)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                message = self._ws.recv()
                with self._lock:
                    self.frames.append(json.loads(message))
        except Exception:
            return

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            evs = [f["event"] for f in self.frames if "event" in f]
        return [e for e in evs if type_ is None or e["type"] == type_]

    def wait_for(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.events()):
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out; saw {[e['type'] for e in self.events()]}")

    def send(self, text: str) -> None:
        self._ws.send(text)

    def close(self) -> None:
        self._ws.close()
        self._thread.join(timeout=5)


def wait_turns_final(base_url: str, conv_id: str, n: int, timeout: float = 30) -> list[dict[str, Any]]:
    """Poll the debug API until ``n`` turns of the conversation have a final (or error) snapshot."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = httpx.get(f"{base_url}/api/debug/turns", params={"conv_id": conv_id, "limit": 1000}).json()[
            "items"
        ]
        done = {i["turn_id"] for i in items if i["phase"] == "final"}
        if len(done) >= n:
            return items
        time.sleep(0.05)
    raise AssertionError(f"only {len(done)} of {n} turns finished")
