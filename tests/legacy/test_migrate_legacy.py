"""Upgrading legacy turns.db files in place (runtime-truth.md §4-§6), against the committed fixtures.

Every test copies a fixture into ``tmp_path`` first; the committed files are never opened for writing.
Expected values come from ``make_fixtures.EXPECTED`` (written by hand from the contract).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from webchat.stores.migrations.checks import missing_candidates, run_check, runtime_history
from webchat.stores.migrations.turns_sqlite import (
    LEGACY_TABLE,
    UNPARSEABLE_TABLE,
    MigrationReport,
    migrate_turns_db,
)
from webchat.stores.protocol import SchemaTooNewError, StoreError
from webchat.stores.sqlite.turn_schema import SCHEMA_VERSION
from webchat.stores.turns import open_turn_store

try:
    from tests.legacy import make_fixtures as fx
except ImportError:  # tests/ run as plain directories (rootdir-relative imports)
    import make_fixtures as fx  # type: ignore[no-redef]

FIXTURES = list(fx.EXPECTED)
SINGLE = ["single_table_session.db", "single_table_run_id.db"]
NORMALIZED = [
    "normalized_pre_cutover.db",
    "normalized_pre_cutover_no_updated_at.db",
    "normalized_created_at_only.db",
]
LEGACY_DIR = Path(__file__).resolve().parent

# The report fields a dry run must predict exactly as the real run counts them.
PREDICTED_FIELDS = (
    "layout",
    "backfilled_runtime_key",
    "backfilled_inference_id",
    "legacy_rows_converted",
    "legacy_rows_unparseable",
    "indexes_created",
    "columns_added",
    "tables_created",
    "total_turns",
    "missing_runtime_key",
    "missing_inference_id",
)

# Contract indexes (§3): name -> (table, [(column, descending)]).
CONTRACT_INDEXES = {
    "turns_by_conv_session": ("turns", [("conv_id", 0), ("session_id", 0), ("updated_at_ms", 1)]),
    "turns_by_session": ("turns", [("session_id", 0), ("updated_at_ms", 1)]),
    "turns_by_conv_runtime_updated": ("turns", [("conv_id", 0), ("runtime_key", 0), ("updated_at_ms", 1)]),
    "turns_by_conv_inference_updated": ("turns", [("conv_id", 0), ("inference_id", 0), ("updated_at_ms", 1)]),
    "blocks_by_kind_role": ("blocks", [("kind", 0), ("role", 0)]),
    "turn_block_membership_by_turn_phase": (
        "turn_block_membership",
        [
            ("conv_id", 0),
            ("session_id", 0),
            ("turn_id", 0),
            ("phase", 0),
            ("snapshot_created_at_ms", 1),
            ("ordinal", 0),
        ],
    ),
    "turn_block_membership_by_block": ("turn_block_membership", [("block_id", 0), ("content_hash", 0)]),
}

# -- helpers -------------------------------------------------------------------------------------------


def copy_fixture(name: str, directory: Path) -> Path:
    target = directory / name
    shutil.copyfile(LEGACY_DIR / name, target)
    return target


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def turn_values(path: Path) -> dict[tuple[str, str, str], tuple[str, str]]:
    with read_only(path) as conn:
        rows = conn.execute("SELECT conv_id, session_id, turn_id, runtime_key, inference_id FROM turns")
        return {(c, s, t): (rk, inf) for c, s, t, rk, inf in rows}


def db_state(path: Path) -> dict[str, Any]:
    """Schema and every row of every table (migration timestamps left out), for equality checks."""
    with read_only(path) as conn:
        state: dict[str, Any] = {
            "__schema__": conn.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
            ).fetchall()
        }
        for (table,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall():
            cols = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
            if table == "webchat_schema_migrations":
                cols.remove("applied_at_ms")
            rows = conn.execute(f'SELECT rowid, {", ".join(cols)} FROM "{table}"').fetchall()
            state[table] = sorted(rows, key=repr)
        return state


def dump(path: Path) -> list[str]:
    with read_only(path) as conn:
        return list(conn.iterdump())


def table_rows(conn: sqlite3.Connection, table: str, cols: list[str]) -> list[tuple[Any, ...]]:
    return sorted(conn.execute(f'SELECT rowid, {", ".join(cols)} FROM "{table}"').fetchall(), key=repr)


def columns_of(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]


class Interrupted(Exception):
    """Raised from a progress callback to simulate a process dying between two batches."""


def interrupt_after(calls: int) -> Callable[[str, int, int], None]:
    seen = 0

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal seen
        seen += 1
        if seen >= calls:
            raise Interrupted(f"{stage}: {done}/{total}")

    return progress


@pytest.fixture(scope="module")
def migrated(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, MigrationReport, MigrationReport]]:
    """Each fixture migrated once: name -> (path, dry-run report, real report)."""
    out = {}
    for name in FIXTURES:
        path = copy_fixture(name, tmp_path_factory.mktemp(name.removesuffix(".db")))
        dry = migrate_turns_db(path, dry_run=True)
        real = migrate_turns_db(path)
        out[name] = (path, dry, real)
    return out


# -- values, rows and reports ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_migration_produces_exactly_the_expected_values(name: str, migrated: dict[str, Any]) -> None:
    path, _, _ = migrated[name]
    got = turn_values(path)
    expected = fx.EXPECTED[name]
    assert set(got) == set(expected), "rows were lost or invented"
    wrong = {key: (got[key], expected[key]) for key in expected if got[key] != expected[key]}
    assert not wrong, f"(got, expected) per row: {wrong}"


@pytest.mark.parametrize("name", FIXTURES)
def test_report_counts(name: str, migrated: dict[str, Any]) -> None:
    _, _, report = migrated[name]
    expected = fx.EXPECTED_REPORT[name]
    assert report.schema_version_before == 0
    assert report.schema_version_after == SCHEMA_VERSION
    assert report.changed
    for field in PREDICTED_FIELDS:
        got, want = getattr(report, field), expected[field]
        if field in ("columns_added", "indexes_created", "tables_created"):
            got, want = sorted(got), sorted(want)
        assert got == want, field


@pytest.mark.parametrize("name", FIXTURES)
def test_invalid_metadata_is_counted(name: str, migrated: dict[str, Any]) -> None:
    """Rows looked at for a missing value whose metadata is not a JSON object are counted (§5), e.g.
    current_go.db g04: runtime_key filled, inference_id empty, invalid metadata."""
    _, dry, real = migrated[name]
    assert dry.invalid_metadata == fx.EXPECTED_REPORT[name]["invalid_metadata"]
    assert real.invalid_metadata == fx.EXPECTED_REPORT[name]["invalid_metadata"]


@pytest.mark.parametrize("name", FIXTURES)
def test_legacy_tables_and_rows_are_kept(name: str, migrated: dict[str, Any], tmp_path: Path) -> None:
    path, _, report = migrated[name]
    pristine = copy_fixture(name, tmp_path)
    with read_only(pristine) as original, read_only(path) as conn:
        tables = [r[0] for r in original.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert tables
        for table in tables:
            target = table
            cols = columns_of(original, table)
            if name in SINGLE and table == "turns":
                target = LEGACY_TABLE
                assert report.legacy_table == LEGACY_TABLE
            elif table == "turns":
                # timestamps and runtime values may be filled (checked elsewhere); the rest is kept as it was
                filled = ("turn_created_at_ms", "updated_at_ms", "runtime_key", "inference_id")
                cols = [c for c in cols if c not in filled]
            assert set(cols) <= set(columns_of(conn, target)), f"{target} lost columns"
            assert table_rows(conn, target, cols) == table_rows(original, table, cols), f"{table} -> {target}"
        # the old indexes are still there; an old single-table index moves with its table
        sql = "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        old_indexes = original.execute(sql).fetchall()
        new_indexes = conn.execute(sql).fetchall()
        if name in SINGLE:
            assert len([i for i in new_indexes if i[1] == LEGACY_TABLE]) == len(old_indexes) == 1
        else:
            assert set(old_indexes) <= set(new_indexes)


@pytest.mark.parametrize("name", SINGLE)
def test_unparseable_rows_are_reported_and_kept(name: str, migrated: dict[str, Any]) -> None:
    path, dry, report = migrated[name]
    expected = sorted(fx.EXPECTED_UNPARSEABLE)
    assert sorted((u.turn_id, u.phase) for u in report.unparseable) == expected
    assert sorted((u.turn_id, u.phase) for u in dry.unparseable) == expected
    assert all(u.table == LEGACY_TABLE and u.error for u in report.unparseable)
    with read_only(path) as conn:
        listed = conn.execute(
            "SELECT source_table, source_rowid, conv_id, session_id, turn_id, phase, error "
            f"FROM {UNPARSEABLE_TABLE}"
        ).fetchall()
        assert sorted((r[4], r[5]) for r in listed) == expected
        conv = fx.SINGLE_CONV[name]
        session_col = "session_id" if "session" in name else "run_id"
        for table, rowid, c, s, t, phase, error in listed:
            assert table == LEGACY_TABLE and error
            kept = conn.execute(
                f"SELECT conv_id, {session_col}, turn_id, phase, payload FROM {LEGACY_TABLE} WHERE rowid = ?",
                (rowid,),
            ).fetchone()
            assert kept is not None and kept[:4] == (c, s, t, phase) == (conv, "s-1", t, phase)
            assert kept[4] in (fx.INVALID_YAML, fx.LIST_YAML, fx.SCALAR_YAML, fx.LIST_METADATA_YAML)
        check = run_check(conn)
        assert check.legacy_rows_unparseable == len(expected)
        assert check.legacy_tables == [LEGACY_TABLE]


@pytest.mark.parametrize("name", SINGLE)
def test_converted_blocks(name: str, migrated: dict[str, Any]) -> None:
    path, _, _ = migrated[name]
    conv = fx.SINGLE_CONV[name]
    with read_only(path) as conn:
        # YAML 1.1 traps stay strings
        payload, metadata = conn.execute(
            "SELECT payload_json, block_metadata_json FROM blocks WHERE block_id = 'a-st19'"
        ).fetchone()
        assert payload == fx.TRAP_PAYLOAD_JSON
        assert metadata == fx.TRAP_METADATA_JSON
        # blocks without id get <turn_id>#<ordinal>; a block without kind is "other"
        anonymous = conn.execute(
            "SELECT m.ordinal, m.block_id, b.kind, b.role FROM turn_block_membership AS m "
            "JOIN blocks AS b USING (block_id, content_hash) WHERE m.turn_id = 'st25' ORDER BY m.ordinal"
        ).fetchall()
        assert anonymous == [(0, "st25#0", "user", "user"), (1, "st25#1", "other", "assistant")]
        # content addressed: the system block shared by every snapshot is stored once
        assert conn.execute("SELECT count(*) FROM blocks WHERE block_id = 'sys'").fetchone()[0] == 1
        # every converted snapshot has one membership row per YAML block, in order
        bad = set(fx.EXPECTED_UNPARSEABLE)
        for _, session, turn_id, phase, created, text in fx.single_table_rows(conv):
            if (turn_id, phase) in bad and session == "s-1":
                continue
            doc = yaml.load(text, Loader=yaml.BaseLoader)  # every scalar a string: an independent reader
            ids = conn.execute(
                "SELECT block_id FROM turn_block_membership WHERE conv_id = ? AND session_id = ? "
                "AND turn_id = ? AND phase = ? AND snapshot_created_at_ms = ? ORDER BY ordinal",
                (conv, session, turn_id, phase, created),
            ).fetchall()
            want = [b.get("id", f"{turn_id}#{i}") for i, b in enumerate(doc["blocks"])]
            assert [r[0] for r in ids] == want, (turn_id, phase)
        # the turn row carries the newest snapshot's metadata and data
        meta, data = conn.execute(
            "SELECT turn_metadata_json, turn_data_json FROM turns WHERE conv_id = ? AND session_id = 's-1' "
            "AND turn_id = 'st01'",
            (conv,),
        ).fetchone()
        assert json.loads(meta) == {"webchat.runtime@v1": "planner", "webchat.inference_id@v1": "inf-st01"}
        assert json.loads(data) == {"temperature": 0.2}
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def expected_times(name: str) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(turn_created_at_ms, updated_at_ms) per row after migration, from the inputs and the §4 rule."""
    out: dict[tuple[str, str, str], tuple[int, int]] = {}
    if name in NORMALIZED:
        for conv, session, turn_id, _, created, updated in fx.normalized_rows():
            if name != "normalized_pre_cutover.db":
                updated = 0  # the column did not exist: it is added as 0, then filled
            out[(conv, session, turn_id)] = (created, updated or created)
    elif name == "current_go.db":
        for conv, session, turn_id, _, _, _, created, updated in fx.go_rows():
            out[(conv, session, turn_id)] = (created, updated or created)
    else:
        conv = fx.SINGLE_CONV[name]
        bad = set(fx.EXPECTED_UNPARSEABLE)
        for session, turn_id, snaps, rk, _ in fx.single_table_cases():
            if rk is None:
                continue
            times = [t for phase, t, _ in snaps if not (session == "s-1" and (turn_id, phase) in bad)]
            out[(conv, session, turn_id)] = (min(times), max(times))
    return out


