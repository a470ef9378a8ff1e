"""Options shared by every command that touches a store (cli.md: storage location)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import platformdirs
import typer

DATA_DIR_ENV = "WEBCHAT_DATA_DIR"


def default_data_dir() -> Path:
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path(platformdirs.user_data_dir("web-chat", appauthor=False))


DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help=(
            f"Directory holding turns.db and timeline.db [default: {default_data_dir()}; env {DATA_DIR_ENV}]"
        ),
        show_default=False,
    ),
]
TurnsDbOpt = Annotated[
    Path | None, typer.Option("--turns-db", help="Path of turns.db (overrides --data-dir)")
]
TimelineDbOpt = Annotated[
    Path | None, typer.Option("--timeline-db", help="Path of timeline.db (overrides --data-dir)")
]
TurnsDsnOpt = Annotated[
    str | None, typer.Option("--turns-dsn", help="Turn store DSN (postgresql://…); not available yet")
]
TimelineDsnOpt = Annotated[
    str | None, typer.Option("--timeline-dsn", help="Timeline store DSN (postgresql://…); not available yet")
]


@dataclass(frozen=True)
class StorePaths:
    data_dir: Path
    turns_db: Path
    timeline_db: Path
    timeline_explicit: bool

    @property
    def companion_timeline(self) -> Path:
        """The timeline.db that goes with the turns.db: --timeline-db, else the one next to turns.db."""
        return self.timeline_db if self.timeline_explicit else self.turns_db.with_name("timeline.db")


def resolve_paths(
    data_dir: Path | None,
    turns_db: Path | None,
    timeline_db: Path | None,
    turns_dsn: str | None = None,
    timeline_dsn: str | None = None,
) -> StorePaths:
    for name, dsn in (("--turns-dsn", turns_dsn), ("--timeline-dsn", timeline_dsn)):
        if dsn:
            raise typer.BadParameter(
                f"{dsn.split(':', 1)[0]} stores are not supported yet; use SQLite", param_hint=name
            )
    base = data_dir or default_data_dir()
    return StorePaths(
        data_dir=base,
        turns_db=turns_db or base / "turns.db",
        timeline_db=timeline_db or base / "timeline.db",
        timeline_explicit=timeline_db is not None,
    )
