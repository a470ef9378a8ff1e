"""``web-chat turns list|show``: read stored phase snapshots, as the debug API does."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from webchat.cli.common import DataDirOpt, TurnsDbOpt, TurnsDsnOpt, resolve_paths
from webchat.cli.output import OutputFormat, OutputOpt, emit_document, emit_records, fail, stdout
from webchat.stores.protocol import Snapshot, StoreError, TurnQuery
from webchat.stores.sqlite.turn_store import SQLiteTurnStore

turns_app = typer.Typer(help="Read stored turn snapshots.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(turns_app, name="turns")


def _store(data_dir: Any, turns_db: Any, turns_dsn: Any) -> SQLiteTurnStore:
    paths = resolve_paths(data_dir, turns_db, None, turns_dsn)
    if not paths.turns_db.exists():
        raise fail(f"{paths.turns_db}: no such store (check --data-dir / --turns-db)")
    # Reads only: the store is not migrated from here (use `web-chat db migrate`).
    try:
        return SQLiteTurnStore(paths.turns_db)
    except StoreError as exc:
        raise fail(str(exc)) from exc


def _summary(s: Snapshot) -> dict[str, Any]:
    return {**s.summary(), "blocks": len(s.turn.blocks)}


@turns_app.command("list")
def list_cmd(
    conv_id: Annotated[str, typer.Option("--conv-id", help="Conversation id.")] = "",
    session_id: Annotated[str, typer.Option("--session-id", help="Session id.")] = "",
    phase: Annotated[str, typer.Option("--phase", help="pre_inference|post_inference|post_tools|final")] = "",
    runtime_key: Annotated[str, typer.Option("--runtime-key", help="Only turns run by this runtime.")] = "",
    inference_id: Annotated[str, typer.Option("--inference-id", help="Only this inference.")] = "",
    since_ms: Annotated[int, typer.Option("--since-ms", min=0, help="Only snapshots at or after.")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    data_dir: DataDirOpt = None,
    turns_db: TurnsDbOpt = None,
    turns_dsn: TurnsDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Phase snapshots of a conversation or session, newest first."""
    if not conv_id.strip() and not session_id.strip():
        raise fail("--conv-id or --session-id is required")
    store = _store(data_dir, turns_db, turns_dsn)
    try:
        items = store.list_snapshots(
            TurnQuery(
                conv_id=conv_id,
                session_id=session_id,
                phase=phase,
                runtime_key=runtime_key,
                inference_id=inference_id,
                since_ms=since_ms,
                limit=limit,
            )
        )
    except Exception as exc:
        raise fail(f"cannot read snapshots: {exc}") from exc
    finally:
        store.close()
    columns = [
        "conv_id",
        "session_id",
        "turn_id",
        "phase",
        "runtime_key",
        "inference_id",
        "created_at_ms",
        "blocks",
    ]
    emit_records([_summary(s) for s in items], output, columns, title="turn snapshots (newest first)")


@turns_app.command("show")
def show_cmd(
    conv_id: Annotated[str, typer.Argument(help="Conversation id.")],
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    turn_id: Annotated[str, typer.Argument(help="Turn id.")],
    data_dir: DataDirOpt = None,
    turns_db: TurnsDbOpt = None,
    turns_dsn: TurnsDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Every phase snapshot of one turn (newest first) with its runtime and inference."""
    store = _store(data_dir, turns_db, turns_dsn)
    try:
        items = store.load_turn(conv_id, session_id, turn_id)
        row = store.turn_row(conv_id, session_id, turn_id)
    finally:
        store.close()
    if row is None:
        raise fail(f"no turn {conv_id}/{session_id}/{turn_id}", code=1)
    doc = {
        "conv_id": conv_id,
        "session_id": session_id,
        "turn_id": turn_id,
        "runtime_key": row.runtime_key,
        "inference_id": row.inference_id,
        "items": [
            {
                "phase": s.phase,
                "created_at_ms": s.created_at_ms,
                "runtime_key": s.runtime_key,
                "inference_id": s.inference_id,
                "parsed": s.parsed(),
            }
            for s in items
        ],
    }
    if output is not OutputFormat.table:
        if output is OutputFormat.csv:
            emit_records(
                [_summary(s) for s in items], output, list(_summary(items[0])) if items else ["phase"]
            )
        else:
            emit_document(doc, output)
        return
    stdout.print(
        f"[bold]turn {turn_id}[/bold]  runtime_key={row.runtime_key or '(unknown)'}  "
        f"inference_id={row.inference_id or '(unknown)'}"
    )
    for s in items:
        stdout.print(
            f"\n[bold cyan]── {s.phase}[/bold cyan] at {s.created_at_ms} ({len(s.turn.blocks)} blocks)"
        )
        stdout.print(s.payload, markup=False, highlight=False)
