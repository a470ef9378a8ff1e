"""Server settings from CLI flags and the environment (``WEBCHAT_*``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from webchat.auth.store import AUTH_DB_NAME
from webchat.cli.common import default_data_dir
from webchat.runtimes.profiles import DEFAULT_PROVIDER_KEY_ENVS, ENV_NAME


def is_loopback(host: str) -> bool:
    """Only loopback addresses and ``localhost``. An empty host binds every interface: never loopback."""
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """A bind address meaning "every interface": no client addresses the server by it."""
    return host.strip().strip("[]") in ("", "0.0.0.0", "::")


def _names(value: object) -> object:
    # WEBCHAT_ALLOWED_HOSTS / WEBCHAT_ALLOWED_ORIGINS: comma-separated (CLI flags give lists).
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WEBCHAT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    turns_db: Path | None = None
    timeline_db: Path | None = None
    profiles: list[Path] = Field(default_factory=list)
    # None: on for loopback hosts, off otherwise.
    debug_api: bool | None = None
    debug_token: str | None = None
    max_body_bytes: int = Field(1 << 20, ge=1024)
    max_prompt_chars: int = Field(32_000, ge=1)
    idle_evict_s: float = Field(900.0, gt=0)
    shutdown_grace_s: float = Field(10.0, ge=0)
    # Turns running at once across conversations; more wait their turn in the order they were accepted.
    max_running: int = Field(64, ge=1, le=10_000)
    # Prompts waiting in one conversation's queue; one more is 429 queue_full.
    max_queue: int = Field(32, ge=1, le=10_000)
    # Host header names accepted besides the bind address and the loopback names (DNS-rebinding guard).
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Origins (scheme://host[:port]) allowed besides the server's own, for sockets and state changes.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # None: local on a loopback bind, team otherwise. "required": team rules on loopback too.
    auth: Literal["local", "required"] | None = None
    # Environment variables a profile may name as runtime.api_key_env (security.md, provider keys).
    provider_key_envs: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_PROVIDER_KEY_ENVS)
    )
    # A browser session not used for this long is over (it is stored server-side and survives restarts).
    session_idle_s: float = Field(7 * 24 * 3600.0, ge=60)
    # Bounds per user (in local mode, for the one local user): conversations live at once, open sockets,
    # prompts waiting or running.
    max_conversations_per_user: int = Field(500, ge=1, le=1_000_000)
    max_sockets_per_user: int = Field(500, ge=1, le=1_000_000)
    max_prompts_per_user: int = Field(256, ge=1, le=1_000_000)

    _split_names = field_validator("allowed_hosts", "allowed_origins", "provider_key_envs", mode="before")(
        _names
    )

    @property
    def turns_path(self) -> Path:
        return self.turns_db or self.data_dir / "turns.db"

    @property
    def timeline_path(self) -> Path:
        return self.timeline_db or self.data_dir / "timeline.db"

    @property
    def auth_path(self) -> Path:
        return self.data_dir / AUTH_DB_NAME

    @property
    def mode(self) -> str:
        """ "local" (loopback, no sign-in) or "team" (only signed-in users; security.md, modes)."""
        if self.auth == "required" or not is_loopback(self.host):
            return "team"
        return "local"

    @property
    def debug_enabled(self) -> bool:
        return is_loopback(self.host) if self.debug_api is None else self.debug_api

    def validate_security(self) -> None:
        """Refuse settings that would expose more than they say."""
        if self.auth == "local" and not is_loopback(self.host):
            raise ValueError(
                f"--auth local is only for loopback binds; {self.host!r} is reachable from other "
                "machines: drop --auth local (team mode) or bind 127.0.0.1"
            )
        for name in self.provider_key_envs:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"--provider-key-env {name!r} is not an environment variable name")
