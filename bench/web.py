"""The web app under load: one uvicorn worker on SQLite, 20 clients on loopback, beside the lifecycle called directly.

Run: python bench/web.py [--proposals N] [--repeats K] [--clients C] [--rate R] [--seconds S] [--page-requests P]
                         [--profile FILE]

Two load models, both printed, both in the JSON line:

* **paced** (open loop; the targets apply here): C clients, each sending on a fixed schedule, R requests per
  second in all (default 100/s, 5/s per client), for S seconds of proposal pages, then S seconds of actions.
  Latency is measured from the moment a request was *due*, not from when it went out: a client held up by a
  slow answer sends late, and the lateness counts (no coordinated omission: queueing cannot hide).
* **saturation** (closed loop): C clients each send their next request as soon as the previous one answers.
  This measures the most the one worker can do (its throughput), not a latency anyone sees: with C requests
  always waiting, latency is C times the service time by queueing alone. The HTTP/direct ratio is taken here.

Why 100 requests per second: a forum of this kind has a few hundred members, who act on a handful of proposals
a day; even a deadline morning with everyone clicking at once is a few requests per second. 100/s (every one of
the 20 clients acting 5 times a second, every second) is far above any real peak, yet a rate a person can
check against: at R/s one worker with service time s ms is busy R*s/1000 of the time, and p99 stays low only
while that is well below 1. ``--rate`` sets another.

What runs:

1. The lifecycle called directly (the baseline): N proposals in their endorsement round; the eight heads of
   region endorse each one, one transaction each, one thread; before the HTTP runs and again after each saturation
   run of the actions (each HTTP run is compared with the direct runs just before and after it, so the machine's
   other load weighs on both sides alike). Actions per second.
2. uvicorn (``--factory web.app:create_app``, one worker) on a database prepared the same way (N proposals for
   each saturation run, about R*S/8 more for the paced one), then:
   * the proposal page ``/proposals/{id}`` (text, the reader's buttons, the endorsement board, the timeline) of
     a proposal in its round, read with a session cookie: paced, then saturation (P reads per client);
   * ``POST /api/v1/proposals/{id}/actions/endorse`` with a Bearer token and ``If-Match`` (the ETag of the
     previous answer), the eight heads in turn per proposal (the last one also closes the round by consensus):
     paced over the paced proposals, then saturation over N proposals, K times (``--repeats``, default 3), each
     time on N proposals of its own. The ratio is the median of the K ratios.
   The server's CPU time per request (from /proc) is reported beside each run.

The clients are a small HTTP/1.1 client on asyncio streams (keep-alive, one connection per client), so the load
generator takes little of the machine the server runs on.

On SQLite the server commits the actions that reach it together in one transaction (``web.units.GroupCommit``):
at saturation that is several actions a commit, in the paced runs nearly always one. The direct baseline commits
each action by itself, as one caller of the lifecycle does.

Targets (issue 10): paced p99 of actions <= 20 ms and of the page <= 30 ms; saturation throughput of actions
through HTTP >= 0.5x the same actions called directly. Prints figures, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
TARGETS = {"paced_action_p99_ms": 20.0, "paced_page_p99_ms": 30.0, "saturation_ratio": 0.5}


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
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


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


# ---------------------------------------------------------------------- the server
def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(folder: Path, port: int, profile: str | None = None, *, factory: str = "web.app:create_app",
                 ready: tuple[str, int] = ("/sign-in", 200), env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``uvicorn --factory web.app:create_app`` (or ``factory``) with one worker, on the bench database; waits until
    ``GET ready[0]`` answers ``ready[1]``.

    ``profile``: run it under ``bench/profiled_uvicorn.py`` (cProfile in every thread), stats written there at exit.
    """
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FORUMFLOW_")}
    environment |= {"FORUMFLOW_DATA_DIR": str(folder), "FORUMFLOW_BASE_URL": f"http://127.0.0.1:{port}",
                    "FORUMFLOW_SMTP_PORT": "1", **(env or {})}
    launcher = ["-m", "uvicorn"] if profile is None else [str(ROOT / "bench" / "profiled_uvicorn.py"), profile]
    cmd = [sys.executable, *launcher, "--factory", factory, "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(cmd, env=environment, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if asyncio.run(_status(port, ready[0])) == ready[1]:
                return server
        except OSError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"uvicorn exited with code {server.returncode}")
        time.sleep(0.2)
    server.kill()
    raise SystemExit("uvicorn did not answer within 60 s")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------- a small HTTP/1.1 client
