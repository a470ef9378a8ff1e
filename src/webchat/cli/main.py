"""The ``web-chat`` console script."""

from __future__ import annotations

import sys

import typer

from webchat import __version__

app = typer.Typer(
    name="web-chat",
    help="A self-hostable LLM chat server that records which runtime and inference produced every turn.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"web-chat {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """web-chat: chat server, turn store tools and built-in help."""


def _register() -> None:
    # Each command module adds its commands; importing here keeps start-up of one command cheap enough
    # and the modules independent of each other.
    from webchat.cli import db, help, profiles, serve, timeline, turns

    serve.register(app)
    db.register(app)
    turns.register(app)
    timeline.register(app)
    profiles.register(app)
    help.register(app)


_register()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
