"""``web-chat timeline list|snapshot|entities|entity|stats|verify``: inspect timeline.db (read-only)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer

from webchat.cli.common import DataDirOpt, TimelineDbOpt, TimelineDsnOpt, resolve_paths
from webchat.cli.output import OutputFormat, OutputOpt, console, emit_records, fail
from webchat.cli.stores import timeline_knows, timeline_store, unknown_conversation
from webchat.stores.sqlite.timeline_store import SQLiteTimelineStore

timeline_app = typer.Typer(
    help="Inspect timeline.db: the conversation index, hydration entities, version consistency.",
    no_args_is_help=True,
)

ConvIdOpt = Annotated[str, typer.Option("--conv-id", help="Conversation id.")]

ENTITY_COLUMNS = ["id", "kind", "created_at_ms", "updated_at_ms", "version", "props"]
CONVERSATION_COLUMNS = [
    "conv_id",
    "session_id",
    "runtime_key",
    "created_at_ms",
    "last_activity_ms",
    "last_seen_version",
    "has_timeline",
    "status",
    "last_error",
]


def register(app: typer.Typer) -> None:
    app.add_typer(timeline_app, name="timeline")


def _store(
    data_dir: Path | None, timeline_db: Path | None, timeline_dsn: str | None
) -> AbstractContextManager[SQLiteTimelineStore]:
    return timeline_store(resolve_paths(data_dir, None, timeline_db, None, timeline_dsn).timeline_db)


def _require_known(store: SQLiteTimelineStore, conv_id: str) -> None:
    if not timeline_knows(store, conv_id):
        raise unknown_conversation(conv_id)


def _conv_id(value: str) -> str:
    if not value.strip():
        raise fail("--conv-id must not be empty")
    return value


@timeline_app.command("list")
def list_cmd(
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="At most this many.")] = 100,
    since_ms: Annotated[int, typer.Option("--since-ms", min=0, help="Only activity at or after.")] = 0,
    data_dir: DataDirOpt = None,
    timeline_db: TimelineDbOpt = None,
    timeline_dsn: TimelineDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """The conversation index, newest activity first. runtime_key is the pointer (next prompt's runtime)."""
    with _store(data_dir, timeline_db, timeline_dsn) as store:
        records = [r.to_dict() for r in store.list_conversations(limit=limit, since_ms=since_ms)]
    emit_records(records, output, CONVERSATION_COLUMNS, title="conversations (newest activity first)")


@timeline_app.command("snapshot")
def snapshot_cmd(
    conv_id: ConvIdOpt = "",
    since_version: Annotated[int, typer.Option("--since-version", min=0, help="Only entities after.")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many entities.")] = None,
    data_dir: DataDirOpt = None,
    timeline_db: TimelineDbOpt = None,
    timeline_dsn: TimelineDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """The hydration snapshot of a conversation, as GET /api/timeline serves it."""
    conv_id = _conv_id(conv_id)
    with _store(data_dir, timeline_db, timeline_dsn) as store:
        _require_known(store, conv_id)
        snap = store.snapshot(conv_id, since_version=since_version, limit=limit)
    doc = snap.to_dict()
    title = (
        f"conversation {conv_id}: version {snap.version}, {len(snap.entities)} entities (first-seen order)"
    )
    emit_records(doc["entities"], output, ENTITY_COLUMNS, title=title, document=doc)


@timeline_app.command("entities")
def entities_cmd(
    conv_id: ConvIdOpt = "",
    kind: Annotated[
        str, typer.Option("--kind", help="Only entities of this kind (message, tool_call…).")
    ] = "",
    since_version: Annotated[int, typer.Option("--since-version", min=0, help="Only entities after.")] = 0,
    data_dir: DataDirOpt = None,
    timeline_db: TimelineDbOpt = None,
    timeline_dsn: TimelineDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """A conversation's entities in first-seen order."""
    conv_id = _conv_id(conv_id)
    with _store(data_dir, timeline_db, timeline_dsn) as store:
        _require_known(store, conv_id)
        snap = store.snapshot(conv_id, since_version=since_version)
    records = [e.to_dict() for e in snap.entities if not kind or e.kind == kind]
    emit_records(records, output, ENTITY_COLUMNS, title=f"entities of {conv_id}")


@timeline_app.command("entity")
def entity_cmd(
    conv_id: ConvIdOpt = "",
    entity_id: Annotated[str, typer.Option("--id", help="Entity id.")] = "",
    data_dir: DataDirOpt = None,
    timeline_db: TimelineDbOpt = None,
    timeline_dsn: TimelineDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """One entity with its props."""
    conv_id = _conv_id(conv_id)
    if not entity_id.strip():
        raise fail("--id must not be empty")
    with _store(data_dir, timeline_db, timeline_dsn) as store:
        _require_known(store, conv_id)
        entity = store.get_entity(conv_id, entity_id)
    if entity is None:
        raise fail(f"no entity {entity_id!r} in conversation {conv_id!r}", code=1)
    doc = entity.to_dict()
    emit_records([doc], output, ENTITY_COLUMNS, title=f"entity {entity_id}", document=doc)


@timeline_app.command("stats")
def stats_cmd(
    data_dir: DataDirOpt = None,
    timeline_db: TimelineDbOpt = None,
    timeline_dsn: TimelineDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Entity counts per conversation and kind, with the conversation's version."""
    with _store(data_dir, timeline_db, timeline_dsn) as store:
        records = [s.to_dict() for s in store.stats()]
    columns = ["conv_id", "kind", "entities", "max_entity_version", "version"]
    emit_records(records, output, columns, title="entities per conversation and kind")


@timeline_app.command("verify")
def verify_cmd(
    data_dir: DataDirOpt = None,
    timeline_db: TimelineDbOpt = None,
    timeline_dsn: TimelineDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Version consistency: entity versions within their conversation's version, a version row for every
    conversation with entities, entity documents that are JSON objects. Exit 1 on any problem."""
    with _store(data_dir, timeline_db, timeline_dsn) as store:
        problems = [p.to_dict() for p in store.verify()]
    columns = ["check", "conv_id", "entity_id", "detail"]
    document: dict[str, Any] = {"ok": not problems, "problems": problems}
    if output is OutputFormat.table and not problems:
        console().print("[green]ok[/green]: timeline versions are consistent")
    else:
        emit_records(problems, output, columns, title="timeline problems", document=document)
    if problems:
        raise typer.Exit(1)
