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
from webchat.cli.output import OutputFormat, OutputOpt, emit_document, emit_records, fail, stdout
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


@contextmanager
def open_readonly(path: Path) -> Any:
    """A read-only connection to an existing store; a missing or unreadable file is exit code 2."""
    if not path.exists():
        raise fail(f"{path}: no such store (check --data-dir / --turns-db)")
    try:
        conn = connect(path, readonly=True)
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # a corrupt file fails here
    except (StoreError, sqlite3.Error) as exc:
        raise fail(f"{path}: cannot read store: {exc}") from exc
    try:
        yield conn
    except StoreError as exc:
        raise fail(str(exc)) from exc
    except sqlite3.Error as exc:
        raise fail(f"{path}: {exc}") from exc
    finally:
        conn.close()


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
    verb = "would" if r.dry_run else ""
    head = (
        "Dry run: nothing was changed."
        if r.dry_run
        else ("Migrated." if r.changed else "Already up to date.")
    )
    stdout.print(f"[bold]{head}[/bold]  {r.path}")
    stdout.print(f"  layout found:          {r.layout}")
    stdout.print(f"  schema version:        {r.schema_version_before} -> {r.schema_version_after}")

    def line(label: str, value: Any) -> None:
        stdout.print(f"  {label:<22} {value}")

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
        stdout.print(
            f"  [yellow]unparseable[/yellow] {row.table} rowid={row.rowid} conv={row.conv_id} "
            f"session={row.session_id} turn={row.turn_id} phase={row.phase}: {row.error}"
        )
    if r.missing_runtime_key or r.missing_inference_id:
        stdout.print(
            "  Unknown values stay '' (never guessed). Inspect them with: web-chat db missing",
            style="dim",
        )


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
    """Validate a store: columns, required indexes, schema version, rows missing runtime/inference."""
    paths = resolve_paths(data_dir, turns_db, None, turns_dsn)
    with open_readonly(paths.turns_db) as conn:
        result = run_check(conn)
    doc = result.to_dict()
    if output is OutputFormat.table:
        ok = "[green]ok[/green]" if result.schema_ok else "[red]problems found[/red]"
        stdout.print(
            f"[bold]Schema:[/bold] {ok}  (version {result.schema_version}/{result.expected_schema_version})"
        )
        emit_records(
            result.columns,
            output,
            ["name", "present", "type", "not_null", "default"],
            title="turns columns",
        )
        for name, present in result.indexes.items():
            stdout.print(f"  index {name}: {'present' if present else '[red]missing[/red]'}")
        stdout.print(f"  total_turns: {result.total_turns}")
        stdout.print(f"  missing_runtime_or_inference: {result.missing_runtime_or_inference}")
        stdout.print(f"  missing_runtime_key: {result.missing_runtime_key}")
        stdout.print(f"  missing_inference_id: {result.missing_inference_id}")
        if result.legacy_tables:
            stdout.print(
                f"  legacy tables kept: {', '.join(result.legacy_tables)} "
                f"(unparseable rows: {result.legacy_rows_unparseable})"
            )
        for problem in result.problems:
            stdout.print(f"  [red]problem:[/red] {problem}")
    elif output is OutputFormat.csv:
        flat = {k: v for k, v in doc.items() if not isinstance(v, (list, dict))}
        emit_records([flat], output, list(flat))
    else:
        emit_document(doc, output)
    if not result.schema_ok or (strict and result.missing_runtime_or_inference):
        raise typer.Exit(1)


@db_app.command("history")
def history_cmd(
    conv_id: Annotated[str, typer.Option("--conv-id", help="Conversation id.")],
    data_dir: DataDirOpt = None,
    turns_db: TurnsDbOpt = None,
    turns_dsn: TurnsDsnOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """One conversation's runtime history from turn rows, runtime switches marked."""
    if not conv_id.strip():
        raise fail("--conv-id must not be empty")
    paths = resolve_paths(data_dir, turns_db, None, turns_dsn)
    with open_readonly(paths.turns_db) as conn:
        rows = runtime_history(conn, conv_id)
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
    with open_readonly(paths.turns_db) as conn:
        rows = missing_candidates(conn, limit)
    emit_records(
        rows,
        output,
        ["conv_id", "session_id", "turn_id", "turn_metadata_json"],
        title=f"rows missing runtime_key or inference_id (first {limit})",
    )
