"""``web-chat db migrate|check|history|missing``: upgrade and validate turn stores (cli.md)."""

from __future__ import annotations

import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from webchat.cli.common import (
    DataDirOpt,
    TimelineDbOpt,
    TimelineDsnOpt,
    TurnsDbOpt,
    TurnsDsnOpt,
    resolve_paths,
)
from webchat.cli.output import OutputFormat, OutputOpt, console, emit_document, emit_records, fail, lit
from webchat.cli.stores import (
    TIMELINE_HINT,
    conversation_in_timeline,
    require_file,
    turns_connection,
    unknown_conversation,
)
from webchat.stores.migrations.checks import missing_candidates, run_check, runtime_history
from webchat.stores.migrations.turns_sqlite import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LOCK_TIMEOUT_S,
    MigrationReport,
    migrate_turns_db,
)
from webchat.stores.protocol import StoreError
from webchat.stores.sqlite.connection import connect, run_in_transaction
from webchat.stores.sqlite.timeline_store import check_version as timeline_check_version
from webchat.stores.sqlite.timeline_store import upgrade_schema

db_app = typer.Typer(help="Upgrade and validate turn stores (turns.db).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


@db_app.command("migrate")
def migrate_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Change nothing; print what would change.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows per write transaction (bounded lock hold).")
    ] = DEFAULT_BATCH_SIZE,
    lock_timeout: Annotated[
        float, typer.Option("--lock-timeout", min=0, help="Seconds to wait for another migrating process.")
    ] = DEFAULT_LOCK_TIMEOUT_S,
    data_dir: DataDirOpt = None,
    turns_db: TurnsDbOpt = None,
    timeline_db: TimelineDbOpt = None,
    turns_dsn: TurnsDsnOpt = None,
    timeline_dsn: TimelineDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Upgrade turns.db in place (additive, idempotent) and backfill runtime_key / inference_id.

    The timeline store's conversation index (--timeline-db) is read for reporting only: a conversation's
    pointer is never copied into its turns.
    """
    paths = resolve_paths(data_dir, turns_db, timeline_db, turns_dsn, timeline_dsn)
    timeline = paths.timeline_db if (paths.timeline_explicit or paths.timeline_db.exists()) else None
    show_progress = output is OutputFormat.table and sys.stderr.isatty() and not dry_run
    with turns_connection(paths.turns_db, migrated=False):
        pass  # missing, a directory, corrupt or newer: one line and exit 2 before anything is touched
    if timeline is not None:
        require_file(timeline, "timeline store", TIMELINE_HINT)
    try:
        with _progress(show_progress) as on_progress:
            report = migrate_turns_db(
                paths.turns_db,
                dry_run=dry_run,
                batch_size=batch_size,
                lock_timeout_s=lock_timeout,
                timeline_db=timeline,
                progress=on_progress,
            )
        timeline_changes = _upgrade_timeline(timeline, dry_run) if timeline is not None else []
    except StoreError as exc:
        raise fail(str(exc)) from exc
    except sqlite3.Error as exc:
        # --dry-run reads the file itself; a corrupt store fails on its first read.
        raise fail(f"{paths.turns_db}: cannot read store: {exc}") from exc
    if report.timeline is not None:
        report.timeline["schema_changes"] = timeline_changes
    if output is OutputFormat.table:
        _print_report(report)
    else:
        doc = report.to_dict()
        if output is OutputFormat.csv:
            emit_records(
                [{k: v for k, v in doc.items() if not isinstance(v, (list, dict))}], output, list(doc)
            )
        else:
            emit_document(doc, output)


def _upgrade_timeline(path: Path, dry_run: bool) -> list[str]:
    """Additive upgrade of timeline.db (its conversation index is still only reported, never copied)."""
    if not path.exists():
        return []
    if dry_run:
        conn = connect(path, readonly=True)
        try:
            timeline_check_version(conn, path)
            return upgrade_schema(conn, dry_run=True)
        finally:
            conn.close()
    conn = connect(path)
    try:
        timeline_check_version(conn, path)
        return run_in_transaction(conn, upgrade_schema)
    finally:
        conn.close()


@contextmanager
def _progress(enabled: bool) -> Any:
    if not enabled:
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def on_progress(step: str, done: int, total: int) -> None:
        if step not in tasks:
            tasks[step] = bar.add_task(step, total=max(total, 1))
        bar.update(tasks[step], completed=done, total=max(total, 1))

    with bar:
        yield on_progress


def _print_report(r: MigrationReport) -> None:
    out = console()
    verb = "would" if r.dry_run else ""
    head = (
        "Dry run: nothing was changed."
        if r.dry_run
        else ("Migrated." if r.changed else "Already up to date.")
    )
    out.print(f"[bold]{head}[/bold]  {lit(r.path)}")

    def line(label: str, value: Any) -> None:
        out.print(f"  {label:<22} {lit(value)}")

    line("layout found:", r.layout)
    line("schema version:", f"{r.schema_version_before} -> {r.schema_version_after}")
    if r.steps_applied:
        line(f"steps {verb} applied:".replace("  ", " "), ", ".join(r.steps_applied))
    if r.tables_created:
        line("tables created:", ", ".join(r.tables_created))
    if r.columns_added:
        line("columns added:", ", ".join(r.columns_added))
    if r.indexes_created:
        line("indexes created:", ", ".join(r.indexes_created))
    if r.legacy_table:
        line("legacy table kept:", f"{r.legacy_table} ({r.legacy_rows_total} rows, all kept)")
        line("legacy rows converted:", r.legacy_rows_converted)
        line("legacy rows unparseable:", r.legacy_rows_unparseable)
    line("timestamps filled:", r.timestamps_filled)
    line("backfilled runtime_key:", r.backfilled_runtime_key)
    line("backfilled inference_id:", r.backfilled_inference_id)
    line("invalid metadata rows:", r.invalid_metadata)
    line("turns total:", r.total_turns)
    line("still unknown runtime:", r.missing_runtime_key)
    line("still unknown inference:", r.missing_inference_id)
    if r.timeline:
        if "error" in r.timeline:
            line("timeline.db:", f"{r.timeline['path']}: {r.timeline['error']}")
        else:
            line(
                "timeline.db:",
                f"{r.timeline['conversations']} conversations, {r.timeline['with_pointer']} with a runtime "
                "pointer (reported only, never copied into turns)",
            )
            changes = r.timeline.get("schema_changes") or []
            line(f"timeline.db {verb} changes:".replace("  ", " "), ", ".join(changes) or "none")
    for row in r.unparseable:
        out.print(
            "  [yellow]unparseable[/yellow] "
            + lit(
                f"{row.table} rowid={row.rowid} conv={row.conv_id} session={row.session_id} "
                f"turn={row.turn_id} phase={row.phase}: {row.error}"
            )
        )
    if r.missing_runtime_key or r.missing_inference_id:
        out.print(
            "  Unknown values stay '' (never guessed). Inspect them with: web-chat db missing",
            style="dim",
        )


def _count(value: int | None) -> str:
    return "unknown until migrated" if value is None else str(value)


@db_app.command("check")
def check_cmd(
    strict: Annotated[
        bool, typer.Option("--strict", help="Also fail when rows miss runtime/inference.")
    ] = False,
    data_dir: DataDirOpt = None,
    turns_db: TurnsDbOpt = None,
    turns_dsn: TurnsDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Validate a store: columns, required indexes, schema version, rows missing runtime/inference.

    Exit 1 on a schema problem (an un-migrated store is one: run web-chat db migrate), and with --strict
    also when rows miss values; exit 2 when the store cannot be used (missing, corrupt, newer schema).
    """
    paths = resolve_paths(data_dir, turns_db, None, turns_dsn)
    with turns_connection(paths.turns_db, migrated=False) as conn:
        result = run_check(conn)
    doc = result.to_dict()
    if output is OutputFormat.table:
        out = console()
        ok = "[green]ok[/green]" if result.schema_ok else "[red]problems found[/red]"
        out.print(
            f"[bold]Schema:[/bold] {ok}  (version {result.schema_version}/{result.expected_schema_version})"
        )
        emit_records(
            result.columns,
            output,
            ["name", "present", "type", "not_null", "default"],
            title="turns columns",
        )
        for name, present in result.indexes.items():
            out.print(f"  index {lit(name)}: {'present' if present else '[red]missing[/red]'}")
        out.print(f"  total_turns: {_count(result.total_turns)}")
        out.print(f"  missing_runtime_or_inference: {_count(result.missing_runtime_or_inference)}")
        out.print(f"  missing_runtime_key: {_count(result.missing_runtime_key)}")
        out.print(f"  missing_inference_id: {_count(result.missing_inference_id)}")
        if result.legacy_tables:
            out.print(
                f"  legacy tables kept: {lit(', '.join(result.legacy_tables))} "
                f"(unparseable rows: {result.legacy_rows_unparseable})"
            )
        for problem in result.problems:
            out.print(f"  [red]problem:[/red] {lit(problem)}")
    elif output is OutputFormat.csv:
        flat = {k: v for k, v in doc.items() if not isinstance(v, (list, dict))}
        emit_records([flat], output, list(flat))
    else:
        emit_document(doc, output)
    if result.needs_migration:
        # The report above is for reading; this line is what a script or an operator acts on.
        raise fail(f"{paths.turns_db}: {result.problems[0]}", code=1)
    if not result.schema_ok or (strict and result.missing_runtime_or_inference):
        raise typer.Exit(1)


