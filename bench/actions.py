"""Lifecycle throughput on SQLite beside the bare SQL of the same writes, and the wall time of one `forumflow act`.

Run: python bench/actions.py [--proposals N] [--repeats R]
Prints medians over R repeats and the ratios lifecycle / bare SQL (measured in the same run). Two bare SQL runs:
the first on a few minimal tables (no index but the unique keys: the baseline of the earlier figures), the second
on the forum's own schema (every table, index and foreign key the lifecycle writes through), writing the same
columns and the same rows as the lifecycle, the consensus event included.
"""

from __future__ import annotations

import argparse
import compileall
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
from models.db import SQLITE_PRAGMAS  # noqa: E402
from models.tables import ProposalCreate  # noqa: E402

HEADS = ["wang.jianguo", "deshmukh", "seitkazieva", "toktogulov", "khan.ayesha", "petrov", "rakhimov", "karimov"]
PATH = [("submit", "zhao.lei", None), ("recommend", "kuznetsov", None), *[("endorse", h, None) for h in HEADS],
        ("approve", "petrov", None), ("report_progress", "zhao.lei", 50), ("complete", "kuznetsov", None)]
T0 = dt.datetime(2021, 3, 1, 9, 0, tzinfo=dt.UTC)
DESTS = {"submit": "in_review", "recommend": "reviewed", "endorse": "reviewed", "approve": "implementing",
         "report_progress": "implementing", "complete": "implemented"}


def _forum(path: Path, n: int) -> list[int]:
    """A database at ``path`` with the schema, the shipped forum and n drafts (made by the lifecycle); their ids."""
    definition = load_definition(DEFAULT_FORUM_FILE)
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    lc = Lifecycle(definition)
    with session_scope(engine) as s:
        sync_definition(s, definition)
    with session_scope(engine) as s:
        drafts = [ProposalCreate(group="industry", author="zhao.lei", title=f"p{i}") for i in range(n)]
        ids = [lc.create_proposal(session=s, proposal_in=d, now=T0).id or 0 for d in drafts]
    engine.dispose()
    return ids


def _contents(path: Path) -> tuple[int, ...]:
    """What the actions left: events, decisions, progress reports, proposals implemented, the sum of versions."""
    conn = sqlite3.connect(path)
    try:
        return tuple(conn.execute(
            "SELECT (SELECT count(*) FROM event), (SELECT count(*) FROM endorsement_decision),"
            " (SELECT count(*) FROM progress_report), (SELECT count(*) FROM proposal WHERE state = 'implemented'),"
            " (SELECT sum(version) FROM proposal)"
        ).fetchone())
    finally:
        conn.close()


def lifecycle_run(n: int, workdir: Path) -> tuple[int, float]:
    """Take n proposals through the whole lifecycle, one transaction per action; returns (actions, seconds)."""
    definition = load_definition(DEFAULT_FORUM_FILE)
    ids = _forum(workdir / "lifecycle.db", n)
    engine = make_engine(f"sqlite:///{workdir / 'lifecycle.db'}")
    lc = Lifecycle(definition)
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
    for pragma in SQLITE_PRAGMAS:  # the same as every connection of the lifecycle's engine
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
    dests = DESTS
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


def bare_sql_schema_run(n: int, workdir: Path) -> tuple[int, float]:
    """The same writes in plain SQL on the forum's own schema, one transaction per action; returns (actions, seconds).

    The database is made as the lifecycle's is (schema, forum, n drafts). Each action reads the proposal's row,
    sets the columns the lifecycle sets (those that change), inserts its event (and the system's consensus event
    after the last endorsement, in the same UPDATE), its decision or progress report, and commits.
    """
    definition = load_definition(DEFAULT_FORUM_FILE)
    path = workdir / "bare_schema.db"
    ids = _forum(path, n)
    regions = {m.handle: m.region or "" for m in definition.members}
    sla = {s.name: s.sla_days for s in definition.workflow.states}
    presiding = next(t.region for t in definition.presiding_terms if t.start <= T0.date() <= t.end)
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(f"PRAGMA {pragma}")
    now = T0.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")  # as SQLAlchemy stores it
    deadlines = {
        state: (T0 + dt.timedelta(days=days)).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        if days else None
        for state, days in sla.items()
    }
    start = time.perf_counter()
    actions = 0
    for pid in ids:
        for action, actor, percent in PATH:
            conn.execute("BEGIN")
            cur = conn.execute("SELECT * FROM proposal WHERE id = ?", (pid,))
            row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
            state, version = row["state"], row["version"]
            steps = [(action, actor, DESTS[action])]
            if action == "endorse" and actor == HEADS[-1]:  # every member state has endorsed: consensus
                steps.append(("consensus", "system", "endorsed"))
            sets: dict[str, object] = {}
            events: list[tuple[object, ...]] = []
            for act, who, dest in steps:
                payload: dict[str, object] = {"text_version": row["text_version"]}
                if dest != state:
                    sets |= {"state": dest, "state_entered_at": now, "deadline": deadlines[dest]}
                    if dest == "reviewed":
                        sets["round"] = row["round"] + 1
                        payload["round"] = row["round"] + 1
                    if dest == "implementing":
                        sets["last_progress_at"] = now
                    if dest == "endorsed":
                        sets["presiding_region"] = presiding
                if act == "endorse":
                    payload |= {"region": regions[who], "round": row["round"]}
                if percent is not None:
                    sets |= {"percent": percent}
                    payload["percent"] = percent
                events.append((pid, version + len(events) + 1, act, state, dest, who, now, "", json.dumps(payload)))
                state = dest
            if action == "endorse":
                conn.execute(
                    "INSERT INTO endorsement_decision (proposal_id, round, member, region, country, decision,"
                    " text_version, at) VALUES (?, ?, ?, ?, ?, 'endorse', ?, ?)",
                    (pid, row["round"], actor, regions[actor], regions[actor].split("-")[0], row["text_version"], now),
                )
            if percent is not None:
                conn.execute(
                    "INSERT INTO progress_report (proposal_id, percent, note, actor, at) VALUES (?, ?, '', ?, ?)",
                    (pid, percent, actor, now),
                )
            sets["version"] = version + len(events)
            if row["updated_at"] != now:
                sets["updated_at"] = now
            cur = conn.execute(
                f"UPDATE proposal SET {', '.join(f'{k!r} = ?' for k in sets)} WHERE id = ? AND version = ?",
                (*sets.values(), pid, version),
            )
            assert cur.rowcount == 1
            for ev in events:
                conn.execute(
                    "INSERT INTO event (proposal_id, seq, action, from_state, to_state, actor, at, comment, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", ev,
                )
            conn.execute("COMMIT")
            actions += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return actions, elapsed


