"""Profile documents with text no store can hold (NUL, lone surrogates) or absurd nesting are refused
where they enter: YAML registry files when loaded, ``profiles.db`` when written. (The YAML loader
itself already refuses a ``"\\ud800"`` escape; NUL, spelled ``"\\0"``, it lets through.)"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from webchat.runtimes.profiles import ProfileError, parse_registry_text
from webchat.runtimes.sqlite_registry import InvalidProfile, SQLiteProfileStore

GOOD_YAML = """\
slug: mine
profiles:
  p:
    display_name: P
    runtime: {engine: offline, system_prompt: "Be brief. \\U0001F600"}
"""


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            GOOD_YAML.replace("display_name: P", 'display_name: "P\\0"'),
            "profiles.p.display_name contains a NUL",
        ),
        (
            GOOD_YAML.replace("system_prompt:", '"opt\\0": 1, system_prompt:'),
            "a key of profiles.p.runtime contains a NUL",
        ),
        (
            GOOD_YAML.replace(
                "engine: offline,", "engine: offline, options: {x: " + "[" * 40 + "]" * 40 + "},"
            ),
            "is nested deeper than 32 levels",
        ),
    ],
)
def test_yaml_registry_refused(yaml_text: str, expected: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_registry_text(yaml_text, source="mine.yaml")
    assert str(caught.value).startswith("mine.yaml: ")
    assert expected in str(caught.value)
    str(caught.value).encode("utf-8")  # the message itself never carries the bad character


def test_yaml_registry_with_valid_unicode_loads() -> None:
    registry = parse_registry_text(GOOD_YAML, source="mine.yaml")
    assert registry.get("p") is not None


DOC: dict[str, Any] = {"display_name": "Mine", "runtime": {"engine": "offline", "system_prompt": "Hi."}}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteProfileStore]:
    st = SQLiteProfileStore(tmp_path / "profiles.db")
    try:
        yield st
    finally:
        st.close()


@pytest.mark.parametrize(
    "doc",
    [
        {**DOC, "description": "a\x00b"},
        {**DOC, "display_name": "\ud800"},
        {**DOC, "runtime": {"engine": "offline", "system_prompt": "x", "options": {"k\udfff": 1}}},
    ],
)
def test_store_create_refused_and_nothing_stored(store: SQLiteProfileStore, doc: dict[str, Any]) -> None:
    with pytest.raises(InvalidProfile) as caught:
        store.create("local", "bad", doc)
    assert caught.value.code == "invalid_profile"
    assert store.load_registry().profiles == {}


def test_store_update_refused_and_unchanged(store: SQLiteProfileStore) -> None:
    created = store.create("local", "mine", DOC)
    for changes in ({"description": "\x00"}, {"runtime": {"system_prompt": "\udbff"}}):
        with pytest.raises(InvalidProfile):
            store.update("local", "mine", changes, expected_version=1)
    assert store.load_registry().get("mine") == created


def test_rows_stored_before_the_rule_still_load(store: SQLiteProfileStore, tmp_path: Path) -> None:
    # NUL used to be accepted and SQLite keeps it: such a row must not stop the server from starting.
    store.create("local", "old", DOC)
    conn = sqlite3.connect(tmp_path / "profiles.db")
    try:
        row = conn.execute("SELECT document_json FROM profiles WHERE slug = 'old'").fetchone()
        doc = json.loads(row[0])
        doc["description"] = "from \x00 before"
        with conn:
            conn.execute("UPDATE profiles SET document_json = ? WHERE slug = 'old'", (json.dumps(doc),))
    finally:
        conn.close()
    loaded = store.load_registry().get("old")
    assert loaded is not None and loaded.description == "from \x00 before"