@pytest.mark.parametrize("name", FIXTURES)
def test_timestamps(name: str, migrated: dict[str, Any]) -> None:
    path, _, _ = migrated[name]
    with read_only(path) as conn:
        got = {
            (c, s, t): (created, updated)
            for c, s, t, created, updated in conn.execute(
                "SELECT conv_id, session_id, turn_id, turn_created_at_ms, updated_at_ms FROM turns"
            )
        }
    expected = expected_times(name)
    assert got == expected
    # the contract's "both unknown stays 0" case is in every fixture but current_go
    assert (0, 0) in expected.values() or name == "current_go.db"


@pytest.mark.parametrize("name", FIXTURES)
def test_checks_after_migration(name: str, migrated: dict[str, Any]) -> None:
    path, _, report = migrated[name]
    with read_only(path) as conn:
        check = run_check(conn)
        assert check.schema_ok, check.problems
        assert check.schema_version == SCHEMA_VERSION
        expected = fx.EXPECTED[name]
        missing = sum(1 for rk, inf in expected.values() if not rk or not inf)
        assert check.total_turns == len(expected) == report.total_turns
        assert check.missing_runtime_or_inference == missing
        assert check.missing_runtime_key == sum(1 for rk, _ in expected.values() if not rk)
        assert check.missing_inference_id == sum(1 for _, inf in expected.values() if not inf)
        candidates = missing_candidates(conn, limit=1000)
        keys = [(c["conv_id"], c["session_id"], c["turn_id"]) for c in candidates]
        assert sorted(keys) == sorted(k for k, (rk, inf) in expected.items() if not rk or not inf)
        assert len(missing_candidates(conn)) == min(50, missing)
        # every contract index exists with the contract's definition
        for index, (table, key_columns) in CONTRACT_INDEXES.items():
            row = conn.execute(
                "SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name = ?", (index,)
            ).fetchone()
            assert row == (table,), index
            info = [(r[2], r[3]) for r in conn.execute(f"PRAGMA index_xinfo({index})") if r[5]]
            assert info == key_columns, index
        # runtime history of one conversation: updated_at_ms ASC, turn_id ASC, switches marked
        conv = next(iter(expected))[0]
        history = runtime_history(conn, conv)
        times = expected_times(name)
        rows = sorted(
            ((times[k][1], k[2], expected[k][0], expected[k][1]) for k in expected if k[0] == conv),
            key=lambda r: (r[0], r[1]),
        )
        assert [
            (h["updated_at_ms"], h["turn_id"], h["runtime_key"], h["inference_id"]) for h in history
        ] == rows
        assert [h["switch"] for h in history] == [
            i > 0 and rows[i][2] != rows[i - 1][2] for i in range(len(rows))
        ]


