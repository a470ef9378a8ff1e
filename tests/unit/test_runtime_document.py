"""``ResolvedRuntime.from_document``: a queued prompt's runtime read back after a restart is exactly the
one its request resolved, or a clear ``ValueError`` (never another runtime)."""

from __future__ import annotations

from typing import Any

import pytest

from webchat.runtimes.resolve import ResolvedRuntime


def full() -> ResolvedRuntime:
    return ResolvedRuntime(
        runtime_key="rk",
        profile_slug="ps",
        registry_slug="reg",
        profile_version=3,
        engine="openai",
        model="m-1",
        system_prompt="be brief",
        tools=("calculator", "clock"),
        options={"temperature": 0.5, "nested": {"a": 1}},
        base_url="http://127.0.0.1:9/v1",
        api_key_env="SOME_KEY_ENV",
        display_name="Shown",
    )


def test_a_document_reads_back_as_the_same_runtime() -> None:
    runtime = full()
    back = ResolvedRuntime.from_document(runtime.document())
    assert back.document() == runtime.document()
    assert back == runtime
    assert (back.base_url, back.api_key_env, back.display_name) == (
        "http://127.0.0.1:9/v1",
        "SOME_KEY_ENV",
        "Shown",
    )
    assert back.tools == ("calculator", "clock") and back.profile_version == 3


def test_absent_optional_fields_read_back_as_none_and_empty() -> None:
    runtime = ResolvedRuntime(
        runtime_key="rk",
        profile_slug="ps",
        registry_slug="reg",
        profile_version=1,
        engine="offline",
        model="",
        system_prompt="",
        tools=(),
        options={},
    )
    doc = runtime.document()
    for key in ("base_url", "api_key_env", "display_name"):
        doc.pop(key)
    back = ResolvedRuntime.from_document(doc)
    assert (back.base_url, back.api_key_env, back.display_name) == (None, None, "")
    assert back == runtime


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"engine": None}, "incomplete runtime document: 'engine'"),
        (
            {"profile_version": "three"},
            "incomplete runtime document: invalid literal for int() with base 10: 'three'",
        ),
        ({"tools": 5}, "incomplete runtime document: 'int' object is not iterable"),
        ({"options": 5}, "incomplete runtime document: 'int' object is not iterable"),
    ],
)
def test_an_incomplete_document_is_refused(change: dict[str, Any], message: str) -> None:
    doc = full().document()
    for key, value in change.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    with pytest.raises(ValueError) as caught:
        ResolvedRuntime.from_document(doc)
    assert str(caught.value) == message


@pytest.mark.parametrize("field", ["engine", "model", "system_prompt", "base_url", "api_key_env", "tools"])
def test_a_document_whose_settings_changed_is_refused(field: str) -> None:
    doc = full().document()
    doc[field] = ["other"] if field == "tools" else "other"
    with pytest.raises(ValueError) as caught:
        ResolvedRuntime.from_document(doc)
    assert str(caught.value) == "runtime document does not match its fingerprint"
