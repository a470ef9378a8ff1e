"""Shared provider code: blocks → conversation, request building, keys, options, redaction, profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes import anthropic_fake, openai_fake
from tests.fakes.engine_helpers import (
    answer,
    make_turn,
    provider_runtime,
    tool_call,
    tool_result,
    user,
)
from webchat.runtimes import anthropic_engine, openai_engine
from webchat.runtimes.engine import EngineError, build_engine
from webchat.runtimes.profiles import (
    DEFAULT_PROVIDER_KEY_ENVS,
    ProfileError,
    allow_key_envs,
    api_key_env_for,
    builtin_registry,
    check_options,
    parse_registry_text,
    runtime_unusable_reason,
)
from webchat.runtimes.provider_common import (
    NOT_RUN_RESULT,
    PLACEHOLDER_API_KEY,
    StreamState,
    parse_arguments,
    provider_failure,
    read_api_key,
    read_conversation,
    redact,
)

HISTORY = [
    user("compute 6 * 7"),
    answer("Let me calculate 6 * 7."),
    tool_call("call_1", "calculator", {"expression": "6 * 7"}),
    tool_result("call_1", "42"),
    answer("6 * 7 = 42"),
    user("and now?"),
    # a run that stopped before its tool ran (max_tool_iterations), then a partial answer
    tool_call("call.2/x", "calculator", {"expression": "1/0"}),
    answer("partial"),
    tool_result("orphan", "lost"),
]


def test_read_conversation_pairs_every_call_with_a_result() -> None:
    conv = read_conversation(
        [b for b in make_turn(provider_runtime("openai", None), "next", HISTORY).blocks], tools_enabled=True
    )
    assert conv.system == "You are terse."
    shape = [(m.role, m.text, [c.id for c in m.tool_calls], m.tool_call_id) for m in conv.messages]
    assert shape == [
        ("user", "compute 6 * 7", [], ""),
        ("assistant", "Let me calculate 6 * 7.", ["call_1"], ""),
        ("tool", "42", [], "call_1"),
        ("assistant", "6 * 7 = 42", [], ""),
        ("user", "and now?", [], ""),
        ("assistant", "", ["call.2/x"], ""),
        ("tool", NOT_RUN_RESULT, [], "call.2/x"),
        ("assistant", "partial", [], ""),
        ("user", "next", [], ""),
    ]
    assert conv.messages[6].is_error


def test_read_conversation_without_tools_writes_calls_as_text() -> None:
    conv = read_conversation(HISTORY[:5], tools_enabled=False)
    assert [m.role for m in conv.messages] == ["user", "assistant"]
    text = conv.messages[1].text
    assert (
        "calculator" in text and '"6 * 7"' in text and "returned: 42" in text and text.endswith("6 * 7 = 42")
    )
    assert not any(m.tool_calls for m in conv.messages)


def test_tool_errors_are_marked() -> None:
    blocks = [user("x"), tool_call("c", "calculator", {}), tool_result("c", error="bad input")]
    conv = read_conversation(blocks, tools_enabled=True)
    assert conv.messages[-1].is_error and conv.messages[-1].text == "error: bad input"


def test_requests_from_a_mixed_history_pass_the_fakes_checks() -> None:
    rt = provider_runtime("openai", "http://127.0.0.1:1/v1", model="m")
    turn = make_turn(rt, "next", HISTORY)
    request = openai_engine.build_request(rt, turn)
    assert openai_fake.check_request(request) == ""
    assert request["messages"][0] == {"role": "system", "content": "You are terse."}
    assert request["stream_options"] == {"include_usage": True}
    assert request["tools"][0]["function"]["name"] == "calculator"

    art = provider_runtime("anthropic", "http://127.0.0.1:1", model="m")
    arequest = anthropic_engine.build_request(art, make_turn(art, "next", HISTORY))
    assert anthropic_fake.check_request(arequest) == ""
    assert (
        arequest["system"] == "You are terse."
        and arequest["max_tokens"] == anthropic_engine.DEFAULT_MAX_TOKENS
    )
    ids = [b["id"] for m in arequest["messages"] for b in m["content"] if b["type"] == "tool_use"]
    assert ids == ["call_1", "call_2_x"]
    # without tools, both still pass
    bare = provider_runtime("anthropic", None, model="m", tools=())
    assert (
        anthropic_fake.check_request(anthropic_engine.build_request(bare, make_turn(bare, "x", HISTORY)))
        == ""
    )
    obare = provider_runtime("openai", None, model="m", tools=())
    orequest = openai_engine.build_request(obare, make_turn(obare, "x", HISTORY))
    assert openai_fake.check_request(orequest) == "" and "tools" not in orequest


def test_request_settings_from_options() -> None:
    rt = provider_runtime("openai", None, model="m", temperature=0.2, top_p=0.9, max_tokens=50)
    request = openai_engine.build_request(rt, make_turn(rt, "hi"))
    assert request["temperature"] == 0.2 and request["top_p"] == 0.9
    assert request["max_completion_tokens"] == 50 and "max_tokens" not in request  # OpenAI's own API
    local = provider_runtime("openai", "http://127.0.0.1:1/v1", model="m", max_tokens=50)
    assert openai_engine.build_request(local, make_turn(local, "hi"))["max_tokens"] == 50
    art = provider_runtime("anthropic", None, model="m", max_tokens=77)
    arequest = anthropic_engine.build_request(art, make_turn(art, "hi"))
    assert arequest["max_tokens"] == 77 and "temperature" not in arequest


def test_parse_arguments() -> None:
    assert parse_arguments('{"a": 1}') == {"a": 1}
    assert parse_arguments("") == {}
    assert parse_arguments('{"a": ') == {"_invalid_arguments": '{"a": '}
    assert parse_arguments("[1]") == {"_invalid_arguments": "[1]"}


def test_api_key_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    assert api_key_env_for("openai", None, None) == "OPENAI_API_KEY"
    assert api_key_env_for("anthropic", None, None) == "ANTHROPIC_API_KEY"
    assert api_key_env_for("openai", "http://localhost:11434/v1", None) is None  # local: placeholder
    assert api_key_env_for("openai", "http://localhost:8000/v1", "VLLM_KEY") == "VLLM_KEY"
    assert api_key_env_for("offline", None, "X") is None

    monkeypatch.setenv("MY_KEY", "sk-mine")
    rt = provider_runtime("openai", None, key_env="MY_KEY")
    # Off the operator's allow-list, the variable is never read, whatever it holds.
    with pytest.raises(EngineError) as info:
        read_api_key(rt)
    assert info.value.code == "api_key_env_not_allowed" and "MY_KEY" in info.value.message
    assert "sk-mine" not in info.value.message
    allow_key_envs([*DEFAULT_PROVIDER_KEY_ENVS, "MY_KEY"])
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(EngineError) as info:
        read_api_key(rt)
    assert info.value.code == "missing_api_key" and "MY_KEY" in info.value.message
    monkeypatch.setenv("MY_KEY", " sk-abc123456 ")
    assert read_api_key(rt) == "sk-abc123456"
    assert read_api_key(provider_runtime("openai", "http://127.0.0.1:1/v1")) == PLACEHOLDER_API_KEY


def test_unusable_reasons() -> None:
    env = {"OPENAI_API_KEY": "sk-x"}
    assert runtime_unusable_reason("offline", environ={}) == ""
    assert runtime_unusable_reason("openai", model="m", environ=env) == ""
    assert "ANTHROPIC_API_KEY is not set" in runtime_unusable_reason("anthropic", model="m", environ=env)
    assert runtime_unusable_reason("openai", model="", environ=env) == "runtime.model is not set"
    assert runtime_unusable_reason("openai", model="m", base_url="http://h/v1", environ={}) == ""
    named = runtime_unusable_reason("openai", model="m", base_url="http://h/v1", api_key_env="K", environ={})
    assert named == (
        "runtime.api_key_env K is not on this server's allow-list of key variables "
        "(the operator adds it with --provider-key-env)"
    )
    allow_key_envs(["OPENAI_API_KEY", "K"])
    named = runtime_unusable_reason("openai", model="m", base_url="http://h/v1", api_key_env="K", environ={})
    assert named == "environment variable K is not set"
    # Off the list, even the provider's usual variable is refused.
    assert "ANTHROPIC_API_KEY is not on this server's allow-list" in runtime_unusable_reason(
        "anthropic", model="m", environ={"ANTHROPIC_API_KEY": "k"}
    )


def test_provider_options_are_validated() -> None:
    check_options(
        "openai", {"temperature": 1.5, "max_tokens": 10, "top_p": 1, "timeout_s": 0.5, "max_retries": 0}
    )
    for engine, options, needle in [
        ("openai", {"temperature": 2.5}, "temperature"),
        ("anthropic", {"temperature": 0.5}, "refuses sampling settings"),
        ("anthropic", {"top_p": 0.5}, "not supported by engine anthropic"),
        ("openai", {"top_p": -0.1}, "top_p"),
        ("openai", {"max_tokens": 0}, "max_tokens"),
        ("openai", {"max_tokens": True}, "max_tokens"),
        ("anthropic", {"timeout_s": 0}, "timeout_s"),
        ("openai", {"max_retries": 11}, "max_retries"),
        ("openai", {"temprature": 1}, r"unknown option\(s\) for engine openai: temprature"),
        ("anthropic", {"token_delay_ms": 5}, "unknown option"),
    ]:
        with pytest.raises(ValueError, match=needle):
            check_options(engine, options)


def test_profile_usable_and_builtin_provider_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    reg = builtin_registry()
    assert set(reg.profiles) == {"default", "fast", "planner"} and reg.default_profile_slug == "default"
    full = builtin_registry(environ={"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"})
    assert {"openai", "anthropic"} <= set(full.profiles) and full.default_profile_slug == "default"
    assert full.profiles["openai"].runtime.engine == "openai"
    assert full.profiles["anthropic"].runtime.engine == "anthropic"
    only = builtin_registry(environ={"ANTHROPIC_API_KEY": "k"})
    assert "anthropic" in only.profiles and "openai" not in only.profiles

    text = (
        "slug: t\nprofiles:\n"
        "  local:\n    runtime: {engine: openai, model: llama3.2, base_url: 'http://127.0.0.1:11434/v1'}\n"
        "  cloud:\n    runtime: {engine: anthropic, model: claude-x, api_key_env: T_KEY_UNSET}\n"
    )
    allow_key_envs([*DEFAULT_PROVIDER_KEY_ENVS, "T_KEY_UNSET"])
    parsed = parse_registry_text(text, source="t.yaml")
    assert parsed.profiles["local"].usable and parsed.profiles["local"].unusable_reason == ""
    assert not parsed.profiles["cloud"].usable
    assert parsed.profiles["cloud"].unusable_reason == "environment variable T_KEY_UNSET is not set"
    with pytest.raises(ProfileError, match="unknown option"):
        parse_registry_text(
            "slug: t\nprofiles:\n  x:\n    runtime: {engine: openai, options: {seedz: 1}}\n", source="x"
        )


def test_build_engine_gives_provider_engines() -> None:
    assert build_engine(provider_runtime("openai", None)).provider == "openai"
    assert build_engine(provider_runtime("anthropic", None)).provider == "anthropic"


def test_redact_and_failure_messages_never_hold_the_key() -> None:
    key = "sk-live-0123456789abcdef"
    assert key not in redact(f"Incorrect API key provided: {key}.", [key])
    assert "[redacted]" in redact("Authorization: Bearer abcdefghijkl")
    assert redact("sk-proj-abc****wxyz is wrong") == "[redacted] is wrong"
    state = StreamState(provider="openai", request_model="m")
    state.text.append("Hello ")
    state.started = True
    error = provider_failure(
        state=state,
        kind="status",
        status=401,
        detail=f"bad key {key}",
        error_class="openai.AuthenticationError",
        endpoint="http://x/v1",
        secrets=[key],
    )
    assert error.code == "auth_failed" and key not in error.message and error.partial_text == "Hello "
    cut = provider_failure(
        state=state, kind="connection", detail="peer closed", error_class="E", endpoint="e"
    )
    assert cut.code == "stream_interrupted" and cut.reply is not None and cut.reply.request_model == "m"


def test_no_secret_in_fingerprint_or_documents(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value-123")
    full = builtin_registry()
    profile = full.profiles["openai"]
    from webchat.runtimes.resolve import runtime_from_profile

    rt = runtime_from_profile("builtin", profile)
    dumped = json.dumps([rt.document(), rt.metadata(), profile.document()])
    assert "sk-very-secret-value-123" not in dumped
    monkeypatch.setenv("OPENAI_API_KEY", "sk-another-secret-value-456")
    assert (
        runtime_from_profile("builtin", builtin_registry().profiles["openai"]).fingerprint == rt.fingerprint
    )


def test_profiles_cli_shows_usable_and_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from webchat.cli.profiles import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    register(app)
    path = tmp_path / "p.yaml"
    path.write_text(
        "slug: p\nprofiles:\n"
        "  cloud:\n    runtime: {engine: anthropic, model: claude-x, api_key_env: P_TEST_KEY}\n"
        "  local:\n    runtime: {engine: openai, model: llama3.2, base_url: 'http://127.0.0.1:11434/v1'}\n",
        encoding="utf-8",
    )
    monkeypatch.delenv("P_TEST_KEY", raising=False)
    rows = json.loads(
        CliRunner().invoke(app, ["profiles", "list", "--profiles", str(path), "-o", "json"]).stdout
    )
    refused = {r["slug"]: r for r in rows if r["registry"] == "p"}["cloud"]
    assert refused["usable"] is False and "not on this server's allow-list" in refused["reason"]
    monkeypatch.setenv("WEBCHAT_PROVIDER_KEY_ENVS", "P_TEST_KEY, OPENAI_API_KEY")
    rows = json.loads(
        CliRunner().invoke(app, ["profiles", "list", "--profiles", str(path), "-o", "json"]).stdout
    )
    by_slug = {r["slug"]: r for r in rows if r["registry"] == "p"}
    assert by_slug["cloud"]["usable"] is False
    assert by_slug["cloud"]["reason"] == "environment variable P_TEST_KEY is not set"
    assert by_slug["local"]["usable"] is True and by_slug["local"]["reason"] == ""

    monkeypatch.setenv("P_TEST_KEY", "sk-cli-secret-value-777")
    shown = CliRunner().invoke(app, ["profiles", "show", "cloud", "--profiles", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "sk-cli-secret-value-777" not in shown.output
    doc = json.loads(shown.stdout)
    assert doc["usable"] is True and doc["key_env"] == "P_TEST_KEY"
    local = json.loads(CliRunner().invoke(app, ["profiles", "show", "local", "--profiles", str(path)]).stdout)
    assert local["key_env"] is None  # a placeholder key goes to the local server