# -- idempotence and dry run ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_second_migration_is_a_noop(name: str, migrated: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / name
    shutil.copyfile(migrated[name][0], path)
    before = dump(path)
    report = migrate_turns_db(path)
    assert not report.changed, report.to_dict()
    assert report.schema_version_before == report.schema_version_after == SCHEMA_VERSION
    assert dump(path) == before
    again = migrate_turns_db(path, dry_run=True)
    assert not again.changed, again.to_dict()


@pytest.mark.parametrize("name", FIXTURES)
def test_dry_run_leaves_the_file_untouched_and_predicts_the_real_run(
    name: str, migrated: dict[str, Any], tmp_path: Path
) -> None:
    path = copy_fixture(name, tmp_path)
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    dry = migrate_turns_db(path, dry_run=True)
    assert path.read_bytes() == data
    assert path.stat().st_mtime_ns == mtime
    assert dry.dry_run and dry.changed
    _, _, real = migrated[name]
    for field in PREDICTED_FIELDS:
        got, want = getattr(dry, field), getattr(real, field)
        if field in ("columns_added", "indexes_created", "tables_created"):
            got, want = sorted(got), sorted(want)
        assert got == want, field
    assert dry.legacy_rows_total == real.legacy_rows_total
    assert dry.timestamps_filled == real.timestamps_filled
    assert dry.schema_version_after == real.schema_version_after
    # and the real run on this untouched copy gives the same rows as the module's run
    migrate_turns_db(path)
    assert turn_values(path) == fx.EXPECTED[name]


