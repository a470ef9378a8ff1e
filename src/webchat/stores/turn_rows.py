"""What every turn-store backend shares: rows of a snapshot, the listing queries, reassembly of snapshots.

The SQL here is the portable part (SQLite and PostgreSQL run it as it is); each backend passes its own
parameter marker. The write statements differ per engine and live with each backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Final

from webchat.stores.protocol import Snapshot, TurnQuery
from webchat.turns.hashing import HASH_ALGORITHM, block_content_hash_from_json, canonical_json
from webchat.turns.keys import PHASES
from webchat.turns.model import Block, Turn

MAX_LIST_LIMIT: Final = 10_000

# Newest first; ties on the timestamp are broken by phase order (final before pre_inference), then ids.
_PHASE_RANK_SQL = (
    "CASE {col} " + " ".join(f"WHEN '{p}' THEN {i}" for i, p in enumerate(PHASES)) + " ELSE -1 END"
)

TURN_ROW_COLUMNS: Final = (
    "conv_id, session_id, turn_id, runtime_key, inference_id, turn_created_at_ms, updated_at_ms"
)

# Every block of every selected snapshot in one query (never one query per snapshot).
_SNAPSHOT_ROWS_SQL = f"""
SELECT s.conv_id, s.session_id, s.turn_id, s.phase, s.created,
       t.runtime_key, t.inference_id, t.turn_metadata_json, t.turn_data_json,
       m.ordinal, b.block_id, b.kind, b.role, b.payload_json, b.block_metadata_json
FROM snaps AS s
JOIN turns AS t ON t.conv_id = s.conv_id AND t.session_id = s.session_id AND t.turn_id = s.turn_id
JOIN turn_block_membership AS m
  ON m.conv_id = s.conv_id AND m.session_id = s.session_id AND m.turn_id = s.turn_id
 AND m.phase = s.phase AND m.snapshot_created_at_ms = s.created
JOIN blocks AS b ON b.block_id = m.block_id AND b.content_hash = m.content_hash
ORDER BY s.created DESC, {_PHASE_RANK_SQL.format(col="s.phase")} DESC, s.turn_id DESC, s.session_id DESC,
         s.conv_id DESC, m.ordinal ASC
"""


def list_snapshots_sql(query: TurnQuery, mark: str) -> tuple[str, list[Any]]:
    """The listing query for ``query`` and its parameters; ``mark`` is the engine's parameter marker."""
    if not query.conv_id and not query.session_id:
        raise ValueError("conv_id or session_id is required")
    limit = max(1, min(int(query.limit or 100), MAX_LIST_LIMIT))
    where = ["m.ordinal = 0"]
    params: list[Any] = []
    for column, value in (
        ("m.conv_id", query.conv_id),
        ("m.session_id", query.session_id),
        ("m.turn_id", query.turn_id),
        ("m.phase", query.phase),
        ("t.runtime_key", query.runtime_key),
        ("t.inference_id", query.inference_id),
    ):
        if value:
            where.append(f"{column} = {mark}")
            params.append(value)
    if query.since_ms:
        where.append(f"m.snapshot_created_at_ms >= {mark}")
        params.append(int(query.since_ms))
    # The turn row is only needed here to filter on the per-turn truth; membership rows always
    # have their turn row (foreign key), and the outer query joins it for every selected snapshot.
    join_turns = ""
    if query.runtime_key or query.inference_id:
        join_turns = (
            "JOIN turns AS t ON t.conv_id = m.conv_id AND t.session_id = m.session_id "
            "AND t.turn_id = m.turn_id"
        )
    sql = f"""
WITH snaps AS (
    SELECT m.conv_id, m.session_id, m.turn_id, m.phase, m.snapshot_created_at_ms AS created
    FROM turn_block_membership AS m
    {join_turns}
    WHERE {" AND ".join(where)}
    ORDER BY created DESC, {_PHASE_RANK_SQL.format(col="m.phase")} DESC, m.turn_id DESC, m.session_id DESC,
             m.conv_id DESC
    LIMIT {mark}
)
{_SNAPSHOT_ROWS_SQL}
"""
    params.append(limit)
    return sql, params


def load_turn_sql(mark: str) -> str:
    """Every snapshot of one turn; parameters ``(conv_id, session_id, turn_id)``."""
    return f"""
WITH snaps AS (
    SELECT DISTINCT conv_id, session_id, turn_id, phase, snapshot_created_at_ms AS created
    FROM turn_block_membership
    WHERE conv_id = {mark} AND session_id = {mark} AND turn_id = {mark}
)
{_SNAPSHOT_ROWS_SQL}
"""


def turn_row_sql(mark: str) -> str:
    where = f"conv_id = {mark} AND session_id = {mark} AND turn_id = {mark}"
    return f"SELECT {TURN_ROW_COLUMNS} FROM turns WHERE {where}"


def runtime_history_sql(mark: str) -> str:
    return f"SELECT {TURN_ROW_COLUMNS} FROM turns WHERE conv_id = {mark} ORDER BY updated_at_ms, turn_id"


def json_text(value: Any) -> str:
    return canonical_json(value if value is not None else {})


def block_rows(turn: Turn, created_at_ms: int) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
    """The ``blocks`` rows and ``(block_id, content_hash)`` of each ordinal, for one snapshot."""
    blocks: list[tuple[Any, ...]] = []
    keys: list[tuple[str, str]] = []
    for ordinal, block in enumerate(turn.blocks):
        block_id = block.id.strip() or f"{turn.id}#{ordinal}"
        payload_json = json_text(block.payload)
        metadata_json = json_text(block.metadata)
        # The stored JSON is the canonical encoding the hash is defined over: encode once, use twice.
        content_hash = block_content_hash_from_json(block.kind, block.role, payload_json, metadata_json)
        blocks.append(
            (
                block_id,
                content_hash,
                HASH_ALGORITHM,
                block.kind,
                block.role,
                payload_json,
                metadata_json,
                created_at_ms,
            )
        )
        keys.append((block_id, content_hash))
    return blocks, keys


def validate_ids(**ids: str) -> None:
    for name, value in ids.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string")


def loads(text: str | None) -> dict[str, Any]:
    if not text or text == "{}":  # most block metadata is empty: skip the parser
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"_invalid_json": text}
    return value if isinstance(value, dict) else {"_value": value}


def assemble(rows: Iterable[Sequence[Any]]) -> list[Snapshot]:
    """Snapshots from the rows of the snapshot query (one row per block, in snapshot order)."""
    out: list[Snapshot] = []
    current: Snapshot | None = None
    current_key: tuple[Any, ...] = ()
    for row in rows:
        key = tuple(row[0:5])
        if current is None or key != current_key:
            conv_id, session_id, turn_id, phase, created, runtime_key, inference_id, meta, data = row[0:9]
            current = Snapshot(
                conv_id=conv_id,
                session_id=session_id,
                turn_id=turn_id,
                phase=phase,
                created_at_ms=int(created),
                runtime_key=runtime_key,
                inference_id=inference_id,
                turn=Turn(id=turn_id, metadata=loads(meta), data=loads(data)),
            )
            current_key = key
            out.append(current)
        current.turn.blocks.append(
            Block(id=row[10], kind=row[11], role=row[12], payload=loads(row[13]), metadata=loads(row[14]))
        )
    return out
