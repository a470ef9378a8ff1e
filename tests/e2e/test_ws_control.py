"""``/ws`` against a real server: control frames carry no seq, and odd client frames are handled cleanly
(a binary frame closes with 1003, a pathological text frame is ignored), never with a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.e2e.client import FrameCollector, wait_turns_final
from tests.e2e.conftest import Server, start_server


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path / "data")
    try:
        yield server
    finally:
        server.stop()


def _event(ws: ClientConnection) -> dict[str, Any]:
    frame = json.loads(ws.recv(timeout=10))
    event: dict[str, Any] = frame["event"]
    return event


def make_conversation(srv: Server, conv: str) -> None:
    # Sockets are for conversations that exist: the first accepted prompt creates one.
    resp = httpx.post(srv.base_url + "/chat/fast", json={"prompt": "hi", "conv_id": conv}, timeout=10)
    assert resp.status_code == 200, resp.text
    wait_turns_final(srv.base_url, conv, 1)


def test_binary_frame_closes_with_1003_without_traceback(srv: Server) -> None:
    make_conversation(srv, "bin-1")
    with connect(f"{srv.ws_url}/ws?conv_id=bin-1", open_timeout=10) as ws:
        assert _event(ws)["type"] == "ws.hello"
        ws.send(b"\x00\x01binary")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1003
    assert "binary" in closed.value.rcvd.reason
    # The server is unharmed: the same conversation still answers pings on a new socket.
    with connect(f"{srv.ws_url}/ws?conv_id=bin-1", open_timeout=10) as ws:
        assert _event(ws)["type"] == "ws.hello"
        ws.send("ping")
        assert _event(ws)["type"] == "ws.pong"
    assert "Traceback" not in srv.log()


def test_pathological_text_frames_are_ignored(srv: Server) -> None:
    make_conversation(srv, "txt-1")
    with connect(f"{srv.ws_url}/ws?conv_id=txt-1", open_timeout=10, max_size=None) as ws:
        assert _event(ws)["type"] == "ws.hello"
        for text in ("[" * 100_000, '{"type": "ws.ping", "n": ' + "9" * 10_000 + "}", "\x00", "not json"):
            ws.send(text)
        ws.send('{"type": "ws.ping"}')
        # Only the last frame is a ping; the earlier ones got no answer and did not end the socket.
        assert _event(ws)["type"] == "ws.pong"
    assert "Traceback" not in srv.log()


def test_control_frames_carry_no_seq_and_hello_tells_the_version(srv: Server) -> None:
    conv = "ctl-1"
    r = httpx.post(srv.base_url + "/chat/fast", json={"prompt": "hello there", "conv_id": conv}, timeout=10)
    assert r.status_code == 200, r.text
    ws = FrameCollector(srv.ws_url, conv, since_seq=0)
    try:
        ws.wait_for(lambda evs: any(e["type"] == "ws.hello" for e in evs))
        first_hello = ws.events("ws.hello")[0]
        assert "seq" not in first_hello
        assert first_hello["data"]["resume"] == "stream"  # what was sent already is replayed
        ws.wait_for(lambda evs: any(e["type"] == "llm.final" for e in evs))
        wait_turns_final(srv.base_url, conv, 1)
        ws.send("ping")
        ws.wait_for(lambda evs: any(e["type"] == "ws.pong" for e in evs))
        pong = ws.events("ws.pong")[0]
        assert "seq" not in pong and set(pong["data"]) == {"server_time_ms"}
        stream = [e for e in ws.events() if e["type"] not in ("ws.hello", "ws.pong")]
        seqs = [e["seq"] for e in stream]
        assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
        snapshot = httpx.get(srv.base_url + "/api/timeline", params={"conv_id": conv}, timeout=10).json()
    finally:
        ws.close()
    # A second socket learns where the stream is from its hello, without claiming a frame's seq.
    with connect(f"{srv.ws_url}/ws?conv_id={conv}", open_timeout=10) as again:
        hello = _event(again)
        assert hello["type"] == "ws.hello" and "seq" not in hello
        assert hello["data"]["version"] == snapshot["version"] >= max(seqs)
        assert hello["data"]["conv_id"] == conv and hello["data"]["runtime_key"] == "fast"
