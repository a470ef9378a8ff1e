"""``web-chat users …`` and ``web-chat tokens …``: manage auth.db while the server runs (security.md).

auth.db is created only by ``users add`` (the first admin); every other command on a missing file says
so and exits 2. Every refusal of the store (an :class:`AuthError`) is one error line and exit 2.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from webchat.auth.store import (
    AUTH_DB_NAME,
    AuthError,
    SQLiteAuthStore,
    TokenInfo,
    User,
    check_password_rules,
    check_username,
    now_ms,
)
from webchat.cli.common import DataDirOpt, default_data_dir
from webchat.cli.output import OutputFormat, OutputOpt, emit_records, fail, local_time
from webchat.cli.stores import require_file
from webchat.stores.protocol import StoreError

users_app = typer.Typer(
    help="Manage users: add, list, disable, enable, change a password.", no_args_is_help=True
)
tokens_app = typer.Typer(
    help="Manage API tokens (Authorization: Bearer …): create, list, revoke.", no_args_is_help=True
)

NameArg = Annotated[
    str, typer.Argument(metavar="NAME", help="User name (case-insensitive).", show_default=False)
]
PasswordStdinOpt = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of stdin instead of prompting."
    ),
]

AUTH_HINT = "create the first user with 'web-chat users add NAME --admin', or check --data-dir"
USER_COLUMNS = ["username", "role", "status", "created_at_ms", "user_id"]
USER_TABLE_COLUMNS = ["username", "role", "status", "created", "user_id"]
TOKEN_COLUMNS = [
    "token_id",
    "username",
    "label",
    "status",
    "created_at_ms",
    "expires_at_ms",
    "last_used_at_ms",
    "revoked_at_ms",
]
TOKEN_TABLE_COLUMNS = ["token_id", "username", "label", "status", "created", "expires", "last_used"]


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")


def _auth_db(data_dir: Path | None) -> Path:
    return (data_dir or default_data_dir()) / AUTH_DB_NAME


@contextmanager
def _store(data_dir: Path | None, *, create: bool = False) -> Iterator[SQLiteAuthStore]:
    path = _auth_db(data_dir)
    if create:
        if path.parent.exists() and not path.parent.is_dir():
            raise fail(f"{path.parent}: is not a directory (check --data-dir)")
    else:
        require_file(path, "auth store", AUTH_HINT)
    try:
        store = SQLiteAuthStore(path)
    except (StoreError, OSError) as exc:
        raise fail(str(exc)) from exc
    try:
        yield store
    except AuthError as exc:
        raise fail(str(exc)) from exc
    except StoreError as exc:
        raise fail(str(exc)) from exc
    finally:
        store.close()


def _read_password(password_stdin: bool) -> str:
    """The new password: the first line of stdin, or typed twice at a terminal without echo."""
    if password_stdin:
        # Bytes, decoded here: a password that is not UTF-8 is one error line, not a traceback.
        stream = getattr(sys.stdin, "buffer", None)
        raw = (
            stream.readline()
            if stream is not None
            else sys.stdin.readline().encode("utf-8", "surrogateescape")
        )
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise fail("the password on stdin is not UTF-8 text") from None
        return line.removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        raise fail("no terminal to type the password on: pass --password-stdin and write it on stdin")
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Repeat password: ")
    if first != second:
        raise fail("the passwords do not match; nothing was changed")
    return first


def _user_record(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role,
        "status": "enabled" if user.enabled else "disabled",
        "created_at_ms": user.created_at_ms,
        "disabled_at_ms": user.disabled_at_ms,
        "user_id": user.user_id,
    }


def _short(value: str, keep: int) -> str:
    return value if len(value) <= keep else value[:keep] + "…"


# -- users --------------------------------------------------------------------------------------------


@users_app.command("add")
def add_cmd(
    name: NameArg,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin.")] = False,
    password_stdin: PasswordStdinOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Add a user (role user, or admin with --admin). Creates the data directory and auth.db if needed."""
    # A bad or taken name is refused before the password is typed twice, and nothing is created on disk
    # until name and password are both acceptable.
    try:
        check_username(name)
    except AuthError as exc:
        raise fail(str(exc)) from exc
    if _auth_db(data_dir).is_file():
        with _store(data_dir) as store:
            taken = store.get_user(name)
        if taken is not None:
            raise fail(f"a user named {taken.username!r} already exists")
    password = _read_password(password_stdin)
    try:
        check_password_rules(password)
    except AuthError as exc:
        raise fail(str(exc)) from exc
    with _store(data_dir, create=True) as store:
        user = store.add_user(name, password, admin=admin)
    print(f"added user {user.username} ({user.role})")


