"""Benchmark: chat latency, concurrency and memory of a real ``web-chat serve`` subprocess on 127.0.0.1.

Every figure is printed next to a baseline measured in the same run:

[1] Server overhead to first token. The offline engine at zero delay (built-in profile ``fast``), persistence
    on (turns.db and timeline.db in a temporary data dir). A handful of conversations, each with an open
    socket; turns run one at a time (round-robin). Measured: t0 just before sending ``POST /chat`` until the
    first ``llm.delta`` frame of that turn arrives on the socket (client-side, ``time.perf_counter``).
    Baselines: a bare WebSocket echo round-trip and a bare HTTP POST echo round-trip against a minimal
    Starlette app on the same uvicorn stack, in its own subprocess. Targets: p50 <= 5 ms, p99 <= 25 ms (raw).
[2] 200 concurrent conversations x 5 sequential turns (quick: 20 x 3), ``fast``. Afterwards every turn must
    have exactly one pre_inference, post_inference and final snapshot in the turn store (debug API), no
    other snapshot, and there must be zero HTTP/WS errors. Reports turns/s and p99 first-delta latency.
[3] Server RSS (VmRSS from /proc) at idle, after 1,000 idle conversations (one ``fast`` prompt each, sockets
    closed) and after they are evicted (WEBCHAT_IDLE_EVICT_S short; the server's eviction loop runs every
    30 s, so this waits up to ~70 s). Target: < 200 MB with 1,000 idle conversations. They are all the one
    local user's, so this server raises --max-conversations-per-user (default 500) to 2,000.

[4] The [1] measurement against a team-mode server (``--auth required``) with ``Authorization: Bearer``
    (a token made by ``web-chat tokens create``), next to the same against a local-mode server, in the same
    run, interleaved. Target: p50 within 0.5 ms of local mode.

Targets are reported as PASS/FAIL lines, never asserted: the exit status is 0 unless the benchmark crashes.
Run ``.venv/bin/python bench/chat.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

HOST = "127.0.0.1"
PROFILE = "fast"
EXPECTED_PHASES = ("pre_inference", "post_inference", "final")
TURN_TIMEOUT_S = 30.0
# Long enough that no conversation is evicted while the 1,000 are still being created and measured.
IDLE_EVICT_S = 30
ECHO_APP = """
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute


async def healthz(request):
    return JSONResponse({"status": "ok"})


async def echo(request):
    return JSONResponse(await request.json())


async def ws(websocket):
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except Exception:
        pass


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/echo", echo, methods=["POST"]),
        WebSocketRoute("/ws", ws),
    ]
)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="info", ws_ping_interval=20)
"""


# -- helpers ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def summary(values: list[float]) -> str:
    return f"p50 {pct(values, 50):7.2f} ms  p99 {pct(values, 99):7.2f} ms  (n={len(values)})"


def verdict(ok: bool, text: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {text}")


def rss_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


@dataclass
class Proc:
    base_url: str
    ws_url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


@contextlib.contextmanager
def spawn(argv: list[str], port: int, log_path: Path, env: dict[str, str]) -> Iterator[Proc]:
    """Start a server subprocess on 127.0.0.1:port, wait for /healthz, always stop it afterwards."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    srv = Proc(f"http://{HOST}:{port}", f"ws://{HOST}:{port}", proc, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{srv.log_tail()}")
            try:
                if httpx.get(srv.base_url + "/healthz", timeout=1).json().get("status") == "ok":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not become healthy:\n{srv.log_tail()}")
            time.sleep(0.1)
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def webchat_server(
    tmp: Path, name: str, extra_env: dict[str, str] | None = None, *extra_args: str
) -> contextlib.AbstractContextManager[Proc]:
    port = free_port()
    data_dir = tmp / name
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, WEBCHAT_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", **(extra_env or {}))
    argv = [sys.executable, "-m", "webchat", "serve", "--host", HOST, "--port", str(port), *extra_args]
    return spawn(argv, port, tmp / f"{name}.log", env)


