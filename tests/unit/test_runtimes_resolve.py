"""Runtime resolution: selection precedence, fingerprints, overrides policy and secrets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from webchat.runtimes.profiles import Registries, load_registries
from webchat.runtimes.resolve import (
    InvalidOverride,
    InvalidSlug,
    OverrideNotAllowed,
    ResolvedRuntime,
    Selection,
    UnknownProfile,
    UnknownRegistry,
    UnsupportedOverrideKey,
    parse_cookie_selection,
    resolve_runtime,
    resolve_selection,
    select_profile,
)

LOCAL = """\
slug: local
profiles:
  open:
    runtime:
      engine: offline
      system_prompt: Be helpful.
      tools: [calculator]
      options: {token_delay_ms: 5, style: friendly}
    policy: {allow_overrides: true}
  narrow:
    runtime: {engine: offline, system_prompt: Plan things.}
    policy: {allow_overrides: true, allowed_override_keys: [options], denied_override_keys: []}
  deny:
    runtime: {engine: offline}
    policy: {allow_overrides: true, denied_override_keys: [system_prompt]}
  closed:
    runtime: {engine: offline}
  gpt:
    runtime: {engine: openai, model: gpt-4o-mini, api_key_env: OPENAI_API_KEY, base_url: https://api.example.test}
"""


@pytest.fixture
def regs(tmp_path: Path) -> Registries:
    path = tmp_path / "local.yaml"
    path.write_text(LOCAL, encoding="utf-8")
    return load_registries([path])


def test_default_selection_uses_default_registry_and_first_profile(regs: Registries) -> None:
    rt = resolve_runtime(regs, profile=None, registry=None)
    assert (rt.registry_slug, rt.profile_slug) == ("local", "closed")  # no "default": first by slug
    builtin = resolve_runtime(regs, profile=None, registry="builtin")
    assert (builtin.registry_slug, builtin.runtime_key) == ("builtin", "default")


def test_slugs_are_normalised(regs: Registries) -> None:
    rt = resolve_runtime(regs, profile="  OPEN ", registry=" Local")
    assert rt.runtime_key == rt.profile_slug == "open"
    assert rt.registry_slug == "local"


def test_profile_only_in_builtin_is_found_without_registry(regs: Registries) -> None:
    rt = resolve_runtime(regs, profile="planner", registry=None)
    assert (rt.registry_slug, rt.runtime_key) == ("builtin", "planner")
    with pytest.raises(UnknownProfile):
        resolve_runtime(regs, profile="planner", registry="local")


@pytest.mark.parametrize(
    ("kwargs", "exc", "status", "code"),
    [
        ({"profile": "Not Valid!"}, InvalidSlug, 400, "invalid_slug"),
        ({"registry": "bad/slug"}, InvalidSlug, 400, "invalid_slug"),
        ({"registry": "nope"}, UnknownRegistry, 404, "unknown_registry"),
        ({"profile": "nope"}, UnknownProfile, 404, "unknown_profile"),
        (
            {"profile": "closed", "overrides": {"model": "x"}},
            UnsupportedOverrideKey,
            400,
            "unsupported_override_key",
        ),
        (
            {"profile": "closed", "overrides": {"system_prompt": "x"}},
            OverrideNotAllowed,
            400,
            "override_not_allowed",
        ),
        ({"profile": "narrow", "overrides": {"tools": []}}, OverrideNotAllowed, 400, "override_not_allowed"),
        (
            {"profile": "deny", "overrides": {"system_prompt": "x"}},
            OverrideNotAllowed,
            400,
            "override_not_allowed",
        ),
        ({"profile": "open", "overrides": {"tools": ["shell"]}}, InvalidOverride, 400, "invalid_override"),
        ({"profile": "open", "overrides": {"system_prompt": 3}}, InvalidOverride, 400, "invalid_override"),
        (
            {"profile": "open", "overrides": {"options": {"token_delay_ms": "x"}}},
            InvalidOverride,
            400,
            "invalid_override",
        ),
        (
            {"profile": "open", "overrides": {"options": {"api_key": "sk"}}},
            InvalidOverride,
            400,
            "invalid_override",
        ),
    ],
)
def test_errors_carry_status_and_code(
    regs: Registries, kwargs: dict[str, Any], exc: type[Exception], status: int, code: str
) -> None:
    with pytest.raises(exc) as info:
        resolve_runtime(regs, **kwargs)
    assert getattr(info.value, "status") == status  # noqa: B009
    assert getattr(info.value, "code") == code  # noqa: B009
    assert info.value.to_json()["code"] == code  # type: ignore[attr-defined]


def test_fingerprint_is_stable_and_well_formed(regs: Registries) -> None:
    a = resolve_runtime(regs, profile="open")
    b = resolve_runtime(load_registries([regs.default.source]), profile="open")
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint.startswith("sha256:") and len(a.fingerprint) == len("sha256:") + 64
    assert a == b


def test_fingerprint_changes_with_settings(regs: Registries) -> None:
    base = resolve_runtime(regs, profile="open")
    variants = [
        dataclasses.replace(base, system_prompt="Other."),
        dataclasses.replace(base, tools=()),
        dataclasses.replace(base, options={"token_delay_ms": 6, "style": "friendly"}),
        dataclasses.replace(base, model="m"),
        dataclasses.replace(base, engine="openai"),
        dataclasses.replace(base, profile_version=2),
        dataclasses.replace(base, registry_slug="other"),
        dataclasses.replace(base, profile_slug="other"),
        dataclasses.replace(base, base_url="https://x.test"),
        dataclasses.replace(base, api_key_env="OTHER_KEY"),
    ]
    prints = {v.fingerprint for v in variants}
    assert base.fingerprint not in prints
    assert len(prints) == len(variants)
    # the display name is cosmetic
    assert dataclasses.replace(base, display_name="Renamed").fingerprint == base.fingerprint


def test_overrides_apply_and_change_the_fingerprint(regs: Registries) -> None:
    base = resolve_runtime(regs, profile="open")
    over = resolve_runtime(
        regs,
        profile="open",
        overrides={"system_prompt": "Be terse.", "tools": [], "options": {"token_delay_ms": 0}},
    )
    assert over.system_prompt == "Be terse."
    assert over.tools == ()
    assert over.options == {"token_delay_ms": 0, "style": "friendly"}  # merged over the profile's options
    assert over.fingerprint != base.fingerprint
    assert over.runtime_key == base.runtime_key
    # empty overrides and overrides equal to the profile change nothing
    assert resolve_runtime(regs, profile="open", overrides={}).fingerprint == base.fingerprint
    same = resolve_runtime(regs, profile="open", overrides={"options": {"token_delay_ms": 5}})
    assert same.fingerprint == base.fingerprint
    narrow = resolve_runtime(regs, profile="narrow", overrides={"options": {"style": "terse"}})
    assert narrow.options == {"style": "terse"}


def test_overrides_do_not_mutate_the_profile(regs: Registries) -> None:
    resolve_runtime(regs, profile="open", overrides={"options": {"token_delay_ms": 1}})
    assert regs.default.profiles["open"].runtime.options == {"token_delay_ms": 5, "style": "friendly"}


def test_metadata_object(regs: Registries) -> None:
    rt = resolve_runtime(regs, profile="open")
    assert rt.metadata() == {
        "runtime_key": "open",
        "profile_slug": "open",
        "registry_slug": "local",
        "profile_version": 1,
        "runtime_fingerprint": rt.fingerprint,
    }


def test_secrets_never_leak(regs: Registries, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-secret-value-123"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    rt = resolve_runtime(regs, profile="gpt")
    before = rt.fingerprint
    monkeypatch.setenv("OPENAI_API_KEY", "sk-another-secret")
    assert resolve_runtime(regs, profile="gpt").fingerprint == before  # the value is never read
    assert rt.api_key_env == "OPENAI_API_KEY"
    for text in (repr(rt), rt.fingerprint, json.dumps(rt.metadata()), json.dumps(rt.document())):
        assert secret not in text
    profile = regs.default.profiles["gpt"]
    assert secret not in json.dumps(profile.document()) and secret not in repr(profile)


def test_resolved_runtime_is_frozen_and_hashable(regs: Registries) -> None:
    rt = resolve_runtime(regs, profile="open")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rt.model = "x"
    assert hash(rt) == hash(resolve_runtime(regs, profile="open"))
    assert isinstance(rt, ResolvedRuntime)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("builtin/fast", ("builtin", "fast")),
        (" Local/Open ", ("local", "open")),
        ("builtin%2Fplanner", ("builtin", "planner")),
        ("fast", None),
        ("a/b/c", None),
        ("/fast", None),
        ("builtin/", None),
        ("bad slug/fast", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_cookie_selection(value: str | None, expected: tuple[str, str] | None) -> None:
    assert parse_cookie_selection(value) == expected


def test_select_profile_precedence() -> None:
    full = {
        "path_profile": "p",
        "body_profile": "b",
        "query_profile": "q",
        "cookie": "builtin/c",
    }
    assert select_profile(**full) == Selection("p", None, "path")
    assert select_profile(**{**full, "path_profile": None}) == Selection("b", None, "body")
    assert select_profile(**{**full, "path_profile": None, "body_profile": "  "}) == Selection(
        "q", None, "query"
    )
    assert select_profile(cookie="builtin/c") == Selection("c", "builtin", "cookie")
    assert select_profile(cookie="garbage") == Selection(None, None, "default")
    assert select_profile() == Selection(None, None, "default")
    assert select_profile(body_profile="b", registry="local") == Selection("b", "local", "body")
    # an explicit registry wins over a cookie for another registry
    assert select_profile(cookie="builtin/c", registry="local") == Selection(None, "local", "default")
    assert select_profile(cookie="local/c", registry="Local") == Selection("c", "local", "cookie")


def test_resolve_selection_falls_back_only_for_stale_cookies(regs: Registries) -> None:
    stale = select_profile(cookie="gone/fast")
    assert resolve_selection(regs, stale).profile_slug == "closed"
    stale_profile = select_profile(cookie="builtin/removed")
    assert resolve_selection(regs, stale_profile).registry_slug == "local"
    with pytest.raises(UnknownProfile):
        resolve_selection(regs, select_profile(body_profile="removed"))
    chosen = resolve_selection(regs, select_profile(path_profile="fast", cookie="local/open"))
    assert (chosen.registry_slug, chosen.runtime_key) == ("builtin", "fast")