@users_app.command("list")
def list_cmd(data_dir: DataDirOpt = None, output: OutputOpt = OutputFormat.table) -> None:
    """Every user: name, role, status, creation time and id."""
    with _store(data_dir) as store:
        users = store.list_users()
    records = [_user_record(u) for u in users]
    if output is OutputFormat.table:
        rows = [
            {**r, "created": local_time(r["created_at_ms"]), "user_id": _short(r["user_id"], 10)}
            for r in records
        ]
        emit_records(rows, output, USER_TABLE_COLUMNS, title="users")
    else:
        emit_records(records, output, USER_COLUMNS)


@users_app.command("disable")
def disable_cmd(name: NameArg, data_dir: DataDirOpt = None) -> None:
    """Disable a user: their logins, browser sessions and tokens are refused from the next request."""
    with _store(data_dir) as store:
        user = store.set_disabled(name, True)
    print(f"disabled user {user.username}")


@users_app.command("enable")
def enable_cmd(name: NameArg, data_dir: DataDirOpt = None) -> None:
    """Enable a disabled user again (their tokens work again; ended browser sessions do not come back)."""
    with _store(data_dir) as store:
        user = store.set_disabled(name, False)
    print(f"enabled user {user.username}")


@users_app.command("passwd")
def passwd_cmd(name: NameArg, password_stdin: PasswordStdinOpt = False, data_dir: DataDirOpt = None) -> None:
    """Set a new password for a user; ends their browser sessions (their tokens keep working)."""
    with _store(data_dir) as store:
        user = store.get_user(name)
        if user is None:
            raise fail(f"no user named {name!r}")
        store.set_password(name, _read_password(password_stdin))
    print(f"changed the password of {user.username}; their browser sessions were ended")


# -- tokens -------------------------------------------------------------------------------------------


def _expiry_text(ms: int) -> str:
    return local_time(ms) if ms else "never"


@tokens_app.command("create")
def create_cmd(
    name: NameArg,
    label: Annotated[
        str, typer.Option("--label", help="What the token is for (shown by 'tokens list').")
    ] = "",
    expires_days: Annotated[
        int | None,
        typer.Option("--expires-days", help="Expire after this many days (1-3650); without it, never."),
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create an API token for a user. The token is printed once, alone on the last line of stdout."""
    with _store(data_dir) as store:
        info, secret = store.create_token(name, label=label, expires_days=expires_days)
        user = store.user_by_id(info.user_id)
    described = f" ({info.label})" if info.label else ""
    print(
        f"created token {info.token_id}{described} for {info.username}, expires: "
        f"{_expiry_text(info.expires_at_ms)}; it is shown only now:",
        file=sys.stderr,
    )
    if user is not None and not user.enabled:
        print(f"note: {user.username} is disabled; the token works once they are enabled", file=sys.stderr)
    sys.stdout.write(secret + "\n")


def _token_record(token: TokenInfo, at_ms: int) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "username": token.username,
        "user_id": token.user_id,
        "label": token.label,
        "status": token.status(at_ms),
        "created_at_ms": token.created_at_ms,
        "expires_at_ms": token.expires_at_ms,
        "last_used_at_ms": token.last_used_at_ms,
        "revoked_at_ms": token.revoked_at_ms,
    }


@tokens_app.command("list")
def tokens_list_cmd(
    name: Annotated[str | None, typer.Argument(help="Only this user's tokens.", show_default=False)] = None,
    data_dir: DataDirOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """API tokens (never their secrets): status active, expired or revoked; times of use and expiry."""
    with _store(data_dir) as store:
        tokens = store.list_tokens(name)
    at = now_ms()
    records = [_token_record(t, at) for t in tokens]
    if output is OutputFormat.table:
        rows = [
            {
                **r,
                "created": local_time(r["created_at_ms"]),
                "expires": _expiry_text(r["expires_at_ms"]),
                "last_used": local_time(r["last_used_at_ms"]) or "never",
            }
            for r in records
        ]
        emit_records(rows, output, TOKEN_TABLE_COLUMNS, title="API tokens")
    else:
        emit_records(records, output, TOKEN_COLUMNS)


@tokens_app.command("revoke")
def revoke_cmd(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="Token id (tok_…, see 'tokens list').")],
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke an API token: refused from its next request on."""
    with _store(data_dir) as store:
        info = store.revoke_token(token_id)
    print(f"revoked token {info.token_id} of {info.username}")