def echo_server(tmp: Path) -> contextlib.AbstractContextManager[Proc]:
    port = free_port()
    script = tmp / "echo_app.py"
    script.write_text(ECHO_APP)
    return spawn([sys.executable, str(script), str(port)], port, tmp / "echo.log", dict(os.environ))


def http_client(base_url: str, conns: int, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=TURN_TIMEOUT_S, headers=headers)


# -- one chat turn ----------------------------------------------------------------------------------------


@dataclass
class Turn:
    first_delta_ms: float = float("nan")
    message_ms: float = float("nan")  # chat.message (the prompt echoed by the server) received
    start_ms: float = float("nan")  # llm.start received
    frames: int = 0  # frames received for this turn up to llm.final
    post_ms: float = float("nan")
    status: int = 0
    turn_id: str = ""
    runtime_key: str = ""
    error: str = ""


async def open_socket(
    ws_url: str, conv_id: str, since_seq: int | None = None, headers: dict[str, str] | None = None
) -> ClientConnection:
    resume = f"&since_seq={since_seq}" if since_seq is not None else ""
    ws = await connect(
        f"{ws_url}/ws?conv_id={conv_id}{resume}",
        open_timeout=TURN_TIMEOUT_S,
        max_queue=None,
        additional_headers=headers,
    )
    async with asyncio.timeout(TURN_TIMEOUT_S):
        hello = json.loads(await ws.recv())
    if hello.get("event", {}).get("type") != "ws.hello":
        raise RuntimeError(f"expected ws.hello, got {hello!r}")
    return ws


async def chat_turn(http: httpx.AsyncClient, ws: ClientConnection, conv_id: str, prompt: str) -> Turn:
    """POST a prompt and read the socket until that turn's llm.final (or an error)."""
    turn = Turn()
    posted: dict[str, float] = {}

    async def post() -> httpx.Response:
        resp = await http.post("/chat", json={"prompt": prompt, "conv_id": conv_id, "profile": PROFILE})
        posted["t"] = time.perf_counter()
        return resp

    t0 = time.perf_counter()
    task = asyncio.create_task(post())
    return await read_turn(ws, turn, t0, task, posted)


async def first_chat_turn(
    http: httpx.AsyncClient, ws_url: str, conv_id: str, prompt: str, headers: dict[str, str] | None = None
) -> tuple[Turn, ClientConnection | None]:
    """A new conversation's first turn, as a client must do it: the prompt creates the conversation, then
    the socket opens with since_seq=0 and gets that turn's frames replayed and then live. The clock
    starts before the POST, so the socket's opening counts in the first-delta latency."""
    turn = Turn()
    posted: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        resp = await http.post("/chat", json={"prompt": prompt, "conv_id": conv_id, "profile": PROFILE})
        posted["t"] = time.perf_counter()
        ws = await open_socket(ws_url, conv_id, since_seq=0, headers=headers)
    except Exception as exc:
        turn.error = f"{type(exc).__name__}: {exc}"
        return turn, None

    async def answered() -> httpx.Response:
        return resp

    return await read_turn(ws, turn, t0, asyncio.create_task(answered()), posted), ws


