"""The offline engine (``engine: offline``): deterministic answers with no network and no API key.

It reads the blocks it is given like a model would and answers the last ``user`` block:

- arithmetic ("compute 17 * 23", "what is (2+3)*4?") with the ``calculator`` tool in the runtime: first a
  tool call (``finish_reason: tool_calls``), then, once the tool result follows in the blocks, the answer;
- a request to recall ("what did I say earlier?", "history"): the earlier user messages it was given, so
  that history carried over a runtime switch is visible;
- anything else: a reply in the style of the system prompt (friendly, terse, or a numbered plan) that
  names the runtime key, echoes the prompt and says how many earlier user messages it sees.

Options: ``token_delay_ms`` (pause between streamed words), ``style`` (``friendly``/``terse``/``plan``,
else taken from the system prompt), ``fail: true`` (stream a few words, then fail). A prompt containing
``[[fail]]`` fails the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

from webchat.runtimes.engine import DeltaSink, EngineError, ModelReply, ToolCall, Usage
from webchat.runtimes.resolve import ResolvedRuntime
from webchat.turns.model import Block, Turn

PROVIDER: Final = "offline"
FAIL_MARKER: Final = "[[fail]]"
CALCULATOR: Final = "calculator"
YIELD_EVERY: Final = 8  # with no delay, yield to the event loop every this many words
FAIL_AFTER_WORDS: Final = 3
MAX_ECHO_CHARS: Final = 400

_CALC_TRIGGER: Final = re.compile(
    r"\b(?:compute|calculate|calc|evaluate|eval|solve|what\s+is|what's|whats|how\s+much\s+is)\b",
    re.IGNORECASE,
)
_EXPR_CHARS: Final = re.compile(r"[0-9.\s+\-*/%^()×÷]+")
_OPERATOR: Final = re.compile(r"\d\s*\)*\s*(?:\*\*|//|[+\-*/%^×÷])\s*\(*\s*-?\s*\.?\d")
_RECALL: Final = re.compile(
    r"what\s+did\s+i\s+(?:say|ask|write|tell)|\brecall\b|\bearlier\b|\bhistory\b|\bprevious(?:ly)?\b"
    r"|\bremember\b",
    re.IGNORECASE,
)
_TOKEN: Final = re.compile(r"\S+\s*")


@dataclass
class _View:
    """What the blocks say: system prompt, prompt, earlier prompts, and this turn's tool loop."""

    system_prompt: str
    prompt: str
    earlier_prompts: list[str]
    tool_calls: list[Block] = field(default_factory=list)
    tool_results: dict[str, Block] = field(default_factory=dict)


def _read(blocks: list[Block], runtime: ResolvedRuntime) -> _View:
    # The runtime's own system prompt decides the style; a system block stands in when it has none.
    system = runtime.system_prompt or next((b.text for b in blocks if b.kind == "system"), "")
    last_user = max((i for i, b in enumerate(blocks) if b.kind == "user"), default=-1)
    if last_user < 0:
        return _View(system_prompt=system, prompt="", earlier_prompts=[])
    view = _View(
        system_prompt=system,
        prompt=blocks[last_user].text,
        earlier_prompts=[b.text for b in blocks[:last_user] if b.kind == "user"],
    )
    for block in blocks[last_user + 1 :]:
        call_id = str(block.payload.get("id", ""))
        if block.kind == "tool_call":
            view.tool_calls.append(block)
        elif block.kind == "tool_use" and call_id:
            view.tool_results[call_id] = block
    return view


def _trim_parens(expr: str) -> str:
    """Drop unmatched parentheses at the ends of an expression cut out of a sentence."""
    expr = expr.strip().rstrip(".").strip()
    changed = True
    while changed and expr:
        changed = False
        if expr.count(")") > expr.count("(") and expr.endswith(")"):
            expr, changed = expr[:-1].strip(), True
        elif expr.count("(") > expr.count(")") and expr.startswith("("):
            expr, changed = expr[1:].strip(), True
    return expr


def find_arithmetic(prompt: str) -> str | None:
    """The arithmetic expression a prompt asks for, in Python syntax (``^`` → ``**``), or None.

    A prompt asks for arithmetic when it says compute/calculate/what is … before an expression, or when
    it is nothing but an expression (``2 + 2 =``).
    """
    candidates = [m.group(0) for m in _EXPR_CHARS.finditer(prompt)]
    candidates = [_trim_parens(c) for c in candidates if _OPERATOR.search(c)]
    if not candidates:
        return None
    expr = max(candidates, key=len)
    bare = prompt.strip().rstrip("?=!. ").strip()
    if not _CALC_TRIGGER.search(prompt) and _trim_parens(bare) != expr:
        return None
    expr = re.sub(r"\s+", " ", expr).replace("×", "*").replace("÷", "/").replace("^", "**")
    return expr or None


