"""Lifecycle throughput on SQLite beside the bare SQL of the same writes, and the wall time of one `forumflow act`.

Run: python bench/actions.py [--proposals N] [--repeats R]
Prints medians over R repeats and the ratio lifecycle / bare SQL (measured in the same run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import emit  # noqa: E402
from config import DEFAULT_FORUM_FILE, load_definition  # noqa: E402
from models import Lifecycle, create_schema, make_engine, session_scope, sync_definition  # noqa: E402
from models.tables import ProposalCreate  # noqa: E402

HEADS = ["wang.jianguo", "deshmukh", "seitkazieva", "toktogulov", "khan.ayesha", "petrov", "rakhimov", "karimov"]
PATH = [("submit", "zhao.lei", None), ("recommend", "kuznetsov", None), *[("endorse", h, None) for h in HEADS],
        ("approve", "petrov", None), ("report_progress", "zhao.lei", 50), ("complete", "kuznetsov", None)]
T0 = dt.datetime(2021, 3, 1, 9, 0, tzinfo=dt.UTC)


def lifecycle_run(n: int, workdir: Path) -> tuple[int, float]:
    """Take n proposals through the whole lifecycle, one transaction per action; returns (actions, seconds)."""
    definition = load_definition(DEFAULT_FORUM_FILE)
    engine = make_engine(f"sqlite:///{workdir / 'lifecycle.db'}")
    create_schema(engine)
    lc = Lifecycle(definition)
    with session_scope(engine) as s:
        sync_definition(s, definition)
    with session_scope(engine) as s:
        drafts = [ProposalCreate(group="industry", author="zhao.lei", title=f"p{i}") for i in range(n)]
        ids = [lc.create_proposal(session=s, proposal_in=d, now=T0).id for d in drafts]
    start = time.perf_counter()
    actions = 0
    for pid in ids:
        for action, actor, percent in PATH:
            with session_scope(engine) as s:
                lc.apply(s, pid, action, actor, percent=percent, now=T0)  # type: ignore[arg-type]
            actions += 1
    elapsed = time.perf_counter() - start
    engine.dispose()
    return actions, elapsed


def bare_sql_run(n: int, workdir: Path) -> tuple[int, float]:
    """The same writes in plain SQL: conditional UPDATE, event INSERT, decision/report INSERT, one commit per action."""
    conn = sqlite3.connect(workdir / "bare.db", isolation_level=None)
    for pragma in ("foreign_keys=ON", "journal_mode=WAL", "busy_timeout=10000", "synchronous=NORMAL"):
        conn.execute(f"PRAGMA {pragma}")
    conn.executescript(
        """
        CREATE TABLE proposal (id INTEGER PRIMARY KEY, state TEXT, version INT, deadline TEXT, updated_at TEXT, round INT,
                               percent INT);
        CREATE TABLE event (id INTEGER PRIMARY KEY, proposal_id INT REFERENCES proposal(id), seq INT, action TEXT,
                            from_state TEXT, to_state TEXT, actor TEXT, at TEXT, comment TEXT, payload TEXT,
                            UNIQUE (proposal_id, seq));
        CREATE TABLE decision (id INTEGER PRIMARY KEY, proposal_id INT, round INT, member TEXT, decision TEXT,
                               UNIQUE (proposal_id, round, member));
        CREATE TABLE report (id INTEGER PRIMARY KEY, proposal_id INT, percent INT, actor TEXT);
        """
    )
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO proposal VALUES (?, 'drafted', 1, NULL, ?, 0, 0)", [(i + 1, T0.isoformat()) for i in range(n)])
    conn.execute("COMMIT")
    dests = {"submit": "in_review", "recommend": "reviewed", "endorse": "reviewed", "approve": "implementing",
             "report_progress": "implementing", "complete": "implemented"}
    now = T0.isoformat()
    start = time.perf_counter()
    actions = 0
    for pid in range(1, n + 1):
        state, version = "drafted", 1
        for action, actor, percent in PATH:
            conn.execute("BEGIN")
            row = conn.execute("SELECT state, version FROM proposal WHERE id = ?", (pid,)).fetchone()
            state, version = row
            dest = dests[action]
            cur = conn.execute(
                "UPDATE proposal SET state = ?, version = ?, updated_at = ? WHERE id = ? AND version = ?",
                (dest, version + 1, now, pid, version),
            )
            assert cur.rowcount == 1
            conn.execute(
                "INSERT INTO event (proposal_id, seq, action, from_state, to_state, actor, at, comment, payload)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, '', ?)",
                (pid, version + 1, action, state, dest, actor, now, json.dumps({"percent": percent} if percent else {})),
            )
            if action == "endorse":
                conn.execute(
                    "INSERT INTO decision (proposal_id, round, member, decision) VALUES (?, 1, ?, 'endorse')", (pid, actor)
                )
            if percent is not None:
                conn.execute("INSERT INTO report (proposal_id, percent, actor) VALUES (?, ?, ?)", (pid, percent, actor))
            conn.execute("COMMIT")
            actions += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return actions, elapsed


def cli_act_times(workdir: Path, runs: int) -> list[float]:
    """Wall time of `forumflow act ID submit` as a new process, once per fresh proposal."""
    exe = Path(sys.executable).parent / "forumflow"
    env = dict(os.environ, FORUMFLOW_DATA_DIR=str(workdir / "cli"))
    ids = []
    for i in range(runs):
        r = subprocess.run(
            [str(exe), "propose", "--group", "industry", "--as", "zhao.lei", "--title", f"bench {i}"],
            env=env, capture_output=True, text=True, check=True,
        )
        ids.append(r.stdout.strip())
    times = []
    for pid in ids:
        start = time.perf_counter()
        subprocess.run([str(exe), "act", pid, "submit", "--as", "zhao.lei"], env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proposals", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    lc_rates, sql_rates = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            a, t = lifecycle_run(args.proposals, Path(tmp))
            lc_rates.append(a / t)
            b, u = bare_sql_run(args.proposals, Path(tmp))
            sql_rates.append(b / u)
    lc, sql = statistics.median(lc_rates), statistics.median(sql_rates)
    print(f"actions per run: {args.proposals} proposals x {len(PATH)} actions, {args.repeats} repeats (medians)")
    print(f"lifecycle.apply on SQLite : {lc:8.0f} actions/s")
    print(f"bare SQL, same writes     : {sql:8.0f} actions/s")
    print(f"ratio lifecycle / bare SQL: {lc / sql:8.3f}  (bare SQL is {sql / lc:.1f}x faster)")
    with tempfile.TemporaryDirectory() as tmp:
        times = cli_act_times(Path(tmp), 5)
    print(f"`forumflow act` wall time : median {statistics.median(times) * 1000:.0f} ms over 5 runs "
          f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")
    emit("actions",
         {"lifecycle_actions_per_s": round(lc, 1), "bare_sql_actions_per_s": round(sql, 1),
          "act_wall_median_ms": round(statistics.median(times) * 1000, 1)},
         {"lifecycle_vs_bare_sql": round(lc / sql, 4)},
         params={"proposals": args.proposals, "repeats": args.repeats, "act_runs": len(times)},
         targets={"lifecycle_actions_per_s": 1000, "lifecycle_vs_bare_sql": 0.07, "act_wall_median_ms": 500})


if __name__ == "__main__":
    main()