async def read_turn(
    ws: ClientConnection,
    turn: Turn,
    t0: float,
    task: asyncio.Task[httpx.Response],
    posted: dict[str, float],
) -> Turn:
    """Read the socket until the turn's llm.final (or an error), timing its frames from ``t0``."""
    delta_turn = final_turn = ""
    try:
        async with asyncio.timeout(TURN_TIMEOUT_S):
            while True:
                event = json.loads(await ws.recv()).get("event", {})
                turn.frames += 1
                kind = event.get("type")
                meta = event.get("metadata") or {}
                if kind == "chat.message" and turn.message_ms != turn.message_ms:
                    turn.message_ms = (time.perf_counter() - t0) * 1000
                elif kind == "llm.start" and turn.start_ms != turn.start_ms:
                    turn.start_ms = (time.perf_counter() - t0) * 1000
                elif kind == "llm.delta" and not delta_turn:
                    turn.first_delta_ms = (time.perf_counter() - t0) * 1000
                    delta_turn = meta.get("turn_id", "")
                elif kind == "llm.error":
                    turn.error = f"llm.error {event.get('data')}"
                    break
                elif kind == "llm.final":
                    final_turn = meta.get("turn_id", "")
                    break
            resp = await task
    except Exception as exc:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        turn.error = turn.error or f"{type(exc).__name__}: {exc}"
        return turn
    turn.post_ms = (posted["t"] - t0) * 1000
    turn.status = resp.status_code
    if resp.status_code not in (200, 202):
        turn.error = f"HTTP {resp.status_code}: {resp.text[:200]}"
        return turn
    body = resp.json()
    turn.turn_id = body.get("turn_id", "")
    turn.runtime_key = body.get("runtime_key", "")
    if not turn.error and not (turn.turn_id == delta_turn == final_turn):
        turn.error = f"turn id mismatch: post {turn.turn_id} delta {delta_turn} final {final_turn}"
    return turn


# -- [1] first-token overhead -----------------------------------------------------------------------------


async def echo_baseline(echo: Proc, n: int) -> tuple[list[float], list[float]]:
    payload = {"prompt": "hello there, how are you today?", "conv_id": str(uuid.uuid4()), "profile": PROFILE}
    text = json.dumps(
        {"sem": True, "event": {"type": "llm.delta", "id": "x" * 36, "seq": 1, "data": payload}}
    )
    ws_rtt: list[float] = []
    post_rtt: list[float] = []
    async with http_client(echo.base_url, 4) as http, connect(f"{echo.ws_url}/ws", open_timeout=10) as ws:
        async with asyncio.timeout(120):
            for i in range(n + 20):
                t0 = time.perf_counter()
                await ws.send(text)
                await ws.recv()
                t1 = time.perf_counter()
                resp = await http.post("/echo", json=payload)
                t2 = time.perf_counter()
                resp.raise_for_status()
                if i >= 20:  # warm-up
                    ws_rtt.append((t1 - t0) * 1000)
                    post_rtt.append((t2 - t1) * 1000)
    return ws_rtt, post_rtt


async def first_token(srv: Proc, n: int, convs: int, headers: dict[str, str] | None = None) -> list[Turn]:
    warmup = 5 * convs
    turns: list[Turn] = []
    ids = [str(uuid.uuid4()) for _ in range(convs)]
    async with http_client(srv.base_url, convs + 2, headers) as http:
        sockets = []
        for cid in ids:
            first, ws = await first_chat_turn(http, srv.ws_url, cid, "hello", headers)
            if ws is None:
                raise RuntimeError(f"could not start a conversation: {first.error}")
            sockets.append(ws)
        try:
            async with asyncio.timeout(300):
                for i in range(warmup + n):
                    k = i % convs
                    turn = await chat_turn(http, sockets[k], ids[k], f"prompt number {i}: what is {i} + 1?")
                    if i >= warmup:
                        turns.append(turn)
        finally:
            for ws in sockets:
                await ws.close()
    return turns


