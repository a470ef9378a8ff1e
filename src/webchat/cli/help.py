"""``web-chat help``: list, search and render the built-in documentation (cli.md, "Built-in help")."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from webchat.cli.output import CliConsole
from webchat.docs import Section, SectionType, filter_by_topic, get_section, load_sections, search

# Listing order of the section types: concepts first, then hands-on material.
TYPE_ORDER: tuple[SectionType, ...] = (
    SectionType.GENERAL_TOPIC,
    SectionType.TUTORIAL,
    SectionType.EXAMPLE,
    SectionType.APPLICATION,
)

HINT = "Show a section: web-chat help <slug>   Everything: web-chat help --list"


def _error(message: str) -> None:
    print(f"web-chat: error: {message}", file=sys.stderr)


def _console() -> Console:
    # Created per call so that it writes to the current sys.stdout (tests and pipes swap it).
    return CliConsole(soft_wrap=False)


def _table(sections: Sequence[Section], title: str | None = None) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold underline",
        box=None,
        show_header=False,
        pad_edge=False,
        padding=(0, 2, 0, 0),
    )
    table.add_column("slug", style="cyan", no_wrap=True)
    table.add_column("about", overflow="fold")
    for section in sections:
        table.add_row(section.slug, Text.assemble((section.title, "bold"), "\n", section.short))
    return table


def print_listing(sections: Sequence[Section], console: Console, *, heading: str | None = None) -> None:
    """Print sections grouped by type: slug, then title and short description."""
    if heading:
        console.print(Text(heading, style="bold"))
        console.print()
    for section_type in TYPE_ORDER:
        group = [s for s in sections if s.section_type is section_type]
        if group:
            console.print(_table(group, section_type.heading))
            console.print()
    console.print(Text(HINT, style="dim"), soft_wrap=True)


def print_ranked(sections: Sequence[Section], console: Console, *, heading: str) -> None:
    """Print search results in rank order (best first), not grouped by type."""
    console.print(Text(heading, style="bold"))
    console.print()
    console.print(_table(sections))
    console.print()
    console.print(Text(HINT, style="dim"), soft_wrap=True)


def render_section(section: Section, console: Console) -> None:
    """Render one section's Markdown for the terminal, with its title and related commands."""
    console.print(Markdown(f"# {section.title}\n\n*{section.short}*\n\n{section.body}"))
    footer: list[str] = []
    if section.commands:
        footer.append("Commands: " + ", ".join(f"web-chat {c}" for c in section.commands))
    if section.topics:
        footer.append("Topics: " + ", ".join(section.topics))
    if footer:
        console.print()
        for line in footer:
            console.print(Text(line, style="dim"))


def _default_listing(sections: Sequence[Section]) -> list[Section]:
    return [s for s in sections if s.is_top_level and s.show_per_default]


def help_command(
    slug: Annotated[
        str | None,
        typer.Argument(
            metavar="SLUG", help="Slug of the section to show (see the listing).", show_default=False
        ),
    ] = None,
    list_all: Annotated[
        bool, typer.Option("--list", help="List every section, not only top-level ones.")
    ] = False,
    topic: Annotated[
        str | None, typer.Option("--topic", metavar="T", help="Only sections tagged with this topic.")
    ] = None,
    search_text: Annotated[
        str | None,
        typer.Option("--search", metavar="TEXT", help="Search titles, descriptions, topics and text."),
    ] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the section's Markdown source instead of rendering it.")
    ] = False,
) -> None:
    """Show the built-in documentation: list sections, or render one by its slug."""
    console = _console()
    if slug is not None:
        if list_all or topic is not None or search_text is not None:
            _error("a section slug cannot be combined with --list, --topic or --search")
            raise typer.Exit(2)
        section = get_section(slug)
        if section is None:
            _error(f"no help section named '{slug}' (try: web-chat help --search {shlex.quote(slug)})")
            raise typer.Exit(2)
        if raw:
            sys.stdout.write(section.body)
        else:
            render_section(section, console)
        return
    if raw:
        _error("--raw needs a section slug")
        raise typer.Exit(2)

    if search_text is not None and not search_text.strip():
        _error("--search needs some text")
        raise typer.Exit(2)
    if topic is not None and not topic.strip():
        _error("--topic needs a topic name")
        raise typer.Exit(2)

    sections: list[Section] = load_sections()
    filters: list[str] = []
    if topic is not None:
        sections = filter_by_topic(topic, sections)
        filters.append(f"topic {topic.strip()!r}")
    if search_text is not None:
        sections = search(search_text, sections)
        filters.append(f"search {search_text.strip()!r}")
    if not filters and not list_all:
        sections = _default_listing(sections)

    if not sections:
        what = " and ".join(filters) if filters else "the listing"
        console.print(
            Text(f"No help section matches {what}. See all sections: web-chat help --list"), soft_wrap=True
        )
        return
    if search_text is not None:
        print_ranked(sections, console, heading=f"Sections matching {' and '.join(filters)}, best first")
        return
    if filters:
        heading = f"Help sections with {' and '.join(filters)}"
    elif list_all:
        heading = "All help sections"
    else:
        heading = "web-chat help"
    print_listing(sections, console, heading=heading)


def register(app: typer.Typer) -> None:
    """Add the ``help`` command to the ``web-chat`` application."""
    app.command("help", help="Show the built-in documentation (web-chat help <slug>).")(help_command)
