"""(Re)create the legacy ``turns.db`` fixtures of tests/legacy, one per layout of runtime-truth.md §4.

Run: ``.venv/bin/python tests/legacy/make_fixtures.py``

Everything here is deterministic: fixed timestamps, no randomness, no "now". The expected values after
migration are written by hand from the contract (§5), next to each input, and collected in
:data:`EXPECTED`; nothing in this file calls the web-chat library.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

Key = tuple[str, str, str]

# -------------------------------------------------------------------------------------------------
# Turn metadata as JSON text (normalized and current layouts): (turn_id, metadata text, rk, inf).
# The last two columns are the runtime_key / inference_id the contract requires after migration.
# -------------------------------------------------------------------------------------------------

JSON_CASES: list[tuple[str, str, str, str]] = [
    # canonical string
    ("t01", '{"webchat.runtime@v1": "planner", "webchat.inference_id@v1": "inf-01"}', "planner", "inf-01"),
    # canonical object, as web-chat writes it
    (
        "t02",
        '{"webchat.runtime@v1": {"runtime_key": "planner", "profile_slug": "planner",'
        ' "registry_slug": "default", "profile_version": 3, "runtime_fingerprint": "sha256:abcd"},'
        ' "webchat.inference_id@v1": "inf-02",'
        ' "webchat.session_id@v1": "s-a"}',
        "planner",
        "inf-02",
    ),
    # object with slug only
    ("t03", '{"webchat.runtime@v1": {"slug": "coder"}}', "coder", ""),
    # object with profile only; alias inference_id
    (
        "t04",
        '{"webchat.runtime@v1": {"profile": "writer", "registry_slug": "default"}, "inference_id": "inf-04"}',
        "writer",
        "inf-04",
    ),
    # reference implementation keys
    (
        "t05",
        '{"geppetto.runtime@v1": "gpt-4o-mini", "geppetto.inference_id@v1": "inf-05",'
        ' "geppetto.session_id@v1": "s-a"}',
        "gpt-4o-mini",
        "inf-05",
    ),
    # aliases
    ("t06", '{"runtime": "default", "inference_id": "inf-06"}', "default", "inf-06"),
    ("t07", '{"runtime_key": "analyst"}', "analyst", ""),
    # object in object (resolved recursively), for both values
    (
        "t08",
        '{"webchat.runtime@v1": {"runtime_key": {"slug": "deep"}},'
        ' "webchat.inference_id@v1": {"inference_id": {"inference_id": "inf-08"}}}',
        "deep",
        "inf-08",
    ),
    # padded strings are trimmed
    (
        "t09",
        '{"webchat.runtime@v1": "  planner  ", "webchat.inference_id@v1": "\\tinf-09\\n"}',
        "planner",
        "inf-09",
    ),
    # integers become decimal strings (negative and beyond 64 bits included)
    ("t10", '{"runtime_key": 42, "inference_id": 7}', "42", "7"),
    (
        "t11",
        '{"runtime": -3, "inference_id": 123456789012345678901234567890}',
        "-3",
        "123456789012345678901234567890",
    ),
    # non-canonical values stay unresolved
    ("t12", '{"webchat.runtime@v1": true, "webchat.inference_id@v1": false}', "", ""),
    ("t13", '{"runtime": 1.5, "inference_id": 2.0, "runtime_key": 1e2}', "", ""),
    ("t14", '{"webchat.runtime@v1": ["planner"], "inference_id": ["inf-14"]}', "", ""),
    ("t15", '{"webchat.runtime@v1": null, "webchat.inference_id@v1": null}', "", ""),
    ("t16", '{"webchat.runtime@v1": "", "webchat.inference_id@v1": "   "}', "", ""),
    ("t17", '{"webchat.runtime@v1": {}, "webchat.inference_id@v1": {}}', "", ""),
    ("t18", "{}", "", ""),
    # metadata that is not valid JSON, or valid JSON but not an object: unresolved (and counted)
    ("t19", '{"webchat.runtime@v1": "planner", "webchat.inference_id@v1": "inf-19"', "", ""),
    ("t20", '["webchat.runtime@v1", "planner"]', "", ""),
    ("t21", '"planner"', "", ""),
    ("t22", "", "", ""),
    # priority: the canonical key is present but non-canonical, so a lower-priority key wins
    (
        "t23",
        '{"webchat.runtime@v1": true, "geppetto.runtime@v1": "fallback", "runtime": "alias",'
        ' "webchat.inference_id@v1": "", "geppetto.inference_id@v1": ["x"], "inference_id": "inf-23"}',
        "fallback",
        "inf-23",
    ),
    (
        "t24",
        '{"webchat.runtime@v1": {"runtime_key": true, "slug": 3.5, "profile": null},'
        ' "geppetto.runtime@v1": {}, "runtime": "  ", "runtime_key": "last-resort"}',
        "last-resort",
        "",
    ),
    # priority: everything present and canonical, the first key wins
    (
        "t25",
        '{"runtime_key": "fourth", "runtime": "third", "geppetto.runtime@v1": "second",'
        ' "webchat.runtime@v1": "first", "inference_id": "inf-25c", "geppetto.inference_id@v1": "inf-25b",'
        ' "webchat.inference_id@v1": "inf-25a"}',
        "first",
        "inf-25a",
    ),
    # nested key order: runtime_key (blank) < key < slug < profile
    (
        "t26",
        '{"webchat.runtime@v1": {"profile": "p", "slug": "s", "key": "k", "runtime_key": "  "}}',
        "k",
        "",
    ),
    # nested integers, nested non-canonical falling through to the next nested key
    (
        "t27",
        '{"geppetto.runtime@v1": {"profile_key": 9},'
        ' "webchat.inference_id@v1": {"key": false, "inference_id": 77}}',
        "9",
        "77",
    ),
    (
        "t28",
        '{"runtime_key": {"runtime_key": false, "key": "k28"}, "webchat.inference_id@v1": {"key": "inf-28"}}',
        "k28",
        "inf-28",
    ),
    # unrelated keys are never a source (no fabrication from session ids, profiles, or the conversation)
    (
        "t29",
        '{"webchat.session_id@v1": "s-a", "profile": "planner", "slug": "planner",'
        ' "conversation_runtime": "planner", "webchat.inference@v1": {"provider": "openai",'
        ' "request_model": "gpt-4o", "response_id": "resp-1"}}',
        "",
        "",
    ),
]

# Input timestamps (turn_created_at_ms, updated_at_ms) of JSON case i, shared by the normalized layouts.
BASE_MS = 1_700_000_000_000


def json_case_times(index: int) -> tuple[int, int]:
    """Case t18 knows no time at all; every third row has updated_at_ms = 0; the others are set."""
    if index == 17:
        return 0, 0
    created = BASE_MS + index * 1_000
    if index % 3 == 0:
        return created, 0
    return created, created + 500


# Blocks of the normalized fixtures: (block_id, kind, role, payload, metadata).
NORMALIZED_BLOCKS: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
    ("sys", "system", "system", {"text": "You are helpful."}, {}),
    ("u-t01", "user", "user", {"text": "Plan my week"}, {"source": "web"}),
    ("a-t01", "llm_text", "assistant", {"text": "Sure."}, {}),
    ("u-t02", "user", "user", {"text": "And next week?"}, {}),
]
# Membership rows: (turn_id, phase, snapshot_created_at_ms offset, [block ids in ordinal order]).
NORMALIZED_MEMBERSHIP: list[tuple[str, str, int, list[str]]] = [
    ("t01", "pre_inference", 0, ["sys", "u-t01"]),
    ("t01", "final", 400, ["sys", "u-t01", "a-t01"]),
    ("t02", "final", 300, ["sys", "u-t01", "a-t01", "u-t02"]),
]

# Extra rows of the normalized layouts: the same turn id in another conversation and another session.
NORMALIZED_EXTRA: list[tuple[str, str, str, str, str, str]] = [
    # (conv_id, session_id, turn_id, metadata, rk, inf)
    ("c-norm-2", "s-a", "t01", '{"runtime": "other-conv"}', "other-conv", ""),
    ("c-norm", "s-b", "t01", '{"geppetto.inference_id@v1": "inf-s-b"}', "", "inf-s-b"),
]
EXTRA_TIMES = [(BASE_MS + 900_000, BASE_MS + 900_100), (BASE_MS + 910_000, 0)]


def normalized_rows() -> list[tuple[str, str, str, str, int, int]]:
    """``(conv_id, session_id, turn_id, metadata, created, updated)`` of the normalized fixtures."""
    rows = []
    for i, (turn_id, meta, _, _) in enumerate(JSON_CASES):
        created, updated = json_case_times(i)
        # t01 and t02 carry the membership rows below, in session s-a.
        session = "s-a" if i % 2 == 0 or turn_id in ("t01", "t02") else "s-b"
        rows.append(("c-norm", session, turn_id, meta, created, updated))
    for (conv, session, turn_id, meta, _, _), (created, updated) in zip(
        NORMALIZED_EXTRA, EXTRA_TIMES, strict=True
    ):
        rows.append((conv, session, turn_id, meta, created, updated))
    return rows


def _normalized_expected() -> dict[Key, tuple[str, str]]:
    out: dict[Key, tuple[str, str]] = {}
    for (conv, session, turn_id, _, _, _), case in zip(
        normalized_rows(), [*JSON_CASES, *NORMALIZED_EXTRA], strict=True
    ):
        out[(conv, session, turn_id)] = (case[-2], case[-1])
    return out


# -------------------------------------------------------------------------------------------------
# The current layout as the reference Go implementation writes it: (turn_id, rk, inf, metadata, rk', inf')
# where rk/inf are the stored values and rk'/inf' the values after migration.
# -------------------------------------------------------------------------------------------------

GO_FILLED: list[tuple[str, str, str, str, str, str]] = [
    # filled values are kept even where the metadata says something else
    (
        "g01",
        "planner",
        "inf-g01",
        '{"geppetto.runtime@v1": "other", "geppetto.inference_id@v1": "x"}',
        "planner",
        "inf-g01",
    ),
    # one filled, the other backfilled from the metadata
    (
        "g02",
        "coder",
        "",
        '{"geppetto.runtime@v1": "ignored", "geppetto.inference_id@v1": "inf-g02"}',
        "coder",
        "inf-g02",
    ),
    (
        "g03",
        "",
        "inf-g03",
        '{"geppetto.runtime@v1": "gpt-4o", "geppetto.inference_id@v1": "other"}',
        "gpt-4o",
        "inf-g03",
    ),
    # filled runtime, empty inference, invalid metadata: inference stays unknown (and the row is counted)
    ("g04", "planner", "", '{"geppetto.inference_id@v1": ', "planner", ""),
    # filled values with non-canonical metadata
    ("g05", "writer", "inf-g05", "[1, 2, 3]", "writer", "inf-g05"),
]
GO_CONV = "c-go"
GO_SESSION = "s-go"


def go_rows() -> list[tuple[str, str, str, str, str, str, int, int]]:
    """``(conv, session, turn_id, metadata, rk, inf, created, updated)`` of current_go.db."""
    rows = []
    for i, (turn_id, meta, _, _) in enumerate(JSON_CASES):
        created = BASE_MS + 5_000_000 + i * 1_000
        # The Go writer always sets updated_at_ms; one row has it 0 (written by an old build).
        updated = 0 if turn_id == "t05" else created + 10
        rows.append((GO_CONV, GO_SESSION, turn_id, meta, "", "", created, updated))
    for j, (turn_id, rk, inf, meta, _, _) in enumerate(GO_FILLED):
        created = BASE_MS + 6_000_000 + j * 1_000
        rows.append((GO_CONV, GO_SESSION, turn_id, meta, rk, inf, created, created + 10))
    return rows


# -------------------------------------------------------------------------------------------------
# Single-table snapshot layouts: YAML turn payloads, several phases per turn.
# -------------------------------------------------------------------------------------------------

SYSTEM_BLOCK = """  - id: sys
    kind: system
    role: system
    payload:
      text: You are helpful.
    metadata: {}