def report_first_token(turns: list[Turn], ws_rtt: list[float], post_rtt: list[float]) -> None:
    ok = [t for t in turns if not t.error]
    lat = [t.first_delta_ms for t in ok]
    post = [t.post_ms for t in ok]
    base50 = pct(ws_rtt, 50) + pct(post_rtt, 50)
    base99 = pct(ws_rtt, 99) + pct(post_rtt, 99)
    print("[1] first token, profile fast (offline engine, token_delay_ms 0), persistence on")
    print(
        "    measured: t0 just before POST /chat -> first llm.delta of that turn received on the open socket"
    )
    print(f"    first-delta latency          {summary(lat)}")
    print(f"    POST /chat round-trip        {summary(post)}")
    print(f"      breakdown: chat.message at {summary([t.message_ms for t in ok])}")
    print(f"                 llm.start at    {summary([t.start_ms for t in ok])}")
    half = len(lat) // 2
    print(f"      first half of the turns    {summary(lat[:half])}")
    print(f"      second half (longer convs) {summary(lat[half:])}")
    print(f"    baseline bare WS echo RTT    {summary(ws_rtt)}")
    print(f"    baseline bare HTTP POST RTT  {summary(post_rtt)}")
    print(
        f"    first-delta minus (POST+WS baseline): p50 {pct(lat, 50) - base50:7.2f} ms  "
        f"p99 {pct(lat, 99) - base99:7.2f} ms  (percentile-wise difference, an estimate of server overhead)"
    )
    frames = sum(t.frames for t in ok) / max(1, len(ok))
    print(f"    frames per turn (each persisted by the server before it is sent): {frames:.1f}")
    print(
        f"    errors: {len(turns) - len(ok)}"
        + (f" (first: {turns[0].error})" if len(ok) < len(turns) else "")
    )
    verdict(pct(lat, 50) <= 5.0, f"[1] first-delta p50 <= 5 ms (raw {pct(lat, 50):.2f} ms)")
    verdict(pct(lat, 99) <= 25.0, f"[1] first-delta p99 <= 25 ms (raw {pct(lat, 99):.2f} ms)")


# -- [4] authentication ----------------------------------------------------------------------------------


