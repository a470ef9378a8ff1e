"""Resolving a request's profile selection into the runtime that will run its turn.

The resolved runtime is what a turn records (runtime-truth.md §1–2): its runtime key (the profile slug),
the registry and profile version, and a fingerprint over the effective settings. Nothing here reads
environment variables: ``api_key_env`` is carried and hashed as a NAME only, never as a value.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final
from urllib.parse import unquote

from webchat.runtimes.profiles import (
    OVERRIDE_KEYS,
    Profile,
    ProfileRegistry,
    Registries,
    check_options,
)
from webchat.turns.hashing import canonical_json
from webchat.turns.keys import is_valid_slug, normalize_slug

FINGERPRINT_SCHEME: Final = "webchat.runtime_fingerprint@v1"


class RuntimeResolutionError(Exception):
    """A selection or override that cannot be resolved; ``status`` and ``code`` map to the HTTP error."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"error": self.message, "code": self.code}


class InvalidSlug(RuntimeResolutionError):
    status = 400
    code = "invalid_slug"


class UnknownRegistry(RuntimeResolutionError):
    status = 404
    code = "unknown_registry"


class UnknownProfile(RuntimeResolutionError):
    status = 404
    code = "unknown_profile"


class OverrideNotAllowed(RuntimeResolutionError):
    status = 400
    code = "override_not_allowed"


class UnsupportedOverrideKey(RuntimeResolutionError):
    status = 400
    code = "unsupported_override_key"


class InvalidOverride(RuntimeResolutionError):
    """An allowed override key with a value of the wrong type (or an unknown tool, a secret-like option)."""

    status = 400
    code = "invalid_override"