# -- refusals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["normalized_pre_cutover.db", "single_table_session.db", "current_go.db"])
@pytest.mark.parametrize("already_migrated", [False, True])
def test_newer_schema_version_is_refused(name: str, already_migrated: bool, tmp_path: Path) -> None:
    path = copy_fixture(name, tmp_path)
    if already_migrated:
        migrate_turns_db(path)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS webchat_schema_migrations (component TEXT NOT NULL,"
            " version INTEGER NOT NULL, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL,"
            " PRIMARY KEY (component, version))"
        )
        conn.execute(
            "INSERT INTO webchat_schema_migrations VALUES ('turns', ?, 'from the future', 1)",
            (SCHEMA_VERSION + 1,),
        )
        conn.commit()
    before = dump(path)
    with pytest.raises(SchemaTooNewError, match="newer"):
        migrate_turns_db(path, dry_run=True)
    with pytest.raises(SchemaTooNewError, match="newer"):
        migrate_turns_db(path)
    with pytest.raises(SchemaTooNewError):
        open_turn_store(path)
    assert dump(path) == before


def test_missing_file_is_a_store_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "turns.db"
    with pytest.raises(StoreError):
        migrate_turns_db(missing)
    with pytest.raises(StoreError):
        migrate_turns_db(missing, dry_run=True)
    with pytest.raises(StoreError):
        migrate_turns_db(missing, dry_run=True, create=True)
    assert not missing.exists() and not missing.parent.exists()
    report = migrate_turns_db(missing, create=True)
    assert report.layout == "fresh" and missing.exists()
    with read_only(missing) as conn:
        assert run_check(conn).schema_ok


