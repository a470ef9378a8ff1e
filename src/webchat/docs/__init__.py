"""Built-in help: Markdown sections shipped inside the package (cli.md, "Built-in help").

Every file in ``webchat/docs/sections/*.md`` is one section. It starts with a YAML front matter between
two ``---`` lines::

    ---
    Title: Getting started
    Slug: webchat-getting-started
    Short: Run the server and check your first store.
    Topics: [webchat, tutorial]
    Commands: [serve, db check]
    SectionType: Tutorial
    IsTopLevel: true
    ShowPerDefault: true
    ---
    Markdown body...

The front matter is validated strictly: a malformed section is a packaging bug, and failing loudly (with the
file name) is better than a help page that silently goes missing. The same sections are used by
``web-chat help`` and by the web UI's ``/help`` pages.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final

import yaml

__all__ = [
    "HelpSectionError",
    "Section",
    "SectionType",
    "filter_by_topic",
    "for_command",
    "get_section",
    "load_sections",
    "load_sections_from",
    "parse_section",
    "search",
]

SECTIONS_PACKAGE: Final = "webchat.docs"
SECTIONS_DIR: Final = "sections"

# Section slugs are lower-case words joined by hyphens (they are typed on the command line and used in URLs).
_SLUG_RE: Final = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_FRONT_MATTER_RE: Final = re.compile(r"\A---[ \t]*\n(?P<yaml>.*?)\n---[ \t]*(?:\n|\Z)", re.DOTALL)

_REQUIRED_KEYS: Final = ("Title", "Slug", "Short", "SectionType")
_KNOWN_KEYS: Final = frozenset(
    {"Title", "Slug", "Short", "Topics", "Commands", "SectionType", "IsTopLevel", "ShowPerDefault"}
)


class HelpSectionError(ValueError):
    """A help section file is malformed (bad front matter, unknown section type, duplicate slug…)."""


class SectionType(StrEnum):
    GENERAL_TOPIC = "GeneralTopic"
    EXAMPLE = "Example"
    APPLICATION = "Application"
    TUTORIAL = "Tutorial"

    @property
    def heading(self) -> str:
        """A plural heading for listings."""
        return _HEADINGS[self]


_HEADINGS: Final = {
    SectionType.GENERAL_TOPIC: "General topics",
    SectionType.EXAMPLE: "Examples",
    SectionType.APPLICATION: "Applications",
    SectionType.TUTORIAL: "Tutorials",
}


@dataclass(frozen=True)
class Section:
    """One help section: its front matter and its Markdown body (without the front matter)."""

    title: str
    slug: str
    short: str
    topics: tuple[str, ...]
    commands: tuple[str, ...]
    section_type: SectionType
    is_top_level: bool
    show_per_default: bool
    body: str
    source: str = ""

    def matches_topic(self, topic: str) -> bool:
        wanted = topic.strip().lower()
        return any(t.lower() == wanted for t in self.topics)


# -- parsing -------------------------------------------------------------------------------------------


def _fail(source: str, message: str) -> HelpSectionError:
    return HelpSectionError(f"help section {source}: {message}")


def _string(meta: Mapping[str, Any], key: str, source: str, *, required: bool) -> str:
    value = meta.get(key)
    if value is None:
        if required:
            raise _fail(source, f"front matter is missing {key}")
        return ""
    if not isinstance(value, str):
        raise _fail(source, f"{key} must be a string, got {type(value).__name__}")
    text = value.strip()
    if required and not text:
        raise _fail(source, f"{key} must not be empty")
    return text


def _string_list(meta: Mapping[str, Any], key: str, source: str) -> tuple[str, ...]:
    value = meta.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise _fail(source, f"{key} must be a list of non-empty strings")
    return tuple(item.strip() for item in value)


def _flag(meta: Mapping[str, Any], key: str, source: str) -> bool:
    value = meta.get(key, False)
    if not isinstance(value, bool):
        raise _fail(source, f"{key} must be true or false, got {value!r}")
    return value


def parse_section(text: str, source: str = "<string>") -> Section:
    """Parse one section file's text; raise :class:`HelpSectionError` when its front matter is invalid."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    match = _FRONT_MATTER_RE.match(text)
    if match is None:
        raise _fail(source, "does not start with a '---' front matter block")
    try:
        meta = yaml.safe_load(match.group("yaml"))
    except yaml.YAMLError as exc:
        raise _fail(source, f"front matter is not valid YAML: {exc}") from exc
    if not isinstance(meta, dict):
        raise _fail(source, "front matter must be a mapping of keys to values")
    unknown = sorted(str(k) for k in meta if k not in _KNOWN_KEYS)
    if unknown:
        raise _fail(source, f"unknown front matter key(s): {', '.join(unknown)}")
    for key in _REQUIRED_KEYS:
        if key not in meta:
            raise _fail(source, f"front matter is missing {key}")

    slug = _string(meta, "Slug", source, required=True)
    if not _SLUG_RE.match(slug):
        raise _fail(source, f"Slug {slug!r} must be lower-case words joined by '-'")
    raw_type = meta.get("SectionType")
    known_types = {t.value: t for t in SectionType}
    if not isinstance(raw_type, str) or raw_type not in known_types:
        raise _fail(source, f"SectionType {raw_type!r} is not one of {', '.join(known_types)}")
    section_type = known_types[raw_type]

    body = text[match.end() :].strip("\n")
    if not body.strip():
        raise _fail(source, "has an empty body")
    return Section(
        title=_string(meta, "Title", source, required=True),
        slug=slug,
        short=_string(meta, "Short", source, required=True),
        topics=_string_list(meta, "Topics", source),
        commands=_string_list(meta, "Commands", source),
        section_type=section_type,
        is_top_level=_flag(meta, "IsTopLevel", source),
        show_per_default=_flag(meta, "ShowPerDefault", source),
        body=body + "\n",
        source=source,
    )