@dataclass
class Answer:
    """A response: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: requests one after the other, little CPU per request."""

    def __init__(self, port: int, cookie: str | None = None) -> None:
        self.port, self.cookie = port, cookie
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Answer:
        """Send one request and read its whole answer (Content-Length framed, as uvicorn sends these)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        if self.cookie:
            lines.append(f"Cookie: forumflow_session={self.cookie}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method not in ("GET", "HEAD"):
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        answer_headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                answer_headers[name.strip().lower()] = value.strip()
        data = await self.reader.readexactly(int(answer_headers.get("content-length", "0")))
        return Answer(int(status_line.split()[1]), answer_headers, data)

    async def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def _status(port: int, path: str) -> int:
    conn = Connection(port)
    try:
        return (await asyncio.wait_for(conn.request("GET", path), 2)).status
    finally:
        await conn.close()


# ---------------------------------------------------------------------- the load
@dataclass
class Run:
    """One run of requests: latencies (seconds), wall time, and the server's CPU seconds meanwhile."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    server_cpu: float = 0.0
    answer_bytes: int = 0  # the size of the last answer's body

    @property
    def rate(self) -> float:
        """Requests answered per second."""
        return len(self.latencies) / self.seconds

    def figures(self, prefix: str) -> dict[str, float]:
        """p50, p99 and max in milliseconds, requests per second and server CPU ms per request."""
        ms = [x * 1000 for x in self.latencies]
        return {
            f"{prefix}_p50_ms": round(percentile(ms, 50), 2), f"{prefix}_p99_ms": round(percentile(ms, 99), 2),
            f"{prefix}_max_ms": round(max(ms), 2), f"{prefix}_per_s": round(self.rate, 1),
            f"{prefix}_server_cpu_ms": round(self.server_cpu / len(ms) * 1000, 3),
        }


Send = Callable[[Connection, Callable[[], float]], Awaitable[bool]]


async def load(port: int, server: int, clients: int, cookie: str | None, work: Callable[[int], Send | None],
               rate: float | None) -> Run:
    """Run the clients at once; ``work(c)`` gives client c's next request (a coroutine function) or None when done.

    ``rate``: requests per second in all, on a fixed schedule per client (client c sends its k-th request at
    ``start + (c + k * clients) / rate``), latency counted from that moment; None: closed loop, latency from the send.
    """
    conns = [Connection(port, cookie) for _ in range(clients)]
    for conn in conns:  # connected before the clock starts
        await conn.request("GET", "/static/app.css")
    run = Run()
    cpu0 = cpu_seconds(server)
    # Paced: the schedule starts a moment from now, once every client is waiting for its turn. Closed loop: now.
    start = time.perf_counter() + (0.05 if rate is not None else 0.0)

    async def client(c: int) -> None:
        k = 0
        while (send := work(c)) is not None:
            if rate is not None:
                due = start + (c + k * clients) / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
            else:
                due = time.perf_counter()
            if not await send(conns[c], lambda due=due: time.perf_counter() - due):  # type: ignore[misc]
                return
            k += 1

    await asyncio.gather(*(client(c) for c in range(clients)))
    run.seconds = time.perf_counter() - start
    run.server_cpu = cpu_seconds(server) - cpu0
    for conn in conns:
        await conn.close()
    return run


Request = Callable[[int, int], tuple[str, str, dict[str, str], bytes]]


