"""``web-chat serve``: run the chat server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from webchat.cli.common import DataDirOpt, TimelineDbOpt, TurnsDbOpt
from webchat.cli.output import error


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to bind.", envvar="WEBCHAT_HOST")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to bind.", envvar="WEBCHAT_PORT")
    ] = 8080,
    profiles: Annotated[
        list[Path] | None,
        typer.Option("--profiles", help="Profile registry YAML file (repeatable; later wins).", exists=False),
    ] = None,
    debug_api: Annotated[
        bool | None,
        typer.Option(
            "--debug-api/--no-debug-api", help="Mount /api/debug/* [default: on for loopback hosts]."
        ),
    ] = None,
    debug_token: Annotated[
        str | None,
        typer.Option("--debug-token", help="Bearer token for the debug API.", envvar="WEBCHAT_DEBUG_TOKEN"),
    ] = None,
    data_dir: DataDirOpt = None,
    turns_db: TurnsDbOpt = None,
    timeline_db: TimelineDbOpt = None,
    max_running: Annotated[
        int | None,
        typer.Option(
            "--max-running",
            min=1,
            max=10_000,
            help="Turns that run at once across conversations; the rest wait in the order accepted.",
            envvar="WEBCHAT_MAX_RUNNING",
        ),
    ] = None,
    max_queue: Annotated[
        int | None,
        typer.Option(
            "--max-queue",
            min=1,
            max=10_000,
            help="Prompts that may wait in one conversation's queue; one more is 429 queue_full.",
            envvar="WEBCHAT_MAX_QUEUE",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A Host name clients may use besides the bind address and localhost (repeatable; "
            "WEBCHAT_ALLOWED_HOSTS, comma-separated).",
        ),
    ] = None,
    allowed_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-origin",
            help="An origin (scheme://host[:port]) whose pages may open sockets and send changes, "
            "besides the server's own (repeatable; WEBCHAT_ALLOWED_ORIGINS, comma-separated).",
        ),
    ] = None,
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth",
            help="local: no sign-in (loopback binds only); required: only signed-in users, also on "
            "loopback [default: local on loopback, required otherwise].",
            envvar="WEBCHAT_AUTH",
            metavar="local|required",
        ),
    ] = None,
    provider_key_env: Annotated[
        list[str] | None,
        typer.Option(
            "--provider-key-env",
            help="An environment variable profiles may name as runtime.api_key_env (repeatable; "
            "WEBCHAT_PROVIDER_KEY_ENVS, comma-separated) [default: OPENAI_API_KEY, ANTHROPIC_API_KEY].",
            metavar="NAME",
        ),
    ] = None,
    max_conversations_per_user: Annotated[
        int | None,
        typer.Option(
            "--max-conversations-per-user",
            min=1,
            help="Conversations one user may have live at once; one more is 429 too_many_conversations.",
            envvar="WEBCHAT_MAX_CONVERSATIONS_PER_USER",
        ),
    ] = None,
    max_sockets_per_user: Annotated[
        int | None,
        typer.Option(
            "--max-sockets-per-user",
            min=1,
            help="WebSockets one user may have open at once; one more is refused with too_many_sockets.",
            envvar="WEBCHAT_MAX_SOCKETS_PER_USER",
        ),
    ] = None,
    max_prompts_per_user: Annotated[
        int | None,
        typer.Option(
            "--max-prompts-per-user",
            min=1,
            help="Prompts one user may have waiting or running at once, across conversations; one more is "
            "429 too_many_prompts.",
            envvar="WEBCHAT_MAX_PROMPTS_PER_USER",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Run the chat server with the web UI, the chat API and (on loopback) the debug API."""
    import uvicorn

    from webchat.runtimes.profiles import load_registries
    from webchat.server.app import create_app, open_stores
    from webchat.server.settings import Settings
    from webchat.stores.protocol import StoreError

    overrides: dict[str, Any] = {"host": host, "port": port}
    for key, value in (
        ("data_dir", data_dir),
        ("turns_db", turns_db),
        ("timeline_db", timeline_db),
        ("debug_api", debug_api),
        ("debug_token", debug_token),
        ("max_running", max_running),
        ("max_queue", max_queue),
        ("allowed_hosts", allowed_host),
        ("allowed_origins", allowed_origin),
        ("auth", auth),
        ("provider_key_envs", provider_key_env),
        ("max_conversations_per_user", max_conversations_per_user),
        ("max_sockets_per_user", max_sockets_per_user),
        ("max_prompts_per_user", max_prompts_per_user),
    ):
        if value is not None:
            overrides[key] = value
    if profiles:
        overrides["profiles"] = profiles
    try:
        settings = Settings(**overrides)
        settings.validate_security()
        registries = load_registries(settings.profiles)
    except Exception as exc:
        error(_one_line(exc))
        raise typer.Exit(2) from exc
    # Checked before anything is created: a refused start leaves no data directory behind.
    if settings.mode == "team":
        try:
            admin = _has_admin(settings.auth_path)
        except StoreError as exc:
            error(_one_line(exc))
            raise typer.Exit(2) from exc
        if not admin:
            error(
                f"team mode (--host {host!r}) lets in only signed-in users, and there is no admin yet: "
                f"run 'web-chat users add NAME --admin --data-dir {settings.data_dir}' first"
            )
            raise typer.Exit(2)
    # The stores are opened (and their owner lock taken) before the server starts, so an unusable or
    # busy store is one line and exit 2, never a traceback from inside the server.
    try:
        stores = open_stores(settings, registries)
    except (StoreError, OSError, ValueError) as exc:
        error(_one_line(exc))
        raise typer.Exit(2) from exc
    try:
        app = create_app(settings, stores)
    except Exception as exc:
        stores.close()
        error(_one_line(exc))
        raise typer.Exit(2) from exc
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    print(
        f"web-chat: serving on http://{shown}:{port}/  ({settings.mode} mode; data: {settings.data_dir})",
        flush=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None,
        ws_ping_interval=20,
    )


def _has_admin(path: Path) -> bool:
    from webchat.auth.store import SQLiteAuthStore

    if not path.is_file():
        return False
    store = SQLiteAuthStore(path)
    try:
        return store.has_admin()
    finally:
        store.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__