def load_sections_from(directory: Traversable) -> list[Section]:
    """Parse every ``*.md`` file of a directory (sorted by file name); slugs must be unique."""
    sections: list[Section] = []
    seen: dict[str, str] = {}
    files = sorted(
        (f for f in directory.iterdir() if f.is_file() and f.name.endswith(".md")), key=lambda f: f.name
    )
    for entry in files:
        section = parse_section(entry.read_text(encoding="utf-8"), entry.name)
        if section.slug in seen:
            raise _fail(entry.name, f"Slug {section.slug!r} is already used by {seen[section.slug]}")
        seen[section.slug] = entry.name
        sections.append(section)
    return sections


@functools.cache
def _packaged_sections() -> tuple[Section, ...]:
    directory = resources.files(SECTIONS_PACKAGE).joinpath(SECTIONS_DIR)
    return tuple(load_sections_from(directory))


# -- queries -------------------------------------------------------------------------------------------


def load_sections() -> list[Section]:
    """Every packaged section, ordered by file name (parsed once per process)."""
    return list(_packaged_sections())


def get_section(slug: str) -> Section | None:
    wanted = slug.strip().lower()
    return next((s for s in _packaged_sections() if s.slug == wanted), None)


def filter_by_topic(topic: str, sections: Iterable[Section] | None = None) -> list[Section]:
    """Sections tagged with ``topic`` (case-insensitive, whole topic)."""
    pool = _packaged_sections() if sections is None else sections
    return [s for s in pool if s.matches_topic(topic)]


def for_command(command: str, sections: Iterable[Section] | None = None) -> list[Section]:
    """Sections that document ``command`` (e.g. ``"db migrate"``) and are shown per default."""
    wanted = " ".join(command.split()).lower()
    pool = _packaged_sections() if sections is None else sections
    return [s for s in pool if s.show_per_default and any(c.lower() == wanted for c in s.commands)]


def _rank(section: Section, phrase: str, terms: list[str]) -> tuple[int, int] | None:
    """``(tier, -body hits)`` when every term occurs somewhere in the section, else ``None``.

    Tiers: 0 phrase in title or slug, 1 every term in title or slug, 2 phrase in short, topics or
    commands, 3 anywhere else (body).
    """
    head = f"{section.title}\n{section.slug}".lower()
    meta = "\n".join((section.short, *section.topics, *section.commands)).lower()
    body = section.body.lower()
    everything = f"{head}\n{meta}\n{body}"
    if not all(term in everything for term in terms):
        return None
    hits = body.count(phrase) if phrase in body else sum(body.count(t) for t in terms)
    if phrase in head:
        tier = 0
    elif all(term in head for term in terms):
        tier = 1
    elif phrase in meta:
        tier = 2
    else:
        tier = 3
    return tier, -hits


def search(text: str, sections: Iterable[Section] | None = None) -> list[Section]:
    """Case-insensitive search over title, slug, short, topics, commands and body.

    Every word of ``text`` must occur in the section. Title and slug hits rank first, then short/topic
    hits, then body hits (more occurrences first). Blank text matches nothing.
    """
    terms = text.lower().split()
    if not terms:
        return []
    phrase = " ".join(terms)
    pool = _packaged_sections() if sections is None else sections
    ranked: list[tuple[tuple[int, int], str, Section]] = []
    for section in pool:
        rank = _rank(section, phrase, terms)
        if rank is not None:
            ranked.append((rank, section.slug, section))
    ranked.sort(key=lambda item: (item[0], item[1]))
    return [section for _, _, section in ranked]