async def repeated_run(port: int, server: int, clients: int, per_client: int, rate: float | None, cookie: str | None,
                       request: Request) -> Run:
    """Each client sends ``per_client`` requests, ``request(c, k)`` giving client c's method, path, headers and body
    when k requests are left after it; every answer must be 200."""
    left = [per_client] * clients
    latencies: list[float] = []

    def work(c: int) -> Send | None:
        if left[c] == 0:
            return None
        left[c] -= 1
        method, path, headers, body = request(c, left[c])

        async def send(conn: Connection, elapsed: Callable[[], float]) -> bool:
            r = await conn.request(method, path, headers, body)
            latencies.append(elapsed())
            if r.status != 200:
                raise SystemExit(f"{method} {path}: {r.status} {r.body[:300]!r}")
            return True

        return send

    run = await load(port, server, clients, cookie, work, rate)
    run.latencies = latencies
    return run


async def page_run(port: int, server: int, path: str, cookie: str, clients: int, per_client: int,
                   rate: float | None) -> Run:
    """Each client reads the page ``per_client`` times, signed in with a session cookie."""
    return await repeated_run(port, server, clients, per_client, rate, cookie, lambda c, k: ("GET", path, {}, b""))


async def etags(port: int, ids: list[int], token: str) -> dict[int, str]:
    """The ETag of each proposal, read before a run."""
    conn, tags = Connection(port), {}
    for pid in ids:
        tags[pid] = (await conn.request("GET", f"/api/v1/proposals/{pid}", {"Authorization": f"Bearer {token}"})).headers["etag"]
    await conn.close()
    return tags


async def action_run(port: int, server: int, ids: list[int], tokens: dict[str, str], clients: int,
                     rate: float | None) -> Run:
    """Each client endorses its share of the proposals, head after head, with the ETag each answer returns."""
    tags = await etags(port, ids, tokens[HEADS[0]])
    steps = [[(pid, head) for pid in ids[c::clients] for head in HEADS] for c in range(clients)]
    latencies: list[float] = []

    def work(c: int) -> Send | None:
        if not steps[c]:
            return None
        pid, head = steps[c].pop(0)

        async def send(conn: Connection, elapsed: Callable[[], float]) -> bool:
            headers = {"Authorization": f"Bearer {tokens[head]}", "If-Match": tags[pid]}
            r = await conn.request("POST", f"/api/v1/proposals/{pid}/actions/endorse", headers, b"{}")
            latencies.append(elapsed())
            if r.status != 200:
                raise SystemExit(f"endorse {pid} by {head}: {r.status} {r.body[:300]!r}")
            tags[pid] = r.headers["etag"]
            sizes.append(len(r.body))
            return True

        return send

    sizes: list[int] = []
    run = await load(port, server, clients, None, work, rate)
    run.latencies, run.answer_bytes = latencies, sizes[-1]
    return run


async def floor_run(port: int, server: int, clients: int, per_client: int) -> Run:
    """The action requests of a saturation run (the same headers and body) against ``bench/web_floor.py``'s app."""

    def request(c: int, k: int) -> tuple[str, str, dict[str, str], bytes]:
        headers = {"Authorization": "Bearer ff_" + "x" * 43, "If-Match": f'"{c + 1}-{k}"'}
        return "POST", f"/api/v1/proposals/{c + 1}/actions/endorse", headers, b"{}"

    return await repeated_run(port, server, clients, per_client, None, None, request)


def credentials(runtime: Runtime) -> tuple[dict[str, str], str]:
    """API tokens of the endorsing heads, and a session id for the reader of the page."""
    with session_scope(runtime.engine) as s:
        tokens = {h: create_token(s, h, name="bench", now=now()).raw for h in HEADS}
        reader = s.get(Member, READER)
        assert reader is not None
        cookie = start_session(s, reader, now=now(), valid=dt.timedelta(hours=1)).raw_id
    return tokens, cookie


async def page_path(port: int, cookie: str, pid: int) -> str:
    """The proposal page of ``pid``, checked once: it answers 200 with the endorsement board (and warms the server)."""
    path = f"/proposals/{pid}"
    conn = Connection(port, cookie)
    for _ in range(20):
        r = await conn.request("GET", path)
        if r.status != 200 or b'class="board"' not in r.body:
            raise SystemExit(f"GET {path}: {r.status}, not the proposal page with its endorsement board")
    await conn.close()
    return path


