"""Printing records as table, json, yaml or csv (cli.md: ``--output``)."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from webchat.turns.serde import dump_yaml


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"
    csv = "csv"


# On a terminal rich fits tables to its width; piped into a file or another program, rows stay whole.
stdout = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
stderr = Console(stderr=True, soft_wrap=True)


OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format.")]


def error(message: str) -> None:
    """One clear line on stderr."""
    print(f"web-chat: error: {message}", file=sys.stderr)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line; return the exit to raise (2: bad usage or an unusable store)."""
    error(message)
    return typer.Exit(code)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def emit_records(
    records: Sequence[Mapping[str, Any]],
    fmt: OutputFormat,
    columns: Sequence[str],
    *,
    title: str | None = None,
    document: Any = None,
    styles: Mapping[str, str] | None = None,
    row_style: Any = None,
) -> None:
    """Print a list of records. ``document`` (json/yaml) defaults to the records themselves."""
    doc = records if document is None else document
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    elif fmt is OutputFormat.yaml:
        sys.stdout.write(dump_yaml(_plain(doc)))
    elif fmt is OutputFormat.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for rec in records:
            writer.writerow([_cell(rec.get(c)) for c in columns])
        sys.stdout.write(buf.getvalue())
    else:
        table = Table(title=title, show_lines=False, header_style="bold")
        for col in columns:
            table.add_column(col, style=(styles or {}).get(col), overflow="fold")
        for rec in records:
            style = row_style(rec) if row_style else None
            table.add_row(*[_cell(rec.get(c)) for c in columns], style=style)
        stdout.print(table)


def emit_document(doc: Any, fmt: OutputFormat) -> None:
    if fmt is OutputFormat.yaml:
        sys.stdout.write(dump_yaml(_plain(doc)))
    else:
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")


def _plain(value: Any) -> Any:
    """Convert to types the safe YAML dumper accepts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
