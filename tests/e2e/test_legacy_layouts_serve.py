"""Each legacy turns.db layout, upgraded with ``web-chat db migrate``, then served: new turns are saved.

Regression: the "normalized, only created_at_ms" layout migrated cleanly, ``db check`` said ok, and
then every new turn failed to save (the chat client saw ``llm.start`` and then silence).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.client import wait_turns_final
from tests.e2e.conftest import start_server

LEGACY_DIR = Path(__file__).resolve().parent.parent / "legacy"
LAYOUTS = sorted(p.name for p in LEGACY_DIR.glob("*.db"))


def web_chat(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webchat", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_every_known_layout_is_covered() -> None:
    assert len(LAYOUTS) == 6, LAYOUTS


@pytest.mark.parametrize("layout", LAYOUTS)
def test_migrated_legacy_store_serves_and_saves_new_turns(layout: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(LEGACY_DIR / layout, data / "turns.db")
    with closing(sqlite3.connect(f"file:{data / 'turns.db'}?mode=ro", uri=True)) as conn:
        old_rows = conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0]

    migrated = web_chat("db", "migrate", "--data-dir", str(data))
    assert migrated.returncode == 0, migrated.stderr
    checked = web_chat("db", "check", "--data-dir", str(data), "-o", "json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["schema_ok"] is True

    srv = start_server(data)
    try:
        conv = str(uuid.uuid4())
        r = httpx.post(srv.base_url + "/chat", json={"prompt": "hello after the upgrade", "conv_id": conv})
        assert r.status_code == 200, r.text
        started: dict[str, Any] = r.json()
        assert started["runtime_key"] and started["inference_id"]
        items = wait_turns_final(srv.base_url, conv, 1)
        mine = [i for i in items if i["turn_id"] == started["turn_id"]]
        assert "final" in {i["phase"] for i in mine}
        for item in mine:
            assert (item["runtime_key"], item["inference_id"]) == (
                started["runtime_key"],
                started["inference_id"],
            ), item
    finally:
        code = srv.stop()
    assert code == 0, srv.log()

    # The stored row, read back through the CLI as an operator would, carries the same truth.
    listed = web_chat("turns", "list", "--conv-id", conv, "--data-dir", str(data), "-o", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    finals = [row for row in rows if row["turn_id"] == started["turn_id"] and row["phase"] == "final"]
    assert len(finals) == 1
    assert (finals[0]["runtime_key"], finals[0]["inference_id"]) == (
        started["runtime_key"],
        started["inference_id"],
    )
    # Nothing of the legacy store was lost on the way.
    with closing(sqlite3.connect(f"file:{data / 'turns.db'}?mode=ro", uri=True)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        kept = "turn_snapshots" if "turn_snapshots" in tables else "turns"
        kept_rows = conn.execute(f"SELECT COUNT(*) FROM {kept}").fetchone()[0]
        new_rows = conn.execute("SELECT COUNT(*) FROM turns WHERE conv_id = ?", (conv,)).fetchone()[0]
    assert new_rows == 1
    # Single-table layouts keep their old table aside; normalized ones keep every row in place.
    assert kept_rows == (old_rows if kept == "turn_snapshots" else old_rows + 1)