def test_null_legacy_created_at_stays_zero(tmp_path: Path) -> None:
    """A NULL legacy created_at_ms is an unknown time: it becomes 0 and does not stop the migration."""
    path = tmp_path / "turns.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "CREATE TABLE turns (conv_id TEXT NOT NULL, session_id TEXT NOT NULL, turn_id TEXT NOT NULL,"
            " created_at_ms INTEGER, turn_metadata_json TEXT NOT NULL DEFAULT '{}',"
            " turn_data_json TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (conv_id, session_id, turn_id))"
        )
        conn.execute("""INSERT INTO turns VALUES ('c', 's', 't1', NULL, '{"runtime": "planner"}', '{}')""")
        conn.execute("INSERT INTO turns VALUES ('c', 's', 't2', 5, '{}', '{}')")
        conn.commit()
    migrate_turns_db(path)
    with read_only(path) as conn:
        rows = conn.execute(
            "SELECT turn_id, turn_created_at_ms, updated_at_ms, runtime_key FROM turns ORDER BY turn_id"
        )
        assert rows.fetchall() == [("t1", 0, 0, "planner"), ("t2", 5, 5, "")]


def test_deeply_nested_metadata_does_not_stop_the_migration(tmp_path: Path) -> None:
    """Valid JSON nested past the parser's recursion limit is unresolved (§5), in both runs."""
    path = tmp_path / "turns.db"
    rows = [
        ("c", "s", "deep", '{"a":' * 5000 + "1" + "}" * 5000, 1, 1),
        ("c", "s", "ok", '{"runtime": "planner"}', 2, 2),
    ]
    fx.write_normalized_pre_cutover(path, rows, with_blocks=False)
    dry = migrate_turns_db(path, dry_run=True)
    report = migrate_turns_db(path)
    assert turn_values(path) == {("c", "s", "deep"): ("", ""), ("c", "s", "ok"): ("planner", "")}
    assert dry.backfilled_runtime_key == report.backfilled_runtime_key == 1


