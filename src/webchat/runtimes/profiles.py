"""Profile registries: the runtimes a server offers, read from YAML files and the built-in registry.

A registry file looks like::

    slug: local
    profiles:
      fast:
        display_name: Fast
        description: Quick answers
        runtime:
          engine: offline          # offline | openai | anthropic
          model: ""
          system_prompt: You are terse.
          tools: [calculator]
          options: {token_delay_ms: 5}
          base_url: null           # provider endpoint (openai/anthropic; default: the provider's API)
          api_key_env: null        # NAME of the environment variable holding the API key, never the key
        policy: {allow_overrides: false, allowed_override_keys: [], denied_override_keys: []}
        version: 1

Registry and profile slugs are trimmed and lower-cased and must match the runtime-key pattern. Files never
hold secrets: option keys that look like credentials and URLs with credentials are refused.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from webchat.runtimes.tools import ToolRegistry, default_tool_registry
from webchat.storable import Unstorable, check_json
from webchat.turns.hashing import canonical_json
from webchat.turns.keys import normalize_slug
from webchat.turns.serde import Yaml12Loader, load_yaml

ENGINES: Final[tuple[str, ...]] = ("offline", "openai", "anthropic")
# Engines this release can run (a provider engine also needs its SDK: see engine_unavailable_reason).
AVAILABLE_ENGINES: Final[frozenset[str]] = frozenset(ENGINES)
PROVIDER_ENGINES: Final[frozenset[str]] = frozenset({"openai", "anthropic"})
# The key variable a provider profile reads when it names none (and has no base_url of its own).
DEFAULT_API_KEY_ENV: Final[dict[str, str]] = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
# The SDK package each provider engine is built on.
ENGINE_PACKAGES: Final[dict[str, str]] = {"openai": "openai", "anthropic": "anthropic"}
OVERRIDE_KEYS: Final[tuple[str, ...]] = ("system_prompt", "tools", "options")
BUILTIN_REGISTRY_SLUG: Final = "builtin"
DEFAULT_PROFILE_SLUG: Final = "default"
OFFLINE_STYLES: Final[tuple[str, ...]] = ("friendly", "terse", "plan")
MAX_TOKEN_DELAY_MS: Final = 10_000
MAX_TOOL_ITERATIONS: Final = 50
MAX_TIMEOUT_S: Final = 3600
MAX_RETRIES: Final = 10
MAX_OUTPUT_TOKENS: Final = 1_000_000
# Options each provider engine understands (anything else is refused, so a typo does not go unnoticed).
# Anthropic's Messages API (version 2026-10-21, SDK 2.x) refuses sampling settings: no temperature/top_p.
PROVIDER_OPTIONS: Final[dict[str, tuple[str, ...]]] = {
    "openai": ("temperature", "max_tokens", "top_p", "timeout_s", "max_retries", "max_tool_iterations"),
    "anthropic": ("max_tokens", "timeout_s", "max_retries", "max_tool_iterations"),
}
MAX_TEMPERATURE: Final = 2.0

ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The variables a profile may name as its key by default (security.md: --provider-key-env).
DEFAULT_PROVIDER_KEY_ENVS: Final = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
# The operator's allow-list for this process. It is process-wide on purpose, like the environment it
# guards: every path that reads a key (profile loading, profile writes, the engines) must see the same list.
_allowed_key_envs: frozenset[str] = frozenset(DEFAULT_PROVIDER_KEY_ENVS)


def allow_key_envs(names: Iterable[str]) -> None:
    """Set the environment variables profiles may read their key from (``web-chat serve`` does, at start)."""
    global _allowed_key_envs
    _allowed_key_envs = frozenset(names)


def key_env_allowed(name: str) -> bool:
    return name in _allowed_key_envs


def key_env_refusal(name: str) -> str:
    """Why a runtime naming ``name`` is refused (the name is safe to show: it is on no allow-list)."""
    return (
        f"runtime.api_key_env {name} is not on this server's allow-list of key variables "
        "(the operator adds it with --provider-key-env)"
    )


_SECRET_KEY_RE: Final = re.compile(
    r"(api[_-]?key|secret|passw(or)?d|bearer|authorization|credential|(^|[_-])token$|^auth$)", re.IGNORECASE
)
_URL_USERINFO_RE: Final = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#]*@", re.IGNORECASE)


class ProfileError(ValueError):
    """A registry file or profile that cannot be used; the message names the file and what is wrong."""


def engine_unavailable_reason(engine: str) -> str:
    """Empty when the engine can run here, else why not (unknown engine, SDK package not installed)."""
    if engine not in AVAILABLE_ENGINES:
        return "not available in this release"
    package = ENGINE_PACKAGES.get(engine)
    if package and importlib.util.find_spec(package) is None:
        return f"the {package!r} package is not installed (pip install {package})"
    return ""


def api_key_env_for(engine: str, base_url: str | None, api_key_env: str | None) -> str | None:
    """The environment variable a runtime reads its API key from, or None when it sends no real key.

    - ``api_key_env`` named: that variable, whatever the endpoint.
    - not named, no ``base_url``: the provider's usual variable (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``).
    - not named, ``base_url`` set: None. A local server (Ollama, llama.cpp, vLLM…) gets a placeholder key,
      so that a real provider key is never sent to an endpoint that was not given one explicitly.

    The offline engine reads no key (None).
    """
    if engine not in PROVIDER_ENGINES:
        return None
    if api_key_env:
        return api_key_env
    if base_url:
        return None
    return DEFAULT_API_KEY_ENV[engine]


def runtime_unusable_reason(
    engine: str,
    *,
    model: str = "",
    base_url: str | None = None,
    api_key_env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Empty when a runtime can run now, else why not. Only the key variable's presence is checked."""
    reason = engine_unavailable_reason(engine)
    if reason or engine not in PROVIDER_ENGINES:
        return reason
    if not model.strip():
        return "runtime.model is not set"
    env = os.environ if environ is None else environ
    key_env = api_key_env_for(engine, base_url, api_key_env)
    if key_env is not None and not key_env_allowed(key_env):
        return key_env_refusal(key_env)
    if key_env is not None and not env.get(key_env, "").strip():
        return f"environment variable {key_env} is not set"
    return ""


