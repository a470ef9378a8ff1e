"""Eviction of idle conversations and graceful shutdown, against a real server."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path

import httpx

from tests.e2e.client import wait_turns_final
from tests.e2e.conftest import start_server

SLOW_PROFILES = """
slug: slowreg
profiles:
  slow:
    display_name: Slow
    description: Streams slowly so a shutdown lands mid-turn
    runtime:
      engine: offline
      system_prompt: You are terse.
      options: {token_delay_ms: 150}
"""


def test_idle_conversation_is_evicted_then_restored_with_history(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", env={"WEBCHAT_IDLE_EVICT_S": "1"})
    try:
        conv = str(uuid.uuid4())
        r = httpx.post(
            srv.base_url + "/chat",
            json={"prompt": "the code word is heron", "conv_id": conv, "profile": "fast"},
        )
        assert r.status_code == 200
        wait_turns_final(srv.base_url, conv, 1)
        deadline = time.monotonic() + 15
        source = ""
        while time.monotonic() < deadline:
            source = httpx.get(f"{srv.base_url}/api/debug/conversations/{conv}").json()["source"]
            if source == "persisted":
                break
            time.sleep(0.2)
        assert source == "persisted", "the idle conversation was not evicted"
        r2 = httpx.post(
            srv.base_url + "/chat",
            json={"prompt": "what did I say earlier?", "conv_id": conv, "profile": "fast"},
        )
        assert r2.status_code == 200
        items = wait_turns_final(srv.base_url, conv, 2)
        final = next(i for i in items if i["turn_id"] == r2.json()["turn_id"] and i["phase"] == "final")
        assert "heron" in final["payload"]
        assert r2.json()["session_id"] == r.json()["session_id"]
    finally:
        srv.stop()


def test_shutdown_mid_turn_records_the_turn(tmp_path: Path) -> None:
    profiles = tmp_path / "slow.yaml"
    profiles.write_text(SLOW_PROFILES)
    data = tmp_path / "data"
    srv = start_server(data, "--profiles", str(profiles), env={"WEBCHAT_SHUTDOWN_GRACE_S": "0.5"})
    conv = str(uuid.uuid4())
    try:
        r = httpx.post(
            srv.base_url + "/chat",
            json={
                "prompt": "tell me a long story about " + "many things " * 20,
                "conv_id": conv,
                "profile": "slow",
            },
        )
        assert r.status_code == 200
        queued = httpx.post(
            srv.base_url + "/chat", json={"prompt": "and then?", "conv_id": conv, "profile": "slow"}
        )
        assert queued.status_code == 202
        time.sleep(0.5)
    finally:
        assert srv.stop() == 0
    conn = sqlite3.connect(data / "turns.db")
    try:
        rows = conn.execute(
            "SELECT runtime_key, inference_id, turn_metadata_json FROM turns WHERE conv_id = ?", (conv,)
        ).fetchall()
    finally:
        conn.close()
    assert len(rows) == 1
    runtime_key, inference_id, metadata = rows[0]
    assert runtime_key == "slow" and inference_id == r.json()["inference_id"]
    error = json.loads(metadata)["webchat.error@v1"]
    assert error["code"] == "interrupted"  # the same record a crash leaves, with the partial output kept
    # The queued prompt was promised (202): it is still queued, and the next start runs it, once.
    conn = sqlite3.connect(data / "timeline.db")
    try:
        statuses = dict(
            conn.execute("SELECT turn_id, status FROM webchat_prompts WHERE conv_id = ?", (conv,)).fetchall()
        )
    finally:
        conn.close()
    assert statuses == {r.json()["turn_id"]: "failed", queued.json()["turn_id"]: "queued"}
    srv = start_server(data, "--profiles", str(profiles))
    try:
        items = wait_turns_final(srv.base_url, conv, 1)
        finals = [i for i in items if i["phase"] == "final"]
        assert [(i["turn_id"], i["runtime_key"]) for i in finals] == [(queued.json()["turn_id"], "slow")]
    finally:
        assert srv.stop() == 0
    conn = sqlite3.connect(data / "timeline.db")
    try:
        status = conn.execute(
            "SELECT status FROM webchat_prompts WHERE turn_id = ?", (queued.json()["turn_id"],)
        ).fetchone()
    finally:
        conn.close()
    assert status == ("done",)


def test_seq_never_reused_after_a_crash(tmp_path: Path) -> None:
    """kill -9 loses frames not yet written; their seq numbers must still never come back."""
    import signal

    from tests.e2e.client import FrameCollector

    data = tmp_path / "data"
    srv = start_server(data)
    conv = str(uuid.uuid4())
    try:
        r = httpx.post(
            srv.base_url + "/chat", json={"prompt": "before the crash", "conv_id": conv, "profile": "fast"}
        )
        assert r.status_code == 200
        ws = FrameCollector(srv.ws_url, conv, since_seq=0)
        ws.wait_for(lambda evs: any(e["type"] == "llm.final" for e in evs))
        seen = max(e["seq"] for e in ws.events() if e["type"] not in ("ws.hello", "ws.pong"))
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(timeout=10)
        ws.close()
    finally:
        srv.stop()
    srv = start_server(data)
    try:
        ws = FrameCollector(srv.ws_url, conv)
        ws.wait_for(lambda evs: any(e["type"] == "ws.hello" for e in evs))
        r = httpx.post(
            srv.base_url + "/chat", json={"prompt": "after the crash", "conv_id": conv, "profile": "fast"}
        )
        assert r.status_code == 200
        ws.wait_for(lambda evs: any(e["type"] == "llm.final" for e in evs))
        new = [e["seq"] for e in ws.events() if e["type"] not in ("ws.hello", "ws.pong")]
        assert new and min(new) > seen
        assert new == sorted(new)
        # The turn written before the crash is still there, with its runtime.
        items = wait_turns_final(srv.base_url, conv, 2)
        assert {i["runtime_key"] for i in items} == {"fast"}
        ws.close()
    finally:
        srv.stop()
