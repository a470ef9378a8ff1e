"""Every command that opens a store, on every kind of unusable store: one stderr line, exit 2 (cli.md).

A store that has not been migrated is unusable for the commands that read turns (exit 2, naming
``web-chat db migrate``) and a failed check for ``db check`` (exit 1, same advice).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.cli_stores import (
    copy_store,
    invoke,
    legacy_store,
    record_version,
    simple_data_dir,
)
from webchat.stores.sqlite.timeline_store import SCHEMA_VERSION as TIMELINE_SCHEMA_VERSION
from webchat.stores.sqlite.turn_schema import SCHEMA_VERSION as TURNS_SCHEMA_VERSION

TURNS_COMMANDS = [
    ["db", "check"],
    ["db", "missing"],
    ["db", "history", "--conv-id", "c1"],
    ["turns", "list", "--conv-id", "c1"],
    ["turns", "show", "c1", "s1", "t1"],
]
MIGRATE_COMMANDS = [["db", "migrate"], ["db", "migrate", "--dry-run"]]
TIMELINE_COMMANDS = [
    ["timeline", "list"],
    ["timeline", "snapshot", "--conv-id", "c1"],
    ["timeline", "entities", "--conv-id", "c1"],
    ["timeline", "entity", "--conv-id", "c1", "--id", "m1"],
    ["timeline", "stats"],
    ["timeline", "verify"],
]


def _corrupt(data: Path, name: str) -> str:
    data.mkdir(parents=True)
    (data / name).write_bytes(b"this is not an SQLite database, just bytes\n" * 200)
    return "file is not a database"


def _directory(data: Path, name: str) -> str:
    (data / name).mkdir(parents=True)
    return "is a directory, not a"


def _missing(data: Path, name: str) -> str:
    data.mkdir(parents=True)
    return "no such"


def _newer(version_of: Callable[[str], int]) -> Callable[[Path, str], str]:
    def make(data: Path, name: str) -> str:
        good = simple_data_dir(data.parent / "good")
        data.mkdir(parents=True)
        copy_store(good / name, data / name)
        component = "turns" if name == "turns.db" else "timeline"
        version = version_of(component)
        record_version(data / name, component, version)
        return f"schema version {version} is newer than this web-chat supports"

    return make


def _current(component: str) -> int:
    return TURNS_SCHEMA_VERSION if component == "turns" else TIMELINE_SCHEMA_VERSION


UNUSABLE = {
    "corrupt": _corrupt,
    "directory": _directory,
    "missing": _missing,
    "newer-by-one": _newer(lambda component: _current(component) + 1),
    "newer-99": _newer(lambda component: 99),
}


def assert_one_line(stderr: str, path: Path, first_words: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"web-chat: error: {path}: "), lines[0]
    assert first_words in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize("kind", sorted(UNUSABLE))
@pytest.mark.parametrize("args", TURNS_COMMANDS + MIGRATE_COMMANDS, ids=" ".join)
def test_turns_commands_on_unusable_stores(kind: str, args: list[str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    words = UNUSABLE[kind](data, "turns.db")
    before = (data / "turns.db").read_bytes() if (data / "turns.db").is_file() else None
    result = invoke(*args, "--data-dir", str(data))
    assert result.code == 2, (result.stdout, result.stderr)
    assert_one_line(result.stderr, data / "turns.db", words)
    assert result.stdout == ""
    if before is not None:
        assert (data / "turns.db").read_bytes() == before  # an unusable store is never changed


@pytest.mark.parametrize("kind", sorted(UNUSABLE))
@pytest.mark.parametrize("args", TIMELINE_COMMANDS, ids=" ".join)
def test_timeline_commands_on_unusable_stores(kind: str, args: list[str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    words = UNUSABLE[kind](data, "timeline.db")
    result = invoke(*args, "--data-dir", str(data))
    assert result.code == 2, (result.stdout, result.stderr)
    assert_one_line(result.stderr, data / "timeline.db", words)


def test_db_migrate_refuses_a_directory_given_as_timeline_db(tmp_path: Path) -> None:
    data = simple_data_dir(tmp_path / "data")
    (tmp_path / "t.db").mkdir()
    result = invoke("db", "migrate", "--data-dir", str(data), "--timeline-db", str(tmp_path / "t.db"))
    assert result.code == 2
    assert_one_line(result.stderr, tmp_path / "t.db", "is a directory, not a timeline store file")


UNMIGRATED = ["normalized_pre_cutover.db", "single_table_session.db", "current_go.db"]


@pytest.mark.parametrize("fixture", UNMIGRATED)
@pytest.mark.parametrize("args", TURNS_COMMANDS[1:], ids=" ".join)
def test_read_commands_on_an_unmigrated_store_name_db_migrate(
    fixture: str, args: list[str], tmp_path: Path
) -> None:
    path = legacy_store(fixture, tmp_path / "data" / "turns.db")
    before = path.read_bytes()
    result = invoke(*args, "--data-dir", str(path.parent))
    assert result.code == 2, (result.stdout, result.stderr)
    assert_one_line(result.stderr, path, "store is not migrated")
    assert "run web-chat db migrate first" in result.stderr
    assert "no such column" not in result.stderr
    assert path.read_bytes() == before


@pytest.mark.parametrize("fixture", UNMIGRATED)
def test_db_check_on_an_unmigrated_store_fails_and_says_what_to_run(fixture: str, tmp_path: Path) -> None:
    path = legacy_store(fixture, tmp_path / "data" / "turns.db")
    result = invoke("db", "check", "--turns-db", str(path))
    assert result.code == 1
    assert_one_line(result.stderr, path, "store is not migrated")
    assert result.stderr.rstrip().endswith("run web-chat db migrate")
    # The Go layout already has runtime_key / inference_id: its counts are real; the others have none yet.
    counted = fixture == "current_go.db"
    assert ("total_turns: unknown until migrated" in result.stdout) is not counted

    result = invoke("db", "check", "--turns-db", str(path), "-o", "json")
    assert result.code == 1
    doc = json.loads(result.stdout)
    assert doc["schema_ok"] is False
    assert doc["problems"][0].endswith("run web-chat db migrate")
    if counted:
        assert doc["total_turns"] > 0
    else:
        # Counting an un-migrated store's turns as 0 would read as "nothing to migrate".
        assert doc["total_turns"] is None and doc["missing_runtime_or_inference"] is None

    assert invoke("db", "migrate", "--turns-db", str(path)).code == 0
    after = invoke("db", "check", "--turns-db", str(path), "-o", "json")
    assert after.code == 0 and after.stderr == ""
    assert isinstance(json.loads(after.stdout)["total_turns"], int)


def test_db_check_on_a_half_migrated_store_says_what_to_run(tmp_path: Path) -> None:
    """Version 2 recorded (a migration stopped before its index step): still a failed check."""
    data = simple_data_dir(tmp_path / "data")
    conn = sqlite3.connect(data / "turns.db")
    conn.execute("DELETE FROM webchat_schema_migrations WHERE component = 'turns' AND version = 3")
    conn.commit()
    conn.close()
    result = invoke("db", "check", "--data-dir", str(data))
    assert result.code == 1
    assert_one_line(result.stderr, data / "turns.db", "store is not migrated (schema version 2 of 3)")


@pytest.mark.parametrize(
    ("content", "first_words"),
    [
        (b"slug: x\nprofiles: [unclosed\n", "invalid YAML"),
        (b"\xff\xfe\x00 not text", "not a UTF-8 text file"),
        (None, "cannot read profile registry"),
        (b"dir", "cannot read profile registry"),
    ],
    ids=["bad-yaml", "binary", "missing", "directory"],
)
@pytest.mark.parametrize("args", [["profiles", "list"], ["profiles", "show", "fast"]], ids=" ".join)
def test_profiles_commands_on_unusable_registry_files(
    content: bytes | None, first_words: str, args: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "registry.yaml"
    if content == b"dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    result = invoke(*args, "--profiles", str(path))
    assert result.code == 2
    assert_one_line(result.stderr, path, first_words)
