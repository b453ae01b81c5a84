"""The review sweep on 100,000 proposals (SQLite), beside its bare-SQL lower bound and a task-per-proposal flow.

Run: python bench/sweep.py [--proposals N] [--sample 500] [--skip-flow] [--skip-simulate] [--simulate-mail]
     [--simulate-repeats 3]

One database is generated (proposals in every state, entered at spread-out times, so that at the bench's
``now`` — the RU-CHE → UZ-SA term change, 2023-01-01 — reminders, escalations, silence closures, hand-overs and
progress requests are all due), then copied for each contender so they start from the same rows:

  sweep      models.review.sweep: the plain functions the review flow's tasks call, batches of 500
  flow       the review flow through Prefect (a task per batch), on a local temporary Prefect server
  bare SQL   the same selection (one UNION query) and the same writes (conditional UPDATE, event INSERT,
             review mark INSERT, cursor upsert) with sqlite3 executemany and minimal Python: a lower bound
  per task   one Prefect task per proposal on a sample, extrapolated to every open proposal (each task must
             look at its proposal to know whether anything is due) and, more kindly, to the due ones only

Each contender does a cold sweep (the first at ``now``: everything due is done) and then the next hourly
sweep; the bench checks that sweep and bare SQL wrote the same events. It ends with the wall time of
``forumflow simulate --proposals 1000 --days 365`` (without mail unless --simulate-mail), median of 3 runs, with the
time it reports by part (actions, sweeps, planning, sending, checks, other) and the machine's load before each run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="forumflow-bench-prefect-"))
os.environ.pop("PREFECT_API_URL", None)

from sqlalchemy import insert  # noqa: E402

from bench.report import emit  # noqa: E402
from config import DEFAULT_FORUM_FILE, load_definition  # noqa: E402
from models import Lifecycle, create_schema, make_engine, session_scope, sync_definition  # noqa: E402
from models.review import next_due, next_due_each, plan, review_ids, sweep  # noqa: E402
from models.tables import EndorsementDecision, Event, Proposal  # noqa: E402

NOW = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
SQLITE_FMT = "%Y-%m-%d %H:%M:%S.%f"


# ---------------------------------------------------------------------- generation
def generate(path: Path, n: int, seed: int = 11) -> None:
    """Write ``n`` proposals in plausible states, with their events and round decisions, into a new database."""
    definition = load_definition(DEFAULT_FORUM_FILE)
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    with session_scope(engine) as s:
        sync_definition(s, definition)
    rng = random.Random(seed)
    wf = definition.workflow
    heads = [(m.handle, m.region) for m in definition.members if "head_of_region" in m.roles and m.region]
    groups = [(g.key, [h for h in g.members if h != g.chair]) for g in definition.working_groups]
    weights = {"drafted": 10, "in_review": 25, "reviewed": 20, "endorsed": 10, "implementing": 25,
               "implemented": 4, "rejected": 3, "withdrawn": 3}
    states = rng.choices(list(weights), weights=list(weights.values()), k=n)
    proposals, events, decisions = [], [], []
    for i, state in enumerate(states, 1):
        group, authors = rng.choice(groups)
        sla = wf.state(state).sla_days
        span = (sla or 60) + 15
        entered = NOW - dt.timedelta(minutes=rng.randrange(1, span * 24 * 60))
        created = entered - dt.timedelta(days=rng.uniform(1, 30))
        row = {
            "id": i, "title": f"Measure {i}", "summary": "", "body": "", "group": group, "author": rng.choice(authors),
            "state": state, "version": 2, "text_version": 1,
            "round": 1 if state in ("reviewed", "endorsed", "implementing") else 0,
            "state_entered_at": entered, "deadline": entered + dt.timedelta(days=sla) if sla else None,
            "presiding_region": "RU-CHE" if state in ("endorsed", "implementing") else None,
            "last_progress_at": None, "percent": 0, "created_at": created, "updated_at": entered,
        }
        if state == wf.progress.state:
            row["last_progress_at"] = NOW - dt.timedelta(minutes=rng.randrange(1, 110 * 24 * 60))
        proposals.append(row)
        events.append({"proposal_id": i, "seq": 1, "action": "create", "from_state": "", "to_state": "drafted",
                       "actor": row["author"], "at": created, "comment": "", "payload": {"title": row["title"], "group": group}})
        events.append({"proposal_id": i, "seq": 2, "action": "generated", "from_state": "drafted", "to_state": state,
                       "actor": "system", "at": entered, "comment": "", "payload": {}})
        if state == wf.endorsement.state:
            for handle, region in rng.sample(heads, rng.randrange(0, 6)):
                decisions.append({"proposal_id": i, "round": 1, "member": handle, "region": region,
                                  "country": region.split("-")[0], "decision": "endorse", "at": entered + HOUR})
    with session_scope(engine) as s:
        s.execute(insert(Proposal), proposals)
        s.execute(insert(Event), events)
        if decisions:
            s.execute(insert(EndorsementDecision), decisions)
    engine.dispose()


def copy_db(src: Path, dst: Path) -> Path:
    """A copy of an SQLite database (checkpointed first)."""
    conn = sqlite3.connect(src)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    shutil.copyfile(src, dst)
    return dst


def events_at(path: Path, at: dt.datetime) -> set[tuple[int, str, str]]:
    """(proposal, action, payload) of every event written at ``at``, payload keys sorted."""
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT proposal_id, action, payload FROM event WHERE at = ?", (_ts(at),)).fetchall()
    conn.close()
    return {(pid, action, json.dumps(json.loads(payload), sort_keys=True)) for pid, action, payload in rows}


# ---------------------------------------------------------------------- contenders
def run_sweep(path: Path, lifecycle: Lifecycle) -> tuple[float, float, dict[str, int]]:
    """The plain sweep: cold, then the next hour."""
    engine = make_engine(f"sqlite:///{path}")
    start = time.perf_counter()
    report = sweep(engine, lifecycle, NOW)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    sweep(engine, lifecycle, NOW + HOUR)
    hourly = time.perf_counter() - start
    engine.dispose()
    return cold, hourly, report.as_dict()


def run_next_due(path: Path, lifecycle: Lifecycle, sample: int = 200) -> tuple[float, float]:
    """After the sweeps: when the review next has work, over every proposal, and per proposal for a few at a time
    (what ``forumflow simulate`` asks after each action and sweep); (seconds over all, seconds per call for 2 ids)."""
    from sqlmodel import Session

    engine = make_engine(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    ids = [r[0] for r in conn.execute("SELECT id FROM proposal ORDER BY id LIMIT ?", (sample * 2,))]
    conn.close()
    after = NOW + HOUR
    with Session(engine) as s:
        start = time.perf_counter()
        first = next_due(s, lifecycle, after)
        overall = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(ids), 2):
            next_due_each(s, lifecycle, after, set(ids[i : i + 2]))
        each = (time.perf_counter() - start) / max(1, len(ids) // 2)
    engine.dispose()
    print(f"next_due after them      over all {overall:7.2f} s   for 2 proposals {each * 1000:7.2f} ms   "
          f"(next work at {first.isoformat() if first else 'never'})")
    return overall, each


def run_flow(path: Path) -> tuple[float, float, dict[str, int]]:
    """The review flow through Prefect (server start excluded), cold then hourly."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.review import review

    url = f"sqlite:///{path}"
    # Warm-up on an empty database (imports, Prefect, schema check): the review refuses a time before the newest
    # event, and at any later time the bench's database has work.
    empty = path.with_name("flow-warm-up.db")
    engine = make_engine(f"sqlite:///{empty}")
    create_schema(engine)
    with session_scope(engine) as s:
        sync_definition(s, load_definition(DEFAULT_FORUM_FILE))
    engine.dispose()
    with prefect_test_harness(server_startup_timeout=120):
        review(now=NOW, db_url=f"sqlite:///{empty}")
        start = time.perf_counter()
        counts = review(now=NOW, db_url=url)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        review(now=NOW + HOUR, db_url=url)
        hourly = time.perf_counter() - start
    return cold, hourly, counts


