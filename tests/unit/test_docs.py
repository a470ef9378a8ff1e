"""The built-in help: section files, the loader API and the ``web-chat help`` command."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from webchat import docs
from webchat.cli import help as help_cli
from webchat.docs import HelpSectionError, Section, SectionType
from webchat.stores.migrations import checks

PLAYBOOK = "webchat-runtime-truth-migration-playbook"
REQUIRED = {
    "webchat-overview": (SectionType.GENERAL_TOPIC, True),
    "webchat-getting-started": (SectionType.TUTORIAL, True),
    PLAYBOOK: (SectionType.GENERAL_TOPIC, True),
    "webchat-db-commands": (SectionType.GENERAL_TOPIC, True),
    "webchat-help-system": (SectionType.GENERAL_TOPIC, False),
}

# Each validation query of checks.py and the command that runs the same check.
SQL_COMMANDS = {
    "SQL_COLUMNS": "web-chat db check",
    "SQL_INDEXES": "web-chat db check",
    "SQL_HISTORY": "web-chat db history --conv-id",
    "SQL_MISSING_COUNT": "web-chat db check",
    "SQL_MISSING_SPLIT": "web-chat db check",
    "SQL_CANDIDATES": "web-chat db missing",
}

CHECK_JSON_KEYS = (
    "schema_ok",
    "problems",
    "schema_version",
    "expected_schema_version",
    "columns",
    "indexes",
    "total_turns",
    "missing_runtime_or_inference",
    "missing_runtime_key",
    "missing_inference_id",
    "legacy_tables",
    "legacy_rows_unparseable",
)

VALID_FRONT_MATTER = """---
Title: A title
Slug: webchat-sample
Short: A short line.
Topics: [one, Two]
Commands: [db check]
SectionType: Example
IsTopLevel: true
ShowPerDefault: false
---
Body text.
"""


def _section_files() -> list[str]:
    directory = resources.files("webchat.docs").joinpath("sections")
    return sorted(f.name for f in directory.iterdir() if f.name.endswith(".md"))


# -- the packaged sections ----------------------------------------------------------------------------


def test_every_section_file_loads_with_valid_front_matter() -> None:
    sections = docs.load_sections()
    assert len(sections) == len(_section_files())
    for section in sections:
        assert section.title and section.short and section.body.strip(), section.slug
        assert isinstance(section.section_type, SectionType)
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", section.slug)
        assert all(isinstance(t, str) and t for t in section.topics)
        assert all(isinstance(c, str) and c for c in section.commands)
        # The title is rendered above the body; a body must not bring its own top-level heading.
        assert not section.body.lstrip().startswith("# "), section.slug
        # Files are named after their slug.
        assert section.source == f"{section.slug}.md"


def test_slugs_are_unique() -> None:
    slugs = [s.slug for s in docs.load_sections()]
    assert len(slugs) == len(set(slugs))


@pytest.mark.parametrize("slug", sorted(REQUIRED))
def test_required_sections_exist(slug: str) -> None:
    section = docs.get_section(slug)
    assert section is not None
    section_type, top_level = REQUIRED[slug]
    assert section.section_type is section_type
    assert section.is_top_level is top_level


def test_get_section() -> None:
    section = docs.get_section(PLAYBOOK)
    assert isinstance(section, Section)
    assert section.slug == PLAYBOOK
    assert docs.get_section(f"  {PLAYBOOK.upper()} ") == section
    assert docs.get_section("no-such-section") is None


def test_load_sections_is_cached_but_returns_a_fresh_list() -> None:
    first = docs.load_sections()
    first.clear()
    assert docs.load_sections()


@pytest.mark.parametrize("text", ["backfill", "migration", "BACKFILL", "Migration Playbook"])
def test_search_finds_the_playbook(text: str) -> None:
    slugs = [s.slug for s in docs.search(text)]
    assert PLAYBOOK in slugs


def test_search_ranks_title_hits_first() -> None:
    results = docs.search("migration")
    assert results[0].slug == PLAYBOOK
    assert docs.search("getting started")[0].slug == "webchat-getting-started"


def test_search_requires_every_word_and_ignores_blank_text() -> None:
    assert docs.search("backfill zzz-not-a-word") == []
    assert docs.search("   ") == []


def test_filter_by_topic() -> None:
    slugs = [s.slug for s in docs.filter_by_topic("MIGRATION")]
    assert PLAYBOOK in slugs
    assert "webchat-getting-started" not in slugs
    assert docs.filter_by_topic("no-such-topic") == []


def test_for_command() -> None:
    slugs = [s.slug for s in docs.for_command("db  migrate")]
    assert PLAYBOOK in slugs
    assert "webchat-db-commands" in slugs


# -- the playbook's content ---------------------------------------------------------------------------


def _subsection_holding(body: str, needle: str) -> str:
    """The text of the ``##``/``###`` part of ``body`` that contains ``needle``."""
    parts = re.split(r"^#{2,3} ", body, flags=re.MULTILINE)
    holding = [p for p in parts if needle in p]
    assert holding, f"not found in the playbook: {needle}"
    return holding[0]


