"""End to end over real HTTP and WebSocket: runtime switching and per-turn truth (runtime-truth.md §1)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import httpx

from tests.e2e.client import FrameCollector, wait_turns_final
from tests.e2e.conftest import Server, start_server


def chat(server: Server, body: dict[str, Any], path: str = "/chat", **kw: Any) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, timeout=10, **kw)


def test_switch_while_running_queued_prompts_and_history(server: Server) -> None:
    conv = str(uuid.uuid4())
    # A slow runtime first, so the next two prompts arrive while it runs.
    r1 = chat(server, {"prompt": "My name is Ada and I like tea", "conv_id": conv, "profile": "default"})
    assert r1.status_code == 200, r1.text
    # The first prompt created the conversation; the socket replays what it already sent.
    ws = FrameCollector(server.ws_url, conv, since_seq=0)
    try:
        ws.wait_for(lambda evs: any(e["type"] == "ws.hello" for e in evs))
        first = r1.json()
        assert first["status"] == "started" and first["runtime_key"] == "default"
        assert first["runtime_fingerprint"].startswith("sha256:")
        r2 = chat(server, {"prompt": "compute 6 * 7", "conv_id": conv, "profile": "planner"})
        r3 = chat(server, {"prompt": "what did I say earlier?", "conv_id": conv}, path="/chat/fast")
        assert r2.status_code == 202, r2.text
        assert r3.status_code == 202, r3.text
        assert r2.json()["runtime_key"] == "planner" and r2.json()["queue_position"] == 1
        assert r3.json()["runtime_key"] == "fast" and r3.json()["queue_depth"] == 2
        # The pointer moved to the last resolved runtime while the first turn is still running.
        conv_doc = httpx.get(f"{server.base_url}/api/debug/conversations/{conv}").json()
        assert conv_doc["resolved_runtime_key"] == "fast"
        assert "current_runtime_key" not in conv_doc

        items = wait_turns_final(server.base_url, conv, 3)
        expected = {
            first["turn_id"]: "default",
            r2.json()["turn_id"]: "planner",
            r3.json()["turn_id"]: "fast",
        }
        inference_by_turn: dict[str, set[str]] = {}
        for item in items:
            # Every phase of every turn carries the runtime that ran it, never the pointer.
            assert item["runtime_key"] == expected[item["turn_id"]], item
            assert item["inference_id"]
            inference_by_turn.setdefault(item["turn_id"], set()).add(item["inference_id"])
        assert all(len(v) == 1 for v in inference_by_turn.values())
        assert inference_by_turn[first["turn_id"]] == {first["inference_id"]}
        assert len({next(iter(v)) for v in inference_by_turn.values()}) == 3
        phases = {(i["turn_id"], i["phase"]) for i in items}
        assert (r2.json()["turn_id"], "post_tools") in phases  # the calculator ran

        # History carried over to the new runtime: the last turn was given the earlier prompts.
        t3 = httpx.get(
            f"{server.base_url}/api/debug/turn/{conv}/{first['session_id']}/{r3.json()['turn_id']}"
        ).json()
        final = next(i for i in t3["items"] if i["phase"] == "final")
        texts = [b["payload"].get("text", "") for b in final["parsed"]["blocks"] if b["kind"] == "user"]
        assert texts[:2] == ["My name is Ada and I like tea", "compute 6 * 7"]
        answer = [b for b in final["parsed"]["blocks"] if b["kind"] == "llm_text"][-1]["payload"]["text"]
        assert "Ada" in answer
        assert final["parsed"]["metadata"]["webchat.runtime@v1"]["runtime_key"] == "fast"

        # seq strictly increases over the whole stream.
        ws.wait_for(lambda evs: sum(e["type"] == "llm.final" for e in evs) >= 4)
        seqs = [e["seq"] for e in ws.events() if e["type"] not in ("ws.hello", "ws.pong")]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        for e in ws.events():
            if e["type"].startswith("llm."):
                assert e["metadata"]["runtime_key"] == expected[e["metadata"]["turn_id"]]

        # Runtime history from turn rows only, and the CLI agrees.
        hist = httpx.get(f"{server.base_url}/api/debug/conversations/{conv}/runtime-history").json()
        assert [s["runtime_key"] for s in hist["segments"]] == ["default", "planner", "fast"]
        assert hist["resolved_runtime_key"] == "fast" and hist["unknown_turns"] == 0
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "webchat",
                "db",
                "history",
                "--conv-id",
                conv,
                "--turns-db",
                str(server.data_dir / "turns.db"),
                "--output",
                "json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows = json.loads(out.stdout)
        assert [r["runtime_key"] for r in rows] == ["default", "planner", "fast"]
        assert [r["switch"] for r in rows] == [False, True, True]
    finally:
        ws.close()


def test_hydration_plus_replay_matches_live(server: Server) -> None:
    from webchat.events.envelope import Event
    from webchat.events.projector import project

    conv = str(uuid.uuid4())
    assert chat(server, {"prompt": "hello there", "conv_id": conv, "profile": "fast"}).status_code == 200
    ws = FrameCollector(server.ws_url, conv, since_seq=0)
    try:
        ws.wait_for(lambda evs: any(e["type"] == "ws.hello" for e in evs))
        wait_turns_final(server.base_url, conv, 1)
        ws.wait_for(lambda evs: any(e["type"] == "llm.final" for e in evs))
        # llm.final frames carry the turn's provenance record (webchat.inference@v1).
        final_frame = ws.events("llm.final")[-1]
        assert final_frame["metadata"]["inference"]["provider"] == "offline"
        assert final_frame["metadata"]["inference"]["model_calls"] == 1
        live: dict[str, Any] = {}
        for e in ws.events():
            if e["type"] in ("ws.hello", "ws.pong"):
                continue
            event = Event(e["type"], e["id"], e["seq"], e["data"], e.get("metadata"), 0)
            for entity in project(event, live.get):
                live[entity.id] = entity
        snap = httpx.get(f"{server.base_url}/api/timeline", params={"conv_id": conv}).json()
        hydrated = {e["id"]: e["props"] for e in snap["entities"]}
        assert hydrated == {k: v.props for k, v in live.items()}
        later = httpx.get(
            f"{server.base_url}/api/timeline", params={"conv_id": conv, "since_version": snap["version"]}
        ).json()
        assert later["entities"] == []
    finally:
        ws.close()


def test_idempotent_replay_starts_nothing(server: Server) -> None:
    conv = str(uuid.uuid4())
    body = {"prompt": "once only", "conv_id": conv, "profile": "fast", "idempotency_key": "key-1"}
    a = chat(server, body)
    b = chat(server, body)
    c = chat(
        server,
        {"prompt": "once only", "conv_id": conv, "profile": "fast"},
        headers={"Idempotency-Key": "key-1"},
    )
    assert a.status_code == b.status_code == c.status_code == 200
    assert a.json() == b.json() == c.json()
    items = wait_turns_final(server.base_url, conv, 1)
    assert {i["turn_id"] for i in items} == {a.json()["turn_id"]}


def test_restart_recovery_keeps_history_pointer_and_seq(tmp_path: Any) -> None:
    data = tmp_path / "data"
    srv = start_server(data)
    conv = str(uuid.uuid4())
    try:
        assert (
            chat(srv, {"prompt": "remember the word pelican", "conv_id": conv, "profile": "fast"}).status_code
            == 200
        )
        ws = FrameCollector(srv.ws_url, conv, since_seq=0)
        wait_turns_final(srv.base_url, conv, 1)
        ws.wait_for(lambda evs: any(e["type"] == "llm.final" for e in evs))
        last_seq = max(e["seq"] for e in ws.events() if e["type"] not in ("ws.hello", "ws.pong"))
        ws.close()
    finally:
        assert srv.stop() == 0
    srv = start_server(data)
    try:
        doc = httpx.get(f"{srv.base_url}/api/debug/conversations/{conv}").json()
        assert doc["resolved_runtime_key"] == "fast" and doc["source"] == "persisted"
        ws = FrameCollector(srv.ws_url, conv)
        ws.wait_for(lambda evs: any(e["type"] == "ws.hello" for e in evs))
        hello = ws.events("ws.hello")[0]
        assert hello["data"]["runtime_key"] == "fast"
        assert "seq" not in hello  # a connection message is not a frame of the stream
        assert hello["data"]["version"] == last_seq  # a clean stop wrote everything: no numbers skipped
        r = chat(srv, {"prompt": "what did I say earlier?", "conv_id": conv, "profile": "planner"})
        assert r.status_code == 200
        items = wait_turns_final(srv.base_url, conv, 2)
        finals = [i for i in items if i["phase"] == "final" and i["turn_id"] == r.json()["turn_id"]]
        assert "pelican" in finals[0]["payload"]
        ws.wait_for(lambda evs: any(e["type"] == "llm.final" for e in evs))
        new_seqs = [e["seq"] for e in ws.events() if e["type"] not in ("ws.hello", "ws.pong")]
        assert min(new_seqs) == last_seq + 1  # a clean stop wrote everything: no numbers skipped
        ws.close()
    finally:
        srv.stop()


def test_history_blocks_are_stored_once_and_pointer_carries_the_runtime(server: Server) -> None:
    import sqlite3

    conv = str(uuid.uuid4())
    r = chat(server, {"prompt": "first", "conv_id": conv, "profile": "planner"})
    assert r.status_code == 200
    wait_turns_final(server.base_url, conv, 1)
    # No profile in the request: the conversation keeps the runtime its pointer names.
    for n, prompt in enumerate(["second", "third"], start=2):
        resp = chat(server, {"prompt": prompt, "conv_id": conv})
        assert resp.status_code == 200 and resp.json()["runtime_key"] == "planner"
        wait_turns_final(server.base_url, conv, n)
    conn = sqlite3.connect(server.data_dir / "turns.db")
    try:
        # Every block row is distinct content; later turns reference earlier blocks instead of copying.
        blocks = conn.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]
        distinct = conn.execute("SELECT COUNT(DISTINCT content_hash) FROM blocks").fetchone()[0]
        memberships = conn.execute(
            "SELECT COUNT(*) FROM turn_block_membership WHERE conv_id = ?", (conv,)
        ).fetchone()[0]
    finally:
        conn.close()
    assert blocks == distinct
    assert memberships > blocks


def test_engine_failure_is_streamed_and_persisted(server: Server, tmp_path: Any) -> None:
    conv = str(uuid.uuid4())
    r = chat(server, {"prompt": "please [[fail]] now", "conv_id": conv, "profile": "fast"})
    assert r.status_code == 200
    ws = FrameCollector(server.ws_url, conv, since_seq=0)
    try:
        ws.wait_for(lambda evs: any(e["type"] == "ws.hello" for e in evs))
        ws.wait_for(lambda evs: any(e["type"] == "llm.error" for e in evs))
        err = ws.events("llm.error")[0]
        assert err["data"]["code"] == "engine_failed" and err["metadata"]["runtime_key"] == "fast"
        turn = httpx.get(
            f"{server.base_url}/api/debug/turn/{conv}/{r.json()['session_id']}/{r.json()['turn_id']}"
        ).json()
        meta = turn["items"][0]["parsed"]["metadata"]
        assert meta["webchat.inference@v1"]["error"]["code"] == "engine_failed"
        assert turn["runtime_key"] == "fast" and turn["inference_id"] == r.json()["inference_id"]
        # The conversation stays usable.
        again = chat(server, {"prompt": "hello again", "conv_id": conv, "profile": "fast"})
        assert again.status_code == 200
        wait_turns_final(server.base_url, conv, 1)
    finally:
        ws.close()
