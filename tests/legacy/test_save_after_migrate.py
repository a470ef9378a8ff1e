"""Every legacy layout, once migrated, accepts new saves through the real turn store (runtime-truth.md §4).

Regression: a store in the "normalized, only created_at_ms" layout migrated cleanly and then refused
every new turn, because its ``created_at_ms INTEGER NOT NULL`` column has no default and the turn
store's INSERT did not name it.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from webchat.stores.migrations.checks import run_check
from webchat.stores.migrations.turns_sqlite import migrate_turns_db
from webchat.stores.protocol import StoreError, TurnQuery
from webchat.stores.sqlite.turn_store import SQLiteTurnStore
from webchat.stores.turns import open_turn_store
from webchat.turns.model import Block, Turn

try:
    from tests.legacy import make_fixtures as fx
except ImportError:  # tests/ run as plain directories (rootdir-relative imports)
    import make_fixtures as fx  # type: ignore[no-redef]

LEGACY_DIR = Path(__file__).resolve().parent
FIXTURES = list(fx.EXPECTED)


def copy_fixture(name: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / "turns.db"
    shutil.copyfile(LEGACY_DIR / name, dest)
    return dest


def table_rows(path: Path, table: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


def new_turn(turn_id: str, text: str) -> Turn:
    return Turn(
        id=turn_id,
        metadata={"note": "saved after the upgrade"},
        blocks=[Block(id="", kind="user", role="user", payload={"text": text}, metadata={})],
    )


def test_every_layout_is_a_fixture() -> None:
    # The parametrized tests below cover each committed legacy layout; a new fixture must join them.
    assert sorted(FIXTURES) == sorted(p.name for p in LEGACY_DIR.glob("*.db"))


@pytest.mark.parametrize("name", FIXTURES)
def test_migrated_store_saves_and_reads_back_a_new_turn(name: str, tmp_path: Path) -> None:
    path = copy_fixture(name, tmp_path)
    store = open_turn_store(path)
    try:
        turn = new_turn("t-after-upgrade", "hello after the upgrade")
        store.save_snapshot("c-new", "s-new", turn, "pre_inference", 5_000, runtime_key="rk-new")
        store.save_snapshot(
            "c-new", "s-new", turn, "final", 6_000, runtime_key="rk-new", inference_id="inf-new"
        )
        row = store.turn_row("c-new", "s-new", "t-after-upgrade")
        assert row is not None
        assert (row.runtime_key, row.inference_id) == ("rk-new", "inf-new")
        assert (row.turn_created_at_ms, row.updated_at_ms) == (5_000, 6_000)
        snaps = store.list_snapshots(TurnQuery(conv_id="c-new"))
        assert [(s.phase, s.runtime_key, s.inference_id) for s in snaps] == [
            ("final", "rk-new", "inf-new"),
            ("pre_inference", "rk-new", "inf-new"),
        ]
        assert snaps[0].turn.blocks[0].payload == {"text": "hello after the upgrade"}
    finally:
        store.close()


@pytest.mark.parametrize("name", FIXTURES)
def test_saving_over_a_migrated_legacy_turn_keeps_its_truth(name: str, tmp_path: Path) -> None:
    path = copy_fixture(name, tmp_path)
    store = open_turn_store(path)
    try:
        old = next(iter(fx.EXPECTED[name]))
        before = store.turn_row(*old)
        assert before is not None
        store.save_snapshot(*old[:2], new_turn(old[2], "a later phase"), "final", 9_000_000_000_000)
        after = store.turn_row(*old)
        assert after is not None
        # An empty runtime_key / inference_id never clears what the migration backfilled (§3).
        assert (after.runtime_key, after.inference_id) == (before.runtime_key, before.inference_id)
        assert after.updated_at_ms == 9_000_000_000_000
    finally:
        store.close()


def test_legacy_created_at_column_is_kept_and_written(tmp_path: Path) -> None:
    path = copy_fixture("normalized_created_at_only.db", tmp_path)
    before = table_rows(path, "turns")
    store = open_turn_store(path)
    try:
        store.save_snapshot("c-new", "s-new", new_turn("t1", "x"), "final", 7_000, runtime_key="rk")
        # A later save with an earlier snapshot time moves the creation time back, in both columns.
        store.save_snapshot("c-new", "s-new", new_turn("t1", "x"), "pre_inference", 6_500, runtime_key="rk")
    finally:
        store.close()
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(turns)")]
        assert "created_at_ms" in cols  # additive upgrade: the legacy column is never dropped
        new = conn.execute(
            "SELECT created_at_ms, turn_created_at_ms, updated_at_ms FROM turns WHERE turn_id = 't1'"
        ).fetchone()
        assert new == (6_500, 6_500, 7_000)
        old_count = conn.execute("SELECT COUNT(*) FROM turns WHERE turn_id <> 't1'").fetchone()[0]
    assert old_count == len(before)
    assert run_check_ok(path)


def run_check_ok(path: Path) -> bool:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return run_check(conn).schema_ok


def test_unknown_not_null_column_without_default_is_refused_clearly(tmp_path: Path) -> None:
    # A layout we do not know: a NOT NULL column without a default that no save could fill.
    path = copy_fixture("normalized_pre_cutover.db", tmp_path)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("ALTER TABLE turns RENAME TO turns_old")
        conn.execute(
            "CREATE TABLE turns (conv_id TEXT NOT NULL, session_id TEXT NOT NULL, turn_id TEXT NOT NULL, "
            "turn_created_at_ms INTEGER NOT NULL, turn_metadata_json TEXT NOT NULL DEFAULT '{}', "
            "turn_data_json TEXT NOT NULL DEFAULT '{}', updated_at_ms INTEGER NOT NULL, "
            "tenant TEXT NOT NULL, PRIMARY KEY (conv_id, session_id, turn_id))"
        )
        conn.execute(
            "INSERT INTO turns SELECT conv_id, session_id, turn_id, turn_created_at_ms, turn_metadata_json, "
            "turn_data_json, updated_at_ms, 'acme' FROM turns_old"
        )
        conn.execute("DROP TABLE turns_old")
        conn.commit()
    rows = len(table_rows(path, "turns"))
    with pytest.raises(StoreError, match=r"turns\.tenant .*NOT NULL without a default"):
        open_turn_store(path)
    # The check names the column too, so an operator sees it before a server starts.
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        result = run_check(conn)
    assert not result.schema_ok
    assert any("turns.tenant" in p for p in result.problems)
    assert len(table_rows(path, "turns")) == rows  # refused, nothing lost


def test_a_nullable_extra_column_does_not_block_saves(tmp_path: Path) -> None:
    path = copy_fixture("normalized_created_at_only.db", tmp_path)
    open_turn_store(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("ALTER TABLE turns ADD COLUMN shard INTEGER")  # nullable: fine to leave out
        conn.commit()
    store = SQLiteTurnStore(path)
    try:
        store.save_snapshot("c", "s", new_turn("t", "y"), "final", 1, runtime_key="rk", inference_id="i")
        row = store.turn_row("c", "s", "t")
        assert row is not None and row.runtime_key == "rk"
    finally:
        store.close()


def test_kept_snapshots_convert_into_a_turns_table_with_a_legacy_created_at_column(tmp_path: Path) -> None:
    """A store holding both a "normalized, only created_at_ms" ``turns`` table and a kept single-table
    ``turn_snapshots``: the conversion writes through the fill-only upsert for that table's columns. It
    fills the legacy ``created_at_ms`` like ``turn_created_at_ms`` and never overwrites a non-empty
    runtime_key / inference_id (§5)."""
    path = copy_fixture("normalized_created_at_only.db", tmp_path)
    mixed = fx.SYSTEM_BLOCK + fx.user_block("mixed")
    late = fx.SYSTEM_BLOCK + fx.user_block("late")
    snapshots = [
        ("hc", "s", "mixed", "pre_inference", 300, fx.yaml_turn("mixed", mixed, "  runtime: planner\n")),
        ("hc", "s", "mixed", "post_inference", 200, fx.yaml_turn("mixed", mixed, "  runtime: fast\n")),
        ("hc", "s", "mixed", "final", 400, fx.yaml_turn("mixed", mixed, "  inference_id: inf-final\n")),
        ("hc", "s", "late", "pre_inference", 500, fx.yaml_turn("late", late, "")),
        (
            "hc",
            "s",
            "late",
            "final",
            600,
            fx.yaml_turn("late", late, "  runtime: fast\n  inference_id: il\n"),
        ),
    ]
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "CREATE TABLE turn_snapshots (conv_id TEXT NOT NULL, session_id TEXT NOT NULL,"
            " turn_id TEXT NOT NULL, phase TEXT NOT NULL, created_at_ms INTEGER NOT NULL,"
            " payload TEXT NOT NULL)"
        )
        conn.executemany("INSERT INTO turn_snapshots VALUES (?, ?, ?, ?, ?, ?)", snapshots)
        conn.commit()
    report = migrate_turns_db(path)
    assert report.legacy_rows_converted == 5
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT turn_id, runtime_key, inference_id, created_at_ms, turn_created_at_ms FROM turns"
            " WHERE conv_id = 'hc' ORDER BY turn_id"
        ).fetchall()
    # "mixed": planner from its first snapshot stays; the empty inference_id is filled by a later one. The
    # creation time is the earliest snapshot's, in both columns.
    assert rows == [("late", "fast", "il", 500, 500), ("mixed", "planner", "inf-final", 200, 200)]
    assert run_check_ok(path)
