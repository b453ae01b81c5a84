"""The web app under load: one uvicorn worker on SQLite, concurrent clients on loopback, beside the lifecycle called directly.

Run: python bench/web.py [--proposals N] [--clients C] [--page-requests R]

1. Actions through HTTP: N proposals in their endorsement round; C clients (asyncio, httpx) each take their
   share and have the eight heads of region endorse each one, in turn, by
   ``POST /api/v1/proposals/{id}/actions/endorse`` with a Bearer token and ``If-Match`` (the last
   endorsement also closes the round by consensus). Latency per request (p50, p99) and actions per second.
2. The same actions called directly on the lifecycle (one transaction each, one thread) on a database prepared
   the same way, in the same run: the baseline. Ratio = HTTP throughput / direct throughput.
3. The proposal page ``/proposals/{id}`` (text, the reader's buttons, the endorsement board, the timeline) of a
   proposal in its round, read by C clients signed in with a session cookie, before the actions run; p50 and p99.

Targets (issue 10): p99 of actions <= 20 ms, p99 of the page <= 30 ms, ratio >= 0.5. Prints figures, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import emit  # noqa: E402
from config.settings import Settings  # noqa: E402
from models import session_scope  # noqa: E402
from models.auth import start_session  # noqa: E402
from models.runtime import Runtime, open_runtime  # noqa: E402
from models.tables import Member, Proposal, ProposalCreate  # noqa: E402
from models.tokens import create_token  # noqa: E402

HEADS = ["wang.jianguo", "deshmukh", "seitkazieva", "toktogulov", "khan.ayesha", "petrov", "rakhimov", "karimov"]
READER = "patel"  # a head of region who does not endorse here: his My actions lists every open round
TARGETS = {"action_p99_ms": 20.0, "page_p99_ms": 30.0, "ratio": 0.5}


def now() -> dt.datetime:
    """The wall clock: the served app runs on it, so the data is made on it too."""
    return dt.datetime.now(dt.UTC)


def prepare(folder: Path, n: int) -> tuple[Runtime, list[int]]:
    """A fresh SQLite forum with ``n`` proposals in their endorsement round."""
    runtime = open_runtime(Settings(data_dir=folder, smtp_port=1))
    lc, ids = runtime.lifecycle, []
    with session_scope(runtime.engine) as s:
        for i in range(n):
            p = lc.create_proposal(session=s, proposal_in=ProposalCreate(group="industry", author="zhao.lei", title=f"p{i}"),
                                   now=now())
            assert p.id is not None
            ids.append(p.id)
    for pid in ids:
        for action, actor in (("submit", "zhao.lei"), ("recommend", "kuznetsov")):
            with session_scope(runtime.engine) as s:
                lc.apply(s, pid, action, actor, now=now())
    return runtime, ids


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def direct_run(folder: Path, n: int) -> tuple[int, float]:
    """The eight endorsements of n proposals on the lifecycle itself, one transaction each; (actions, seconds)."""
    runtime, ids = prepare(folder, n)
    lc, actions = runtime.lifecycle, 0
    start = time.perf_counter()
    for pid in ids:
        for head in HEADS:
            with session_scope(runtime.engine) as s:
                lc.apply(s, pid, "endorse", head, now=now())
            actions += 1
    elapsed = time.perf_counter() - start
    runtime.engine.dispose()
    return actions, elapsed


def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """``uvicorn --factory web.app:create_app`` with one worker, on the bench database; waits until it answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUMFLOW_")}
    env |= {"FORUMFLOW_DATA_DIR": str(folder), "FORUMFLOW_BASE_URL": f"http://127.0.0.1:{port}", "FORUMFLOW_SMTP_PORT": "1"}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "web.app:create_app", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(cmd, env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/sign-in", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"uvicorn exited with code {server.returncode}")
        time.sleep(0.2)
    server.kill()
    raise SystemExit("uvicorn did not answer within 60 s")


async def gather_clients(clients: int, work: Callable[[int], Awaitable[list[float]]]) -> tuple[list[float], float]:
    """Run ``work(client)`` for every client at once; (all latencies in seconds, wall time)."""
    start = time.perf_counter()
    results = await asyncio.gather(*(work(c) for c in range(clients)))
    return [x for r in results for x in r], time.perf_counter() - start


async def http_actions(base: str, ids: list[int], tokens: dict[str, str], clients: int) -> tuple[list[float], float]:
    """Each client endorses its share of the proposals, head after head, with the ETag each answer returns."""
    shares = [ids[c::clients] for c in range(clients)]

    async def client(c: int) -> list[float]:
        latencies: list[float] = []
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for pid in shares[c]:
                etag = (await http.get(f"/api/v1/proposals/{pid}", headers={"Authorization": f"Bearer {tokens[HEADS[0]]}"})
                        ).headers["etag"]
                for head in HEADS:
                    headers = {"Authorization": f"Bearer {tokens[head]}", "If-Match": etag}
                    t = time.perf_counter()
                    r = await http.post(f"/api/v1/proposals/{pid}/actions/endorse", headers=headers, json={})
                    latencies.append(time.perf_counter() - t)
                    if r.status_code != 200:
                        raise SystemExit(f"endorse {pid} by {head}: {r.status_code} {r.text}")
                    etag = r.headers["etag"]
        return latencies

    return await gather_clients(clients, client)


async def http_pages(base: str, path: str, cookie: str, clients: int, per_client: int) -> tuple[list[float], float]:
    """Each client reads the page ``per_client`` times, signed in with a session cookie."""

    async def client(c: int) -> list[float]:
        latencies: list[float] = []
        async with httpx.AsyncClient(base_url=base, timeout=30, cookies={"forumflow_session": cookie}) as http:
            for _ in range(per_client):
                t = time.perf_counter()
                r = await http.get(path)
                latencies.append(time.perf_counter() - t)
                if r.status_code != 200:
                    raise SystemExit(f"GET {path}: {r.status_code}")
        return latencies

    return await gather_clients(clients, client)


def credentials(runtime: Runtime) -> tuple[dict[str, str], str]:
    """API tokens of the endorsing heads, and a session id for the reader of the page."""
    with session_scope(runtime.engine) as s:
        tokens = {h: create_token(s, h, name="bench", now=now()).raw for h in HEADS}
        reader = s.get(Member, READER)
        assert reader is not None
        cookie = start_session(s, reader, now=now(), valid=dt.timedelta(hours=1)).raw_id
    return tokens, cookie


def page_path(base: str, cookie: str, pid: int) -> str:
    """The proposal page of ``pid``, checked once: it answers 200 with the endorsement board."""
    path = f"/proposals/{pid}"
    r = httpx.get(f"{base}{path}", cookies={"forumflow_session": cookie}, timeout=10)
    if r.status_code != 200 or 'class="board"' not in r.text:
        raise SystemExit(f"GET {path}: {r.status_code}, not the proposal page with its endorsement board")
    return path


def figures(latencies: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    return {"p50_ms": round(percentile(latencies, 50) * 1000, 2), "p99_ms": round(percentile(latencies, 99) * 1000, 2)}


def main() -> None:
    """Measure and print; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=60)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--page-requests", type=int, default=25, help="page reads per client")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        direct_actions, direct_seconds = direct_run(folder / "direct", args.proposals)
        runtime, ids = prepare(folder / "http", args.proposals)
        tokens, cookie = credentials(runtime)
        port = free_port()
        server = start_server(folder / "http", port)
        base = f"http://127.0.0.1:{port}"
        try:
            path = page_path(base, cookie, ids[0])
            page_lat, _ = asyncio.run(http_pages(base, path, cookie, args.clients, args.page_requests))
            action_lat, http_seconds = asyncio.run(http_actions(base, ids, tokens, args.clients))
        finally:
            server.terminate()
            server.wait(timeout=30)
        with session_scope(runtime.engine) as s:
            endorsed = sum(1 for pid in ids if (p := s.get(Proposal, pid)) is not None and p.state == "endorsed")
        runtime.engine.dispose()

    assert endorsed == len(ids), f"{endorsed} of {len(ids)} proposals reached consensus through HTTP"
    http_rate = len(action_lat) / http_seconds
    direct_rate = direct_actions / direct_seconds
    ratio = http_rate / direct_rate
    actions, page = figures(action_lat), figures(page_lat)
    print(f"one uvicorn worker on SQLite, {args.clients} concurrent clients on loopback, {args.proposals} proposals")
    print(f"POST /api/v1/proposals/{{id}}/actions/endorse: {len(action_lat)} requests, p50 {actions['p50_ms']} ms, "
          f"p99 {actions['p99_ms']} ms (target <= {TARGETS['action_p99_ms']:.0f})")
    print(f"GET {path} (proposal page, as {READER}): {len(page_lat)} requests, p50 {page['p50_ms']} ms, "
          f"p99 {page['p99_ms']} ms (target <= {TARGETS['page_p99_ms']:.0f})")
    print(f"actions per second: HTTP {http_rate:.0f}, lifecycle called directly {direct_rate:.0f}, "
          f"ratio {ratio:.2f} (target >= {TARGETS['ratio']})")
    result = {
        "clients": args.clients, "proposals": args.proposals, "page": "/proposals/{id}",
        "action_p50_ms": actions["p50_ms"], "action_p99_ms": actions["p99_ms"], "page_p50_ms": page["p50_ms"],
        "page_p99_ms": page["p99_ms"], "http_actions_per_s": round(http_rate, 1),
        "direct_actions_per_s": round(direct_rate, 1), "ratio": round(ratio, 3),
        "page_requests": len(page_lat), "action_requests": len(action_lat),
    }
    emit("web", {k: v for k, v in result.items() if k not in ("clients", "proposals", "page", "ratio")},
         {"http_vs_direct": result["ratio"]},
         params={"clients": args.clients, "proposals": args.proposals, "page": "/proposals/{id}"}, targets=TARGETS)


if __name__ == "__main__":
    main()
