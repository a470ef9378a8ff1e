"""``web-chat profiles list|show`` on a fresh Typer app."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from webchat.cli.profiles import register
from webchat.turns.serde import load_yaml

LOCAL = """\
slug: local
profiles:
  fast:
    display_name: Local fast
    runtime: {engine: offline, system_prompt: You are terse., options: {token_delay_ms: 5}}
  gpt:
    runtime: {engine: openai, model: gpt-4o-mini, api_key_env: OPENAI_API_KEY}
"""


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """test root"""

    register(root)
    return root


@pytest.fixture
def local(tmp_path: Path) -> Path:
    path = tmp_path / "local.yaml"
    path.write_text(LOCAL, encoding="utf-8")
    return path


runner = CliRunner()


def test_list_builtin_json(app: typer.Typer) -> None:
    result = runner.invoke(app, ["profiles", "list", "--output", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["registry"], r["slug"]) for r in rows] == [
        ("builtin", "default"),
        ("builtin", "fast"),
        ("builtin", "planner"),
    ]
    default = rows[0]
    assert default["is_default"] is True and default["usable"] is True and default["reason"] == ""
    assert {"display_name", "engine", "model", "version"} <= set(default)


def test_list_with_files(app: typer.Typer, local: Path) -> None:
    result = runner.invoke(app, ["profiles", "list", "--profiles", str(local), "--output", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    gpt = next(r for r in rows if r["slug"] == "gpt")
    assert gpt["registry"] == "local" and gpt["usable"] == "no"
    assert gpt["reason"] == "environment variable OPENAI_API_KEY is not set"
    fast = next(r for r in rows if r["registry"] == "local" and r["slug"] == "fast")
    assert fast["is_default"] == "yes"  # no "default" profile: first by slug
    table = runner.invoke(app, ["profiles", "list", "--profiles", str(local), "--registry", "local"])
    assert table.exit_code == 0 and "gpt" in table.stdout and "planner" not in table.stdout


def test_show_document_with_fingerprint(
    app: typer.Typer, local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    result = runner.invoke(app, ["profiles", "show", "gpt", "--profiles", str(local)])
    assert result.exit_code == 0, result.output
    assert "sk-secret" not in result.output
    doc = json.loads(result.stdout)
    assert doc["registry"] == "local" and doc["slug"] == "gpt"
    assert doc["runtime"]["api_key_env"] == "OPENAI_API_KEY"
    assert doc["usable"] is True  # the key variable is set (its value is never shown)
    assert doc["resolved"]["runtime_fingerprint"].startswith("sha256:")
    assert doc["resolved"]["runtime_key"] == "gpt"

    yaml_out = runner.invoke(app, ["profiles", "show", "planner", "--registry", "builtin", "-o", "yaml"])
    assert yaml_out.exit_code == 0, yaml_out.output
    parsed = load_yaml(yaml_out.stdout)
    assert parsed["registry"] == "builtin" and parsed["runtime"]["tools"] == ["calculator"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["profiles", "show", "nope"], "unknown profile"),
        (["profiles", "show", "Bad Slug!"], "invalid profile slug"),
        (["profiles", "show", "fast", "--registry", "nope"], "unknown registry"),
        (["profiles", "list", "--registry", "nope"], "unknown registry"),
        (["profiles", "list", "--profiles", "/does/not/exist.yaml"], "exist.yaml"),
    ],
)
def test_errors_exit_2_with_one_line(app: typer.Typer, args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert lines[0].startswith("web-chat: error:")


def test_bad_registry_file_exit_2(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("slug: ok\nprofiles:\n  'Bad Slug':\n    runtime: {engine: offline}\n", encoding="utf-8")
    result = runner.invoke(app, ["profiles", "list", "--profiles", str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.stderr and "Bad Slug" in result.stderr
