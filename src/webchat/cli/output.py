"""Printing records as table, json, yaml or csv (cli.md: ``--output`` and "Output for people").

Stored text (ids, runtime keys, prompts, answers, props) is data, never terminal markup: table cells are
``rich.text.Text`` (rich does not parse them), text interpolated into a marked-up line goes through
:func:`lit`, and control characters are shown as visible escapes so that a stored ANSI sequence cannot
restyle or rewrite the user's terminal.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from webchat.turns.serde import dump_yaml


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"
    csv = "csv"


OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format.")]

# Piped into a file or another program (and no COLUMNS given), rows stay whole up to this width.
PIPE_WIDTH: Final = 240

# Epoch-millisecond columns shown as local date-times in tables (numbers in json/yaml/csv).
TIME_COLUMNS: Final = frozenset(
    {"created_at_ms", "updated_at_ms", "last_activity_ms", "turn_created_at_ms", "first_seen_at_ms"}
)
# Id columns shortened in tables (whole in json/yaml/csv).
ID_COLUMNS: Final = frozenset({"conv_id", "session_id", "turn_id", "inference_id", "id", "entity_id"})
# Every id web-chat generates is a UUID; its first 8 hex digits identify it among a store's ids, and
# keeping the rest of the id (":assistant", ":tool:call_1") tells apart entities of one turn.
UUID_PREFIX: Final = 8
MAX_ID_CELL: Final = 24

_UUID_RE: Final = re.compile(
    r"\b([0-9a-fA-F]{8})(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b|\b([0-9a-fA-F]{8})[0-9a-fA-F]{24}\b"
)
# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides/isolates that can
# make a terminal show text in an order other than the one stored.
_CONTROL_RE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape_control(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with control characters written as ``\\xNN`` / ``\\uNNNN`` (tab and newline kept)."""
    return _CONTROL_RE.sub(_escape_control, text)


def lit(value: Any) -> str:
    """``value`` as text to interpolate into a rich markup string: shown literally, controls visible."""
    return escape(visible(str(value)))


class CliConsole(Console):
    """A rich console that leaves a closed stdout to ``main`` (rich itself would exit with status 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def console() -> Console:
    """A console on the current ``sys.stdout`` (tests and pipes replace it).

    On a terminal (or with COLUMNS set) tables fit its width; piped, rows stay whole up to PIPE_WIDTH.
    """
    fits = sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit()
    return CliConsole(width=None if fits else PIPE_WIDTH, emoji=False, highlight=False)


def one_line(message: str) -> str:
    """A message as one line: line breaks of multi-line errors (YAML, SQLite) become spaces."""
    return visible(" ".join(message.split()))


def error(message: str) -> None:
    """One clear line on stderr."""
    print(f"web-chat: error: {one_line(message)}", file=sys.stderr)


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


def local_time(ms: Any) -> str:
    """Epoch milliseconds as a local ``YYYY-MM-DD HH:MM:SS``; 0 / empty (unknown) as ''."""
    if ms is None or ms == "" or ms == 0:
        return ""
    try:
        return datetime.fromtimestamp(int(ms) / 1000).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError, TypeError):
        return str(ms)


def short_id(value: str) -> str:
    """An id for a table: each UUID cut to its first UUID_PREFIX hex digits, the whole at MAX_ID_CELL."""
    short = _UUID_RE.sub(lambda m: (m.group(1) or m.group(2))[:UUID_PREFIX] + "…", value)
    return short if len(short) <= MAX_ID_CELL else short[: MAX_ID_CELL - 1] + "…"


def table_header(column: str) -> str:
    return column.removesuffix("_ms") if column in TIME_COLUMNS else column


def table_cell(column: str, value: Any) -> Text:
    if column in TIME_COLUMNS and not isinstance(value, bool):
        return Text(local_time(value))
    text = _cell(value)
    if column in ID_COLUMNS:
        text = short_id(text)
    return Text(visible(text))


def _csv_cell(value: Any) -> str:
    # CSV has no escape for control characters: show them visibly, as in tables (json keeps them exact).
    return visible(_cell(value))


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
            writer.writerow([_csv_cell(rec.get(c)) for c in columns])
        sys.stdout.write(buf.getvalue())
    else:
        table = Table(
            title=Text(visible(title)) if title is not None else None, show_lines=False, header_style="bold"
        )
        for col in columns:
            table.add_column(Text(table_header(col)), style=(styles or {}).get(col), overflow="fold")
        for rec in records:
            style = row_style(rec) if row_style else None
            table.add_row(*[table_cell(c, rec.get(c)) for c in columns], style=style)
        console().print(table)


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
