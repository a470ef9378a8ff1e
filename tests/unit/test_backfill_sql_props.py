"""The migration's SQL resolver agrees with the Python resolver wherever it decides (runtime-truth.md §5).

The SQL (SQLite JSON1) yields a value, ``''`` (decided: unresolved) or NULL (the migration then asks
Python). Whatever it decides must be exactly what ``resolve_metadata_json`` says; the examples at the end
check it does decide the common shapes, so the property cannot pass by always answering NULL.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from webchat.stores.migrations.backfill import (
    resolve_metadata_json,
    sql_decidable,
    sql_decided_inference_id,
    sql_decided_runtime_key,
    sql_never_an_object,
)
from webchat.stores.migrations.turns_sqlite import migrate_turns_db

RUNTIME_SOURCES = ("webchat.runtime@v1", "geppetto.runtime@v1", "runtime", "runtime_key")
INFERENCE_SOURCES = ("webchat.inference_id@v1", "geppetto.inference_id@v1", "inference_id")
NESTED_KEYS = ("runtime_key", "key", "slug", "profile", "profile_key", "inference_id")

_CONN = sqlite3.connect(":memory:")
# How the row pass combines the parts: never an object -> '', decidable -> the SQL value, else Python.
_SQL = (
    f"SELECT CASE WHEN {sql_never_an_object('d')} THEN '' "
    f"WHEN {sql_decidable('d')} THEN {sql_decided_runtime_key('d')} END, "
    f"CASE WHEN {sql_never_an_object('d')} THEN '' "
    f"WHEN {sql_decidable('d')} THEN {sql_decided_inference_id('d')} END, "
    f"{sql_never_an_object('d')} FROM (SELECT ? AS d)"
)


def sql_resolve(text: Any) -> tuple[str | None, str | None, bool]:
    rk, inf, never_object = _CONN.execute(_SQL, (text,)).fetchone()
    return rk, inf, bool(never_object)


def assert_agrees(text: Any) -> tuple[str | None, str | None]:
    expected = resolve_metadata_json(text)
    rk, inf, never_object = sql_resolve(text)
    if rk is not None:
        assert rk == expected.runtime_key, (text, rk, expected)
    if inf is not None:
        assert inf == expected.inference_id, (text, inf, expected)
    if never_object:
        # The migration counts these rows as invalid metadata without asking Python.
        assert not expected.valid and (rk, inf) == ("", ""), (text, expected)
    return rk, inf


# -- strategies ----------------------------------------------------------------------------------------

whitespace = st.sampled_from(
    ["", " ", "  ", "\t", "\n", "\u00a0", "\u2003", "\u3000", "\u2028", "\x85", "\x1f"]
)
padded_text = st.builds(lambda a, b, c: a + b + c, whitespace, st.text(max_size=8), whitespace)
big_integers = st.integers(min_value=-(2**80), max_value=2**80) | st.sampled_from(
    [2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, 0]
)
non_canonical = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.just("")
    | whitespace
    | st.just([])
    | st.lists(st.text(max_size=4), max_size=2)
    | st.just({})
)
scalars = non_canonical | padded_text | big_integers
keys = st.sampled_from([*RUNTIME_SOURCES, *INFERENCE_SOURCES, *NESTED_KEYS, "profile_slug", "x", "runtime "])
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(keys | st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=16,
)


@st.composite
def precedence_docs(draw: st.DrawFn) -> dict[str, Any]:
    """Source keys in precedence order, the first ones non-canonical, the rest arbitrary."""
    doc: dict[str, Any] = {}
    for sources in (RUNTIME_SOURCES, INFERENCE_SOURCES):
        cut = draw(st.integers(0, len(sources)))
        for key in sources[:cut]:
            doc[key] = draw(non_canonical | st.dictionaries(st.sampled_from(NESTED_KEYS), non_canonical))
        for key in sources[cut:]:
            if draw(st.booleans()):
                doc[key] = draw(json_values)
    for key, value in draw(st.dictionaries(keys | st.text(max_size=5), json_values, max_size=3)).items():
        doc.setdefault(key, value)
    order = draw(st.permutations(list(doc)))
    return {k: doc[k] for k in order}


def encode(draw: st.DrawFn, value: Any) -> str:
    """JSON text of ``value`` in one of the ways real writers produce it."""
    style = draw(st.sampled_from(["compact", "spaced", "ascii", "sorted", "indented"]))
    if style == "compact":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if style == "spaced":
        return json.dumps(value, ensure_ascii=False)
    if style == "ascii":
        return json.dumps(value)  # escapes non-ASCII: backslashes send the row to Python
    if style == "sorted":
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "\n " + json.dumps(value, indent=2, ensure_ascii=False) + "\r\n"


@st.composite
def metadata_texts(draw: st.DrawFn) -> str:
    doc = draw(precedence_docs() | st.dictionaries(keys, json_values, max_size=6))
    text = encode(draw, doc)
    mutation = draw(st.sampled_from(["none"] * 6 + ["truncate", "duplicate", "escape_key", "nul", "bom"]))
    if mutation == "truncate":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if mutation == "duplicate" and text.endswith("}") and len(text) > 2:
        key = draw(st.sampled_from([*RUNTIME_SOURCES, *INFERENCE_SOURCES]))
        extra = json.dumps(draw(scalars), ensure_ascii=False)
        return text[:-1] + f',"{key}":{extra}}}'
    if mutation == "escape_key":
        return text.replace('"runtime', '"\\u0072untime', 1).replace("_id", "\\u005fid", 1)
    if mutation == "nul":
        return text + draw(st.sampled_from(["\x00", "\x00{}", ""]))
    if mutation == "bom":
        return "\ufeff" + text
    return text


other_json = st.builds(
    lambda v: json.dumps(v, ensure_ascii=False),
    json_values.filter(lambda v: not isinstance(v, dict)),
)
raw_texts = (
    st.sampled_from(
        [
            "",
            " ",
            "null",
            "true",
            "[]",
            "{}",
            "NaN",
            '{"runtime": NaN, "inference_id": 1}',
            "runtime=x",
            "{",
            "}",
        ]
    )
    | st.text(max_size=20)
    | st.text(alphabet='{}[]":,1a \\', max_size=30)
)


# -- properties ----------------------------------------------------------------------------------------

SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(metadata_texts())
@example('{"webchat.runtime@v1": {"runtime_key": "  planner "}, "webchat.inference_id@v1": "inf-1"}')
@example('{"webchat.runtime@v1": true, "geppetto.runtime@v1": 1.5, "runtime": [], "runtime_key": "x"}')
@example('{"runtime": null, "runtime_key": "", "inference_id": "   "}')
@example('{"runtime": 123456789012345678901234567890, "inference_id": -0}')
@example('{"runtime": 9007199254740993, "inference_id": -9223372036854775809}')
@example('{"runtime": 1e2, "inference_id": 1.0}')
@example('{"runtime": {"profile": {"key": {"slug": {"runtime_key": " deep "}}}}}')
@example('{"runtime": "a", "runtime": "b"}')
@example('{"runtime": {"slug": "a", "slug": "b"}}')
@example('{"runtime_key": "\\u00a0x\\u3000", "inference_id": "\\u0000"}')
@example('{"runtime":"\u2003x\u00a0","inference_id":"\u3000"}')
@example('{"runtime":"a"}\x00')
@example('{"runtime": "a", "x": Infinity}')
def test_sql_agrees_with_python_on_metadata(text: str) -> None:
    assert_agrees(text)


@SETTINGS
@given(other_json | raw_texts)
def test_sql_agrees_with_python_on_other_text(text: str) -> None:
    assert_agrees(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"runtime": "a", "inference_id": "i", "x": ' + "[" * 1500 + "]" * 1500 + "}",
        "[" * 1500 + "]" * 1500,
        '{"runtime": "a", "x": ' + '[{"a": ' * 600 + "1" + "}]" * 600 + "}",
    ],
)
def test_nesting_deep_enough_to_stop_json_loads_goes_to_python(text: str) -> None:
    # Outside Hypothesis (which raises the recursion limit), json.loads gives up on these, and the
    # resolver reports "valid, nothing resolved": SQL, which parses them fine, must not decide them.
    assert resolve_metadata_json(text) == resolve_metadata_json("{}")
    assert sql_resolve(text) == (None, None, False)


@pytest.mark.parametrize("value", [None, b'{"runtime": "a"}', '{"runtime": "a"}'.encode("utf-16"), 42, 1.5])
def test_non_text_values_go_to_python(value: Any) -> None:
    assert sql_resolve(value)[:2] == (None, None)
    assert_agrees(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"webchat.runtime@v1":{"runtime_key":"planner","runtime_fingerprint":"sha256:ab"},'
            '"webchat.inference_id@v1":"inf-1"}',
            ("planner", "inf-1"),
        ),
        ('{"geppetto.runtime@v1":" coder ","geppetto.inference_id@v1":"g-1"}', ("coder", "g-1")),
        ('{"runtime":{"profile":"p"},"inference_id":42}', ("p", "42")),
        (
            '{"runtime_key":"  x  ","inference_id":123456789012345678901234567890}',
            ("x", "123456789012345678901234567890"),
        ),
        ('{"webchat.runtime@v1":true,"webchat.inference_id@v1":1.5}', ("", "")),
        ('{"title":"imported"}', ("", "")),
        ("{}", ("", "")),
        ("[1, 2]", ("", "")),
        ("null", ("", "")),
        ("", ("", "")),
        ("runtime=planner", ("", "")),
    ],
)
def test_common_shapes_are_decided_in_sql(text: str, expected: tuple[str, str]) -> None:
    assert assert_agrees(text) == expected


# -- the migration's row pass, end to end ----------------------------------------------------------------

TURNS_WITH_COLUMNS = """CREATE TABLE turns (
    conv_id TEXT NOT NULL, session_id TEXT NOT NULL, turn_id TEXT NOT NULL,
    turn_created_at_ms INTEGER NOT NULL, turn_metadata_json TEXT NOT NULL DEFAULT '{}',
    turn_data_json TEXT NOT NULL DEFAULT '{}', runtime_key TEXT NOT NULL DEFAULT '',
    inference_id TEXT NOT NULL DEFAULT '', updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (conv_id, session_id, turn_id))"""

preset = st.sampled_from(["", "", "", "kept-value"])
stored_metadata = metadata_texts() | other_json | raw_texts | st.sampled_from([b'{"runtime": "blob"}'])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(stored_metadata, preset, preset), min_size=1, max_size=40))
def test_migration_row_pass_matches_the_python_resolver(
    rows: list[tuple[Any, str, str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("rows") / "turns.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(TURNS_WITH_COLUMNS)
        conn.executemany(
            "INSERT INTO turns VALUES ('c', 's', ?, 1, ?, '{}', ?, ?, 1)",
            [(f"t{i}", meta, rk, inf) for i, (meta, rk, inf) in enumerate(rows)],
        )
        conn.commit()
    # Small batches, so rows of one run land in several of them.
    report = migrate_turns_db(path, batch_size=7)
    expected: dict[str, tuple[str, str]] = {}
    filled_rk = filled_inf = invalid = 0
    for i, (meta, rk, inf) in enumerate(rows):
        res = resolve_metadata_json(meta)
        expected[f"t{i}"] = (rk or res.runtime_key, inf or res.inference_id)
        filled_rk += int(not rk and bool(res.runtime_key))
        filled_inf += int(not inf and bool(res.inference_id))
        invalid += int((not rk or not inf) and not res.valid)
    with closing(sqlite3.connect(path)) as conn:
        got = {
            t: (rk, inf)
            for t, rk, inf in conn.execute("SELECT turn_id, runtime_key, inference_id FROM turns")
        }
    assert got == expected
    assert (report.backfilled_runtime_key, report.backfilled_inference_id, report.invalid_metadata) == (
        filled_rk,
        filled_inf,
        invalid,
    )
