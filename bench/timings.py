"""Benchmark: the timings that unit tests used to assert, each next to a baseline from the same run.

1. Calculator refusal: the three nested huge powers the calculator must refuse ("result too large")
   against evaluating a plain expression. Target: each refusal ≤ 1,000 × the plain evaluation (that is
   ~0.1 ms here; an unbounded power takes seconds).
2. Offline engine pacing: streaming a 20-word answer with ``token_delay_ms`` 20 against the same with 0.
   Target: the paced run takes at least 19 × 20 ms more than the unpaced one.
3. Provider timeout before the first byte: a fake OpenAI-compatible endpoint that sends nothing for
   2 s, ``timeout_s`` 0.3, no retries, against the same request answered at once. Target: the timed-out
   run ends within 0.3 s + 1.5 s of the baseline (it gives up, it does not wait for the endpoint).

Run ``.venv/bin/python bench/timings.py``. Each figure is the median of several runs; the machine this
runs on may be shared, so read the verdicts as a hint, not a gate.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.engine_helpers import make_turn, provider_runtime, run_engine
from tests.fakes.harness import ThreadedServer
from tests.fakes.openai_fake import FakeOpenAI
from webchat.runtimes.offline import OfflineEngine
from webchat.runtimes.openai_engine import OpenAIEngine
from webchat.runtimes.resolve import ResolvedRuntime
from webchat.runtimes.tools import ToolError, evaluate_arithmetic

KEY_ENV = "WEBCHAT_BENCH_OPENAI_KEY"
KEY = "sk-bench-openai-key-0123456789abcdef"
HUGE = ("(2 ** 999) ** 999", "99999 ** 999 * 99999 ** 999", "((9**9)**9)**99")


def median_s(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def refuse(expression: str) -> None:
    try:
        evaluate_arithmetic(expression)
    except ToolError:
        return
    raise AssertionError(f"{expression} was not refused")


def calculator() -> None:
    baseline = median_s(lambda: evaluate_arithmetic("12 * (3 + 4) ** 2"), 200)
    print(f"[1] calculator: plain expression {baseline * 1e3:.3f} ms (baseline)")
    for expression in HUGE:
        took = median_s(lambda e=expression: refuse(e), 20)
        ratio = took / baseline
        print(f"    refuse {expression!r}: {took * 1e3:.3f} ms = {ratio:.0f} x  {verdict(ratio <= 1000)}")


def offline_runtime(delay_ms: int) -> ResolvedRuntime:
    return ResolvedRuntime(
        runtime_key="fast",
        profile_slug="fast",
        registry_slug="builtin",
        profile_version=1,
        engine="offline",
        model="",
        system_prompt="",
        tools=(),
        options={"token_delay_ms": delay_ms},
    )


def offline_pacing() -> None:
    prompt = " ".join(f"w{i}" for i in range(20))

    def stream(delay_ms: int) -> int:
        rt = offline_runtime(delay_ms)
        deltas: list[str] = []

        async def sink(delta: str) -> None:
            deltas.append(delta)

        asyncio.run(OfflineEngine().complete(make_turn(rt, prompt), rt, sink))
        return len(deltas)

    words = stream(0)
    unpaced = median_s(lambda: stream(0), 5)
    paced = median_s(lambda: stream(20), 3)
    need = (words - 1) * 0.020
    print(f"[2] offline pacing: {words} deltas unpaced {unpaced * 1e3:.1f} ms (baseline)")
    print(
        f"    token_delay_ms 20: {paced * 1e3:.1f} ms, +{(paced - unpaced) * 1e3:.1f} ms "
        f"(need >= {need * 1e3:.0f})  {verdict(paced - unpaced >= need)}"
    )


def provider_timeout() -> None:
    os.environ[KEY_ENV] = KEY
    provider = FakeOpenAI(api_key=KEY, slow_s=2.0)
    with ThreadedServer(provider.app()) as server:
        runtime = provider_runtime(
            "openai", server.url + "/v1", model="gpt-fake", key_env=KEY_ENV, timeout_s=0.3, max_retries=0
        )

        def ask(prompt: str) -> None:
            run_engine(OpenAIEngine(), runtime, make_turn(runtime, prompt))

        baseline = median_s(lambda: ask("hello"), 5)
        slow = median_s(lambda: ask("[[slow]] wait"), 3)
    print(f"[3] provider: answered at once {baseline * 1e3:.0f} ms (baseline)")
    ok = slow <= baseline + 0.3 + 1.5
    print(f"    no first byte (the endpoint waits 2 s), timeout_s 0.3: {slow * 1e3:.0f} ms  {verdict(ok)}")


def main() -> None:
    calculator()
    offline_pacing()
    provider_timeout()


if __name__ == "__main__":
    main()