@db_app.command("history")
def history_cmd(
    conv_id: Annotated[str, typer.Option("--conv-id", help="Conversation id.")],
    data_dir: DataDirOpt = None,
    turns_db: TurnsDbOpt = None,
    timeline_db: TimelineDbOpt = None,
    turns_dsn: TurnsDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """One conversation's runtime history from turn rows, runtime switches marked.

    An unknown conversation (no turn rows, and not in the timeline index) is an error, exit 1.
    """
    if not conv_id.strip():
        raise fail("--conv-id must not be empty")
    paths = resolve_paths(data_dir, turns_db, timeline_db, turns_dsn)
    with turns_connection(paths.turns_db) as conn:
        rows = runtime_history(conn, conv_id)
    if not rows and not conversation_in_timeline(paths.companion_timeline, conv_id):
        raise unknown_conversation(conv_id)
    if output is OutputFormat.table:
        display = [
            {
                **r,
                "runtime_key": r["runtime_key"] or "(unknown)",
                "switch": "<- switch" if r["switch"] else "",
            }
            for r in rows
        ]
        emit_records(
            display,
            output,
            ["turn_id", "runtime_key", "inference_id", "updated_at_ms", "switch"],
            title=f"runtime history of {conv_id} ({len(rows)} turns)",
        )
    else:
        emit_records(rows, output, ["turn_id", "runtime_key", "inference_id", "updated_at_ms", "switch"])


@db_app.command("missing")
def missing_cmd(
    limit: Annotated[int, typer.Option("--limit", min=1, help="Maximum rows to list.")] = 50,
    data_dir: DataDirOpt = None,
    turns_db: TurnsDbOpt = None,
    turns_dsn: TurnsDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Candidates for manual recovery: rows with an empty runtime_key or inference_id."""
    paths = resolve_paths(data_dir, turns_db, None, turns_dsn)
    with turns_connection(paths.turns_db) as conn:
        rows = missing_candidates(conn, limit)
    emit_records(
        rows,
        output,
        ["conv_id", "session_id", "turn_id", "turn_metadata_json"],
        title=f"rows missing runtime_key or inference_id (first {limit})",
    )
