"""Output for people (cli.md): stored text printed literally in every format, local date-times and short
ids in tables only, tables that fit the terminal."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.cells import cell_len

from tests.unit.cli_stores import T0, invoke, make_timeline, make_turns
from webchat.stores.timeline import ConversationRecord, Entity
from webchat.turns.model import Block, Turn

# Rich markup that crashes (an unmatched closing tag), markup that silently disappears (a style name in
# brackets, as the offline engine's answers contain), real-looking markup, an emoji code, an ANSI escape,
# emoji and wide characters.
NASTY = "[/bold] [default] [red]x[/red] :smile: \x1b[31mred\x1b[0m 😀 漢字"
ANSI = "\x1b[31m"
LITERAL_PARTS = ["[/bold]", "[default]", "[red]x[/red]", ":smile:", "\\x1b[31mred\\x1b[0m", "😀", "漢字"]

CONV = "6f1c0c8e-1b8a-4e55-9a57-0d2b1f1e4b11"
SESSION = "0b7d3c2a-9f4e-4c1d-8a6b-5e2f1d0c9b8a"
TURN = "d2c4e6f8-1a3b-4c5d-8e7f-9a0b1c2d3e4f"
INFERENCE = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    base = tmp_path / "data"
    base.mkdir()
    turn = Turn(
        id=TURN,
        metadata={"note": NASTY},
        blocks=[Block(kind="llm_text", role="assistant", payload={"text": NASTY}, id=f"{TURN}:assistant")],
    )
    make_turns(base / "turns.db", [(CONV, SESSION, turn, "final", T0, "[default]", "")])
    make_timeline(
        base / "timeline.db",
        [
            ConversationRecord(
                CONV,
                session_id=SESSION,
                runtime_key="[default]",
                created_at_ms=T0,
                last_activity_ms=T0 + 1000,
                last_error=NASTY,
            )
        ],
        {CONV: [Entity(f"{TURN}:assistant", "message", T0, T0 + 500, 0, {"content": NASTY})]},
    )
    return base


def local(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


COMMANDS: dict[str, list[str]] = {
    "db missing": ["db", "missing"],
    "db history": ["db", "history", "--conv-id", CONV],
    "turns list": ["turns", "list", "--conv-id", CONV],
    "turns show": ["turns", "show", CONV, SESSION, TURN],
    "timeline list": ["timeline", "list"],
    "timeline snapshot": ["timeline", "snapshot", "--conv-id", CONV],
    "timeline entities": ["timeline", "entities", "--conv-id", CONV],
    "timeline entity": ["timeline", "entity", "--conv-id", CONV, "--id", f"{TURN}:assistant"],
}
# Commands whose records hold NASTY text (the others show it through runtime_key "[default]").
HOLDS_NASTY = {"db missing", "turns show", "timeline list", "timeline snapshot", "timeline entities"}
HOLDS_NASTY |= {"timeline entity"}
# How ESC appears where the cell is a JSON document (stored metadata, props): JSON's own escape. Text
# cells (and the YAML of turns show) show \x1b.
ESCAPED_ESC = {
    "db missing": "\\u001b",
    "timeline snapshot": "\\u001b",
    "timeline entities": "\\u001b",
    "timeline entity": "\\u001b",
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_tables_print_stored_text_literally(name: str, data: Path) -> None:
    result = invoke(*COMMANDS[name], "--data-dir", str(data))
    assert result.code == 0, (result.stderr, result.exception)
    assert result.stderr == ""
    out = result.stdout
    assert ANSI not in out  # a stored escape never reaches the terminal raw
    if name in HOLDS_NASTY:
        for part in LITERAL_PARTS:
            expected = part.replace("\\x1b", ESCAPED_ESC.get(name, "\\x1b"))
            assert expected in out, (part, out)
    if name in {"db history", "turns list", "timeline list"}:
        assert "[default]" in out


@pytest.mark.parametrize("fmt", ["json", "yaml", "csv"])
@pytest.mark.parametrize("name", sorted(set(COMMANDS) - {"turns show"}))
def test_machine_formats_keep_stored_text(name: str, fmt: str, data: Path) -> None:
    result = invoke(*COMMANDS[name], "--data-dir", str(data), "-o", fmt)
    assert result.code == 0, (result.stderr, result.exception)
    text = result.stdout
    if fmt == "csv":
        assert ANSI not in text
        if name in HOLDS_NASTY:
            for part in LITERAL_PARTS:
                assert part.replace("\\x1b", ESCAPED_ESC.get(name, "\\x1b")) in text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows
        return
    doc: Any = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    found = set(strings(doc))
    # Exact values: the ESC survives as data (JSON/YAML escape it on the wire).
    if name in HOLDS_NASTY:
        assert NASTY in found
    if name in {"db history", "turns list", "timeline list"}:
        assert "[default]" in found


def strings(value: Any) -> Iterator[str]:
    """Every string in a document, and in the JSON documents it holds as text (turn_metadata_json)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value
        if value.startswith("{"):
            yield from strings(json.loads(value))