def met(value: float, target: float, *, at_most: bool) -> str:
    """'met' or 'NOT met'."""
    return "met" if (value <= target if at_most else value >= target) else "NOT met"


def main() -> None:
    """Measure and print; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=300,
                        help="proposals endorsed in each saturation run (and directly): 2,400 actions, a few seconds")
    parser.add_argument("--repeats", type=int, default=3, help="saturation runs of the actions, each beside direct runs")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second in all, in the paced runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each paced run")
    parser.add_argument("--page-requests", type=int, default=25, help="page reads per client in the saturation run")
    parser.add_argument("--profile", metavar="FILE", help="run the server under cProfile (every thread), stats to FILE")
    args = parser.parse_args()
    if args.repeats < 1 or args.proposals < 1:
        parser.error("--repeats and --proposals must be at least 1")
    paced_requests = max(args.clients, round(args.rate * args.seconds))
    # As many proposals for each client (8 actions each), so every client's schedule ends together.
    paced_proposals = args.clients * max(1, math.ceil(paced_requests / len(HEADS) / args.clients))
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # The baseline before the HTTP runs and after each saturation run: each saturation run is compared with the
        # direct runs on either side of it, so the machine's other load weighs on both sides alike.
        directs = [direct_run(folder / "direct-0", args.proposals)]
        runtime, ids = prepare(folder / "http", args.proposals * args.repeats + paced_proposals)
        saturation_ids, paced_ids = ids[:args.proposals * args.repeats], ids[args.proposals * args.repeats:]
        tokens, cookie = credentials(runtime)
        port = free_port()
        server = start_server(folder / "http", port, args.profile)
        per_client = max(1, math.ceil(paced_requests / args.clients))
        action_sats: list[Run] = []
        try:
            path = asyncio.run(page_path(port, cookie, ids[0]))
            page_paced = asyncio.run(page_run(port, server.pid, path, cookie, args.clients, per_client, args.rate))
            page_sat = asyncio.run(page_run(port, server.pid, path, cookie, args.clients, args.page_requests, None))
            action_paced = asyncio.run(action_run(port, server.pid, paced_ids, tokens, args.clients, args.rate))
            for k in range(args.repeats):
                mine = saturation_ids[k * args.proposals:(k + 1) * args.proposals]
                action_sats.append(asyncio.run(action_run(port, server.pid, mine, tokens, args.clients, None)))
                directs.append(direct_run(folder / f"direct-{k + 1}", args.proposals))
        finally:
            server.terminate()
            server.wait(timeout=60)
        # The middle saturation run (by rate) stands for them all in the figures; the ratio is the median of all.
        action_sat = sorted(action_sats, key=lambda r: r.rate)[len(action_sats) // 2]
        # The framework alone, on the same requests: what FastAPI and uvicorn cost before forumflow does anything.
        floor_port = free_port()
        floor_server = start_server(folder / "http", floor_port, factory="bench.web_floor:create_app", ready=("/none", 404),
                                    env={"FORUMFLOW_BENCH_FLOOR_BYTES": str(action_sat.answer_bytes)})
        try:
            floor = asyncio.run(floor_run(floor_port, floor_server.pid, args.clients,
                                          math.ceil(len(action_sat.latencies) / args.clients)))
        finally:
            floor_server.terminate()
            floor_server.wait(timeout=60)
        with session_scope(runtime.engine) as s:
            endorsed = sum(1 for pid in ids if (p := s.get(Proposal, pid)) is not None and p.state == "endorsed")
        runtime.engine.dispose()

    assert endorsed == len(ids), f"{endorsed} of {len(ids)} proposals reached consensus through HTTP"
    direct_rates = [actions / seconds for actions, seconds in directs]
    # Each saturation run against the direct runs just before and after it (their actions over their time).
    ratios = [
        run.rate / ((directs[k][0] + directs[k + 1][0]) / (directs[k][1] + directs[k + 1][1]))
        for k, run in enumerate(action_sats)
    ]
    ratio = statistics.median(ratios)
    direct_rate = statistics.median(direct_rates)
    direct_ms = 1000 / direct_rate
    figures: dict[str, Any] = {
        **page_paced.figures("paced_page"), **action_paced.figures("paced_action"),
        **page_sat.figures("saturation_page"), **action_sat.figures("saturation_action"),
        "saturation_action_per_s_runs": [round(r.rate, 1) for r in action_sats],
        "direct_actions_per_s": round(direct_rate, 1), "direct_actions_per_s_runs": [round(r, 1) for r in direct_rates],
        "direct_ms": round(direct_ms, 3), **floor.figures("floor_action"), "answer_bytes": action_sat.answer_bytes,
    }
    floor_ms = floor.server_cpu / len(floor.latencies) * 1000
    # The most the ratio can be: every request costing the framework's floor and the action itself, nothing more.
    ratio_ceiling = direct_ms / (direct_ms + floor_ms)
    load_after = os.getloadavg()[0]
    print(f"one uvicorn worker on SQLite, {args.clients} clients on loopback; machine load {load_before:.1f} -> {load_after:.1f}")
    print(f"paced (open loop, {args.rate:g} requests/s in all, latency from the due time):")
    for name, run, key, target in (
        (f"GET {path} (proposal page, as {READER})", page_paced, "paced_page", TARGETS["paced_page_p99_ms"]),
        ("POST /api/v1/proposals/{id}/actions/endorse", action_paced, "paced_action", TARGETS["paced_action_p99_ms"]),
    ):
        print(f"  {name}: {len(run.latencies)} requests at {run.rate:.0f}/s, p50 {figures[key + '_p50_ms']} ms, "
              f"p99 {figures[key + '_p99_ms']} ms (target <= {target:g}: {met(figures[key + '_p99_ms'], target, at_most=True)}), "
              f"max {figures[key + '_max_ms']} ms; server CPU {figures[key + '_server_cpu_ms']} ms each")
    print(f"saturation (closed loop, {args.clients} requests always in flight):")
    for name, run, key in (("proposal page", page_sat, "saturation_page"),
                           (f"endorse (the middle of {args.repeats} runs)", action_sat, "saturation_action")):
        print(f"  {name}: {len(run.latencies)} requests, {run.rate:.0f}/s, p50 {figures[key + '_p50_ms']} ms, "
              f"p99 {figures[key + '_p99_ms']} ms; server CPU {figures[key + '_server_cpu_ms']} ms each")
    print(f"actions per second: HTTP at saturation {' / '.join(f'{r.rate:.0f}' for r in action_sats)}, lifecycle called "
          f"directly {' / '.join(f'{r:.0f}' for r in direct_rates)} (median {figures['direct_ms']} ms each); ratios "
          f"{' / '.join(f'{r:.2f}' for r in ratios)}, median {ratio:.2f} "
          f"(target >= {TARGETS['saturation_ratio']}: {met(ratio, TARGETS['saturation_ratio'], at_most=False)})")
    print(f"the framework alone (bench/web_floor.py: FastAPI and uvicorn, the same route and requests, a fixed answer of "
          f"{action_sat.answer_bytes} bytes): {floor.rate:.0f}/s, server CPU {floor_ms:.3f} ms each; with nothing but it and "
          f"the action, the ratio would be {ratio_ceiling:.2f}; forumflow's own work per request beside the action: "
          f"{figures['saturation_action_server_cpu_ms'] - floor_ms - direct_ms:.3f} ms")
    emit("web", figures, {"http_vs_direct": round(ratio, 3), "http_vs_direct_runs": [round(r, 3) for r in ratios],
                          "ceiling_with_framework_alone": round(ratio_ceiling, 3)},
         params={"repeats": args.repeats, "clients": args.clients, "rate": args.rate, "seconds": args.seconds,
                 "proposals": args.proposals, "paced_proposals": paced_proposals, "page_requests": args.page_requests,
                 "page": "/proposals/{id}",
                 "load_before": round(load_before, 2), "load_after": round(load_after, 2)},
         targets=TARGETS)


if __name__ == "__main__":
    main()