def looks_like_secret_key(key: str) -> bool:
    """True for option names such as ``api_key``, ``secret``, ``password`` or ``access_token``."""
    return bool(_SECRET_KEY_RE.search(key))


def check_options(engine: str, options: Mapping[str, Any]) -> None:
    """Validate runtime options (also used for request overrides); raise ValueError with a clear message."""
    for key in options:
        if not isinstance(key, str):
            raise ValueError(f"option names must be strings, got {key!r}")
        if looks_like_secret_key(key):
            raise ValueError(
                f"option {key!r} looks like a secret; keep secrets in an environment variable "
                "and name it with runtime.api_key_env"
            )
    try:
        canonical_json(dict(options))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"options must be plain JSON values: {exc}") from None
    if not _int_in(options.get("max_tool_iterations"), 1, MAX_TOOL_ITERATIONS):
        raise ValueError(f"options.max_tool_iterations must be an integer from 1 to {MAX_TOOL_ITERATIONS}")
    if engine in PROVIDER_ENGINES:
        _check_provider_options(engine, options)
        return
    if engine != "offline":
        return
    delay = options.get("token_delay_ms")
    if delay is not None and (
        isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= MAX_TOKEN_DELAY_MS
    ):
        raise ValueError(f"options.token_delay_ms must be a number from 0 to {MAX_TOKEN_DELAY_MS}")
    fail = options.get("fail")
    if fail is not None and not isinstance(fail, bool):
        raise ValueError("options.fail must be true or false")
    style = options.get("style")
    if style is not None and style not in OFFLINE_STYLES:
        raise ValueError(f"options.style must be one of {', '.join(OFFLINE_STYLES)}")


