"""``GET /ws?conv_id=…&since_seq=N`` (http-api.md, stream resume): a client that reconnects gets the frames
it missed from the ring buffer, or is told to rehydrate from the timeline when they are no longer held."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
from websockets.sync.client import connect

from tests.e2e.client import FrameCollector, wait_turns_final
from tests.e2e.conftest import Server, start_server


def frames_until_final(ws_url: str, conv_id: str, since: int) -> tuple[dict, list[dict]]:
    with connect(f"{ws_url}/ws?conv_id={conv_id}&since_seq={since}", open_timeout=10) as ws:
        hello = json.loads(ws.recv(timeout=10))["event"]
        frames: list[dict] = []
        while hello["data"].get("resume") == "stream":
            event = json.loads(ws.recv(timeout=10))["event"]
            frames.append(event)
            if event["type"] == "llm.final":
                break
        return hello, frames


def test_a_reconnecting_client_gets_exactly_the_frames_it_missed(server: Server) -> None:
    conv = str(uuid.uuid4())
    r = httpx.post(server.base_url + "/chat", json={"prompt": "hello", "conv_id": conv, "profile": "fast"})
    assert r.status_code == 200
    ws = FrameCollector(server.ws_url, conv, since_seq=0)
    try:
        ws.wait_for(lambda evs: any(e["type"] == "ws.hello" for e in evs))
        ws.wait_for(lambda evs: any(e["type"] == "llm.final" for e in evs))
        live = [e for e in ws.events() if "seq" in e]
    finally:
        ws.close()
    cut = live[2]["seq"]  # the client saw three frames, then lost its connection
    hello, replayed = frames_until_final(server.ws_url, conv, cut)
    assert "seq" not in hello and hello["data"]["resume"] == "stream"
    assert [e["seq"] for e in replayed] == [e["seq"] for e in live[3:]]
    assert replayed == live[3:]
    # Caught up already: nothing to replay, still "stream".
    with connect(f"{server.ws_url}/ws?conv_id={conv}&since_seq={live[-1]['seq']}", open_timeout=10) as sock:
        hello = json.loads(sock.recv(timeout=10))["event"]
        assert hello["data"]["resume"] == "stream"


def test_after_a_restart_the_client_is_told_to_rehydrate_and_the_snapshot_has_what_it_missed(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    srv = start_server(data)
    conv = str(uuid.uuid4())
    try:
        r = httpx.post(srv.base_url + "/chat", json={"prompt": "hello", "conv_id": conv, "profile": "fast"})
        assert r.status_code == 200
        wait_turns_final(srv.base_url, conv, 1)
    finally:
        assert srv.stop() == 0
    srv = start_server(data)
    try:
        with connect(f"{srv.ws_url}/ws?conv_id={conv}&since_seq=1", open_timeout=10) as sock:
            hello = json.loads(sock.recv(timeout=10))["event"]
        assert hello["data"]["resume"] == "snapshot"
        snap = httpx.get(srv.base_url + "/api/timeline", params={"conv_id": conv, "since_version": 1}).json()
        assert {e["id"] for e in snap["entities"]} >= {f"{r.json()['turn_id']}:assistant"}
        # A client that had everything the stopped process wrote missed nothing.
        with connect(f"{srv.ws_url}/ws?conv_id={conv}&since_seq={snap['version']}", open_timeout=10) as sock:
            hello = json.loads(sock.recv(timeout=10))["event"]
        assert hello["data"]["resume"] == "stream"
    finally:
        srv.stop()


def test_a_bad_since_seq_is_refused(server: Server) -> None:
    for bad in ("-1", "x", "1.5", "99999999999999999", "²"):
        with connect(f"{server.ws_url}/ws?conv_id=c1&since_seq={bad}", open_timeout=10) as sock:
            doc = json.loads(sock.recv(timeout=10))
            assert doc == {
                "error": "since_seq must be a non-negative integer below 2^53",
                "code": "invalid_since_seq",
            }