def team_token(data_dir: Path) -> str:
    """An admin and an API token made by the real CLI in ``data_dir``; returns the token."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, WEBCHAT_DATA_DIR=str(data_dir))
    base = [sys.executable, "-m", "webchat"]
    subprocess.run(
        [*base, "users", "add", "bench", "--admin", "--password-stdin", "--data-dir", str(data_dir)],
        input="bench-password-1\n",
        text=True,
        check=True,
        capture_output=True,
        env=env,
    )
    made = subprocess.run(
        [*base, "tokens", "create", "bench", "--data-dir", str(data_dir)],
        text=True,
        check=True,
        capture_output=True,
        env=env,
    )
    return made.stdout.strip().splitlines()[-1]


def report_auth(local: list[Turn], team: list[Turn]) -> None:
    lat_local = [t.first_delta_ms for t in local if not t.error]
    lat_team = [t.first_delta_ms for t in team if not t.error]
    errors = sum(1 for t in local + team if t.error)
    print("[4] first token with a bearer token (team mode, --auth required) against local mode, same run")
    print(f"    team mode, Authorization: Bearer  {summary(lat_team)}")
    print(f"    baseline local mode (no sign-in)   {summary(lat_local)}")
    d50 = pct(lat_team, 50) - pct(lat_local, 50)
    d99 = pct(lat_team, 99) - pct(lat_local, 99)
    print(f"    difference: p50 {d50:+.2f} ms  p99 {d99:+.2f} ms   errors: {errors}")
    verdict(
        d50 <= 0.5 and not errors, f"[4] bearer-token first-delta p50 within 0.5 ms of local ({d50:+.2f} ms)"
    )


# -- [2] concurrency --------------------------------------------------------------------------------------


@dataclass
class ConvRun:
    conv_id: str
    turns: list[Turn] = field(default_factory=list)
    ws_error: str = ""


async def one_conversation(http: httpx.AsyncClient, ws_url: str, run: ConvRun, turns: int) -> None:
    # The first prompt creates the conversation; its socket opens right after (a socket never does).
    first, ws = await first_chat_turn(http, ws_url, run.conv_id, "conversation turn 0: tell me something")
    run.turns.append(first)
    if ws is None:
        run.ws_error = first.error
        return
    try:
        if not first.error:
            await conversation_turns(http, run, ws, turns, start=1)
    finally:
        with contextlib.suppress(Exception):
            await ws.close()


async def conversation_turns(
    http: httpx.AsyncClient, run: ConvRun, ws: ClientConnection, turns: int, start: int = 0
) -> None:
    for i in range(start, turns):
        turn = await chat_turn(http, ws, run.conv_id, f"conversation turn {i}: tell me something")
        run.turns.append(turn)
        if turn.error:
            break


async def verify_snapshots(http: httpx.AsyncClient, runs: list[ConvRun]) -> dict[str, int]:
    """Count lost/duplicated/unexpected phase snapshots per turn through GET /api/debug/turns."""
    problems: Counter[str] = Counter()
    sem = asyncio.Semaphore(16)

    async def check(run: ConvRun) -> None:
        expected = {t.turn_id: t.runtime_key for t in run.turns if t.turn_id}
        async with sem:
            for attempt in range(50):  # the final snapshot may land just after llm.final
                resp = await http.get("/api/debug/turns", params={"conv_id": run.conv_id, "limit": 1000})
                if resp.status_code != 200:
                    problems["debug API errors"] += 1
                    return
                items = resp.json()["items"]
                finals = {i["turn_id"] for i in items if i["phase"] == "final"}
                if set(expected) <= finals or attempt == 49:
                    break
                await asyncio.sleep(0.1)
        phases: dict[str, Counter[str]] = defaultdict(Counter)
        for item in items:
            phases[item["turn_id"]][item["phase"]] += 1
            if item["turn_id"] in expected and item["runtime_key"] != expected[item["turn_id"]]:
                problems["snapshots with the wrong runtime_key"] += 1
        for turn_id in expected:
            got = phases.get(turn_id, Counter())
            for phase in EXPECTED_PHASES:
                if got[phase] == 0:
                    problems[f"lost {phase}"] += 1
                elif got[phase] > 1:
                    problems[f"duplicated {phase}"] += got[phase] - 1
            problems["unexpected phases"] += sum(v for k, v in got.items() if k not in EXPECTED_PHASES)
        problems["snapshots of unknown turns"] += sum(
            sum(c.values()) for t, c in phases.items() if t not in expected
        )

    async with asyncio.timeout(300):
        await asyncio.gather(*(check(r) for r in runs))
    return {k: v for k, v in problems.items() if v}


async def concurrency(srv: Proc, convs: int, turns: int, label: str = "") -> tuple[float, float, float]:
    async with http_client(srv.base_url, convs + 8) as http:
        async with asyncio.timeout(600):
            runs = [ConvRun(str(uuid.uuid4())) for _ in range(convs)]
            # One keep-alive connection per conversation, as a browser tab has, made before the clock
            # starts (an httpx client costs milliseconds of this process's CPU to create). One pool shared
            # by all conversations spent most of this process's CPU scanning its 200 connections
            # (httpcore), so the figures measured the client, not the server.
            clients = [http_client(srv.base_url, 1) for _ in runs]
            try:
                t0 = time.perf_counter()
                pairs = zip(clients, runs, strict=True)
                await asyncio.gather(*(one_conversation(c, srv.ws_url, run, turns) for c, run in pairs))
                wall = time.perf_counter() - t0
            finally:
                await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
        problems = await verify_snapshots(http, runs)
    all_turns = [t for r in runs for t in r.turns]
    errors = [t.error for t in all_turns if t.error]
    missing = convs * turns - len(all_turns)
    ok = [t for t in all_turns if not t.error]
    lat = [t.first_delta_ms for t in ok]
    queued = sum(1 for t in ok if t.status == 202)
    print(
        f"[2] {convs} concurrent conversations x {turns} sequential turns, profile fast, one client process"
        + (f"  ({label})" if label else "")
    )
    print(f"    completed turns {len(ok)}/{convs * turns} in {wall:.2f} s -> {len(ok) / wall:.1f} turns/s")
    print(f"    first-delta latency          {summary(lat)}")
    print(f"    POST /chat round-trip        {summary([t.post_ms for t in ok])}")
    firsts = [r.turns[0].first_delta_ms for r in runs if r.turns and not r.turns[0].error]
    later = [t.first_delta_ms for r in runs for t in r.turns[1:] if not t.error]
    print(f"      first turn of each conv    {summary(firsts)}")
    print(f"      later turns                {summary(later)}")
    print(f"      POST of first turns        {summary([r.turns[0].post_ms for r in runs if r.turns])}")
    print(f"      chat.message of first turns {summary([r.turns[0].message_ms for r in runs if r.turns])}")
    print(f"    HTTP/WS errors {len(errors)}, turns not run {missing}, POSTs answered 202 queued {queued}")
    if errors:
        print(
            f"    first errors: {Counter(e.split(':')[0] for e in errors).most_common(5)}; e.g. {errors[0]}"
        )
    print(
        f"    snapshot check (GET /api/debug/turns): {problems or 'every turn has exactly one of each phase'}"
    )
    verdict(
        not errors and not missing, f"[2] zero HTTP/WS errors ({len(errors)} errors, {missing} turns not run)"
    )
    verdict(not problems, "[2] no lost or duplicated phase snapshot")
    return (pct(lat, 50) if lat else 0.0), (pct(lat, 99) if lat else 0.0), len(ok) / wall


# -- [3] memory -------------------------------------------------------------------------------------------


async def live_count(http: httpx.AsyncClient) -> int:
    resp = await http.get("/healthz")
    resp.raise_for_status()
    return int(resp.json()["live_conversations"])


async def memory(srv: Proc, convs: int, started: float, max_wait_s: float) -> None:
    pid = srv.proc.pid
    await asyncio.sleep(1.0)
    idle = rss_kb(pid)
    errors: list[str] = []
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        conv_id = str(uuid.uuid4())
        async with sem:
            turn, ws = await first_chat_turn(
                http, srv.ws_url, conv_id, f"hello, this is idle conversation {i}"
            )
            if turn.error:
                errors.append(turn.error)
            if ws is not None:
                await ws.close()

    async with http_client(srv.base_url, 40) as http:
        t0 = time.perf_counter()
        async with asyncio.timeout(600):
            await asyncio.gather(*(one(i) for i in range(convs)))
        made_s = time.perf_counter() - t0
        await asyncio.sleep(1.0)
        loaded = rss_kb(pid)
        live_loaded = await live_count(http)
        evicted_early = srv.log_tail(100_000).count("evicted")
        live = live_loaded
        waited_from = time.monotonic()
        while live and time.monotonic() - waited_from < max_wait_s:
            await asyncio.sleep(1.0)
            live = await live_count(http)
        waited = time.monotonic() - waited_from
        await asyncio.sleep(1.0)
        after = rss_kb(pid)
    mb = 1024.0
    per_conv = (loaded["VmRSS"] - idle["VmRSS"]) / max(1, convs)
    print(f"[3] server memory, {convs} idle conversations (one fast prompt each, socket closed), VmRSS")
    print(f"    idle baseline (fresh server)        {idle['VmRSS'] / mb:7.1f} MB")
    print(
        f"    after {convs} idle conversations     {loaded['VmRSS'] / mb:7.1f} MB  "
        f"(+{(loaded['VmRSS'] - idle['VmRSS']) / mb:.1f} MB, ~{per_conv:.1f} KB each; peak VmHWM "
        f"{loaded['VmHWM'] / mb:.1f} MB; created in {made_s:.1f} s; {live_loaded} live; "
        f"{evicted_early} eviction runs so far; errors {len(errors)})"
    )
    print(
        f"    after eviction                      {after['VmRSS'] / mb:7.1f} MB  "
        f"({live} still live after waiting {waited:.1f} s; server up {time.monotonic() - started:.0f} s; "
        f"WEBCHAT_IDLE_EVICT_S={IDLE_EVICT_S})"
    )
    verdict(loaded["VmRSS"] / mb < 200, f"[3] RSS with {convs} idle conversations < 200 MB")
    verdict(live == 0, f"[3] all idle conversations evicted within {max_wait_s:.0f} s")


# -- main -------------------------------------------------------------------------------------------------


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns and conversations")
    parser.add_argument(
        "--only",
        default="first-token,auth,concurrency,memory",
        help="comma-separated sections to run: first-token, auth, concurrency, memory",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    n_first = 50 if args.quick else 300
    conc, conc_turns = (20, 3) if args.quick else (200, 5)
    idle_convs = 1000
    print(
        f"bench/chat.py  python {platform.python_version()}  {os.cpu_count()} CPUs  "
        f"quick={args.quick}  {load()}"
    )
    with tempfile.TemporaryDirectory(prefix="webchat-bench-chat-") as tmp_name:
        tmp = Path(tmp_name)
        if "first-token" in only:
            with echo_server(tmp) as echo:
                ws_rtt, post_rtt = asyncio.run(echo_baseline(echo, n_first))
            with webchat_server(tmp, "first-token") as srv:
                turns = asyncio.run(first_token(srv, n_first, 5))
            report_first_token(turns, ws_rtt, post_rtt)
            print(f"    machine {load()}")
            print()
        if "auth" in only:
            token = team_token(tmp / "auth-team")
            # Interleaved, so that both see the same machine: local, team, local, team.
            local_turns: list[Turn] = []
            team_turns: list[Turn] = []
            for _ in range(2):
                with webchat_server(tmp, "auth-local") as srv:
                    local_turns += asyncio.run(first_token(srv, n_first // 2, 5))
                with webchat_server(tmp, "auth-team", None, "--auth", "required") as srv:
                    team_turns += asyncio.run(
                        first_token(srv, n_first // 2, 5, {"Authorization": f"Bearer {token}"})
                    )
            report_auth(local_turns, team_turns)
            print(f"    machine {load()}")
            print()
        if "concurrency" in only:
            # Baseline from the same run: no admission limit, every accepted turn runs at once (how the
            # server scheduled before turns were admitted in acceptance order).
            with webchat_server(tmp, "concurrency-unbounded", {"WEBCHAT_MAX_RUNNING": "10000"}) as srv:
                base50, base99, base_rate = asyncio.run(
                    concurrency(srv, conc, conc_turns, "baseline: no admission limit")
                )
            print(f"    machine {load()}")
            with webchat_server(tmp, "concurrency") as srv:
                p50, p99, rate = asyncio.run(concurrency(srv, conc, conc_turns, "default --max-running"))
            print(
                f"    fairness: first-delta p99/p50 {p99 / max(p50, 1e-9):.2f} at {rate:.1f} turns/s "
                f"(baseline {base99 / max(base50, 1e-9):.2f} at {base_rate:.1f} turns/s)"
            )
            verdict(p99 <= 3 * p50, f"[2] fair under saturation: first-delta p99 <= 3 x p50 ({p99:.0f} ms)")
            verdict(rate >= 0.9 * base_rate, "[2] throughput at least 90% of the unbounded baseline")
            print(f"    machine {load()}")
            print()
        if "memory" in only:
            # 1,000 live conversations of the one local user: more than --max-conversations-per-user allows
            # by default (500), so this server allows them explicitly.
            memory_env = {
                "WEBCHAT_IDLE_EVICT_S": str(IDLE_EVICT_S),
                "WEBCHAT_MAX_CONVERSATIONS_PER_USER": "2000",
            }
            with webchat_server(tmp, "memory", memory_env) as srv:
                asyncio.run(memory(srv, idle_convs, time.monotonic(), 100.0))
            print(f"    machine {load()}")


if __name__ == "__main__":
    main()