def compute_fingerprint(
    *,
    registry_slug: str,
    profile_slug: str,
    profile_version: int,
    engine: str,
    model: str,
    system_prompt: str,
    tools: tuple[str, ...],
    options: Mapping[str, Any],
    base_url: str | None,
    api_key_env: str | None,
) -> str:
    """``sha256:<hex>`` over the canonical JSON of the registry, slug, version and effective settings."""
    material = {
        "scheme": FINGERPRINT_SCHEME,
        "registry": registry_slug,
        "slug": profile_slug,
        "profile_version": profile_version,
        "settings": {
            "engine": engine,
            "model": model,
            "system_prompt": system_prompt,
            "tools": list(tools),
            "options": dict(options),
            "base_url": base_url,
            "api_key_env": api_key_env,  # the variable's name; its value is never read here
        },
    }
    return "sha256:" + hashlib.sha256(canonical_json(material).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ResolvedRuntime:
    """The runtime one turn runs with. ``fingerprint`` is computed from the other fields."""

    runtime_key: str
    profile_slug: str
    registry_slug: str
    profile_version: int
    engine: str
    model: str
    system_prompt: str
    tools: tuple[str, ...]
    options: dict[str, Any] = field(hash=False)
    base_url: str | None = None
    api_key_env: str | None = None
    display_name: str = ""
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tools", tuple(self.tools))
        object.__setattr__(self, "options", copy.deepcopy(dict(self.options)))
        fingerprint = compute_fingerprint(
            registry_slug=self.registry_slug,
            profile_slug=self.profile_slug,
            profile_version=self.profile_version,
            engine=self.engine,
            model=self.model,
            system_prompt=self.system_prompt,
            tools=self.tools,
            options=self.options,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
        )
        object.__setattr__(self, "fingerprint", fingerprint)

    def metadata(self) -> dict[str, Any]:
        """The ``webchat.runtime@v1`` turn-metadata object."""
        return {
            "runtime_key": self.runtime_key,
            "profile_slug": self.profile_slug,
            "registry_slug": self.registry_slug,
            "profile_version": self.profile_version,
            "runtime_fingerprint": self.fingerprint,
        }

    def document(self) -> dict[str, Any]:
        """Everything about the runtime as JSON (no secret values: only the API key variable's name)."""
        return {
            "runtime_key": self.runtime_key,
            "profile_slug": self.profile_slug,
            "registry_slug": self.registry_slug,
            "profile_version": self.profile_version,
            "display_name": self.display_name,
            "engine": self.engine,
            "model": self.model,
            "system_prompt": self.system_prompt,
            "tools": list(self.tools),
            "options": copy.deepcopy(self.options),
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "runtime_fingerprint": self.fingerprint,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> ResolvedRuntime:
        """The runtime :meth:`document` described (a queued prompt's, read back after a restart).

        Raises ``ValueError`` when the document is incomplete or its fingerprint does not match the
        settings it holds: a prompt never runs on a runtime other than the one its request resolved.
        """
        try:
            runtime = cls(
                runtime_key=str(doc["runtime_key"]),
                profile_slug=str(doc["profile_slug"]),
                registry_slug=str(doc["registry_slug"]),
                profile_version=int(doc["profile_version"]),
                engine=str(doc["engine"]),
                model=str(doc["model"]),
                system_prompt=str(doc["system_prompt"]),
                tools=tuple(str(t) for t in doc["tools"]),
                options=dict(doc["options"]),
                base_url=None if doc.get("base_url") is None else str(doc["base_url"]),
                api_key_env=None if doc.get("api_key_env") is None else str(doc["api_key_env"]),
                display_name=str(doc.get("display_name", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"incomplete runtime document: {exc}") from exc
        if runtime.fingerprint != doc.get("runtime_fingerprint"):
            raise ValueError("runtime document does not match its fingerprint")
        return runtime


def runtime_from_profile(registry_slug: str, profile: Profile) -> ResolvedRuntime:
    """The runtime of a profile as written, without overrides."""
    rt = profile.runtime
    return ResolvedRuntime(
        runtime_key=profile.slug,
        profile_slug=profile.slug,
        registry_slug=registry_slug,
        profile_version=profile.version,
        engine=rt.engine,
        model=rt.model,
        system_prompt=rt.system_prompt,
        tools=rt.tools,
        options=rt.options,
        base_url=rt.base_url,
        api_key_env=rt.api_key_env,
        display_name=profile.display_name,
    )


def _slug(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidSlug(f"invalid {what} slug: expected a string")
    try:
        return normalize_slug(value)
    except ValueError:
        raise InvalidSlug(f"invalid {what} slug: {value!r}") from None


def lookup_registry(registries: Registries, registry: str | None) -> ProfileRegistry:
    """The named registry, or the default one when ``registry`` is None or blank."""
    if registry is None or (isinstance(registry, str) and not registry.strip()):
        return registries.default
    slug = _slug(registry, "registry")
    found = registries.get(slug)
    if found is None:
        raise UnknownRegistry(f"unknown registry: {slug!r}")
    return found


def lookup_profile(
    registries: Registries, *, profile: str | None, registry: str | None
) -> tuple[ProfileRegistry, Profile]:
    """Find a profile.

    - ``registry`` given: the profile in that registry (its default profile when ``profile`` is blank).
    - no registry: the default registry, and when the profile is not there, the other registries from the
      latest loaded to the earliest (later wins), so a built-in profile stays selectable by slug.
    """
    explicit_registry = registry is not None and not (isinstance(registry, str) and not registry.strip())
    reg = lookup_registry(registries, registry)
    if profile is None or (isinstance(profile, str) and not profile.strip()):
        return reg, reg.default_profile
    slug = _slug(profile, "profile")
    found = reg.get(slug)
    if found is not None:
        return reg, found
    if not explicit_registry:
        for other in reversed(list(registries)):
            candidate = other.get(slug)
            if candidate is not None:
                return other, candidate
    raise UnknownProfile(f"unknown profile: {slug!r} in registry {reg.slug!r}")


def apply_overrides(
    base: ResolvedRuntime,
    policy_profile: Profile,
    overrides: Mapping[str, Any] | None,
    registries: Registries,
) -> ResolvedRuntime:
    """Apply ``request_overrides`` under the profile's policy; returns a new runtime (new fingerprint)."""
    if overrides is None:
        return base
    if not isinstance(overrides, Mapping):
        raise InvalidOverride("request_overrides must be an object")
    if not overrides:
        return base
    unknown = sorted(str(k) for k in overrides if k not in OVERRIDE_KEYS)
    if unknown:
        raise UnsupportedOverrideKey(
            f"unsupported override key: {', '.join(unknown)} (supported: {', '.join(OVERRIDE_KEYS)})"
        )
    policy = policy_profile.policy
    if not policy.allow_overrides:
        raise OverrideNotAllowed(f"profile {policy_profile.slug!r} does not allow request overrides")
    for key in overrides:
        if not policy.permits(key):
            raise OverrideNotAllowed(f"profile {policy_profile.slug!r} does not allow overriding {key!r}")

    system_prompt = base.system_prompt
    tools = base.tools
    options = dict(base.options)
    if "system_prompt" in overrides:
        value = overrides["system_prompt"]
        if not isinstance(value, str):
            raise InvalidOverride("request_overrides.system_prompt must be a string")
        system_prompt = value
    if "tools" in overrides:
        value = overrides["tools"]
        if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
            raise InvalidOverride("request_overrides.tools must be a list of tool names")
        if len(set(value)) != len(value):
            raise InvalidOverride("request_overrides.tools must not repeat a name")
        for name in value:
            if name not in registries.tools:
                raise InvalidOverride(f"request_overrides.tools: unknown tool {name!r}")
        tools = tuple(value)
    if "options" in overrides:
        value = overrides["options"]
        if not isinstance(value, Mapping):
            raise InvalidOverride("request_overrides.options must be an object")
        options.update(value)  # ResolvedRuntime keeps a deep copy of its options
        try:
            check_options(base.engine, options)
        except ValueError as exc:
            raise InvalidOverride(f"request_overrides: {exc}") from None
    return ResolvedRuntime(
        runtime_key=base.runtime_key,
        profile_slug=base.profile_slug,
        registry_slug=base.registry_slug,
        profile_version=base.profile_version,
        engine=base.engine,
        model=base.model,
        system_prompt=system_prompt,
        tools=tools,
        options=options,
        base_url=base.base_url,
        api_key_env=base.api_key_env,
        display_name=base.display_name,
    )


def resolve_runtime(
    registries: Registries,
    *,
    profile: str | None = None,
    registry: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ResolvedRuntime:
    """Resolve a selection (see :func:`lookup_profile`) and request overrides into a runtime.

    Raises :class:`InvalidSlug`, :class:`UnknownRegistry`, :class:`UnknownProfile`,
    :class:`UnsupportedOverrideKey`, :class:`OverrideNotAllowed` or :class:`InvalidOverride`.
    """
    reg, prof = lookup_profile(registries, profile=profile, registry=registry)
    base = runtime_from_profile(reg.slug, prof)
    return apply_overrides(base, prof, overrides, registries)


# --- selection precedence (http-api.md "Chat") --------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which profile a request asked for, and where that came from.

    ``source`` is one of ``path``, ``body``, ``query``, ``cookie`` or ``default``.
    """

    profile: str | None
    registry: str | None
    source: str


def parse_cookie_selection(value: str | None) -> tuple[str, str] | None:
    """``"<registry>/<slug>"`` (possibly URL-encoded) → ``(registry, slug)`` normalised; invalid → None."""
    if not value or not isinstance(value, str):
        return None
    text = unquote(value).strip()
    if text.count("/") != 1:
        return None
    registry, slug = (part.strip().lower() for part in text.split("/"))
    if not is_valid_slug(registry) or not is_valid_slug(slug):
        return None
    return registry, slug


def cookie_value(registry: str, slug: str) -> str:
    """The ``chat_profile`` cookie value for a selection."""
    return f"{registry}/{slug}"


def _given(value: str | None) -> str | None:
    if value is None or not isinstance(value, str) or not value.strip():
        return None
    return value


def select_profile(
    *,
    path_profile: str | None = None,
    body_profile: str | None = None,
    query_profile: str | None = None,
    cookie: str | None = None,
    registry: str | None = None,
) -> Selection:
    """Apply the precedence path > body ``profile`` > query ``?profile=`` > cookie > registry default.

    ``registry`` is the request's explicit registry (body ``registry``, else query ``?registry=``). A
    cookie that cannot be parsed is ignored, as is a cookie for another registry than an explicit one.
    Blank values count as absent. Slugs are validated later, by :func:`resolve_runtime`.
    """
    explicit_registry = _given(registry)
    for source, value in (("path", path_profile), ("body", body_profile), ("query", query_profile)):
        given = _given(value)
        if given is not None:
            return Selection(profile=given, registry=explicit_registry, source=source)
    parsed = parse_cookie_selection(cookie)
    if parsed is not None:
        cookie_registry, cookie_slug = parsed
        if explicit_registry is None or explicit_registry.strip().lower() == cookie_registry:
            return Selection(profile=cookie_slug, registry=cookie_registry, source="cookie")
    return Selection(profile=None, registry=explicit_registry, source="default")


def resolve_selection(
    registries: Registries, selection: Selection, overrides: Mapping[str, Any] | None = None
) -> ResolvedRuntime:
    """Like :func:`resolve_runtime`; a cookie naming a registry or profile that no longer exists falls
    back to the default (a stale cookie must not break chat), every other error is raised."""
    try:
        return resolve_runtime(
            registries, profile=selection.profile, registry=selection.registry, overrides=overrides
        )
    except (UnknownProfile, UnknownRegistry):
        if selection.source != "cookie":
            raise
    return resolve_runtime(registries, overrides=overrides)