PACKAGES = ("cli", "config", "models", "notifications", "flows", "web")


def byte_compile() -> None:
    """Byte-compile forumflow's own modules, as installing it does (``pip install .`` compiles what it installs).

    An editable checkout is compiled only as its modules are imported, and not at all where PYTHONDONTWRITEBYTECODE
    is set: every command would then compile the CLI and the models from source again, about 40 ms that an
    installed forumflow never spends.
    """
    for package in PACKAGES:
        compileall.compile_dir(ROOT / package, quiet=1)


def cli_act_times(workdir: Path, runs: int) -> list[float]:
    """Wall time of `forumflow act ID submit` as a new process, once per fresh proposal (modules byte-compiled)."""
    byte_compile()
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
    parser.add_argument("--skip-act", action="store_true", help="do not time `forumflow act`")
    args = parser.parse_args()
    lc_rates, sql_rates, schema_rates = [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            a, t = lifecycle_run(args.proposals, Path(tmp))
            lc_rates.append(a / t)
            b, u = bare_sql_run(args.proposals, Path(tmp))
            sql_rates.append(b / u)
            c, v = bare_sql_schema_run(args.proposals, Path(tmp))
            schema_rates.append(c / v)
            wrote, bare_wrote = _contents(Path(tmp) / "lifecycle.db"), _contents(Path(tmp) / "bare_schema.db")
            assert wrote == bare_wrote, f"the bare SQL on the schema wrote {bare_wrote}, the lifecycle {wrote}"
    lc, sql, schema = statistics.median(lc_rates), statistics.median(sql_rates), statistics.median(schema_rates)
    print(f"actions per run: {args.proposals} proposals x {len(PATH)} actions, {args.repeats} repeats (medians)")
    print(f"lifecycle.apply on SQLite : {lc:8.0f} actions/s   (runs: {', '.join(f'{r:.0f}' for r in lc_rates)})")
    print(f"bare SQL, minimal tables  : {sql:8.0f} actions/s   (runs: {', '.join(f'{r:.0f}' for r in sql_rates)})")
    print(f"bare SQL, forum's schema  : {schema:8.0f} actions/s   (runs: {', '.join(f'{r:.0f}' for r in schema_rates)})")
    per_run = ", ".join(f"{a / b:.3f}" for a, b in zip(lc_rates, sql_rates, strict=True))
    print(f"ratio lifecycle / bare SQL, minimal tables: {lc / sql:6.3f}  ({sql / lc:.1f}x faster; runs: {per_run})")
    per_run = ", ".join(f"{a / b:.3f}" for a, b in zip(lc_rates, schema_rates, strict=True))
    print(f"ratio lifecycle / bare SQL, forum's schema: {lc / schema:6.3f}  ({schema / lc:.1f}x faster; runs: {per_run})")
    times: list[float] = []
    if not args.skip_act:
        with tempfile.TemporaryDirectory() as tmp:
            times = cli_act_times(Path(tmp), 5)
        print(f"`forumflow act` wall time : median {statistics.median(times) * 1000:.0f} ms over 5 runs "
              f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")
    act_ms = round(statistics.median(times) * 1000, 1) if times else None
    emit("actions",
         {"lifecycle_actions_per_s": round(lc, 1), "bare_sql_actions_per_s": round(sql, 1),
          "bare_sql_schema_actions_per_s": round(schema, 1), "act_wall_median_ms": act_ms},
         {"lifecycle_vs_bare_sql": round(lc / sql, 4), "lifecycle_vs_bare_sql_schema": round(lc / schema, 4)},
         params={"proposals": args.proposals, "repeats": args.repeats, "act_runs": len(times)},
         targets={"lifecycle_actions_per_s": 1000, "lifecycle_vs_bare_sql": 0.07, "act_wall_median_ms": 500})

if __name__ == "__main__":
    main()