def _style(runtime: ResolvedRuntime, system_prompt: str) -> str:
    style = runtime.options.get("style")
    if isinstance(style, str) and style:
        return style
    lowered = system_prompt.lower()
    if "plan" in lowered or "numbered" in lowered or "steps" in lowered:
        return "plan"
    if any(word in lowered for word in ("terse", "concise", "brief", "few words")):
        return "terse"
    return "friendly"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _echo(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_ECHO_CHARS else flat[: MAX_ECHO_CHARS - 1] + "…"


def _chat_reply(view: _View, runtime: ResolvedRuntime) -> str:
    key = runtime.runtime_key
    prompt = _echo(view.prompt)
    earlier = _plural(len(view.earlier_prompts), "earlier message")
    if not prompt:
        return f"[{key}] I did not receive a prompt. I see {earlier} from you."
    style = _style(runtime, view.system_prompt)
    if style == "terse":
        return f'[{key}] Noted: "{prompt}". {earlier}.'
    if style == "plan":
        return (
            f'[{key}] Plan for "{prompt}":\n'
            "1. Pin down what a good result looks like.\n"
            "2. Split the work into small steps and put them in order.\n"
            "3. Do one step at a time and check each result.\n"
            "4. Review the outcome against the goal.\n"
            f"Context: {earlier} in this conversation."
        )
    return (
        f'[{key}] Hello! You said: "{prompt}". I can see {earlier} from you in this conversation. '
        "I am the offline engine, so this is a deterministic reply rather than a model's answer."
    )


def _recall_reply(view: _View, runtime: ResolvedRuntime) -> str:
    key = runtime.runtime_key
    if not view.earlier_prompts:
        return f"[{key}] I see no earlier messages from you in this conversation."
    lines = [f'{i}. "{_echo(text)}"' for i, text in enumerate(view.earlier_prompts, start=1)]
    return f"[{key}] Earlier you said:\n" + "\n".join(lines)


def _call_id(turn: Turn, index: int, expression: str) -> str:
    digest = hashlib.sha256(f"{turn.id}\x00{index}\x00{expression}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def _calc_reply(view: _View, runtime: ResolvedRuntime, turn: Turn, expr: str) -> tuple[str, list[ToolCall]]:
    key = runtime.runtime_key
    calls = [b for b in view.tool_calls if b.payload.get("name") == CALCULATOR]
    if calls:
        last = calls[-1]
        args = last.payload.get("args")
        shown = args.get("expression", expr) if isinstance(args, dict) else expr
        result = view.tool_results.get(str(last.payload.get("id", "")))
        if result is None:
            return f"[{key}] The calculator did not return a result for {shown}.", []
        if "error" in result.payload:
            return f"[{key}] I could not compute {shown}: {result.payload['error']}.", []
        return f"[{key}] {shown} = {result.payload.get('result', '')}", []
    if CALCULATOR not in runtime.tools:
        return (
            f"[{key}] That needs the calculator tool, which the {key} runtime does not have, "
            f"so I leave {expr} uncomputed.",
            [],
        )
    call = ToolCall(
        id=_call_id(turn, len(view.tool_calls), expr), name=CALCULATOR, arguments={"expression": expr}
    )
    return f"[{key}] Let me calculate {expr}.", [call]


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if value is None:
        return 0
    return len(json.dumps(value, ensure_ascii=False, sort_keys=True).split())


def _input_tokens(blocks: list[Block]) -> int:
    total = 0
    for block in blocks:
        for key in ("text", "result", "error", "args"):
            if key in block.payload:
                total += _words(block.payload[key])
    return total


class OfflineEngine:
    """A real engine that needs no network: see the module documentation for its behaviour."""

    provider = PROVIDER

    async def complete(self, turn: Turn, runtime: ResolvedRuntime, on_delta: DeltaSink) -> ModelReply:
        view = _read(turn.blocks, runtime)
        tool_calls: list[ToolCall] = []
        expr = find_arithmetic(view.prompt)
        if expr is not None:
            text, tool_calls = _calc_reply(view, runtime, turn, expr)
        elif _RECALL.search(view.prompt):
            text = _recall_reply(view, runtime)
        else:
            text = _chat_reply(view, runtime)

        fail_reason = ""
        if runtime.options.get("fail") is True:
            fail_reason = "options.fail is set"
        elif FAIL_MARKER in view.prompt:
            fail_reason = f"the prompt contains {FAIL_MARKER}"
        tokens = _TOKEN.findall(text)
        if fail_reason:
            tokens = tokens[: min(FAIL_AFTER_WORDS, max(1, len(tokens) - 1))]
        streamed = await self._stream(tokens, runtime, on_delta)
        if fail_reason:
            raise EngineError(
                f"offline engine failed on purpose: {fail_reason}",
                code="engine_failed",
                partial_text=streamed,
            )

        output_tokens = _words(text) + sum(_words(c.arguments) for c in tool_calls)
        return ModelReply(
            text=text,
            tool_calls=tool_calls,
            provider=PROVIDER,
            request_model=runtime.model or "offline",
            response_model=runtime.model or f"offline-{runtime.runtime_key}",
            response_id=f"offline-{uuid.uuid4().hex}",
            finish_reason="tool_calls" if tool_calls else "stop",
            usage=Usage(
                input_tokens=_input_tokens(turn.blocks), output_tokens=output_tokens, cached_tokens=0
            ),
        )

    @staticmethod
    async def _stream(tokens: list[str], runtime: ResolvedRuntime, on_delta: DeltaSink) -> str:
        raw_delay = runtime.options.get("token_delay_ms", 0)
        delay = float(raw_delay) / 1000 if isinstance(raw_delay, (int, float)) and raw_delay > 0 else 0.0
        streamed: list[str] = []
        for index, token in enumerate(tokens):
            if index:
                if delay:
                    await asyncio.sleep(delay)
                elif index % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            await on_delta(token)
            streamed.append(token)
        return "".join(streamed)
