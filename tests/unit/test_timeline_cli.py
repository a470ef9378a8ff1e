"""``web-chat timeline …`` on a fresh Typer app holding only the timeline commands."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from webchat.cli.timeline import register
from webchat.stores.sqlite.timeline_store import COMPONENT, SQLiteTimelineStore
from webchat.stores.timeline import ConversationRecord, Entity

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    register(app)
    return app


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "timeline.db"
    store = SQLiteTimelineStore(path)
    try:
        store.upsert_conversation(
            ConversationRecord(
                "c1", session_id="s1", runtime_key="planner", created_at_ms=1, last_activity_ms=10
            )
        )
        store.upsert_conversation(
            ConversationRecord("c2", session_id="s2", created_at_ms=2, last_activity_ms=20)
        )
        store.apply("c1", 1, [Entity("u", "message", 5, 5, 0, {"role": "user", "content": "hi"})])
        store.apply("c1", 2, [Entity("t", "tool_call", 6, 6, 0, {"name": "calc", "status": "running"})])
        store.apply("c1", 3, [Entity("a", "message", 7, 7, 0, {"role": "assistant", "content": "ok"})])
    finally:
        store.close()
    return path


def run(app: typer.Typer, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["timeline", *args])
    return result.exit_code, result.stdout, result.stderr


def test_list(app: typer.Typer, db: Path) -> None:
    code, out, _ = run(app, "list", "--timeline-db", str(db), "--output", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["conv_id"], r["runtime_key"], r["last_seen_version"]) for r in rows] == [
        ("c2", "", 0),
        ("c1", "planner", 3),
    ]
    code, out, _ = run(app, "list", "--data-dir", str(db.parent), "-o", "csv")
    assert code == 0
    assert [r["conv_id"] for r in csv.DictReader(io.StringIO(out))] == ["c2", "c1"]
    code, out, _ = run(app, "list", "--data-dir", str(db.parent))
    assert code == 0 and "conversations" in out


def test_snapshot_and_since_version(app: typer.Typer, db: Path) -> None:
    code, out, _ = run(app, "snapshot", "--conv-id", "c1", "--timeline-db", str(db), "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["conv_id"] == "c1" and doc["version"] == 3
    assert [e["id"] for e in doc["entities"]] == ["u", "t", "a"]
    assert doc["entities"][0]["props"] == {"role": "user", "content": "hi"}
    code, out, _ = run(
        app, "snapshot", "--conv-id", "c1", "--since-version", "2", "--timeline-db", str(db), "-o", "yaml"
    )
    assert code == 0 and [e["id"] for e in yaml.safe_load(out)["entities"]] == ["a"]


def test_entities_by_kind_and_csv(app: typer.Typer, db: Path) -> None:
    code, out, _ = run(
        app, "entities", "--conv-id", "c1", "--kind", "message", "--timeline-db", str(db), "-o", "csv"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == ["u", "a"]
    assert json.loads(rows[1]["props"]) == {"role": "assistant", "content": "ok"}


def test_entity(app: typer.Typer, db: Path) -> None:
    code, out, _ = run(app, "entity", "--conv-id", "c1", "--id", "t", "--timeline-db", str(db), "-o", "json")
    assert code == 0 and json.loads(out)["props"]["name"] == "calc"
    code, _, err = run(app, "entity", "--conv-id", "c1", "--id", "nope", "--timeline-db", str(db))
    assert code == 1 and "no entity" in err


def test_stats(app: typer.Typer, db: Path) -> None:
    code, out, _ = run(app, "stats", "--timeline-db", str(db), "-o", "json")
    assert code == 0
    assert json.loads(out) == [
        {"conv_id": "c1", "kind": "message", "entities": 2, "max_entity_version": 3, "version": 3},
        {"conv_id": "c1", "kind": "tool_call", "entities": 1, "max_entity_version": 2, "version": 3},
    ]


def test_verify(app: typer.Typer, db: Path) -> None:
    code, out, _ = run(app, "verify", "--timeline-db", str(db))
    assert code == 0 and "ok" in out
    conn = sqlite3.connect(db)
    conn.execute("UPDATE timeline_entities SET version = 9 WHERE entity_id = 'a'")
    conn.execute("DELETE FROM timeline_versions WHERE conv_id = 'c1'")
    conn.execute("INSERT INTO timeline_versions VALUES ('c1', 3)")
    conn.execute("INSERT INTO timeline_entities VALUES ('ghost', 'x', 'message', 1, 1, 1, '{}')")
    conn.commit()
    conn.close()
    code, out, _ = run(app, "verify", "--timeline-db", str(db), "-o", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False
    assert [(p["check"], p["conv_id"]) for p in doc["problems"]] == [
        ("entity_version_ahead", "c1"),
        ("missing_version_row", "ghost"),
    ]
    code, out, _ = run(app, "verify", "--timeline-db", str(db))
    assert code == 1 and "entity_version_ahead" in out


def test_missing_store_is_exit_2_and_not_created(app: typer.Typer, tmp_path: Path) -> None:
    for cmd in (["list"], ["stats"], ["verify"], ["snapshot", "--conv-id", "c"]):
        code, _, err = run(app, *cmd, "--data-dir", str(tmp_path / "nowhere"))
        assert code == 2, cmd
        assert err.count("\n") == 1 and "no such timeline store" in err
    assert not (tmp_path / "nowhere").exists()


def test_newer_schema_is_exit_2(app: typer.Typer, db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"INSERT INTO webchat_schema_migrations VALUES ('{COMPONENT}', 99, 'future', 0)")
    conn.commit()
    conn.close()
    code, _, err = run(app, "list", "--timeline-db", str(db))
    assert code == 2 and "newer" in err


def test_not_a_database_is_exit_2(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "timeline.db"
    path.write_text("this is not sqlite " * 100)
    code, _, err = run(app, "list", "--timeline-db", str(path))
    assert code == 2 and err.startswith("web-chat: error:")


def test_bad_usage(app: typer.Typer, db: Path) -> None:
    code, _, err = run(app, "snapshot", "--timeline-db", str(db))
    assert code == 2 and "--conv-id" in err
    code, _, _ = run(app, "list", "--timeline-db", str(db), "--timeline-dsn", "postgresql://x")
    assert code == 2
