"""``web-chat turns list|show``: read stored phase snapshots, as the debug API does."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import yaml
from rich.text import Text

from webchat.cli.common import DataDirOpt, TimelineDbOpt, TurnsDbOpt, TurnsDsnOpt, resolve_paths
from webchat.cli.output import (
    OutputFormat,
    OutputOpt,
    console,
    emit_document,
    emit_records,
    fail,
    lit,
    local_time,
    visible,
)
from webchat.cli.stores import (
    conversation_has_turns,
    conversation_in_timeline,
    turn_store,
    turns_connection,
    unknown_conversation,
)
from webchat.stores.protocol import Snapshot, TurnQuery
from webchat.turns.keys import phase_problem

turns_app = typer.Typer(help="Read stored turn snapshots.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(turns_app, name="turns")


def _summary(s: Snapshot) -> dict[str, Any]:
    return {**s.summary(), "blocks": len(s.turn.blocks)}


def _visible_strings(value: Any) -> Any:
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {_visible_strings(k): _visible_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_visible_strings(v) for v in value]
    return value


def yaml_for_people(doc: Any) -> str:
    """The turn as YAML to read on a terminal (``-o json`` and the debug API keep the exact payload).

    Control characters are shown as ``\\xNN`` beforehand, so no string needs YAML's double-quoted
    escapes, which would also write emoji and other characters outside the BMP as ``\\UXXXXXXXX``.
    """
    return str(
        yaml.dump(
            _visible_strings(doc),
            Dumper=yaml.SafeDumper,
            allow_unicode=True,
            sort_keys=False,
            default_flow_style=False,
            width=1 << 30,
        )
    )


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
    timeline_db: TimelineDbOpt = None,
    turns_dsn: TurnsDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Phase snapshots of a conversation or session, newest first."""
    if not conv_id.strip() and not session_id.strip():
        raise fail("--conv-id or --session-id is required")
    if problem := phase_problem(phase):
        raise fail(problem)
    paths = resolve_paths(data_dir, turns_db, timeline_db, turns_dsn)
    query = TurnQuery(
        conv_id=conv_id,
        session_id=session_id,
        phase=phase,
        runtime_key=runtime_key,
        inference_id=inference_id,
        since_ms=since_ms,
        limit=limit,
    )
    with turn_store(paths.turns_db) as store:
        items = store.list_snapshots(query)
    if conv_id and not items:
        # As the debug API: a conversation with no stored turn and no timeline entry is unknown; a known
        # one whose filters match nothing is an empty list.
        with turns_connection(paths.turns_db) as conn:
            known = conversation_has_turns(conn, conv_id)
        if not known and not conversation_in_timeline(paths.companion_timeline, conv_id):
            raise unknown_conversation(conv_id)
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
    paths = resolve_paths(data_dir, turns_db, None, turns_dsn)
    with turn_store(paths.turns_db) as store:
        items = store.load_turn(conv_id, session_id, turn_id)
        row = store.turn_row(conv_id, session_id, turn_id)
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
    out = console()
    out.print(
        f"[bold]turn {lit(turn_id)}[/bold]  runtime_key={lit(row.runtime_key or '(unknown)')}  "
        f"inference_id={lit(row.inference_id or '(unknown)')}"
    )
    for s in items:
        out.print(
            f"\n[bold cyan]── {lit(s.phase)}[/bold cyan] at {local_time(s.created_at_ms)} "
            f"({len(s.turn.blocks)} blocks)"
        )
        out.print(Text(yaml_for_people(s.parsed())))