"""


def user_block(turn_id: str) -> str:
    return f"""  - id: u-{turn_id}
    kind: user
    role: user
    payload:
      text: "Question of {turn_id}"
    metadata:
      source: web
"""


def answer_block(turn_id: str) -> str:
    return f"""  - id: a-{turn_id}
    kind: llm_text
    role: assistant
    payload:
      text: "Answer of {turn_id}"
"""


# A block whose payload is full of YAML 1.1 traps: every value must stay a string (YAML 1.2 core schema).
TRAP_BLOCK = """  - id: a-st19
    kind: llm_text
    role: assistant
    payload:
      text: yes
      answer: no
      switch: on
      on: off
      when: 2024-01-02
      stamp: 2024-01-02T03:04:05Z
    metadata:
      flag: No
"""
# The same payload as canonical JSON, written by hand.
TRAP_PAYLOAD_JSON = (
    '{"answer":"no","on":"off","stamp":"2024-01-02T03:04:05Z","switch":"on","text":"yes","when":"2024-01-02"}'
)
TRAP_METADATA_JSON = '{"flag":"No"}'

# Blocks without id (and one without kind): ids default to <turn_id>#<ordinal>, kind to "other".
ANONYMOUS_BLOCKS = """  - kind: user
    role: user
    payload:
      text: no id here
  - role: assistant
    payload:
      text: no id nor kind
