"""The ``web-chat`` console script."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer
import typer.main

# Typer vendors Click: the exceptions its parser raises are these, not the `click` package's.
from typer._click import exceptions as click_errors

from webchat import __version__
from webchat.cli.output import error

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
    from webchat.cli import db, help, profiles, serve, timeline, turns, users

    serve.register(app)
    db.register(app)
    turns.register(app)
    timeline.register(app)
    profiles.register(app)
    users.register(app)
    help.register(app)


_register()


def _stdout_gone() -> NoReturn:
    """The reader of stdout went away (``web-chat … | head -1``): that is not an error.

    Further writes, including the interpreter's own flush at exit, go to /dev/null so that nothing else
    reports the closed pipe.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a file descriptor (embedded use): nothing will flush to the pipe
    finally:
        os.close(devnull)
    sys.exit(0)


def run(args: list[str] | None = None) -> int:
    """Run one command line and return its exit code; every failure is one line on stderr.

    This is Click's standalone mode, done here so that a closed stdout ends the command with exit 0
    (Click reports it as exit 1) and a usage error is one ``web-chat: error:`` line with exit 2 (Typer
    draws a multi-line box).
    """
    command = typer.main.get_command(app)
    try:
        with command.make_context("web-chat", sys.argv[1:] if args is None else args) as ctx:
            command.invoke(ctx)
    except click_errors.NoArgsIsHelpError as exc:
        # No arguments asks for the help text (no_args_is_help): show it, as Click does.
        exc.show()
        return exc.exit_code
    except click_errors.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        error(f"{exc.format_message()}{hint}")
        return exc.exit_code
    except click_errors.ClickException as exc:
        error(exc.format_message())
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        error("aborted")
        return 1
    except (KeyboardInterrupt, EOFError):
        return 130
    except BrokenPipeError:
        _stdout_gone()
    return 0


def main() -> None:
    try:
        code = run()
        sys.stdout.flush()  # a closed pipe may only show on this last flush
    except BrokenPipeError:
        _stdout_gone()
    sys.exit(code)
