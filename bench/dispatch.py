"""Dispatch throughput: forumflow's outbox to an aiosmtpd server in another process, beside raw aiosmtplib.

Run: python bench/dispatch.py [--deliveries N] [--repeats R] [--connections C] [--profile FILE]
Measured in the same run, against the same server process, with the same N messages:
  forumflow        dispatch_once from an empty outbox: plan the deliveries, claim and lease them, render each
                   mail (jinja2, Babel), send over the pool of C connections, record every outcome as it happens
  same_connections raw aiosmtplib over C connections at once, each taking the next message from one queue
  one_connection   raw aiosmtplib ``sendmail`` over one connection
  per_message      raw aiosmtplib opening a connection per message
What is fair and what is not:
  - the raw contenders send the exact bytes forumflow sends (its rendering, done once beforehand outside any
    timing: same sizes, same MIME, same envelopes); they render nothing and record nothing. forumflow's figure
    carries its own work per mail: planning, claiming, rendering, recording. That work is what the ratio weighs.
  - same_connections talks to the server as forumflow's pool does: C sessions opened once, and per message
    MAIL, RCPT and DATA, each awaiting its reply. Neither pipelines (aiosmtplib does not, though aiosmtpd offers
    PIPELINING), neither sends a SIZE parameter.
  - every contender runs on the event loop forumflow sends on (``notifications.smtp.run_sending``: uvloop where it
    is installed, as it is with forumflow's dependencies), so the loop weighs on both sides alike.
  - the server accepts and counts (no disk): the client side is what is measured. Every run is checked against
    the server's count.
Each contender runs once per repeat, in an order that turns with the repeat. Printed per contender: messages per
second, and the CPU time per message of the client (this process) and of the server process. On a shared machine
the CPU figures are the steadier ones: when other work competes for the cores, throughput follows the CPU time
client and server spend per message. Medians over the repeats; the last line is the JSON of bench/report.py.
Targets: forumflow at least 0.9x same_connections, 0.8x one_connection and 2.5x per_message.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import logging
import multiprocessing as mp
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402
from sqlalchemy import delete, event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from bench.report import emit  # noqa: E402
from config import DEFAULT_FORUM_FILE, load_definition  # noqa: E402
from config.settings import Settings  # noqa: E402
from models import Lifecycle, create_schema, make_engine, session_scope, sync_definition  # noqa: E402
from models.outbox import Delivery, PlannedEvent  # noqa: E402
from models.tables import ProposalCreate  # noqa: E402
from notifications import dispatch_once  # noqa: E402
from notifications.dispatch import _claim, _Mails  # noqa: E402
from notifications.render import Renderer  # noqa: E402
from notifications.sink import free_port  # noqa: E402
from notifications.smtp import SmtpConfig, event_loop_factory, run_sending  # noqa: E402

T0 = dt.datetime(2021, 3, 1, 9, 0, tzinfo=dt.UTC)
PER_PROPOSAL = 20  # submit: chair and two members; recommend: the author and 16 heads of region
SENDER = "forumflow@example.org"
CONTENDERS = ("forumflow", "same_connections", "one_connection", "per_message")
TARGETS = {"forumflow_vs_same_connections": 0.9, "forumflow_vs_one_connection": 0.8, "forumflow_vs_per_message": 2.5}


# ---------------------------------------------------------------------- the server process
class CountingHandler:
    """Accepts every message and counts it (no disk I/O), noting the server's CPU time as it goes."""

    def __init__(self, counter: Synchronized, cpu: Synchronized) -> None:  # type: ignore[type-arg]
        self.counter, self.cpu = counter, cpu

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.counter.get_lock():
            self.counter.value += 1
        self.cpu.value = time.process_time()  # of the whole server process (it has one busy thread)
        return "250 2.0.0 OK"


def serve(port: int, counter: Synchronized, cpu: Synchronized, ready: Any, stop: Any) -> None:  # type: ignore[type-arg]
    """Run aiosmtpd until ``stop`` is set (in its own process)."""
    from aiosmtpd.controller import Controller

    logging.disable(logging.CRITICAL)
    controller = Controller(CountingHandler(counter, cpu), hostname="127.0.0.1", port=port, server_hostname="bench")
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


@dataclass
class Server:
    """The server process and what it shares with this one."""

    port: int
    counter: Synchronized  # type: ignore[type-arg]
    cpu: Synchronized  # type: ignore[type-arg]