DUE_SQL = """
SELECT p.id FROM proposal p LEFT JOIN review_cursor c ON c.proposal_id = p.id
 WHERE p.state = 'in_review' AND p.deadline <= :h_in_review
   AND (c.proposal_id IS NULL OR c.anchor != p.state_entered_at OR c.next_at <= :now)
UNION SELECT p.id FROM proposal p LEFT JOIN review_cursor c ON c.proposal_id = p.id
 WHERE p.state = 'reviewed' AND p.deadline <= :h_reviewed
   AND (c.proposal_id IS NULL OR c.anchor != p.state_entered_at OR c.next_at <= :now)
UNION SELECT p.id FROM proposal p LEFT JOIN review_cursor c ON c.proposal_id = p.id
 WHERE p.state = 'endorsed' AND p.deadline <= :h_endorsed
   AND (c.proposal_id IS NULL OR c.anchor != p.state_entered_at OR c.next_at <= :now)
UNION SELECT p.id FROM proposal p LEFT JOIN review_cursor c ON c.proposal_id = p.id
 WHERE p.state = 'implementing' AND p.last_progress_at <= :progress_from
   AND (c.proposal_id IS NULL OR c.anchor != p.last_progress_at OR c.next_at <= :now)
UNION SELECT p.id FROM proposal p JOIN presiding_term t ON t.start <= :day AND t."end" >= :day
 WHERE p.state = 'endorsed' AND (p.presiding_region IS NULL OR p.presiding_region != t.region)
"""