def test_turns_show_json_keeps_the_payload(data: Path) -> None:
    result = invoke(*COMMANDS["turns show"], "--data-dir", str(data), "-o", "json")
    assert result.code == 0
    doc = json.loads(result.stdout)
    assert doc["runtime_key"] == "[default]"
    assert doc["items"][0]["parsed"]["blocks"][0]["payload"]["text"] == NASTY


def test_error_lines_show_control_characters_visibly(data: Path) -> None:
    result = invoke("db", "history", "--conv-id", f"nope{ANSI}", "--data-dir", str(data))
    assert result.code == 1
    assert result.stderr == "web-chat: error: unknown conversation: nope\\x1b[31m\n"


def test_tables_show_local_times_and_short_ids(data: Path) -> None:
    result = invoke("turns", "list", "--conv-id", CONV, "--data-dir", str(data))
    assert result.code == 0
    out = result.stdout
    assert local(T0) in out and str(T0) not in out
    assert "6f1c0c8e…" in out and CONV not in out
    assert "0b7d3c2a…" in out and SESSION not in out
    assert "created_at " in out and "created_at_ms" not in out

    result = invoke("timeline", "entities", "--conv-id", CONV, "--data-dir", str(data))
    assert "d2c4e6f8…:assistant" in result.stdout  # the rest of an entity id is kept
    assert local(T0 + 500) in result.stdout

    for fmt in ("json", "csv"):
        result = invoke("turns", "list", "--conv-id", CONV, "--data-dir", str(data), "-o", fmt)
        assert CONV in result.stdout and SESSION in result.stdout and TURN in result.stdout
        assert str(T0) in result.stdout and local(T0) not in result.stdout


def test_short_id() -> None:
    from webchat.cli.output import short_id

    assert short_id("c1") == "c1"
    assert short_id(CONV) == "6f1c0c8e…"
    assert short_id(CONV.replace("-", "")) == "6f1c0c8e…"
    assert short_id(f"{TURN}:tool:call_1") == "d2c4e6f8…:tool:call_1"
    assert short_id("x" * 30) == "x" * 23 + "…"
    # Not a UUID: hex runs of other lengths stay.
    assert short_id("deadbeef") == "deadbeef"


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_tables_fit_the_terminal(name: str, width: int, data: Path) -> None:
    result = invoke(*COMMANDS[name], "--data-dir", str(data), columns=width)
    assert result.code == 0
    lines = result.stdout.splitlines()
    assert lines
    assert max(cell_len(line) for line in lines) <= width


def test_unknown_phase_is_the_debug_api_answer(data: Path) -> None:
    result = invoke("turns", "list", "--conv-id", CONV, "--phase", "BAD", "--data-dir", str(data))
    assert result.code == 2
    assert result.stderr == (
        "web-chat: error: phase must be one of pre_inference, post_inference, post_tools, final\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["turns", "list", "--conv-id", "nope"],
        ["db", "history", "--conv-id", "nope"],
        ["timeline", "snapshot", "--conv-id", "nope"],
        ["timeline", "entities", "--conv-id", "nope"],
        ["timeline", "entity", "--conv-id", "nope", "--id", "x"],
    ],
    ids=" ".join,
)
def test_unknown_conversation(args: list[str], data: Path) -> None:
    result = invoke(*args, "--data-dir", str(data))
    assert result.code == 1
    assert result.stderr == "web-chat: error: unknown conversation: nope\n"
    assert result.stdout == ""


def test_known_conversation_without_turns_is_an_empty_answer(tmp_path: Path) -> None:
    """Like the debug API: a conversation in the timeline index but with no stored turn yet is known."""
    base = tmp_path / "data"
    base.mkdir()
    turn = Turn(id="t1", blocks=[Block(kind="user", role="user", payload={"text": "hi"})])
    make_turns(base / "turns.db", [("other", "s", turn, "final", T0, "fast", "i")])
    make_timeline(base / "timeline.db", [ConversationRecord("fresh", created_at_ms=T0, last_activity_ms=T0)])
    for args in (["db", "history", "--conv-id", "fresh"], ["turns", "list", "--conv-id", "fresh"]):
        result = invoke(*args, "--data-dir", str(base), "-o", "json")
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout) == []
    result = invoke("timeline", "snapshot", "--conv-id", "fresh", "--data-dir", str(base), "-o", "json")
    assert result.code == 0 and json.loads(result.stdout)["entities"] == []
    # A known conversation whose filter matches nothing is an empty list, not "unknown".
    result = invoke(
        "turns", "list", "--conv-id", "other", "--phase", "pre_inference", "--data-dir", str(base)
    )
    assert result.code == 0 and result.stderr == ""


def test_conversation_with_entities_only_is_known(data: Path) -> None:
    """A timeline missing the version row and the index entry (``timeline verify`` reports it) still
    has the conversation's entities: they are shown, not hidden behind "unknown conversation"."""
    conn = sqlite3.connect(data / "timeline.db")
    conn.execute("DELETE FROM timeline_versions")
    conn.execute("DELETE FROM timeline_conversations")
    conn.commit()
    conn.close()
    result = invoke("timeline", "entities", "--conv-id", CONV, "--data-dir", str(data), "-o", "json")
    assert result.code == 0, result.stderr
    assert [e["id"] for e in json.loads(result.stdout)] == [f"{TURN}:assistant"]
