"""Help sections over HTTP: ``/api/help`` (JSON) and ``/help`` (rendered pages) from the same Markdown."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from markdown_it import MarkdownIt

from webchat import docs
from webchat.server.errors import ApiError

router = APIRouter(tags=["help"])
_md = MarkdownIt("commonmark", {"html": False}).enable("table")


def _meta(s: docs.Section) -> dict[str, Any]:
    return {
        "slug": s.slug,
        "title": s.title,
        "short": s.short,
        "topics": list(s.topics),
        "commands": list(s.commands),
        "section_type": s.section_type,
        "is_top_level": s.is_top_level,
    }


@router.get("/api/help", summary="Help sections (optionally searched or filtered by topic)")
async def list_help(
    q: str = Query("", max_length=200), topic: str = Query("", max_length=100)
) -> dict[str, Any]:
    sections = docs.search(q) if q.strip() else docs.load_sections()
    if topic:
        sections = [s for s in sections if topic in s.topics]
    return {"items": [_meta(s) for s in sections]}


@router.get("/api/help/{slug}", summary="One help section: Markdown and rendered HTML")
async def get_help(slug: str) -> dict[str, Any]:
    section = docs.get_section(slug)
    if section is None:
        raise ApiError(404, "unknown_help_section", f"no help section named {slug!r}")
    return {**_meta(section), "markdown": section.body, "html": _md.render(section.body)}


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title} · web-chat help</title>
<style>
:root {{ color-scheme: light dark; }}
body {{ font: 16px/1.55 system-ui, sans-serif; max-width: 54rem; margin: 0 auto; padding: 1rem; }}
pre, code {{ font-family: ui-monospace, monospace; font-size: 0.9em; }}
pre {{ padding: 0.75rem; overflow-x: auto; background: color-mix(in srgb, currentColor 7%, transparent); }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #8884; padding: 0.25rem 0.5rem; }}
nav a {{ margin-right: 1rem; }}
.topics a {{ display: inline-block; margin: 0 0.3rem 0.3rem 0; padding: 0 0.5rem; border-radius: 999px;
  border: 1px solid #8886; font-size: 0.85em; text-decoration: none; }}
.topics a.on {{ font-weight: 700; }} .meta {{ opacity: 0.8; font-size: 0.9em; }}
</style></head><body><nav><a href="/help">All help</a><a href="/">Chat</a></nav>{body}</body></html>"""


def _topic_links(topics: list[str], current: str = "") -> str:
    links = (
        f'<a href="/help?topic={quote(t)}"{" class=on" if t == current else ""}>{html.escape(t)}</a>'
        for t in topics
    )
    return f'<div class="topics">{"".join(links)}</div>'


@router.get("/help", response_class=HTMLResponse, include_in_schema=False)
async def help_index(q: str = "", topic: str = "") -> HTMLResponse:
    sections = docs.search(q) if q.strip() else docs.load_sections()
    if topic:
        sections = [s for s in sections if s.matches_topic(topic)]
    groups: dict[docs.SectionType, list[docs.Section]] = {}
    for s in sections:
        groups.setdefault(s.section_type, []).append(s)
    all_topics = sorted({t for s in docs.load_sections() for t in s.topics})
    parts = [
        "<h1>web-chat help</h1>",
        f'<form><input type="search" name="q" value="{html.escape(q)}" placeholder="Search help" '
        'aria-label="Search help"><button>Search</button></form>',
        "<h2>Topics</h2>",
        _topic_links(all_topics, topic),
    ]
    if topic:
        parts.append(f'<p>Topic <strong>{html.escape(topic)}</strong> · <a href="/help">show all</a></p>')
    for kind, items in sorted(groups.items(), key=lambda kv: kv[0].heading):
        parts.append(f"<h2>{html.escape(kind.heading)}</h2><ul>")
        for s in items:
            link = f'<a href="/help/{html.escape(s.slug)}">{html.escape(s.title)}</a>'
            parts.append(f"<li>{link} — {html.escape(s.short)}{_topic_links(list(s.topics))}</li>")
        parts.append("</ul>")
    if not sections:
        parts.append("<p>No section matches.</p>")
    return HTMLResponse(_PAGE.format(title="Help", body="".join(parts)))


@router.get("/help/{slug}", response_class=HTMLResponse, include_in_schema=False)
async def help_page(slug: str) -> HTMLResponse:
    section = docs.get_section(slug)
    if section is None:
        return HTMLResponse(
            _PAGE.format(title="Not found", body="<h1>No such help section</h1>"), status_code=404
        )
    meta = (
        f'<p class="meta">{html.escape(section.section_type.heading)} · <code>web-chat help '
        f"{html.escape(section.slug)}</code></p>{_topic_links(list(section.topics))}"
    )
    body = f"<h1>{html.escape(section.title)}</h1>{meta}{_md.render(section.body)}"
    return HTMLResponse(_PAGE.format(title=html.escape(section.title), body=body))