@pytest.mark.parametrize("name", sorted(SQL_COMMANDS))
def test_playbook_shows_each_check_sql_verbatim_beside_its_command(name: str) -> None:
    section = docs.get_section(PLAYBOOK)
    assert section is not None
    sql = getattr(checks, name)
    assert sql in section.body
    assert SQL_COMMANDS[name] in _subsection_holding(section.body, sql)


def test_playbook_covers_the_contract() -> None:
    section = docs.get_section(PLAYBOOK)
    assert section is not None
    body = section.body
    for heading in (
        "## Purpose",
        "## Semantic model",
        "## API contract changes",
        "## Supported legacy layouts",
        "## Backfill rules",
        "## Validation",
        "## Troubleshooting",
        "## Release notes snippet",
    ):
        assert heading in body
    for term in (
        "resolved_runtime_key",
        "current_runtime_key",
        "turns.runtime_key",
        "turns.inference_id",
        "turn_snapshots",
        "webchat_legacy_unparseable",
        "--dry-run",
        "--lock-timeout",
        "web-chat db missing",
        "geppetto.runtime@v1",
        "webchat.inference_id@v1",
    ):
        assert term in body, term
    snippet = body.split("## Release notes snippet", 1)[1]
    assert re.search(r"^```markdown\n.+?^```$", snippet, flags=re.MULTILINE | re.DOTALL)


def test_db_commands_reference_lists_report_and_check_keys() -> None:
    from dataclasses import fields

    from webchat.stores.migrations.turns_sqlite import MigrationReport

    section = docs.get_section("webchat-db-commands")
    assert section is not None
    for key in CHECK_JSON_KEYS:
        assert f"`{key}`" in section.body, key
    for key in [f.name for f in fields(MigrationReport)] + ["changed"]:
        assert f"`{key}`" in section.body, key


# -- front matter validation --------------------------------------------------------------------------


def test_parse_section_reads_every_field() -> None:
    section = docs.parse_section(VALID_FRONT_MATTER, "sample.md")
    assert section == Section(
        title="A title",
        slug="webchat-sample",
        short="A short line.",
        topics=("one", "Two"),
        commands=("db check",),
        section_type=SectionType.EXAMPLE,
        is_top_level=True,
        show_per_default=False,
        body="Body text.\n",
        source="sample.md",
    )
    assert section.matches_topic("two")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("Title: A title\n", ""), "missing Title"),
        (("Slug: webchat-sample\n", ""), "missing Slug"),
        (("Slug: webchat-sample", "Slug: ''"), "Slug must not be empty"),
        (("Slug: webchat-sample", "Slug: Not A Slug"), "lower-case"),
        (("SectionType: Example", "SectionType: Guide"), "SectionType 'Guide' is not one of"),
        (("SectionType: Example\n", ""), "missing SectionType"),
        (("Topics: [one, Two]", "Topics: one"), "Topics must be a list"),
        (("IsTopLevel: true", "IsTopLevel: yes please"), "IsTopLevel must be true or false"),
        (("Short: A short line.", "Short: [a]"), "Short must be a string"),
        (("ShowPerDefault: false", "Showperdefault: false"), "unknown front matter key(s): Showperdefault"),
        (("Title: A title", "Title: [unclosed"), "not valid YAML"),
        (("Body text.\n", ""), "empty body"),
    ],
)
def test_parse_section_rejects_bad_front_matter(change: tuple[str, str], message: str) -> None:
    text = VALID_FRONT_MATTER.replace(*change)
    with pytest.raises(HelpSectionError, match=re.escape(message)) as info:
        docs.parse_section(text, "broken.md")
    assert "broken.md" in str(info.value)