"""


def yaml_turn(turn_id: str, blocks: str, metadata: str) -> str:
    """A turn payload; ``metadata`` is the YAML text of the mapping body (two-space indented)."""
    meta = "metadata: {}\n" if not metadata else "metadata:\n" + metadata
    return f"id: {turn_id}\nblocks:\n{blocks}{meta}data:\n  temperature: 0.2\n"


def phases(
    turn_id: str, metadata: str, t0: int, final_metadata: str | None = None
) -> list[tuple[str, int, str]]:
    """pre_inference / post_inference / final snapshots of a plain turn."""
    pre = SYSTEM_BLOCK + user_block(turn_id)
    full = pre + answer_block(turn_id)
    last = metadata if final_metadata is None else final_metadata
    return [
        ("pre_inference", t0, yaml_turn(turn_id, pre, metadata)),
        ("post_inference", t0 + 100, yaml_turn(turn_id, full, last)),
        ("final", t0 + 200, yaml_turn(turn_id, full, last)),
    ]


INVALID_YAML = "id: st20\nblocks: [unclosed\nmetadata: {runtime: default\n"
LIST_YAML = "- id: st21\n- blocks: []\n"
SCALAR_YAML = "just some text, not a turn\n"
LIST_METADATA_YAML = "id: st23\nblocks:\n" + SYSTEM_BLOCK + "metadata:\n  - webchat.runtime@v1\n  - planner\n"

# (session, turn_id, [(phase, created_at_ms, payload)], rk, inf)
# rk / inf are the values after migration; None means "no turns row at all" (nothing parseable).
SingleCase = tuple[str, str, list[tuple[str, int, str]], str | None, str | None]

T0 = 1_710_000_000_000


def single_table_cases() -> list[SingleCase]:
    c: list[SingleCase] = []

    def add(
        session: str, turn_id: str, snaps: list[tuple[str, int, str]], rk: str | None, inf: str | None
    ) -> None:
        c.append((session, turn_id, snaps, rk, inf))

    # canonical string; the inference id only appears once the inference ran
    add(
        "s-1",
        "st01",
        phases(
            "st01",
            "  webchat.runtime@v1: planner\n",
            T0,
            "  webchat.runtime@v1: planner\n  webchat.inference_id@v1: inf-st01\n",
        ),
        "planner",
        "inf-st01",
    )
    obj = (
        "  webchat.runtime@v1:\n    runtime_key: coder\n    profile_slug: coder\n    registry_slug: default\n"
        '    profile_version: 2\n    runtime_fingerprint: "sha256:00ff"\n'
        "  webchat.inference_id@v1: inf-st02\n"
    )
    add("s-1", "st02", phases("st02", obj, T0 + 10_000), "coder", "inf-st02")
    add("s-1", "st03", phases("st03", "  webchat.runtime@v1: {slug: writer}\n", T0 + 20_000), "writer", "")
    add(
        "s-1",
        "st04",
        phases(
            "st04",
            "  webchat.runtime@v1:\n    profile: analyst\n  geppetto.inference_id@v1: inf-st04\n",
            T0 + 30_000,
        ),
        "analyst",
        "inf-st04",
    )
    add(
        "s-1",
        "st05",
        phases(
            "st05", "  geppetto.runtime@v1: gpt-4o-mini\n  geppetto.inference_id@v1: inf-st05\n", T0 + 40_000
        ),
        "gpt-4o-mini",
        "inf-st05",
    )
    add(
        "s-1",
        "st06",
        phases("st06", "  runtime: default\n  inference_id: inf-st06\n", T0 + 50_000),
        "default",
        "inf-st06",
    )
    add("s-1", "st07", phases("st07", "  runtime_key: legacy-rk\n", T0 + 60_000), "legacy-rk", "")
    nested = (
        "  webchat.runtime@v1:\n    runtime_key:\n      key: nested-rk\n"
        "  webchat.inference_id@v1:\n    inference_id:\n      inference_id: inf-st08\n"
    )
    add("s-1", "st08", phases("st08", nested, T0 + 70_000), "nested-rk", "inf-st08")
    add(
        "s-1",
        "st09",
        phases("st09", '  webchat.runtime@v1: "  planner  "\n  inference_id: "  inf-st09 "\n', T0 + 80_000),
        "planner",
        "inf-st09",
    )
    add("s-1", "st10", phases("st10", "  runtime_key: 42\n  inference_id: 7\n", T0 + 90_000), "42", "7")
    add(
        "s-1",
        "st11",
        phases("st11", "  webchat.runtime@v1: true\n  webchat.inference_id@v1: false\n", T0 + 100_000),
        "",
        "",
    )
    add("s-1", "st12", phases("st12", "  runtime: 1.5\n  inference_id: 2.0e3\n", T0 + 110_000), "", "")
    add(
        "s-1",
        "st13",
        phases("st13", "  webchat.runtime@v1: [planner]\n  inference_id: [inf]\n", T0 + 120_000),
        "",
        "",
    )
    add(
        "s-1",
        "st14",
        phases("st14", "  webchat.runtime@v1: null\n  webchat.inference_id@v1: ~\n", T0 + 130_000),
        "",
        "",
    )
    add(
        "s-1",
        "st15",
        phases("st15", '  webchat.runtime@v1: ""\n  inference_id: "   "\n', T0 + 140_000),
        "",
        "",
    )
    add(
        "s-1",
        "st16",
        phases("st16", "  webchat.runtime@v1: {}\n  webchat.inference_id@v1: {}\n", T0 + 150_000),
        "",
        "",
    )
    add("s-1", "st17", phases("st17", "", T0 + 160_000), "", "")
    prio = (
        '  webchat.runtime@v1: true\n  geppetto.runtime@v1: ""\n  runtime: [x]\n  runtime_key: fallback-rk\n'
        "  webchat.inference_id@v1: 1.5\n  geppetto.inference_id@v1: inf-st18\n"
    )
    add("s-1", "st18", phases("st18", prio, T0 + 170_000), "fallback-rk", "inf-st18")
    # YAML 1.1 traps: in the metadata they are strings (so they resolve), in the blocks they stay strings
    trap_meta = "  runtime: yes\n  inference_id: 2024-01-02\n"
    trap_blocks = SYSTEM_BLOCK + user_block("st19") + TRAP_BLOCK
    add(
        "s-1",
        "st19",
        [("final", T0 + 180_000, yaml_turn("st19", trap_blocks, trap_meta))],
        "yes",
        "2024-01-02",
    )
    # a valid pre_inference snapshot and an invalid-YAML final one
    add(
        "s-1",
        "st20",
        [
            (
                "pre_inference",
                T0 + 190_000,
                yaml_turn("st20", SYSTEM_BLOCK + user_block("st20"), "  runtime: default\n"),
            ),
            ("final", T0 + 190_200, INVALID_YAML),
        ],
        "default",
        "",
    )
    # YAML that is not a mapping: no turn row at all
    add("s-1", "st21", [("final", T0 + 200_000, LIST_YAML)], None, None)
    add("s-1", "st22", [("final", T0 + 210_000, SCALAR_YAML)], None, None)
    # a valid pre_inference and a final whose metadata is a list (not an object)
    add(
        "s-1",
        "st23",
        [
            (
                "pre_inference",
                T0 + 220_000,
                yaml_turn("st23", SYSTEM_BLOCK, "  geppetto.runtime@v1:\n    slug: gep-slug\n"),
            ),
            ("final", T0 + 220_200, LIST_METADATA_YAML),
        ],
        "gep-slug",
        "",
    )
    # no time known at all: both timestamps stay 0
    add(
        "s-1",
        "st24",
        [("final", 0, yaml_turn("st24", SYSTEM_BLOCK, "  runtime: zero-time\n"))],
        "zero-time",
        "",
    )
    # blocks without ids or kind; inference id from a nested integer
    add(
        "s-1",
        "st25",
        [
            (
                "final",
                T0 + 240_000,
                yaml_turn("st25", ANONYMOUS_BLOCKS, "  webchat.inference_id@v1:\n    key: 99\n"),
            )
        ],
        "",
        "99",
    )
    # the same turn id in another session is another turn
    add(
        "s-2",
        "st01",
        phases("st01", "  geppetto.runtime@v1: other-session\n", T0 + 300_000),
        "other-session",
        "",
    )
    return c


SINGLE_CONV = {"single_table_session.db": "c-st", "single_table_run_id.db": "c-run"}


def single_table_rows(conv: str) -> list[tuple[str, str, str, str, int, str]]:
    """``(conv, session, turn_id, phase, created_at_ms, payload)`` in insertion (rowid) order."""
    rows = []
    for session, turn_id, snaps, _, _ in single_table_cases():
        for phase, created, payload in snaps:
            rows.append((conv, session, turn_id, phase, created, payload))
    return rows


def _single_expected(conv: str) -> dict[Key, tuple[str, str]]:
    out: dict[Key, tuple[str, str]] = {}
    for session, turn_id, _, rk, inf in single_table_cases():
        if rk is not None and inf is not None:
            out[(conv, session, turn_id)] = (rk, inf)
    return out


# -------------------------------------------------------------------------------------------------
# EXPECTED: every turns row after migration, per fixture (and nothing else).
# -------------------------------------------------------------------------------------------------

EXPECTED: dict[str, dict[Key, tuple[str, str]]] = {
    "normalized_pre_cutover.db": _normalized_expected(),
    "normalized_pre_cutover_no_updated_at.db": _normalized_expected(),
    "normalized_created_at_only.db": _normalized_expected(),
    "single_table_session.db": _single_expected("c-st"),
    "single_table_run_id.db": _single_expected("c-run"),
    "current_go.db": {
        **{(GO_CONV, GO_SESSION, tid): (rk, inf) for tid, _, rk, inf in JSON_CASES},
        **{(GO_CONV, GO_SESSION, tid): (rk, inf) for tid, _, _, _, rk, inf in GO_FILLED},
    },
}

# The indexes of the contract (§3), in the order the migration creates them.
ALL_INDEXES = [
    "turns_by_conv_session",
    "turns_by_session",
    "turns_by_conv_runtime_updated",
    "turns_by_conv_inference_updated",
    "blocks_by_kind_role",
    "turn_block_membership_by_turn_phase",
    "turn_block_membership_by_block",
]

# Report counts, counted by hand.
#   JSON cases t01..t29: the runtime key resolves in 17 (t01-t11, t23-t28), the inference id in 13
#   (t01, t02, t04, t05, t06, t08, t09, t10, t11, t23, t25, t27, t28); invalid: t19, t20, t21, t22.
#   Normalized layouts add 2 extra rows (one runtime key, one inference id): 31 rows, 18 and 14 resolved.
#   Single table: 26 cases -> 66 rows; 4 unparseable (st20 final, st21, st22, st23 final), 62 converted;
#   24 turns rows (st21 and st22 have none); runtime key resolved in 16, inference id in 11.
#   current_go: the 29 JSON cases + 5 rows with filled values (g03 gets a runtime key, g02 an inference id).
EXPECTED_REPORT: dict[str, dict[str, Any]] = {
    "normalized_pre_cutover.db": {
        "layout": "normalized pre-cutover",
        "columns_added": ["turns.runtime_key", "turns.inference_id"],
        "indexes_created": ALL_INDEXES[2:],
        "tables_created": [],
        "backfilled_runtime_key": 18,
        "backfilled_inference_id": 14,
        "legacy_rows_converted": 0,
        "legacy_rows_unparseable": 0,
        "invalid_metadata": 4,
        "total_turns": 31,
        "missing_runtime_key": 13,
        "missing_inference_id": 17,
    },
    "normalized_pre_cutover_no_updated_at.db": {
        "layout": "normalized pre-cutover",
        "columns_added": ["turns.runtime_key", "turns.inference_id", "turns.updated_at_ms"],
        "indexes_created": ALL_INDEXES,
        "tables_created": [],
        "backfilled_runtime_key": 18,
        "backfilled_inference_id": 14,
        "legacy_rows_converted": 0,
        "legacy_rows_unparseable": 0,
        "invalid_metadata": 4,
        "total_turns": 31,
        "missing_runtime_key": 13,
        "missing_inference_id": 17,
    },
    "normalized_created_at_only.db": {
        "layout": "normalized pre-cutover",
        "columns_added": [
            "turns.turn_created_at_ms",
            "turns.runtime_key",
            "turns.inference_id",
            "turns.updated_at_ms",
            "blocks.hash_algorithm",
        ],
        "indexes_created": ALL_INDEXES,
        "tables_created": [],
        "backfilled_runtime_key": 18,
        "backfilled_inference_id": 14,
        "legacy_rows_converted": 0,
        "legacy_rows_unparseable": 0,
        "invalid_metadata": 4,
        "total_turns": 31,
        "missing_runtime_key": 13,
        "missing_inference_id": 17,
    },
    "single_table_session.db": {
        "layout": "single-table",
        "columns_added": [],
        "indexes_created": ALL_INDEXES,
        "tables_created": ["turns", "blocks", "turn_block_membership"],
        "backfilled_runtime_key": 16,
        "backfilled_inference_id": 11,
        "legacy_rows_converted": 62,
        "legacy_rows_unparseable": 4,
        "invalid_metadata": 0,
        "total_turns": 24,
        "missing_runtime_key": 8,
        "missing_inference_id": 13,
    },
    "single_table_run_id.db": {
        "layout": "single-table (run_id)",
        "columns_added": [],
        "indexes_created": ALL_INDEXES,
        "tables_created": ["turns", "blocks", "turn_block_membership"],
        "backfilled_runtime_key": 16,
        "backfilled_inference_id": 11,
        "legacy_rows_converted": 62,
        "legacy_rows_unparseable": 4,
        "invalid_metadata": 0,
        "total_turns": 24,
        "missing_runtime_key": 8,
        "missing_inference_id": 13,
    },
    "current_go.db": {
        "layout": "current",
        "columns_added": [],
        "indexes_created": [],
        "tables_created": [],
        "backfilled_runtime_key": 18,
        "backfilled_inference_id": 14,
        "legacy_rows_converted": 0,
        "legacy_rows_unparseable": 0,
        # t19, t20, t21, t22 and g04 (its inference id was looked for in invalid metadata)
        "invalid_metadata": 5,
        "total_turns": 34,
        "missing_runtime_key": 12,
        "missing_inference_id": 17,
    },
}

# Legacy rows that cannot be parsed: (turn_id, phase) per single-table fixture.
EXPECTED_UNPARSEABLE = [("st20", "final"), ("st21", "final"), ("st22", "final"), ("st23", "final")]


# -------------------------------------------------------------------------------------------------
# Writing the files
# -------------------------------------------------------------------------------------------------


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(kind: str, role: str, payload: dict[str, Any], metadata: dict[str, Any]) -> str:
    material = (
        ('{"kind":' + canonical(kind) + ',"role":' + canonical(role) + ',"payload":' + canonical(payload))
        + ',"metadata":'
        + canonical(metadata)
        + "}"
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


BLOCKS_SQL = """CREATE TABLE blocks (
    block_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    hash_algorithm TEXT NOT NULL DEFAULT 'sha256-canonical-json-v1',
    kind TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT '',
    payload_json TEXT NOT NULL DEFAULT '{}',
    block_metadata_json TEXT NOT NULL DEFAULT '{}',
    first_seen_at_ms INTEGER NOT NULL,
    PRIMARY KEY (block_id, content_hash)
)"""

# An older blocks table, before hash_algorithm existed.
BLOCKS_OLD_SQL = """CREATE TABLE blocks (
    block_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT '',
    payload_json TEXT NOT NULL DEFAULT '{}',
    block_metadata_json TEXT NOT NULL DEFAULT '{}',
    first_seen_at_ms INTEGER NOT NULL,
    PRIMARY KEY (block_id, content_hash)
)"""

MEMBERSHIP_SQL = """CREATE TABLE turn_block_membership (
    conv_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    snapshot_created_at_ms INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    block_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    PRIMARY KEY (conv_id, session_id, turn_id, phase, snapshot_created_at_ms, ordinal),
    FOREIGN KEY (conv_id, session_id, turn_id) REFERENCES turns(conv_id, session_id, turn_id)
        ON DELETE CASCADE,
    FOREIGN KEY (block_id, content_hash) REFERENCES blocks(block_id, content_hash)
)"""

CONTRACT_INDEX_SQL = {
    "turns_by_conv_session": "turns(conv_id, session_id, updated_at_ms DESC)",
    "turns_by_session": "turns(session_id, updated_at_ms DESC)",
    "turns_by_conv_runtime_updated": "turns(conv_id, runtime_key, updated_at_ms DESC)",
    "turns_by_conv_inference_updated": "turns(conv_id, inference_id, updated_at_ms DESC)",
    "blocks_by_kind_role": "blocks(kind, role)",
    "turn_block_membership_by_turn_phase": (
        "turn_block_membership(conv_id, session_id, turn_id, phase, snapshot_created_at_ms DESC, ordinal)"
    ),
    "turn_block_membership_by_block": "turn_block_membership(block_id, content_hash)",
}


def _fresh(path: Path, *, wal: bool = False) -> sqlite3.Connection:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size = 4096")
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _finish(conn: sqlite3.Connection) -> None:
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _write_blocks(conn: sqlite3.Connection, *, with_algorithm: bool) -> None:
    conn.execute(BLOCKS_SQL if with_algorithm else BLOCKS_OLD_SQL)
    conn.execute(MEMBERSHIP_SQL)
    hashes = {}
    for block_id, kind, role, payload, metadata in NORMALIZED_BLOCKS:
        digest = content_hash(kind, role, payload, metadata)
        hashes[block_id] = digest
        values = (block_id, digest, kind, role, canonical(payload), canonical(metadata), BASE_MS)
        cols = "block_id, content_hash, kind, role, payload_json, block_metadata_json, first_seen_at_ms"
        conn.execute(f"INSERT INTO blocks ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?)", values)
    for turn_id, phase, offset, block_ids in NORMALIZED_MEMBERSHIP:
        session = "s-a"
        created = BASE_MS + offset
        for ordinal, block_id in enumerate(block_ids):
            conn.execute(
                "INSERT INTO turn_block_membership VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                ("c-norm", session, turn_id, phase, created, ordinal, block_id, hashes[block_id]),
            )


def write_normalized_pre_cutover(
    path: Path, rows: Iterable[tuple[str, str, str, str, int, int]] | None = None, *, with_blocks: bool = True
) -> None:
    conn = _fresh(path)
    conn.execute(
        """CREATE TABLE turns (
    conv_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    turn_created_at_ms INTEGER NOT NULL,
    turn_metadata_json TEXT NOT NULL DEFAULT '{}',
    turn_data_json TEXT NOT NULL DEFAULT '{}',
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (conv_id, session_id, turn_id)
)"""
    )
    conn.executemany(
        "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            (conv, session, turn_id, created, meta, '{"temperature":0.2}', updated)
            for conv, session, turn_id, meta, created, updated in (
                rows if rows is not None else normalized_rows()
            )
        ),
    )
    if with_blocks:
        _write_blocks(conn, with_algorithm=True)
    else:
        conn.execute(BLOCKS_SQL)
        conn.execute(MEMBERSHIP_SQL)
    for name in ("turns_by_conv_session", "turns_by_session"):
        conn.execute(f"CREATE INDEX {name} ON {CONTRACT_INDEX_SQL[name]}")
    _finish(conn)


def write_normalized_no_updated_at(path: Path) -> None:
    conn = _fresh(path)
    conn.execute(
        """CREATE TABLE turns (
    conv_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    turn_created_at_ms INTEGER NOT NULL,
    turn_metadata_json TEXT NOT NULL DEFAULT '{}',
    turn_data_json TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (conv_id, session_id, turn_id)
)"""
    )
    conn.executemany(
        "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?)",
        ((c, s, t, created, meta, "{}") for c, s, t, meta, created, _ in normalized_rows()),
    )
    _write_blocks(conn, with_algorithm=True)
    conn.execute("CREATE INDEX turns_by_conv ON turns(conv_id, turn_created_at_ms DESC)")
    _finish(conn)


def write_normalized_created_at_only(path: Path) -> None:
    conn = _fresh(path)
    conn.execute(
        """CREATE TABLE turns (
    conv_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    turn_metadata_json TEXT NOT NULL DEFAULT '{}',
    turn_data_json TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (conv_id, session_id, turn_id)
)"""
    )
    conn.executemany(
        "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?)",
        ((c, s, t, created, meta, "{}") for c, s, t, meta, created, _ in normalized_rows()),
    )
    _write_blocks(conn, with_algorithm=False)
    _finish(conn)


def write_single_table(path: Path, session_column: str) -> None:
    conn = _fresh(path)
    conn.execute(
        f"""CREATE TABLE turns (
    conv_id TEXT NOT NULL,
    {session_column} TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    payload TEXT NOT NULL
)"""
    )
    conn.executemany("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?)", single_table_rows(SINGLE_CONV[path.name]))
    # An old index that carries a name of the contract: it must not shadow the new table's index.
    conn.execute(f"CREATE INDEX turns_by_conv_session ON turns(conv_id, {session_column}, created_at_ms)")
    _finish(conn)


def write_current_go(path: Path) -> None:
    conn = _fresh(path, wal=True)
    conn.execute(
        """CREATE TABLE turns (
    conv_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    turn_created_at_ms INTEGER NOT NULL,
    turn_metadata_json TEXT NOT NULL DEFAULT '{}',
    turn_data_json TEXT NOT NULL DEFAULT '{}',
    runtime_key TEXT NOT NULL DEFAULT '',
    inference_id TEXT NOT NULL DEFAULT '',
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (conv_id, session_id, turn_id)
)"""
    )
    conn.executemany(
        "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (c, s, t, created, meta, "{}", rk, inf, updated)
            for c, s, t, meta, rk, inf, created, updated in go_rows()
        ),
    )
    conn.execute(BLOCKS_SQL)
    conn.execute(MEMBERSHIP_SQL)
    block = ("sys", "system", "system", {"text": "You are helpful."}, {})
    digest = content_hash(*block[1:])
    conn.execute(
        "INSERT INTO blocks VALUES (?, ?, 'sha256-canonical-json-v1', ?, ?, ?, ?, ?)",
        (block[0], digest, block[1], block[2], canonical(block[3]), canonical(block[4]), BASE_MS),
    )
    for turn_id in ("t01", "g01"):
        conn.execute(
            "INSERT INTO turn_block_membership VALUES (?, ?, ?, 'final', ?, 0, 'sys', ?)",
            (GO_CONV, GO_SESSION, turn_id, BASE_MS + 5_000_000, digest),
        )
    for name, target in CONTRACT_INDEX_SQL.items():
        conn.execute(f"CREATE INDEX {name} ON {target}")
    _finish(conn)


WRITERS = {
    "normalized_pre_cutover.db": write_normalized_pre_cutover,
    "normalized_pre_cutover_no_updated_at.db": write_normalized_no_updated_at,
    "normalized_created_at_only.db": write_normalized_created_at_only,
    "single_table_session.db": lambda p: write_single_table(p, "session_id"),
    "single_table_run_id.db": lambda p: write_single_table(p, "run_id"),
    "current_go.db": write_current_go,
}


def large_pre_cutover_rows(n: int) -> list[tuple[str, str, str, str, int, int]]:
    """``n`` normalized pre-cutover rows cycling through the JSON cases (for the kill tests)."""
    rows = []
    for i in range(n):
        turn_id, meta, _, _ = JSON_CASES[i % len(JSON_CASES)]
        created = BASE_MS + i
        rows.append(
            (
                f"c-{i // 100:05d}",
                "s-a" if i % 2 else "s-b",
                f"{turn_id}-{i:06d}",
                meta,
                created,
                created * (i % 3 != 0),
            )
        )
    return rows


def write_large_pre_cutover(path: Path, n: int) -> None:
    write_normalized_pre_cutover(path, large_pre_cutover_rows(n), with_blocks=False)


def main() -> None:
    for name, writer in WRITERS.items():
        writer(HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
