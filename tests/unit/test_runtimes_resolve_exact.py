"""Runtime resolution pinned exactly: the fingerprint's material, the runtime document, every error
message, copies that really are deep. Written to leave no surviving mutant in runtimes/resolve.py
(``make mutate``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from webchat.runtimes.profiles import Registries, load_registries
from webchat.runtimes.resolve import (
    InvalidSlug,
    OverrideNotAllowed,
    ResolvedRuntime,
    RuntimeResolutionError,
    Selection,
    UnknownProfile,
    UnknownRegistry,
    compute_fingerprint,
    lookup_registry,
    parse_cookie_selection,
    resolve_runtime,
    resolve_selection,
    runtime_from_profile,
    select_profile,
)

LOCAL = """\
slug: local
profiles:
  open:
    display_name: Open door
    runtime:
      engine: offline
      model: tiny
      system_prompt: Be helpful.
      tools: [calculator]
      options: {token_delay_ms: 5, nested: {depth: 1}}
    policy: {allow_overrides: true}
  closed:
    runtime: {engine: offline}
  gptopen:
    runtime: {engine: openai, model: gpt-4o-mini, api_key_env: MY_KEY, base_url: https://api.example.test}
    policy: {allow_overrides: true}
  gpt:
    display_name: GPT
    runtime: {engine: openai, model: gpt-4o-mini, api_key_env: OPENAI_API_KEY, base_url: https://api.example.test}
"""


@pytest.fixture
def regs(tmp_path: Path) -> Registries:
    path = tmp_path / "local.yaml"
    path.write_text(LOCAL, encoding="utf-8")
    return load_registries([path])


def runtime(**changes: Any) -> ResolvedRuntime:
    fields: dict[str, Any] = {
        "runtime_key": "planner",
        "profile_slug": "planner",
        "registry_slug": "builtin",
        "profile_version": 3,
        "engine": "offline",
        "model": "m-1",
        "system_prompt": "Plan.",
        "tools": ["calculator"],
        "options": {"token_delay_ms": 10, "nested": {"a": [1, 2]}},
        "base_url": "http://h.test/v1",
        "api_key_env": "KEY_VAR",
        "display_name": "Planner",
    }
    fields.update(changes)
    return ResolvedRuntime(**fields)


# The canonical material of runtime(), spelled out by hand: keys sorted, compact, UTF-8.
MATERIAL = (
    '{"profile_version":3,"registry":"builtin","scheme":"webchat.runtime_fingerprint@v1",'
    '"settings":{"api_key_env":"KEY_VAR","base_url":"http://h.test/v1","engine":"offline",'
    '"model":"m-1","options":{"nested":{"a":[1,2]},"token_delay_ms":10},"system_prompt":"Plan.",'
    '"tools":["calculator"]},"slug":"planner"}'
)


def test_fingerprint_is_sha256_of_the_documented_material() -> None:
    expected = "sha256:" + hashlib.sha256(MATERIAL.encode("utf-8")).hexdigest()
    assert runtime().fingerprint == expected
    assert (
        compute_fingerprint(
            registry_slug="builtin",
            profile_slug="planner",
            profile_version=3,
            engine="offline",
            model="m-1",
            system_prompt="Plan.",
            tools=("calculator",),
            options={"token_delay_ms": 10, "nested": {"a": [1, 2]}},
            base_url="http://h.test/v1",
            api_key_env="KEY_VAR",
        )
        == expected
    )


def test_runtime_copies_its_inputs_deeply() -> None:
    tools = ["calculator"]
    options: dict[str, Any] = {"token_delay_ms": 10, "nested": {"a": [1, 2]}}
    rt = runtime(tools=tools, options=options)
    assert isinstance(rt.tools, tuple) and rt.tools == ("calculator",)
    tools.append("shell")
    options["nested"]["a"].append(3)
    assert rt.tools == ("calculator",) and rt.options == {"token_delay_ms": 10, "nested": {"a": [1, 2]}}
    assert rt.fingerprint == runtime().fingerprint


def test_document_and_metadata_are_exact_and_detached() -> None:
    rt = runtime()
    doc = rt.document()
    assert doc == {
        "runtime_key": "planner",
        "profile_slug": "planner",
        "registry_slug": "builtin",
        "profile_version": 3,
        "display_name": "Planner",
        "engine": "offline",
        "model": "m-1",
        "system_prompt": "Plan.",
        "tools": ["calculator"],
        "options": {"token_delay_ms": 10, "nested": {"a": [1, 2]}},
        "base_url": "http://h.test/v1",
        "api_key_env": "KEY_VAR",
        "runtime_fingerprint": rt.fingerprint,
    }
    doc["options"]["nested"]["a"].append(3)
    assert rt.options["nested"] == {"a": [1, 2]}
    assert rt.metadata() == {
        "runtime_key": "planner",
        "profile_slug": "planner",
        "registry_slug": "builtin",
        "profile_version": 3,
        "runtime_fingerprint": rt.fingerprint,
    }


def test_runtime_from_profile_carries_every_field(regs: Registries) -> None:
    reg = regs.get("local")
    assert reg is not None
    profile = reg.get("gpt")
    assert profile is not None
    rt = runtime_from_profile("local", profile)
    assert rt.document() == {
        "runtime_key": "gpt",
        "profile_slug": "gpt",
        "registry_slug": "local",
        "profile_version": profile.version,
        "display_name": "GPT",
        "engine": "openai",
        "model": "gpt-4o-mini",
        "system_prompt": profile.runtime.system_prompt,
        "tools": list(profile.runtime.tools),
        "options": dict(profile.runtime.options),
        "base_url": "https://api.example.test",
        "api_key_env": "OPENAI_API_KEY",
        "runtime_fingerprint": rt.fingerprint,
    }
    open_profile = reg.get("open")
    assert open_profile is not None
    rt = runtime_from_profile("local", open_profile)
    assert (rt.model, rt.system_prompt, rt.display_name) == ("tiny", "Be helpful.", "Open door")


def test_error_json_and_message() -> None:
    exc = UnknownProfile("no such thing")
    assert str(exc) == exc.message == "no such thing"
    assert exc.to_json() == {"error": "no such thing", "code": "unknown_profile"}
    assert RuntimeResolutionError("x").to_json() == {"error": "x", "code": "invalid_request"}


def message(exc_type: type[Exception], fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    assert str(info.value) == info.value.message  # type: ignore[attr-defined]
    return str(info.value)


def test_selection_error_messages(regs: Registries) -> None:
    assert message(InvalidSlug, resolve_runtime, regs, profile="Not Valid!") == (
        "invalid profile slug: 'Not Valid!'"
    )
    assert message(InvalidSlug, resolve_runtime, regs, registry="bad/slug") == (
        "invalid registry slug: 'bad/slug'"
    )
    assert message(InvalidSlug, lookup_registry, regs, 5) == "invalid registry slug: expected a string"
    assert message(UnknownRegistry, resolve_runtime, regs, registry="nope") == "unknown registry: 'nope'"
    assert message(UnknownProfile, resolve_runtime, regs, profile="nope") == (
        "unknown profile: 'nope' in registry 'local'"
    )


def test_override_error_messages(regs: Registries) -> None:
    def override(profile: str, overrides: Any) -> str:
        with pytest.raises(RuntimeResolutionError) as info:
            resolve_runtime(regs, profile=profile, overrides=overrides)
        return f"{info.value.code}: {info.value.message}"

    assert override("open", ["system_prompt"]) == "invalid_override: request_overrides must be an object"
    assert override("closed", {"temperature": 1, "model": "x"}) == (
        "unsupported_override_key: unsupported override key: model, temperature "
        "(supported: system_prompt, tools, options)"
    )
    assert override("closed", {"tools": []}) == (
        "override_not_allowed: profile 'closed' does not allow request overrides"
    )
    assert override("open", {"system_prompt": 3}) == (
        "invalid_override: request_overrides.system_prompt must be a string"
    )
    assert override("open", {"tools": "calculator"}) == (
        "invalid_override: request_overrides.tools must be a list of tool names"
    )
    assert override("open", {"tools": [1]}) == (
        "invalid_override: request_overrides.tools must be a list of tool names"
    )
    assert override("open", {"tools": ["calculator", "calculator"]}) == (
        "invalid_override: request_overrides.tools must not repeat a name"
    )
    assert (
        override("open", {"tools": ["shell"]})
        == "invalid_override: request_overrides.tools: unknown tool 'shell'"
    )
    assert (
        override("open", {"options": [1]}) == "invalid_override: request_overrides.options must be an object"
    )
    assert override("open", {"options": {"token_delay_ms": "x"}}).startswith(
        "invalid_override: request_overrides: options.token_delay_ms must be a number"
    )


def test_override_policy_per_key_message(tmp_path: Path) -> None:
    path = tmp_path / "narrow.yaml"
    path.write_text(
        "slug: n\nprofiles:\n  narrow:\n    runtime: {engine: offline}\n"
        "    policy: {allow_overrides: true, allowed_override_keys: [options]}\n",
        encoding="utf-8",
    )
    regs = load_registries([path])
    with pytest.raises(OverrideNotAllowed) as info:
        resolve_runtime(regs, profile="narrow", overrides={"options": {}, "tools": []})
    assert info.value.message == "profile 'narrow' does not allow overriding 'tools'"


def test_override_options_are_copied_deeply(regs: Registries) -> None:
    extra: dict[str, Any] = {"nested": {"depth": 2, "list": [1]}}
    rt = resolve_runtime(regs, profile="open", overrides={"options": extra})
    extra["nested"]["list"].append(2)
    assert rt.options == {"token_delay_ms": 5, "nested": {"depth": 2, "list": [1]}}
    base = resolve_runtime(regs, profile="open")
    assert base.options == {"token_delay_ms": 5, "nested": {"depth": 1}}


@pytest.mark.parametrize("profile", ["open", "gptopen"])
def test_overrides_keep_every_other_field(regs: Registries, profile: str) -> None:
    base = resolve_runtime(regs, profile=profile)
    rt = resolve_runtime(regs, profile=profile, overrides={"system_prompt": "Short."})
    assert rt.document() == {
        **base.document(),
        "system_prompt": "Short.",
        "runtime_fingerprint": rt.fingerprint,
    }
    assert rt.fingerprint != base.fingerprint
    if profile == "gptopen":
        assert (rt.base_url, rt.api_key_env) == ("https://api.example.test", "MY_KEY")


@pytest.mark.parametrize("value", [5, 1.5, ["builtin/fast"], b"builtin/fast"])
def test_cookie_values_that_are_not_text_are_ignored(value: Any) -> None:
    assert parse_cookie_selection(value) is None


def test_non_string_selections_count_as_absent() -> None:
    assert select_profile(path_profile=5, body_profile="fast") == Selection("fast", None, "body")  # type: ignore[arg-type]
    assert select_profile(body_profile="  ", query_profile="planner", registry="  ") == Selection(
        "planner", None, "query"
    )


def test_resolve_selection_applies_overrides_on_every_path(regs: Registries) -> None:
    overrides = {"system_prompt": "Short."}
    by_cookie = resolve_selection(regs, Selection("open", "local", "cookie"), overrides)
    assert (by_cookie.runtime_key, by_cookie.system_prompt) == ("open", "Short.")
    # A stale cookie falls back to the default runtime, overrides and all (closed allows none).
    with pytest.raises(OverrideNotAllowed):
        resolve_selection(regs, Selection("gone", "local", "cookie"), overrides)
    stale = resolve_selection(regs, Selection("gone", "local", "cookie"), None)
    assert (stale.registry_slug, stale.runtime_key) == ("local", "closed")
    stale_registry = resolve_selection(regs, Selection("open", "gone", "cookie"))
    assert (stale_registry.registry_slug, stale_registry.runtime_key) == ("local", "closed")