def test_parse_section_requires_front_matter() -> None:
    with pytest.raises(HelpSectionError, match="front matter"):
        docs.parse_section("# Just markdown\n", "plain.md")


def test_loading_a_directory_rejects_duplicate_slugs(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(VALID_FRONT_MATTER, encoding="utf-8")
    (tmp_path / "b.md").write_text(VALID_FRONT_MATTER, encoding="utf-8")
    with pytest.raises(HelpSectionError, match=re.escape("already used by a.md")):
        docs.load_sections_from(tmp_path)


def test_loading_a_directory_ignores_other_files(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(VALID_FRONT_MATTER, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a section", encoding="utf-8")
    assert [s.slug for s in docs.load_sections_from(tmp_path)] == ["webchat-sample"]


# -- web-chat help --------------------------------------------------------------------------------------


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer()

    @application.callback()
    def _root() -> None:
        """A group, so that ``help`` is a subcommand as in the real application."""

    help_cli.register(application)
    return application


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})


def _top_level() -> list[Section]:
    return [s for s in docs.load_sections() if s.is_top_level and s.show_per_default]


def test_help_without_arguments_lists_top_level_sections_by_type(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["help"])
    assert result.exit_code == 0, result.output
    for section in _top_level():
        assert section.slug in result.stdout
        assert section.title in result.stdout
    assert "webchat-help-system" not in result.stdout
    assert "General topics" in result.stdout
    assert "Tutorials" in result.stdout
    assert result.stdout.index("General topics") < result.stdout.index("Tutorials")
    assert "web-chat help <slug>" in result.stdout


def test_help_list_shows_every_section(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["help", "--list"])
    assert result.exit_code == 0, result.output
    for section in docs.load_sections():
        assert section.slug in result.stdout


def test_help_renders_the_playbook(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["help", PLAYBOOK])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Runtime truth migration playbook" in out
    for heading in ("Semantic model", "Backfill rules", "Validation", "Release notes snippet"):
        assert heading in out
    # Rendered, not raw: Markdown markers are gone.
    assert "## Purpose" not in out
    assert "```" not in out
    assert "web-chat db missing" in out


def test_help_raw_prints_the_markdown_source(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["help", PLAYBOOK, "--raw"])
    assert result.exit_code == 0, result.output
    section = docs.get_section(PLAYBOOK)
    assert section is not None
    assert result.stdout == section.body
    assert checks.SQL_CANDIDATES in result.stdout


def test_help_search(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["help", "--search", "backfill"])
    assert result.exit_code == 0, result.output
    assert PLAYBOOK in result.stdout
    result = runner.invoke(app, ["help", "--search", "zzz-nothing-matches"])
    assert result.exit_code == 0
    assert "No help section matches" in result.stdout


def test_help_topic(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["help", "--topic", "tutorial"])
    assert result.exit_code == 0, result.output
    assert "webchat-getting-started" in result.stdout
    assert PLAYBOOK not in result.stdout
    # Topic filters include sections that are not top-level.
    result = runner.invoke(app, ["help", "--topic", "help"])
    assert "webchat-help-system" in result.stdout


def test_help_topic_and_search_combine(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["help", "--topic", "tutorial", "--search", "backfill"])
    assert result.exit_code == 0, result.output
    assert PLAYBOOK not in result.stdout


def test_help_unknown_slug_exits_2_with_one_stderr_line(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["help", "x"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "web-chat: error: no help section named 'x' (try: web-chat help --search x)"
    ]


def test_help_slug_with_filters_is_bad_usage(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["help", PLAYBOOK, "--list"])
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("web-chat: error: ")