def _single_table_store(path: Path, rows: list[tuple[str, str, str, str, int, str]]) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "CREATE TABLE turns (conv_id TEXT NOT NULL, session_id TEXT NOT NULL, turn_id TEXT NOT NULL,"
            " phase TEXT NOT NULL, created_at_ms INTEGER NOT NULL, payload TEXT NOT NULL)"
        )
        conn.executemany("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.commit()


def test_single_table_conversion_never_overwrites_a_recorded_value(tmp_path: Path) -> None:
    """§5: a non-empty value is never overwritten. The first snapshot of "mixed" (in rowid order) records
    planner / inf-pre; its later snapshots name other values, which must not replace them. "late" has
    nothing in its first snapshot, so its later one fills the empty values."""
    path = tmp_path / "turns.db"
    blocks = fx.SYSTEM_BLOCK + fx.user_block("mixed")
    late_blocks = fx.SYSTEM_BLOCK + fx.user_block("late")
    _single_table_store(
        path,
        [
            (
                "c",
                "s",
                "mixed",
                "pre_inference",
                100,
                fx.yaml_turn("mixed", blocks, "  runtime: planner\n  inference_id: inf-pre\n"),
            ),
            ("c", "s", "mixed", "post_inference", 200, fx.yaml_turn("mixed", blocks, "  runtime: fast\n")),
            (
                "c",
                "s",
                "mixed",
                "final",
                300,
                fx.yaml_turn("mixed", blocks, "  runtime_key: default\n  inference_id: inf-final\n"),
            ),
            ("c", "s", "late", "pre_inference", 400, fx.yaml_turn("late", late_blocks, "")),
            (
                "c",
                "s",
                "late",
                "final",
                500,
                fx.yaml_turn("late", late_blocks, "  runtime: fast\n  inference_id: inf-late\n"),
            ),
        ],
    )
    report = migrate_turns_db(path)
    assert turn_values(path) == {
        ("c", "s", "mixed"): ("planner", "inf-pre"),
        ("c", "s", "late"): ("fast", "inf-late"),
    }
    assert report.legacy_rows_converted == 5
    assert report.backfilled_runtime_key == 2 and report.backfilled_inference_id == 2


# Metadata text (keys deliberately written lowest-priority first) → the (runtime_key, inference_id) that
# §5's priority order picks. Hand-written, so every run checks the order, not only some random seeds.
PRIORITY_CASES = [
    ('{"runtime_key": "rk", "runtime": "rt"}', ("rt", "")),
    ('{"runtime_key": "rk", "runtime": "rt", "geppetto.runtime@v1": "gp"}', ("gp", "")),
    (
        '{"runtime_key": "rk", "runtime": "rt", "geppetto.runtime@v1": "gp", "webchat.runtime@v1": "wc"}',
        ("wc", ""),
    ),
    ('{"runtime_key": "rk", "runtime": "  "}', ("rk", "")),
    ('{"runtime_key": "rk", "runtime": {"slug": "nested"}}', ("nested", "")),
    ('{"runtime_key": "rk", "runtime": true}', ("rk", "")),
    ('{"inference_id": "i3", "geppetto.inference_id@v1": "i2"}', ("", "i2")),
    ('{"inference_id": "i3", "geppetto.inference_id@v1": "i2", "webchat.inference_id@v1": "i1"}', ("", "i1")),
    ('{"inference_id": "i3", "geppetto.inference_id@v1": ""}', ("", "i3")),
    ('{"inference_id": 42, "webchat.inference_id@v1": null}', ("", "42")),
]


def test_backfill_key_priority_on_hand_written_rows(tmp_path: Path) -> None:
    path = tmp_path / "turns.db"
    rows = [("c", "s", f"t{i:02d}", meta, i + 1, i + 1) for i, (meta, _) in enumerate(PRIORITY_CASES)]
    fx.write_normalized_pre_cutover(path, rows, with_blocks=False)
    migrate_turns_db(path)
    assert turn_values(path) == {("c", "s", f"t{i:02d}"): want for i, (_, want) in enumerate(PRIORITY_CASES)}


# -- interrupted migrations -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_interrupted_after_first_batch_completes_on_next_run(name: str, tmp_path: Path) -> None:
    (tmp_path / "clean").mkdir()
    clean = copy_fixture(name, tmp_path / "clean")
    migrate_turns_db(clean, batch_size=2)
    path = copy_fixture(name, tmp_path)
    with pytest.raises(Interrupted):
        migrate_turns_db(path, batch_size=2, progress=interrupt_after(1))
    assert recorded_version(path) < SCHEMA_VERSION, "the first run was not interrupted"
    report = migrate_turns_db(path, batch_size=2)
    assert report.schema_version_after == SCHEMA_VERSION
    assert db_state(path) == db_state(clean)
    assert turn_values(path) == fx.EXPECTED[name]
    # a run on the completed store changes nothing
    assert not migrate_turns_db(path).changed


@pytest.mark.parametrize("name", FIXTURES)
def test_crash_after_every_batch_converges(name: str, tmp_path: Path) -> None:
    """Each run dies after one batch (or one index): the chain of runs ends in the clean state."""
    (tmp_path / "clean").mkdir()
    clean = copy_fixture(name, tmp_path / "clean")
    migrate_turns_db(clean, batch_size=40)
    path = copy_fixture(name, tmp_path)
    runs = 0
    while True:
        runs += 1
        assert runs < 200, "the migration does not make progress across interruptions"
        try:
            migrate_turns_db(path, batch_size=40, progress=interrupt_after(1))
        except Interrupted:
            continue
        break
    assert runs >= 2, "no run was interrupted"
    assert db_state(path) == db_state(clean)
    assert turn_values(path) == fx.EXPECTED[name]


def test_open_turn_store_completes_an_interrupted_migration(tmp_path: Path) -> None:
    path = copy_fixture("single_table_run_id.db", tmp_path)
    with pytest.raises(Interrupted):
        migrate_turns_db(path, batch_size=40, progress=interrupt_after(3))
    store = open_turn_store(path)
    try:
        history = store.runtime_history("c-run")
        assert {
            (r.conv_id, r.session_id, r.turn_id): (r.runtime_key, r.inference_id) for r in history
        } == fx.EXPECTED["single_table_run_id.db"]
    finally:
        store.close()


# -- other processes --------------------------------------------------------------------------------------

CHILD = """
import sys, time
from webchat.stores.migrations.turns_sqlite import migrate_turns_db

pause = float(sys.argv[3])

def progress(stage, done, total):
    time.sleep(pause)

migrate_turns_db(sys.argv[1], batch_size=int(sys.argv[2]), progress=progress)
print("finished", flush=True)
"""


def start_migration(path: Path, batch_size: int, pause_s: float) -> subprocess.Popen[str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(batch_size), str(pause_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def cursor(path: Path, step: str = "rows") -> int:
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=0.05)) as conn:
            row = conn.execute(
                "SELECT cursor FROM webchat_migration_state WHERE step = ?", (step,)
            ).fetchone()
    except sqlite3.OperationalError:
        return 0  # no table yet, or the writer holds a lock for a moment
    return int(row[0]) if row else 0


def wait_for_cursor(path: Path, proc: subprocess.Popen[str], timeout_s: float = 30.0) -> int:
    stop = time.monotonic() + timeout_s
    while time.monotonic() < stop:
        value = cursor(path)
        if value > 0:
            return value
        assert proc.poll() is None, f"child ended early: {proc.communicate()}"
        time.sleep(0.005)
    raise AssertionError("the migration never recorded a cursor")


def recorded_version(path: Path) -> int:
    with read_only(path) as conn:
        return int(
            conn.execute("SELECT COALESCE(MAX(version), 0) FROM webchat_schema_migrations").fetchone()[0]
        )


def test_sigkill_midway_then_rerun_matches_a_clean_migration(tmp_path: Path) -> None:
    (tmp_path / "clean").mkdir()
    path = tmp_path / "turns.db"
    fx.write_large_pre_cutover(path, 50_000)
    clean = tmp_path / "clean" / "turns.db"
    shutil.copyfile(path, clean)

    proc = start_migration(path, batch_size=500, pause_s=0.02)
    try:
        wait_for_cursor(path, proc)
        time.sleep(0.05)
        assert proc.poll() is None, "the migration finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # killed half-way: the row pass did not finish
    assert recorded_version(path) < SCHEMA_VERSION
    assert 0 < cursor(path) < 50_000

    migrate_turns_db(clean)
    report = migrate_turns_db(path)
    assert report.schema_version_after == SCHEMA_VERSION
    assert db_state(path) == db_state(clean)
    with read_only(path) as conn:
        assert conn.execute("SELECT count(*) FROM turns").fetchone()[0] == 50_000
        assert run_check(conn).schema_ok
    # spot-check the values against the hand-written expectations of the cycled cases
    values = turn_values(path)
    for i, (conv, session, turn_id, _, _, _) in enumerate(fx.large_pre_cutover_rows(50_000)):
        _, _, rk, inf = fx.JSON_CASES[i % len(fx.JSON_CASES)]
        assert values[(conv, session, turn_id)] == (rk, inf)


def test_two_processes_do_not_migrate_at_once(tmp_path: Path) -> None:
    (tmp_path / "clean").mkdir()
    path = tmp_path / "turns.db"
    fx.write_large_pre_cutover(path, 3_000)
    clean = tmp_path / "clean" / "turns.db"
    shutil.copyfile(path, clean)
    migrate_turns_db(clean)

    proc = start_migration(path, batch_size=100, pause_s=0.03)
    try:
        wait_for_cursor(path, proc)
        # a short lock timeout: a clear StoreError while the other migration is still running (so it
        # gave up rather than waited for the lock), and that migration goes on unharmed
        with pytest.raises(StoreError, match="is in use by web-chat db migrate"):
            migrate_turns_db(path, lock_timeout_s=0.2)
        assert proc.poll() is None
        # a long one: wait for the other process, then find nothing left to do
        report = migrate_turns_db(path, lock_timeout_s=60)
        # it only got the lock once the other process had finished every step
        assert report.schema_version_before == SCHEMA_VERSION, "the second migration did not wait"
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "finished" in out
    assert not report.changed
    assert db_state(path) == db_state(clean)


def test_two_processes_racing_from_the_start(tmp_path: Path) -> None:
    (tmp_path / "clean").mkdir()
    path = tmp_path / "turns.db"
    fx.write_large_pre_cutover(path, 3_000)
    clean = tmp_path / "clean" / "turns.db"
    shutil.copyfile(path, clean)
    migrate_turns_db(clean)
    procs = [start_migration(path, batch_size=200, pause_s=0.0) for _ in range(2)]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert db_state(path) == db_state(clean)
