"""Stores for the CLI tests, made by the real store code, and a runner for the whole ``web-chat`` app."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from webchat.cli.main import app
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore
from webchat.stores.timeline import ConversationRecord, Entity
from webchat.stores.turns import open_turn_store
from webchat.turns.model import Block, Turn

LEGACY_DIR = Path(__file__).resolve().parent.parent / "legacy"
# 2023-11-14 22:13:20 UTC
T0 = 1_700_000_000_000


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None


def invoke(*args: str, columns: int = 400) -> Result:
    """Run ``web-chat ARGS`` in-process; a wide terminal by default so that no table cell is folded."""
    runner = CliRunner(env={"COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"})
    result = runner.invoke(app, list(args))
    return Result(result.exit_code, result.stdout, result.stderr, result.exception)


def make_turns(path: Path, snapshots: list[tuple[str, str, Turn, str, int, str, str]]) -> Path:
    """A migrated turns.db holding ``(conv, session, turn, phase, at_ms, runtime_key, inference_id)``."""
    store = open_turn_store(path)
    try:
        for conv_id, session_id, turn, phase, at_ms, runtime_key, inference_id in snapshots:
            store.save_snapshot(
                conv_id, session_id, turn, phase, at_ms, runtime_key=runtime_key, inference_id=inference_id
            )
    finally:
        store.close()
    return path


def make_timeline(
    path: Path, records: list[ConversationRecord], entities: dict[str, list[Entity]] | None = None
) -> Path:
    store = SQLiteTimelineStore(path)
    try:
        for rec in records:
            store.upsert_conversation(rec)
        for conv_id, items in (entities or {}).items():
            for seq, entity in enumerate(items, start=1):
                store.apply(conv_id, seq, [entity])
    finally:
        store.close()
    return path


def simple_data_dir(base: Path) -> Path:
    """turns.db and timeline.db of one conversation ``c1`` with one turn ``t1`` (session ``s1``)."""
    base.mkdir(parents=True, exist_ok=True)
    turn = Turn(id="t1", blocks=[Block(kind="user", role="user", payload={"text": "hi"}, id="b1")])
    make_turns(base / "turns.db", [("c1", "s1", turn, "final", T0, "fast", "inf-1")])
    make_timeline(
        base / "timeline.db",
        [
            ConversationRecord(
                "c1", session_id="s1", runtime_key="fast", created_at_ms=T0, last_activity_ms=T0
            )
        ],
        {"c1": [Entity("m1", "message", T0, T0, 0, {"role": "user", "content": "hi"})]},
    )
    return base


def copy_store(src: Path, dst: Path) -> Path:
    """A consistent copy of a (WAL-mode) SQLite store."""
    source = sqlite3.connect(src)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return dst


def record_version(path: Path, component: str, version: int) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "INSERT INTO webchat_schema_migrations (component, version, name, applied_at_ms) "
            "VALUES (?, ?, 'from a newer web-chat', 0)",
            (component, version),
        )
        conn.commit()
    finally:
        conn.close()


def legacy_store(name: str, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LEGACY_DIR / name, dst)
    return dst
