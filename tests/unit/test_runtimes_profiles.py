"""Profile registries: loading, later-wins, defaults and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from webchat.runtimes.profiles import (
    BUILTIN_REGISTRY_SLUG,
    ProfileError,
    Registries,
    builtin_registry,
    load_registries,
    load_registry_file,
)

LOCAL = """\
slug: Local
profiles:
  Fast:
    display_name: Fast
    description: Quick answers
    runtime:
      engine: offline
      model: ""
      system_prompt: You are terse.
      tools: [calculator]
      options: {token_delay_ms: 5}
    policy: {allow_overrides: false, allowed_override_keys: [], denied_override_keys: []}
  alpha:
    runtime:
      engine: OpenAI
      model: gpt-4o-mini
      base_url: https://api.example.test/v1
      api_key_env: OPENAI_API_KEY
    version: 3
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_registry_profiles() -> None:
    reg = builtin_registry()
    assert reg.slug == BUILTIN_REGISTRY_SLUG
    assert reg.read_only
    assert {"default", "fast", "planner"} <= set(reg.profiles)
    assert reg.default_profile_slug == "default"
    default = reg.profiles["default"]
    assert default.runtime.engine == "offline"
    assert default.runtime.tools == ("calculator",)
    assert default.runtime.options["token_delay_ms"] == 15
    assert reg.profiles["fast"].runtime.options["token_delay_ms"] == 0
    assert "calculator" in reg.profiles["planner"].runtime.tools
    for profile in reg.profiles.values():
        assert profile.description and profile.display_name
        assert profile.version == 1


def test_load_file_normalises_slugs_and_fields(tmp_path: Path) -> None:
    reg = load_registry_file(write(tmp_path, "local.yaml", LOCAL))
    assert reg.slug == "local"
    assert reg.source == tmp_path / "local.yaml"
    assert set(reg.profiles) == {"fast", "alpha"}
    fast = reg.profiles["fast"]
    assert fast.slug == "fast" and fast.version == 1
    assert fast.runtime.system_prompt == "You are terse."
    alpha = reg.profiles["alpha"]
    assert alpha.runtime.engine == "openai"
    assert alpha.display_name == "alpha"  # defaults to the slug
    assert alpha.version == 3
    assert alpha.runtime.api_key_env == "OPENAI_API_KEY"
    assert not alpha.usable and fast.usable
    # no "default" profile: the first by slug
    assert reg.default_profile_slug == "alpha"


def test_registries_builtin_first_then_files_later_wins(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", LOCAL)
    second = write(
        tmp_path,
        "b.yaml",
        "slug: local\nprofiles:\n  only:\n    runtime: {engine: offline}\n",
    )
    regs = load_registries([first, second])
    assert regs.slugs() == ["builtin", "local"]
    assert regs.default_registry == "local"
    local = regs.get("local")
    assert local is not None
    assert set(local.profiles) == {"only"}  # replaced as a whole, not merged
    assert local.source == second


def test_default_registry_is_builtin_without_files() -> None:
    regs = Registries.load()
    assert regs.default_registry == "builtin"
    assert regs.default.default_profile_slug == "default"


def test_default_registry_is_last_file(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "slug: aaa\nprofiles:\n  x:\n    runtime: {engine: offline}\n")
    b = write(tmp_path, "b.yaml", "slug: bbb\nprofiles:\n  y:\n    runtime: {engine: offline}\n")
    regs = load_registries([b, a])
    assert regs.slugs() == ["builtin", "bbb", "aaa"]
    assert regs.default_registry == "aaa"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "slug: 'Bad Slug!'\nprofiles:\n  x:\n    runtime: {engine: offline}\n",
            "invalid registry slug 'Bad Slug!'",
        ),
        (
            "slug: ok\nprofiles:\n  'no good':\n    runtime: {engine: offline}\n",
            "invalid profile slug 'no good'",
        ),
        ("slug: ok\nprofiles:\n  '-x':\n    runtime: {engine: offline}\n", "invalid profile slug '-x'"),
        ("slug: ok\nprofiles:\n  x:\n    runtime: {engine: gemini}\n", "unknown engine 'gemini'"),
        ("slug: ok\nprofiles:\n  x:\n    runtime: {model: m}\n", "profiles.x.runtime.engine: Field required"),
        (
            "slug: ok\nprofiles:\n  x:\n    runtime: {engine: offline, tools: [shell]}\n",
            "unknown tool 'shell'",
        ),
        (
            "slug: ok\nprofiles:\n  x:\n    runtime: {engine: offline, temperature: 1}\n",
            "runtime.temperature",
        ),
        ("slug: ok\nprofiles:\n  x:\n    runtime: {engine: offline}\n    version: 0\n", "profiles.x.version"),
        (
            "slug: ok\nprofiles:\n  x:\n    runtime: {engine: offline}\n"
            "  X:\n    runtime: {engine: offline}\n",
            "defined more than once",
        ),
        (
            "slug: ok\nprofiles:\n  x:\n    runtime: {engine: offline}\n"
            "  x:\n    runtime: {engine: offline}\n",
            "written more than once",
        ),
        ("slug: ok\nprofiles: {}\n", "non-empty mapping"),
        ("profiles:\n  x:\n    runtime: {engine: offline}\n", "'slug'"),
        ("- a\n- b\n", "must be a mapping"),
        ("slug: ok\nprofiles:\n  x: [\n", "invalid YAML"),
        (
            "slug: ok\nprofiles:\n  x:\n    runtime: {engine: offline, options: {token_delay_ms: -1}}\n",
            "token_delay_ms",
        ),
        (
            "slug: ok\nprofiles:\n  x:\n    runtime: {engine: openai, options: {api_key: abc}}\n",
            "looks like a secret",
        ),
        (
            "slug: ok\nprofiles:\n  x:\n    policy: {allowed_override_keys: [model]}\n"
            "    runtime: {engine: offline}\n",
            "unknown override key 'model'",
        ),
        (
            "slug: ok\nprofiles:\n  x:\n    runtime: {engine: openai, options: {max_tool_iterations: 0}}\n",
            "max_tool_iterations",
        ),
        (
            "slug: ok\nprofiles:\n  x:\n    runtime: {engine: openai, base_url: 'https://u:p@h/v1'}\n",
            "credentials",
        ),
    ],
)
def test_invalid_files_raise_clear_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ProfileError) as info:
        load_registry_file(path)
    message = str(info.value)
    assert str(path) in message
    assert needle in message


def test_api_key_env_with_a_pasted_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = "sk-live-0123456789abcdef"
    path = write(
        tmp_path,
        "bad.yaml",
        f"slug: ok\nprofiles:\n  x:\n    runtime: {{engine: openai, api_key_env: {secret}}}\n",
    )
    with pytest.raises(ProfileError) as info:
        load_registry_file(path)
    assert "api_key_env" in str(info.value)
    assert secret not in str(info.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"missing\.yaml"):
        load_registries([tmp_path / "missing.yaml"])


def test_yaml12_strings_stay_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path, "y.yaml", "slug: ok\nprofiles:\n  x:\n    runtime: {engine: offline, system_prompt: no}\n"
    )
    assert load_registry_file(path).profiles["x"].runtime.system_prompt == "no"


def test_profile_document_shape() -> None:
    reg = builtin_registry()
    doc = reg.profiles["fast"].document(registry="builtin", is_default=False)
    assert doc["registry"] == "builtin" and doc["slug"] == "fast" and doc["is_default"] is False
    assert set(doc["runtime"]) == {
        "engine",
        "model",
        "system_prompt",
        "tools",
        "options",
        "base_url",
        "api_key_env",
    }