def _int_in(value: Any, low: int, high: int) -> bool:
    """True for None (not set) or an integer (not a bool) from ``low`` to ``high``."""
    if value is None:
        return True
    return not isinstance(value, bool) and isinstance(value, int) and low <= value <= high


def _number_in(value: Any, low: float, high: float, *, low_open: bool = False) -> bool:
    """True for None (not set) or a number (not a bool) in the range."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (low < value if low_open else low <= value) and value <= high


def _check_provider_options(engine: str, options: Mapping[str, Any]) -> None:
    supported = PROVIDER_OPTIONS[engine]
    if engine == "anthropic":
        sampling = sorted(key for key in options if key in ("temperature", "top_p", "top_k"))
        if sampling:
            raise ValueError(
                f"option(s) {', '.join(sampling)} not supported by engine anthropic: the Anthropic Messages "
                "API (version 2026-10-21) refuses sampling settings"
            )
    unknown = sorted(key for key in options if key not in supported)
    if unknown:
        raise ValueError(
            f"unknown option(s) for engine {engine}: {', '.join(unknown)} (supported: {', '.join(supported)})"
        )
    if not _number_in(options.get("temperature"), 0, MAX_TEMPERATURE):
        raise ValueError(f"options.temperature must be a number from 0 to {MAX_TEMPERATURE:g}")
    if not _number_in(options.get("top_p"), 0, 1):
        raise ValueError("options.top_p must be a number from 0 to 1")
    if not _int_in(options.get("max_tokens"), 1, MAX_OUTPUT_TOKENS):
        raise ValueError(f"options.max_tokens must be an integer from 1 to {MAX_OUTPUT_TOKENS}")
    if not _number_in(options.get("timeout_s"), 0, MAX_TIMEOUT_S, low_open=True):
        raise ValueError(f"options.timeout_s must be a number of seconds above 0, at most {MAX_TIMEOUT_S}")
    if not _int_in(options.get("max_retries"), 0, MAX_RETRIES):
        raise ValueError(f"options.max_retries must be an integer from 0 to {MAX_RETRIES}")


def _none_to_empty(value: Any) -> Any:
    return "" if value is None else value


class RuntimeSettings(BaseModel):
    """What a profile runs: engine, model, system prompt, tools and engine options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str
    model: str = ""
    system_prompt: str = ""
    tools: tuple[str, ...] = ()
    options: dict[str, Any] = Field(default_factory=dict)
    base_url: str | None = None
    api_key_env: str | None = None

    @field_validator("engine", mode="before")
    @classmethod
    def _engine(cls, value: Any) -> Any:
        if isinstance(value, str):
            engine = value.strip().lower()
            if engine not in ENGINES:
                raise ValueError(f"unknown engine {value!r} (expected one of {', '.join(ENGINES)})")
            return engine
        return value

    @field_validator("model", "system_prompt", mode="before")
    @classmethod
    def _empty_strings(cls, value: Any) -> Any:
        return _none_to_empty(value)

    @field_validator("tools", mode="before")
    @classmethod
    def _tools(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            raise ValueError("tools must be a list of tool names")
        return value

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(name.strip() for name in value)
        if any(not name for name in names):
            raise ValueError("tool names must not be empty")
        if len(set(names)) != len(names):
            raise ValueError("tools must not repeat a name")
        return names

    @field_validator("options", mode="before")
    @classmethod
    def _options_none(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if _URL_USERINFO_RE.match(value.strip()):
            raise ValueError("base_url must not contain credentials")
        return value.strip()

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not ENV_NAME.fullmatch(value.strip()):
            # The value is not echoed: someone may have pasted the key itself here.
            raise ValueError("api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY)")
        return value.strip()

    @model_validator(mode="after")
    def _check_options(self) -> RuntimeSettings:
        check_options(self.engine, self.options)
        return self


class OverridePolicy(BaseModel):
    """Which request overrides (``request_overrides``) a profile accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_overrides: bool = False
    allowed_override_keys: tuple[str, ...] = ()  # empty = every override key
    denied_override_keys: tuple[str, ...] = ()

    @field_validator("allowed_override_keys", "denied_override_keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            raise ValueError("must be a list of override keys")
        return value

    @field_validator("allowed_override_keys", "denied_override_keys")
    @classmethod
    def _known_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            if key not in OVERRIDE_KEYS:
                raise ValueError(f"unknown override key {key!r} (expected one of {', '.join(OVERRIDE_KEYS)})")
        return value

    def permits(self, key: str) -> bool:
        if not self.allow_overrides or key in self.denied_override_keys:
            return False
        return not self.allowed_override_keys or key in self.allowed_override_keys


class Profile(BaseModel):
    """One profile of a registry. ``slug`` comes from the key it is written under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: str
    display_name: str = ""
    description: str = ""
    runtime: RuntimeSettings
    policy: OverridePolicy = Field(default_factory=OverridePolicy)
    version: int = Field(default=1, ge=1, strict=True)

    @field_validator("display_name", "description", mode="before")
    @classmethod
    def _empty_strings(cls, value: Any) -> Any:
        return _none_to_empty(value)

    @model_validator(mode="before")
    @classmethod
    def _default_display_name(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not str(data.get("display_name") or "").strip():
            data = {**data, "display_name": data.get("slug", "")}
        return data

    @property
    def usable(self) -> bool:
        """Whether the profile can run now (see :attr:`unusable_reason`)."""
        return not self.unusable_reason

    @property
    def unusable_reason(self) -> str:
        """Empty when usable, else why not: engine or SDK missing, no model, API key variable not set."""
        rt = self.runtime
        return runtime_unusable_reason(
            rt.engine, model=rt.model, base_url=rt.base_url, api_key_env=rt.api_key_env
        )

    def document(self, *, registry: str | None = None, is_default: bool | None = None) -> dict[str, Any]:
        """The profile as a JSON-ready document. Profiles never hold secret values (see module doc)."""
        doc: dict[str, Any] = {}
        if registry is not None:
            doc["registry"] = registry
        doc["slug"] = self.slug
        doc["display_name"] = self.display_name
        doc["description"] = self.description
        if is_default is not None:
            doc["is_default"] = is_default
        doc["version"] = self.version
        doc["runtime"] = {
            "engine": self.runtime.engine,
            "model": self.runtime.model,
            "system_prompt": self.runtime.system_prompt,
            "tools": list(self.runtime.tools),
            "options": dict(self.runtime.options),
            "base_url": self.runtime.base_url,
            "api_key_env": self.runtime.api_key_env,
        }
        doc["policy"] = {
            "allow_overrides": self.policy.allow_overrides,
            "allowed_override_keys": list(self.policy.allowed_override_keys),
            "denied_override_keys": list(self.policy.denied_override_keys),
        }
        return doc


@dataclass
class ProfileRegistry:
    """A named set of profiles. Registries loaded from YAML (and the built-in one) are read-only."""

    slug: str
    profiles: dict[str, Profile]
    source: Path | None = None
    read_only: bool = True

    @property
    def default_profile_slug(self) -> str:
        """``default`` if the registry has it, else the first profile by slug."""
        if DEFAULT_PROFILE_SLUG in self.profiles:
            return DEFAULT_PROFILE_SLUG
        return min(self.profiles)

    @property
    def default_profile(self) -> Profile:
        return self.profiles[self.default_profile_slug]

    def get(self, slug: str) -> Profile | None:
        return self.profiles.get(slug)

    def sorted_profiles(self) -> list[Profile]:
        return [self.profiles[slug] for slug in sorted(self.profiles)]


class Registries:
    """The registries a server offers: the built-in one first, then files in the order given.

    **Later wins**: adding a registry whose slug is already present replaces the earlier registry as a
    whole (its profiles are not merged). ``default_registry`` is the slug of the last registry added, which
    is the last file's registry when files were given, else ``builtin``.
    """

    def __init__(
        self, registries: Iterable[ProfileRegistry] = (), *, tools: ToolRegistry | None = None
    ) -> None:
        self.tools: ToolRegistry = tools if tools is not None else default_tool_registry()
        self._by_slug: dict[str, ProfileRegistry] = {}
        self.default_registry: str = BUILTIN_REGISTRY_SLUG
        for registry in registries:
            self.add(registry)

    @classmethod
    def load(
        cls,
        files: Sequence[str | Path] = (),
        *,
        include_builtin: bool = True,
        tools: ToolRegistry | None = None,
    ) -> Registries:
        regs = cls(tools=tools)
        if include_builtin:
            regs.add(builtin_registry(tools=regs.tools))
        for path in files:
            regs.add(load_registry_file(path, tools=regs.tools))
        return regs

    def add(self, registry: ProfileRegistry) -> None:
        """Add a registry; one with the same slug is replaced (later wins) and it becomes the default."""
        self._by_slug.pop(registry.slug, None)
        self._by_slug[registry.slug] = registry
        self.default_registry = registry.slug

    def get(self, slug: str) -> ProfileRegistry | None:
        return self._by_slug.get(slug)

    def __contains__(self, slug: object) -> bool:
        return slug in self._by_slug

    def __iter__(self) -> Iterator[ProfileRegistry]:
        return iter(self._by_slug.values())

    def __len__(self) -> int:
        return len(self._by_slug)

    def slugs(self) -> list[str]:
        return list(self._by_slug)

    @property
    def default(self) -> ProfileRegistry:
        found = self._by_slug.get(self.default_registry)
        if found is None:
            raise ProfileError("no profile registry is loaded")
        return found


def load_registries(files: Sequence[str | Path] = (), *, tools: ToolRegistry | None = None) -> Registries:
    """The built-in registry, then ``files`` in order (later wins); raises :class:`ProfileError`."""
    return Registries.load(files, tools=tools)


# --- loading -----------------------------------------------------------------------------------------


def _duplicate_key(node: yaml.Node, where: str = "") -> str | None:
    """The path of the first mapping key written twice in a YAML document (PyYAML keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else ""
            path = f"{where}.{key}" if where else key
            if key and key in seen:
                return path
            seen.add(key)
            found = _duplicate_key(value_node, path)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found = _duplicate_key(item, f"{where}[{index}]")
            if found:
                return found
    return None


def _format_validation(exc: ValidationError, prefix: str) -> str:
    # Only locations and messages: pydantic's input values could echo something secret.
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not part of the profile format)"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def parse_registry(doc: Any, *, source: str, tools: ToolRegistry | None = None) -> ProfileRegistry:
    """Build a registry from a parsed YAML/JSON document; ``source`` names it in error messages."""
    tools = tools if tools is not None else default_tool_registry()
    if not isinstance(doc, Mapping):
        raise ProfileError(f"{source}: a profile registry must be a mapping with 'slug' and 'profiles'")
    unknown = sorted(str(k) for k in doc if k not in ("slug", "profiles"))
    if unknown:
        raise ProfileError(
            f"{source}: unknown top-level key(s): {', '.join(unknown)} (expected slug, profiles)"
        )
    raw_slug = doc.get("slug")
    if not isinstance(raw_slug, str):
        raise ProfileError(f"{source}: 'slug' (the registry slug, a string) is required")
    try:
        registry_slug = normalize_slug(raw_slug)
    except ValueError:
        raise ProfileError(
            f"{source}: invalid registry slug {raw_slug!r} (lower-case letters, digits, '.', '_', '-')"
        ) from None
    raw_profiles = doc.get("profiles")
    if not isinstance(raw_profiles, Mapping) or not raw_profiles:
        raise ProfileError(f"{source}: 'profiles' must be a non-empty mapping of profile slug to profile")
    profiles: dict[str, Profile] = {}
    for raw_key, body in raw_profiles.items():
        key_text = str(raw_key)
        try:
            slug = normalize_slug(key_text)
        except ValueError:
            raise ProfileError(
                f"{source}: invalid profile slug {key_text!r} (lower-case letters, digits, '.', '_', '-')"
            ) from None
        if slug in profiles:
            raise ProfileError(f"{source}: profile slug {slug!r} is defined more than once")
        if not isinstance(body, Mapping):
            raise ProfileError(f"{source}: profiles.{slug} must be a mapping")
        data = dict(body)
        if "slug" in data and str(data["slug"]).strip().lower() != slug:
            raise ProfileError(f"{source}: profiles.{slug}.slug {data['slug']!r} differs from its key")
        data["slug"] = slug
        try:
            profile = Profile.model_validate(data)
        except ValidationError as exc:
            raise ProfileError(f"{source}: {_format_validation(exc, f'profiles.{slug}')}") from None
        for tool in profile.runtime.tools:
            if tool not in tools:
                available = ", ".join(tools.names()) or "none"
                raise ProfileError(
                    f"{source}: profiles.{slug}.runtime.tools: unknown tool {tool!r} (available: {available})"
                )
        profiles[slug] = profile
    return ProfileRegistry(slug=registry_slug, profiles=profiles)


def parse_registry_text(text: str, *, source: str, tools: ToolRegistry | None = None) -> ProfileRegistry:
    try:
        node = yaml.compose(text, Loader=Yaml12Loader)
        duplicate = _duplicate_key(node) if node is not None else None
        if duplicate:
            raise ProfileError(f"{source}: key {duplicate!r} is written more than once")
        doc = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: invalid YAML: {exc}") from None
    check_storable(doc, source)
    return parse_registry(doc, source=source, tools=tools)


def check_storable(doc: Any, source: str) -> None:
    """A profile's text ends up in turn rows (system prompt, options) and in ``profiles.db``: YAML can
    spell a NUL or a lone surrogate (``"\\0"``, ``"\\ud800"``), which no store can hold, so such a
    document is refused when it is loaded or written rather than failing every turn that uses it."""
    if not isinstance(doc, Mapping):
        return  # parse_registry says what is wrong with it
    try:
        for key, value in doc.items():
            check_json(value, str(key))
    except Unstorable as exc:
        raise ProfileError(f"{source}: {exc.message}") from None


def load_registry_file(path: str | Path, *, tools: ToolRegistry | None = None) -> ProfileRegistry:
    """Load one registry YAML file; raises :class:`ProfileError` naming the file on any problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{file}: cannot read profile registry: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{file}: not a UTF-8 text file") from None
    registry = parse_registry_text(text, source=str(file), tools=tools)
    registry.source = file
    return registry


def builtin_registry(
    *, tools: ToolRegistry | None = None, environ: Mapping[str, str] | None = None
) -> ProfileRegistry:
    """The registry shipped with the package (``builtin.yaml``).

    Its offline profiles need no setup and are always there. Its provider profiles are there only when
    their API key variable is set (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``) in ``environ`` (default: the
    process environment) when the registry is loaded; only the variable's presence is looked at.
    """
    resource = resources.files("webchat.runtimes").joinpath("builtin.yaml")
    registry = parse_registry_text(resource.read_text(encoding="utf-8"), source="builtin.yaml", tools=tools)
    if registry.slug != BUILTIN_REGISTRY_SLUG:
        raise ProfileError(f"builtin.yaml: registry slug must be {BUILTIN_REGISTRY_SLUG!r}")
    env = os.environ if environ is None else environ
    for slug, profile in list(registry.profiles.items()):
        rt = profile.runtime
        key_env = api_key_env_for(rt.engine, rt.base_url, rt.api_key_env)
        if key_env is not None and not env.get(key_env, "").strip():
            del registry.profiles[slug]
    if DEFAULT_PROFILE_SLUG not in registry.profiles:
        raise ProfileError(f"builtin.yaml: the {DEFAULT_PROFILE_SLUG!r} profile must need no API key")
    registry.source = Path(str(resource))
    return registry


def iter_profiles(registries: Iterable[ProfileRegistry]) -> Iterator[tuple[ProfileRegistry, Profile]]:
    """Every (registry, profile) pair, registries in order and profiles by slug."""
    for registry in registries:
        for profile in registry.sorted_profiles():
            yield registry, profile