def _ts(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime(SQLITE_FMT)


def _dt(value: str | None) -> dt.datetime | None:
    return dt.datetime.strptime(value, SQLITE_FMT).replace(tzinfo=dt.UTC) if value else None


def bare_sql(path: Path, lifecycle: Lifecycle, now: dt.datetime) -> tuple[float, Counter[str]]:
    """The same selection and writes as the sweep, in plain SQL with minimal Python; returns (seconds, events by action)."""
    wf = lifecycle.workflow
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("foreign_keys=ON", "journal_mode=WAL", "busy_timeout=10000", "synchronous=NORMAL"):
        conn.execute(f"PRAGMA {pragma}")
    start = time.perf_counter()
    params = {"now": _ts(now), "day": now.date().isoformat(),
              "h_in_review": _ts(now + dt.timedelta(days=7)), "h_reviewed": _ts(now + dt.timedelta(days=7)),
              "h_endorsed": _ts(now + dt.timedelta(days=5)),
              "progress_from": _ts(now - dt.timedelta(days=wf.progress.cadence_days - wf.progress.reminder_days))}
    ids = sorted(r[0] for r in conn.execute(DUE_SQL, params))
    chairs = dict(conn.execute("SELECT key, chair FROM working_group"))
    heads: dict[str, list[tuple[str, str]]] = defaultdict(list)  # country -> [(handle, region)]
    for handle, region in conn.execute("SELECT handle, region FROM member WHERE roles LIKE '%head_of_region%' AND active"):
        heads[region.split("-")[0]].append((handle, region))
    presiding = conn.execute('SELECT region FROM presiding_term WHERE start <= ? AND "end" >= ?',
                             (params["day"], params["day"])).fetchone()[0]
    presiding_heads = sorted(h for hs in heads.values() for h, r in hs if r == presiding)
    written: Counter[str] = Counter()
    for i in range(0, len(ids), 500):
        batch = ids[i : i + 500]
        marks_q = ",".join("?" * len(batch))
        conn.execute("BEGIN")
        rows = conn.execute(
            f"SELECT id, state, version, round, state_entered_at, deadline, last_progress_at, presiding_region, "
            f"author, \"group\", text_version FROM proposal WHERE id IN ({marks_q})", batch,
        ).fetchall()
        marks = {(p, a, k, s) for p, a, k, s in conn.execute(
            f"SELECT proposal_id, anchor, kind, step FROM review_mark WHERE proposal_id IN ({marks_q})", batch)}
        decided: dict[int, set[str]] = defaultdict(set)
        regions: dict[int, list[str]] = defaultdict(list)
        for pid, country, region in conn.execute(
            f"SELECT proposal_id, country, region FROM endorsement_decision WHERE proposal_id IN ({marks_q})", batch):
            decided[pid].add(country)
            regions[pid].append(region)
        updates, new_events, new_marks, cursors = [], [], [], []
        for pid, state, version, rnd, entered, deadline, progress, region, author, group, text_version in rows:
            p = SimpleNamespace(state=state, state_entered_at=_dt(entered), deadline=_dt(deadline),
                                last_progress_at=_dt(progress))
            if state == "endorsed" and region != presiding:
                version += 1
                updates.append((version, presiding, pid))
                new_events.append((pid, version, "handover", state, state, "system", _ts(now), "",
                                   json.dumps({"from_region": region, "to_region": presiding, "recipients": presiding_heads,
                                               "text_version": text_version})))
            todo = plan(wf, p)  # type: ignore[arg-type]
            if todo is None:
                continue
            anchor = _ts(todo.anchor)
            pending = [s for s in todo.steps if (pid, anchor, s.kind, s.step) not in marks]
            due = [s for s in pending if s.at <= now]
            closed = False
            for k, step in enumerate(due):
                if step.kind == "silence":
                    version += 1
                    conn.execute(
                        "UPDATE proposal SET state='endorsed', state_entered_at=?, deadline=?, presiding_region=?, "
                        "version=?, updated_at=? WHERE id=? AND version=?",
                        (_ts(now), _ts(now + dt.timedelta(days=14)), presiding, version, _ts(now), pid, version - 1),
                    )
                    payload = {"round": rnd, "endorsed_by": sorted(regions[pid]), "deadline": todo.deadline.isoformat(),
                               "text_version": text_version}
                    new_events.append((pid, version, "silence", state, "endorsed", "system", _ts(now), "", json.dumps(payload)))
                    closed = True
                    break
                if step.kind in ("remind", "progress_due") and any(x.at > step.at for x in due[k + 1 :]):
                    new_marks.append((pid, anchor, step.kind, step.step, _ts(now), None))
                    continue
                if step.kind == "escalate":
                    to = wf.escalation[step.step - 1].to
                    recipients = [chairs[group]] if to == "group_chair" else presiding_heads
                    payload = {"level": step.step, "recipients": recipients, "deadline": todo.deadline.isoformat(),
                               "text_version": text_version}
                else:
                    if state == "in_review":
                        recipients = [chairs[group]]
                    elif state == "reviewed":
                        recipients = sorted(h for c, hs in heads.items() if c not in decided[pid] for h, _ in hs)
                    elif state == "endorsed":
                        recipients = presiding_heads
                    else:
                        recipients = sorted({author, chairs[group]})
                    payload = ({"recipients": recipients, "offset_days": step.step, "deadline": todo.deadline.isoformat()}
                               if step.kind == "remind" else {"recipients": recipients, "due": todo.deadline.isoformat()})
                    payload["text_version"] = text_version  # every notice names the text it is about
                version += 1
                updates.append((version, region if state != "endorsed" else presiding, pid))
                new_events.append((pid, version, step.kind, state, state, "system", _ts(now), "", json.dumps(payload)))
                new_marks.append((pid, anchor, step.kind, step.step, _ts(now), None))
            if not closed:
                later = [s.at for s in pending if s.at > now]
                cursors.append((pid, anchor, _ts(min(later)) if later else None))
        # One conditional UPDATE per written version, as the lifecycle does.
        conn.executemany("UPDATE proposal SET version=?, presiding_region=?, updated_at='" + _ts(now) + "' WHERE id=?", updates)
        conn.executemany(
            "INSERT INTO event (proposal_id, seq, action, from_state, to_state, actor, at, comment, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", new_events,
        )
        conn.executemany("INSERT INTO review_mark (proposal_id, anchor, kind, step, at, event_id) VALUES (?, ?, ?, ?, ?, ?)",
                         new_marks)
        conn.executemany(
            "INSERT INTO review_cursor (proposal_id, anchor, next_at) VALUES (?, ?, ?) "
            "ON CONFLICT (proposal_id) DO UPDATE SET anchor=excluded.anchor, next_at=excluded.next_at", cursors,
        )
        conn.execute("COMMIT")
        written.update(e[2] for e in new_events)
    conn.close()
    return time.perf_counter() - start, written


def per_task(path: Path, lifecycle: Lifecycle, sample: int) -> tuple[float, int]:
    """One Prefect task per proposal over a random sample of open proposals; returns (seconds per task, sample size)."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.testing.utilities import prefect_test_harness

    engine = make_engine(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    open_ids = [r[0] for r in conn.execute("SELECT id FROM proposal WHERE state NOT IN ('implemented','rejected','withdrawn')")]
    conn.close()
    ids = random.Random(5).sample(open_ids, min(sample, len(open_ids)))

    @task(cache_policy=NO_CACHE)
    def review_one(pid: int) -> int:
        return review_ids(engine, lifecycle, [pid], NOW).events

    @flow
    def review_each(pids: list[int]) -> int:
        return sum(review_one(pid) for pid in pids)

    with prefect_test_harness(server_startup_timeout=120):
        review_each([])  # warm-up
        start = time.perf_counter()
        review_each(ids)
        elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed / len(ids), len(ids)


def simulate_runs(mail: bool, repeats: int) -> list[dict[str, Any]]:
    """``forumflow simulate --proposals 1000 --days 365 --json`` ``repeats`` times, each in a fresh data dir: for each
    run its wall time (the whole process), the time it reports by part, its sweeps and the machine's load before it."""
    exe = Path(sys.executable).parent / "forumflow"
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, FORUMFLOW_DATA_DIR=tmp)
            args = [str(exe), "simulate", "--proposals", "1000", "--days", "365", "--seed", "1", "--json"]
            load = os.getloadavg()[0]
            start = time.perf_counter()
            done = subprocess.run([*args, "--mail" if mail else "--no-mail"], env=env, capture_output=True, text=True,
                                  check=False)
            elapsed = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:])
            raise SystemExit(f"simulate failed with exit code {done.returncode}")
        data = json.loads(done.stdout)
        runs.append({"wall": elapsed, "load": load, "timings": data["timings"], "sweeps": data["sweeps"],
                     "sweeps_run": data["sweeps_run"]})
        print(f"  simulate run {len(runs)}: {elapsed:.1f} s wall (load {load:.1f} before), "
              + ", ".join(f"{k} {v:.1f} s" for k, v in data["timings"].items()), flush=True)
    return runs


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proposals", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="Runs of sweep and bare SQL (medians).")
    parser.add_argument("--skip-flow", action="store_true", help="Do not run the review flow through Prefect.")
    parser.add_argument("--skip-simulate", action="store_true")
    parser.add_argument("--simulate-mail", action="store_true", help="Simulate with every mail sent into the sink.")
    parser.add_argument("--simulate-repeats", type=int, default=3, help="Runs of simulate (median).")
    args = parser.parse_args()
    lifecycle = Lifecycle(load_definition(DEFAULT_FORUM_FILE))
    figures: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        generate(work / "base.db", args.proposals)
        print(f"generated {args.proposals:,} proposals in {time.perf_counter() - start:.1f} s; now = {NOW.isoformat()}")
        conn = sqlite3.connect(work / "base.db")
        by_state = dict(conn.execute("SELECT state, count(*) FROM proposal GROUP BY state").fetchall())
        open_count = sum(v for k, v in by_state.items() if k not in ("implemented", "rejected", "withdrawn"))
        conn.close()
        print("states:", ", ".join(f"{k} {v:,}" for k, v in sorted(by_state.items())))

        sweeps, bares = [], []
        for r in range(args.repeats):
            sweep_db, bare_db = work / f"sweep{r}.db", work / f"bare{r}.db"
            sweeps.append(run_sweep(copy_db(work / "base.db", sweep_db), lifecycle))
            copy_db(work / "base.db", bare_db)
            cold, _ = bare_sql(bare_db, lifecycle, NOW)
            hourly, _ = bare_sql(bare_db, lifecycle, NOW + HOUR)
            bares.append((cold, hourly))
        sweep_cold = statistics.median(x[0] for x in sweeps)
        sweep_hourly = statistics.median(x[1] for x in sweeps)
        report = sweeps[0][2]
        bare_cold = statistics.median(x[0] for x in bares)
        bare_hourly = statistics.median(x[1] for x in bares)
        written, expected = events_at(work / "sweep0.db", NOW), events_at(work / "bare0.db", NOW)
        print(f"\nmedians of {args.repeats} runs, each on a fresh copy")
        print(f"sweep (plain functions)  cold {sweep_cold:7.2f} s   next hour {sweep_hourly * 1000:7.1f} ms   "
              f"{report['proposals']:,} proposals due, events {dict(sorted(Counter(a for _, a, _ in written).items()))}")
        print(f"bare SQL (lower bound)   cold {bare_cold:7.2f} s   next hour {bare_hourly * 1000:7.1f} ms")
        figures |= {"sweep_cold_s": round(sweep_cold, 3), "sweep_hourly_ms": round(sweep_hourly * 1000, 1),
                    "bare_sql_cold_s": round(bare_cold, 3), "bare_sql_hourly_ms": round(bare_hourly * 1000, 1),
                    "due_proposals": report["proposals"], "same_events_as_bare_sql": written == expected}
        ratios |= {"sweep_vs_bare_sql_cold": round(sweep_cold / bare_cold, 3),
                   "sweep_vs_bare_sql_hourly": round(sweep_hourly / bare_hourly, 3)}
        same = "identical events" if written == expected else f"EVENTS DIFFER ({len(written ^ expected)})"
        print(f"  ratio sweep / bare SQL: cold {sweep_cold / bare_cold:.2f}x, next hour {sweep_hourly / bare_hourly:.2f}x "
              f"(target <= 5x; {same}: proposal, action and payload of every event)")
        overall, each = run_next_due(work / "sweep0.db", lifecycle)
        figures |= {"next_due_all_s": round(overall, 3), "next_due_2_ids_ms": round(each * 1000, 2)}

        if not args.skip_flow:
            flow_cold, flow_hourly, counts = run_flow(copy_db(work / "base.db", work / "flow.db"))
            print(f"review flow (Prefect)    cold {flow_cold:7.2f} s   next hour {flow_hourly * 1000:7.1f} ms   "
                  f"{counts['proposals']:,} proposals in {(counts['proposals'] + 499) // 500} batch tasks")
            print(f"  ratio flow / bare SQL: cold {flow_cold / bare_cold:.2f}x")
            figures |= {"flow_cold_s": round(flow_cold, 3), "flow_hourly_ms": round(flow_hourly * 1000, 1)}
            ratios["flow_vs_bare_sql_cold"] = round(flow_cold / bare_cold, 3)

        per, n = per_task(copy_db(work / "base.db", work / "task.db"), lifecycle, args.sample)
        naive_all = per * open_count
        naive_due = per * report["proposals"]
        print(f"task per proposal        {per * 1000:7.1f} ms per task over a sample of {n}: "
              f"{naive_all:,.0f} s for all {open_count:,} open proposals, {naive_due:,.0f} s for the {report['proposals']:,} due")
        figures |= {"per_task_ms": round(per * 1000, 2), "per_task_all_open_s": round(naive_all, 1)}
        ratios["speedup_vs_task_per_open_proposal"] = round(naive_all / sweep_cold, 1)
        best = min(sweep_cold, flow_cold) if not args.skip_flow else sweep_cold
        worst = max(sweep_cold, flow_cold) if not args.skip_flow else sweep_cold
        print(f"  speed-up of the sweep: {naive_all / worst:,.0f}x to {naive_all / best:,.0f}x over all open, "
              f"{naive_due / worst:,.0f}x to {naive_due / best:,.0f}x over due only (target >= 100x)")

    if not args.skip_simulate:
        name = f"simulate_1000x365{'_mail' if args.simulate_mail else ''}"
        print(f"\nforumflow simulate --proposals 1000 --days 365{'' if args.simulate_mail else ' --no-mail'}, "
              f"{args.simulate_repeats} runs:")
        runs = simulate_runs(args.simulate_mail, args.simulate_repeats)
        wall = statistics.median(r["wall"] for r in runs)
        parts = {k: round(statistics.median(r["timings"][k] for r in runs), 2) for k in runs[0]["timings"]}
        print(f"  median {wall:.1f} s wall (target <= 30 s on a quiet 2-core machine, issue 11); median by part: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
              + f"; a sweep ran in {runs[0]['sweeps_run']:,} of the {runs[0]['sweeps']:,} simulated hours")
        figures |= {f"{name}_s": round(wall, 1), f"{name}_parts_s": parts, f"{name}_sweeps_run": runs[0]["sweeps_run"],
                    f"{name}_load": [round(r["load"], 1) for r in runs]}
    figures["load_at_end"] = round(os.getloadavg()[0], 1)
    emit("sweep", figures, ratios, params={"proposals": args.proposals, "sample": args.sample, "repeats": args.repeats,
                                          "simulate_repeats": args.simulate_repeats},
         targets={"sweep_vs_bare_sql_cold": 5, "speedup_vs_task_per_open_proposal": 100, "simulate_1000x365_s": 30})


if __name__ == "__main__":
    main()
