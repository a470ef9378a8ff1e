"""``web-chat profiles list|show``: the runtimes the server would offer (cli.md)."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from webchat.cli.output import OutputFormat, emit_document, emit_records, error
from webchat.runtimes.profiles import (
    DEFAULT_PROVIDER_KEY_ENVS,
    ProfileError,
    ProfileRegistry,
    Registries,
    allow_key_envs,
    api_key_env_for,
    iter_profiles,
    load_registries,
)
from webchat.runtimes.resolve import (
    RuntimeResolutionError,
    lookup_profile,
    lookup_registry,
    runtime_from_profile,
)

LIST_COLUMNS = (
    "registry",
    "slug",
    "display_name",
    "engine",
    "model",
    "is_default",
    "version",
    "usable",
    "reason",
)


class DocumentFormat(StrEnum):
    json = "json"
    yaml = "yaml"


ProfilesFilesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--profiles",
        help="A profile registry YAML file; repeat for several (later files win over earlier ones).",
        metavar="FILE",
    ),
]
KeyEnvsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--provider-key-env",
        help="A variable profiles may read their key from, as 'serve --provider-key-env' (repeatable) "
        "[default: WEBCHAT_PROVIDER_KEY_ENVS, else OPENAI_API_KEY and ANTHROPIC_API_KEY].",
        metavar="NAME",
    ),
]
RegistryOpt = Annotated[
    str | None, typer.Option("--registry", help="Registry slug [default: the default one]")
]


def _load(files: list[Path] | None, key_envs: list[str] | None = None) -> Registries:
    # The same allow-list the server would use, so "usable" here means usable there.
    if key_envs is None:
        env = os.environ.get("WEBCHAT_PROVIDER_KEY_ENVS")
        key_envs = (
            [n.strip() for n in env.split(",") if n.strip()] if env else list(DEFAULT_PROVIDER_KEY_ENVS)
        )
    allow_key_envs(key_envs)
    try:
        return load_registries(files or [])
    except ProfileError as exc:
        error(str(exc))
        raise typer.Exit(2) from None


def list_profiles(
    profiles: ProfilesFilesOpt = None,
    registry: RegistryOpt = None,
    provider_key_env: KeyEnvsOpt = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Output format")
    ] = OutputFormat.table,
) -> None:
    """List the profiles (runtimes) of every registry: built-in first, then the files given.

    ``usable`` says whether a profile can run now and ``reason`` why not (no model, the API key variable
    is not set, the provider SDK is missing). Only the key variable's presence is checked.
    """
    registries = _load(profiles, provider_key_env)
    selected: list[ProfileRegistry] = list(registries)
    if registry is not None:
        try:
            selected = [lookup_registry(registries, registry)]
        except RuntimeResolutionError as exc:
            error(exc.message)
            raise typer.Exit(2) from None
    records: list[dict[str, Any]] = []
    for reg, prof in iter_profiles(selected):
        reason = prof.unusable_reason
        records.append(
            {
                "registry": reg.slug,
                "slug": prof.slug,
                "display_name": prof.display_name,
                "description": prof.description,
                "engine": prof.runtime.engine,
                "model": prof.runtime.model,
                "is_default": reg.default_profile_slug == prof.slug,
                "default_registry": reg.slug == registries.default_registry,
                "version": prof.version,
                "usable": not reason,
                "reason": reason,
            }
        )
    emit_records(
        records,
        output,
        LIST_COLUMNS,
        title=f"Profiles (default registry: {registries.default_registry})",
        styles={"slug": "bold"},
        row_style=lambda rec: None if rec["usable"] else "dim",
    )


def show_profile(
    slug: Annotated[str, typer.Argument(help="Profile slug")],
    registry: RegistryOpt = None,
    profiles: ProfilesFilesOpt = None,
    provider_key_env: KeyEnvsOpt = None,
    output: Annotated[
        DocumentFormat, typer.Option("--output", "-o", help="Output format")
    ] = DocumentFormat.json,
) -> None:
    """Show one profile and the runtime it resolves to, with its fingerprint (no secret values)."""
    registries = _load(profiles, provider_key_env)
    try:
        reg, prof = lookup_profile(registries, profile=slug, registry=registry)
    except RuntimeResolutionError as exc:
        error(exc.message)
        raise typer.Exit(2) from None
    reason = prof.unusable_reason
    doc = prof.document(registry=reg.slug, is_default=reg.default_profile_slug == prof.slug)
    doc["source"] = str(reg.source) if reg.source else None
    doc["read_only"] = reg.read_only
    doc["usable"] = not reason
    doc["reason"] = reason
    rt = prof.runtime
    # The variable the key is read from at call time (None: no key, or a placeholder for a local server).
    doc["key_env"] = api_key_env_for(rt.engine, rt.base_url, rt.api_key_env)
    doc["resolved"] = runtime_from_profile(reg.slug, prof).document()
    emit_document(doc, OutputFormat(output.value))


def register(app: typer.Typer) -> None:
    """Add the ``profiles`` command group to ``app``."""
    profiles_app = typer.Typer(
        name="profiles",
        help="The profiles (runtimes) the server would offer.",
        no_args_is_help=True,
    )
    profiles_app.command("list")(list_profiles)
    profiles_app.command("show")(show_profile)
    app.add_typer(profiles_app, name="profiles")
