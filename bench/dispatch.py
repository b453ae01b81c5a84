"""Dispatch throughput: forumflow's outbox to an aiosmtpd server in another process, beside raw aiosmtplib.

Run: python bench/dispatch.py [--deliveries N] [--repeats R] [--connections C]
Measured in the same run, against the same server process, with the same N messages:
  forumflow  dispatch_once: plan the deliveries, claim, render (jinja2, Babel), send over the bounded
             connection pool, record every outcome; from an empty outbox each repeat
  (a)        raw aiosmtplib sending the same messages, rendered beforehand, over one connection
  (b)        raw aiosmtplib opening a connection per message
Prints medians over R repeats (messages per second) and the ratios forumflow / (a) and forumflow / (b).
Targets: at least 0.8x (a) and 2.5x (b).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402
from sqlalchemy import delete  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from bench.report import emit  # noqa: E402
from config import DEFAULT_FORUM_FILE, load_definition  # noqa: E402
from config.settings import Settings  # noqa: E402
from models import Lifecycle, create_schema, make_engine, session_scope, sync_definition  # noqa: E402
from models.outbox import Delivery, PlannedEvent  # noqa: E402
from models.tables import ProposalCreate  # noqa: E402
from notifications import dispatch_once  # noqa: E402
from notifications.dispatch import _claim, _jobs  # noqa: E402
from notifications.render import Renderer  # noqa: E402
from notifications.sink import free_port  # noqa: E402
from notifications.smtp import SmtpConfig  # noqa: E402

T0 = dt.datetime(2021, 3, 1, 9, 0, tzinfo=dt.UTC)
PER_PROPOSAL = 20  # submit: chair and two members; recommend: the author and 16 heads of region
SENDER = "forumflow@example.org"


# ---------------------------------------------------------------------- the server process
class CountingHandler:
    """Accepts every message and counts it (the server does no disk I/O, so the client is what is measured)."""

    def __init__(self, counter: Synchronized) -> None:  # type: ignore[type-arg]
        self.counter = counter

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.counter.get_lock():
            self.counter.value += 1
        return "250 2.0.0 OK"


def serve(port: int, counter: Synchronized, ready: Any, stop: Any) -> None:  # type: ignore[type-arg]
    """Run aiosmtpd until ``stop`` is set (in its own process)."""
    from aiosmtpd.controller import Controller

    logging.disable(logging.CRITICAL)
    controller = Controller(CountingHandler(counter), hostname="127.0.0.1", port=port, server_hostname="bench")
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


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
        jobs = _jobs(s, Renderer(lifecycle.definition), config, claimed, now=T0)
        messages = [(job.to, job.build()) for job in jobs]
    empty_outbox(engine)
    return messages


# ---------------------------------------------------------------------- the three contenders
def run_forumflow(engine: Engine, settings: Settings, lifecycle: Lifecycle) -> int:
    empty_outbox(engine)
    report = dispatch_once(engine, settings, lifecycle, now=T0)
    if report.send.sent != report.planned:
        raise RuntimeError(f"forumflow sent {report.send.sent} of {report.planned}: {report.send.errors}")
    return report.send.sent


async def _one_connection(port: int, messages: list[tuple[str, bytes]]) -> int:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="example.org")
    await smtp.connect()
    for to, data in messages:
        await smtp.sendmail(SENDER, [to], data)
    await smtp.quit()
    return len(messages)


async def _connection_per_message(port: int, messages: list[tuple[str, bytes]]) -> int:
    for to, data in messages:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="example.org")
        await smtp.connect()
        await smtp.sendmail(SENDER, [to], data)
        await smtp.quit()
    return len(messages)


def timed(run: Callable[[], int], counter: Synchronized) -> tuple[float, int]:  # type: ignore[type-arg]
    """Messages per second of one run, checked against what the server counted."""
    before = counter.value
    start = time.perf_counter()
    sent = run()
    elapsed = time.perf_counter() - start
    received = counter.value - before
    if received != sent:
        raise RuntimeError(f"server received {received}, client reported {sent}")
    return sent / elapsed, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4, help="forumflow's pool size (FORUMFLOW_SMTP_CONNECTIONS)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    ready, stop = ctx.Event(), ctx.Event()
    port = free_port()
    server = ctx.Process(target=serve, args=(port, counter, ready, stop), daemon=True)
    server.start()
    if not ready.wait(30):
        raise SystemExit("the SMTP server did not start")
    try:
        with tempfile.TemporaryDirectory(prefix="forumflow-bench-") as tmp:
            workdir = Path(tmp)
            engine, lifecycle = build_forum(workdir, args.deliveries)
            settings = Settings(data_dir=workdir, smtp_port=port, smtp_connections=args.connections, mail_from=SENDER)
            messages = prerender(engine, settings, lifecycle)
            results: dict[str, list[float]] = {"forumflow": [], "one_connection": [], "connection_per_message": []}
            for _ in range(args.repeats):
                rate, _ = timed(lambda: run_forumflow(engine, settings, lifecycle), counter)
                results["forumflow"].append(rate)
                rate, _ = timed(lambda: asyncio.run(_one_connection(port, messages)), counter)
                results["one_connection"].append(rate)
                rate, _ = timed(lambda: asyncio.run(_connection_per_message(port, messages)), counter)
                results["connection_per_message"].append(rate)
            engine.dispose()
    finally:
        stop.set()
        server.join(10)

    med = {name: statistics.median(rates) for name, rates in results.items()}
    out = {
        "deliveries": len(messages),
        "repeats": args.repeats,
        "forumflow_connections": args.connections,
        "median_msgs_per_s": {k: round(v, 1) for k, v in med.items()},
        "runs_msgs_per_s": {k: [round(r, 1) for r in rates] for k, rates in results.items()},
        "ratio_vs_one_connection": round(med["forumflow"] / med["one_connection"], 2),
        "ratio_vs_connection_per_message": round(med["forumflow"] / med["connection_per_message"], 2),
        "targets": {"vs_one_connection": 0.8, "vs_connection_per_message": 2.5},
    }
    print(json.dumps(out, indent=2))
    emit("dispatch", {f"{k}_msgs_per_s": round(v, 1) for k, v in med.items()},
         {"forumflow_vs_one_connection": out["ratio_vs_one_connection"],
          "forumflow_vs_connection_per_message": out["ratio_vs_connection_per_message"]},
         params={"deliveries": len(messages), "repeats": args.repeats, "connections": args.connections},
         targets=out["targets"])


if __name__ == "__main__":
    main()
