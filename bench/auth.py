"""Benchmark: the cost of a password and of a token check, each next to a baseline from the same run.

1. One ``hash_password`` + ``verify_password`` with the default argon2id parameters (RFC 9106 low-memory:
   t=3, m=64 MiB, p=4): what ``users add`` and every browser login cost. Baseline: the same with the
   cheap parameters the unit tests use (t=1, m=8 MiB, p=1).
2. ``principal_for_token`` on a real auth.db (one SHA-256 and one indexed lookup; what every API request
   with a Bearer token costs). Baseline: ``get_user`` (one indexed lookup, no digest).
3. ``POST /api/auth/login`` against a real ``web-chat serve --auth required`` on 127.0.0.1, the user made by
   ``web-chat users add`` (default parameters): what signing in takes for a person. Baseline: ``GET
   /healthz`` on the same server.

Each figure is the median of several runs. Run ``.venv/bin/python bench/auth.py``; the machine may be
shared, so read the figures against their baselines.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from argon2 import PasswordHasher

from webchat.auth.passwords import hash_password, make_hasher, verify_password
from webchat.auth.store import AUTH_DB_NAME, SQLiteAuthStore

PASSWORD = "correct horse battery staple"


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def hash_and_verify(hasher: PasswordHasher | None) -> Callable[[], object]:
    def run() -> object:
        stored = hash_password(PASSWORD, hasher=hasher)
        assert verify_password(stored, PASSWORD, hasher=hasher)
        return stored

    return run


def main() -> None:
    runs = 5
    default = median_ms(hash_and_verify(None), runs)
    cheap = median_ms(hash_and_verify(make_hasher(time_cost=1, memory_cost=8192, parallelism=1)), runs)
    print(f"[1] hash_password + verify_password, default parameters: median of {runs} {default:.1f} ms")
    print(f"    baseline, unit-test parameters (t=1, m=8 MiB, p=1):  median of {runs} {cheap:.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteAuthStore(Path(tmp) / AUTH_DB_NAME, hasher=make_hasher(time_cost=1, memory_cost=8192))
        try:
            store.add_user("alice", PASSWORD)
            _, secret = store.create_token("alice")
            store.principal_for_token(secret)  # the first check writes last_used; the rest only read
            calls = 2000
            token = median_ms(lambda: [store.principal_for_token(secret) for _ in range(calls)], 5) / calls
            lookup = median_ms(lambda: [store.get_user("alice") for _ in range(calls)], 5) / calls
        finally:
            store.close()
    print(f"[2] principal_for_token: {token * 1000:.1f} us per call")
    print(f"    baseline, get_user:  {lookup * 1000:.1f} us per call")
    signing_in, health = login_latency(runs)
    print(f"[3] POST /api/auth/login on a real server: median of {runs} {signing_in:.1f} ms")
    print(f"    baseline, GET /healthz on the same server: {health:.2f} ms")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def login_latency(runs: int) -> tuple[float, float]:
    """Median ms of a sign-in and of GET /healthz against a real team-mode server."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        env = dict(os.environ, WEBCHAT_DATA_DIR=str(data))
        cli = [sys.executable, "-m", "webchat"]
        subprocess.run(
            [*cli, "users", "add", "alice", "--password-stdin"],
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
            env=env,
        )
        subprocess.run(
            [*cli, "users", "add", "root", "--admin", "--password-stdin"],
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
            env=env,
        )
        port = free_port()
        argv = [*cli, "serve", "--host", "127.0.0.1", "--port", str(port), "--auth", "required"]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=1).json().get("status") == "ok":
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.1)
            with httpx.Client(base_url=base, timeout=30) as client:
                body = {"username": "alice", "password": PASSWORD}

                def login() -> None:
                    client.post("/api/auth/login", json=body).raise_for_status()

                login()  # warm-up
                signing_in = median_ms(login, runs)
                health = median_ms(lambda: client.get("/healthz").raise_for_status(), runs * 20)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    return signing_in, health


if __name__ == "__main__":
    main()