# ---------------------------------------------------------------------- set-up
def build_forum(workdir: Path, n: int) -> tuple[Engine, Lifecycle]:
    """A database whose events produce ``n`` deliveries (rounded up to whole proposals)."""
    definition = load_definition(DEFAULT_FORUM_FILE)
    lifecycle = Lifecycle(definition)
    engine = make_engine(f"sqlite:///{workdir / 'bench.db'}")
    create_schema(engine)
    with session_scope(engine) as s:
        sync_definition(s, definition)
    with session_scope(engine) as s:
        for i in range(-(-n // PER_PROPOSAL)):
            draft = ProposalCreate(group="industry", author="zhao.lei", title=f"Cooperation measure {i + 1}: grain corridor")
            p = lifecycle.create_proposal(session=s, proposal_in=draft, now=T0)
            assert p.id is not None
            lifecycle.apply(s, p.id, "submit", "zhao.lei", now=T0)
            lifecycle.apply(s, p.id, "recommend", "kuznetsov", now=T0)
    return engine, lifecycle


def empty_outbox(engine: Engine) -> None:
    """Forget every delivery, so the next run plans and sends everything again."""
    with session_scope(engine) as s:
        s.execute(delete(Delivery))
        s.execute(delete(PlannedEvent))


def prerender(engine: Engine, settings: Settings, lifecycle: Lifecycle) -> list[tuple[str, bytes]]:
    """The exact messages forumflow sends, as (recipient, bytes), built once outside any timing."""
    from notifications import plan_deliveries
    from notifications.dispatch import RetryPolicy

    config = SmtpConfig.from_settings(settings)
    with session_scope(engine) as s:
        plan_deliveries(s, lifecycle, now=T0)
    with session_scope(engine) as s:
        claimed = _claim(s, now=T0, size=10**9, policy=RetryPolicy(), domain=config.sender.domain)
        jobs = _Mails(Renderer(lifecycle.definition), config, now=T0).jobs(s, claimed)
        messages = [(job.to, job.build()) for job in jobs]
    empty_outbox(engine)
    return messages


# ---------------------------------------------------------------------- the contenders
def run_forumflow(engine: Engine, settings: Settings, lifecycle: Lifecycle) -> int:
    """dispatch_once over an emptied outbox (emptied beforehand: the bench's set-up, not forumflow's work)."""
    report = dispatch_once(engine, settings, lifecycle, now=T0)
    if report.send.sent != report.planned:
        raise RuntimeError(f"forumflow sent {report.send.sent} of {report.planned}: {report.send.errors}")
    return report.send.sent


def loop_name() -> str:
    """The event loop every contender runs on."""
    factory = event_loop_factory()
    return "asyncio" if factory is None else factory.__module__.split(".")[0]


def _client(port: int) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="example.org")


async def _same_connections(port: int, messages: list[tuple[str, bytes]], connections: int) -> int:
    """``connections`` sessions at once, each taking the next message from one shared queue, as forumflow's pool does.

    The same commands per message as the pool: MAIL, RCPT, DATA, each awaiting its reply, on sessions opened once.
    """
    queue = list(reversed(messages))

    async def worker() -> int:
        smtp = _client(port)
        await smtp.connect()
        sent = 0
        while queue:
            to, data = queue.pop()
            await smtp.mail(SENDER)
            await smtp.rcpt(to)
            await smtp.data(data)
            sent += 1
        await smtp.quit()
        return sent

    counts = await asyncio.gather(*(worker() for _ in range(min(connections, len(messages)))))
    return sum(counts)


async def _one_connection(port: int, messages: list[tuple[str, bytes]]) -> int:
    smtp = _client(port)
    await smtp.connect()
    for to, data in messages:
        await smtp.sendmail(SENDER, [to], data)
    await smtp.quit()
    return len(messages)


async def _per_message(port: int, messages: list[tuple[str, bytes]]) -> int:
    for to, data in messages:
        smtp = _client(port)
        await smtp.connect()
        await smtp.sendmail(SENDER, [to], data)
        await smtp.quit()
    return len(messages)


@dataclass
class Runs:
    """What one contender did, run after run."""

    rates: list[float] = field(default_factory=list)  # messages per second
    cpu: list[float] = field(default_factory=list)  # client CPU microseconds per message
    server_cpu: list[float] = field(default_factory=list)  # server CPU microseconds per message

    def medians(self) -> tuple[float, float, float]:
        return statistics.median(self.rates), statistics.median(self.cpu), statistics.median(self.server_cpu)


def timed(run: Callable[[], int], server: Server, runs: Runs, prepare: Callable[[], None] = lambda: None) -> None:
    """One run after ``prepare``: messages per second and CPU per message (client and server), checked against the
    server's count."""
    prepare()
    before, server_cpu = server.counter.value, server.cpu.value
    start, cpu = time.perf_counter(), time.process_time()
    sent = run()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    received = server.counter.value - before
    if received != sent:
        raise RuntimeError(f"server received {received}, client reported {sent}")
    runs.rates.append(sent / elapsed)
    runs.cpu.append(1e6 * cpu / sent)
    runs.server_cpu.append(1e6 * (server.cpu.value - server_cpu) / sent)


def profile(path: str, engine: Engine, settings: Settings, lifecycle: Lifecycle) -> None:
    """One more forumflow run under cProfile (not timed): the stats to ``path``, the costliest lines printed."""
    empty_outbox(engine)
    profiler = cProfile.Profile()
    profiler.runcall(run_forumflow, engine, settings, lifecycle)
    profiler.dump_stats(path)
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4, help="forumflow's pool size (FORUMFLOW_SMTP_CONNECTIONS)")
    parser.add_argument("--profile", metavar="FILE", help="also profile one forumflow run, stats to FILE")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    ctx = mp.get_context("spawn")
    server = Server(free_port(), ctx.Value("q", 0), ctx.Value("d", 0.0))
    ready, stop = ctx.Event(), ctx.Event()
    process = ctx.Process(target=serve, args=(server.port, server.counter, server.cpu, ready, stop), daemon=True)
    process.start()
    if not ready.wait(30):
        raise SystemExit("the SMTP server did not start")
    results = {name: Runs() for name in CONTENDERS}
    statements: list[int] = []
    try:
        with tempfile.TemporaryDirectory(prefix="forumflow-bench-") as tmp:
            workdir = Path(tmp)
            engine, lifecycle = build_forum(workdir, args.deliveries)
            settings = Settings(
                data_dir=workdir, smtp_port=server.port, smtp_connections=args.connections, mail_from=SENDER
            )
            messages = prerender(engine, settings, lifecycle)
            counted = [0]

            def count(_: str) -> None:
                counted[0] += 1

            def trace(dbapi_connection: Any, _: Any) -> None:  # every statement SQLite runs, each row of a batch
                dbapi_connection.set_trace_callback(count)

            engine.dispose()
            event.listen(engine, "connect", trace)

            def forumflow() -> int:
                counted[0] = 0
                sent = run_forumflow(engine, settings, lifecycle)
                statements.append(counted[0])
                return sent

            contenders: dict[str, Callable[[], int]] = {
                "forumflow": forumflow,
                "same_connections": lambda: run_sending(_same_connections(server.port, messages, args.connections)),
                "one_connection": lambda: run_sending(_one_connection(server.port, messages)),
                "per_message": lambda: run_sending(_per_message(server.port, messages)),
            }

            def prepare() -> None:
                empty_outbox(engine)

            for repeat in range(args.repeats):
                turn = repeat % len(CONTENDERS)
                for name in CONTENDERS[turn:] + CONTENDERS[:turn]:
                    timed(contenders[name], server, results[name], prepare if name == "forumflow" else lambda: None)
                    print(f"  run {repeat + 1} {name:17s} {results[name].rates[-1]:8.1f} msg/s", file=sys.stderr)
            if args.profile:
                profile(args.profile, engine, settings, lifecycle)
            engine.dispose()
    finally:
        stop.set()
        process.join(10)

    n = len(messages)
    medians = {name: runs.medians() for name, runs in results.items()}
    print(f"{n} messages, {args.connections} connections, event loop {loop_name()}, medians of {args.repeats} runs:")
    print(f"  {'':17s} {'msg/s':>8s} {'client CPU/msg':>15s} {'server CPU/msg':>15s}")
    for name, (rate, cpu, server_cpu) in medians.items():
        print(f"  {name:17s} {rate:8.1f} {cpu:12.0f} us {server_cpu:12.0f} us")
    ratios = {f"forumflow_vs_{name}": round(medians["forumflow"][0] / medians[name][0], 2) for name in CONTENDERS[1:]}
    per_mail = statistics.median(statements) / n
    print(f"  forumflow SQL statements per mail (each row of a batch, BEGIN and COMMIT counted): {per_mail:.2f}")
    for name, ratio in ratios.items():
        print(f"  {name}: {ratio:.2f}x (target >= {TARGETS[name]}x)")
    figures: dict[str, Any] = {}
    for name, (rate, cpu, server_cpu) in medians.items():
        figures |= {
            f"{name}_msgs_per_s": round(rate, 1), f"{name}_client_cpu_us_per_msg": round(cpu),
            f"{name}_server_cpu_us_per_msg": round(server_cpu),
        }
    figures["forumflow_statements_per_mail"] = round(per_mail, 3)
    figures["runs_msgs_per_s"] = {name: [round(r, 1) for r in runs.rates] for name, runs in results.items()}
    emit(
        "dispatch", figures, ratios,
        params={"deliveries": n, "repeats": args.repeats, "connections": args.connections, "event_loop": loop_name()},
        targets=TARGETS,
    )


if __name__ == "__main__":
    main()
