"""Scale-out on loopback: the README's commands, a Prefect server on PostgreSQL, two process workers.

The test runs the README's "Scale-out" commands in their order: a Prefect server on a PostgreSQL database of
its own, ``forumflow init`` on a PostgreSQL schema of its own, the ``forumflow`` process work pool,
``prefect deploy --all`` from a checkout, two workers, two review runs at the same moment (the same ``now``)
and a dispatch run. The checkout is this repository with a ``prefect.yaml`` whose schedules are short and
anchored after the review runs, so that the schedules fire within the test without taking a worker
from the two review runs. Mail goes into an aiosmtpd sink in this process. Every process is started in a
group of its own and stopped by group id when the test ends, however it ends.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import re
import shlex
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from config import DEFAULT_FORUM_FILE, load_definition
from models import Lifecycle, make_engine, session_scope
from models.db import normalise_url
from models.outbox import Delivery
from models.review import ReviewMark
from models.tables import Event
from notifications.sink import MailSink, free_port
from tests.conftest import postgres_url
from tests.distributed.helpers import Launched, Processes, api, healthy, readme_block, wait_for
from tests.factories import CHAIR, make_proposal

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HEADING = "### Scale-out"
# The README's commands, in its order; {port} and {now} stand for the values the README shows as examples.
STEPS = {
    "server": "prefect server start --host 127.0.0.1 --port {port}",
    "init": "forumflow init",
    "pool": "prefect work-pool create forumflow --type process",
    "deploy": "prefect deploy --all",
    "worker": "prefect worker start --pool forumflow --limit 1",
    "review": "prefect deployment run review/pool --param now={now}",
    "dispatch": "prefect deployment run dispatch/pool",
}
PROPOSALS = 24
# The schedules of the test's prefect.yaml: first runs this long after the deploy, then rarely again.
FIRST_SCHEDULED_RUN = dt.timedelta(seconds=90)
INTERVAL = 600
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _normalised(command: str) -> str:
    """A README command with its example values replaced by the placeholders of ``STEPS``."""
    command = re.sub(r"--port \d+", "--port {port}", command)
    return re.sub(r"now=\S+", "now={now}", command)


def _argv(step: str, **values: str) -> list[str]:
    return shlex.split(STEPS[step].format(**values))


def test_the_readme_shows_the_commands_the_distributed_test_runs() -> None:
    assert [_normalised(c) for c in readme_block(HEADING)] == list(STEPS.values())


@dataclass
class Databases:
    """Prefect's database (asyncpg URL) and forumflow's (a schema of its own in the test database)."""

    prefect_url: str
    forum_url: str


@pytest.fixture
def databases() -> Iterator[Databases]:
    """A PostgreSQL database for the Prefect server and a schema for forumflow, both dropped afterwards."""
    url = postgres_url()
    if not url:
        pytest.skip("FORUMFLOW_TEST_POSTGRES_URL not set")
    name, schema = f"ff_prefect_{uuid.uuid4().hex[:10]}", f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(url, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    admin.execute(f'CREATE SCHEMA "{schema}"')
    base = make_url(url)
    try:
        yield Databases(
            prefect_url=base.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False),
            forum_url=base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False),
        )
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


@pytest.fixture
def processes(databases: Databases, tmp_path: Path) -> Iterator[Processes]:
    """Everything the test starts; stopped (by process group) before the databases are dropped."""
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def _checkout(folder: Path, deploy_at: dt.datetime) -> Path:
    """This repository's code with a prefect.yaml whose schedules first fire ``FIRST_SCHEDULED_RUN`` from now."""
    folder.mkdir()
    for name in ("cli", "config", "flows", "models", "notifications", "pyproject.toml"):
        (folder / name).symlink_to(REPO / name)
    anchor = (deploy_at + FIRST_SCHEDULED_RUN).isoformat()
    text = (REPO / "prefect.yaml").read_text(encoding="utf-8")
    for interval in ("3600", "60"):
        line = f"      - interval: {interval}\n"
        assert text.count(line) == 1, f"prefect.yaml: expected one schedule with interval {interval}"
        text = text.replace(line, f'      - interval: {INTERVAL}\n        anchor_date: "{anchor}"\n')
    (folder / "prefect.yaml").write_text(text, encoding="utf-8")
    return folder


def _environment(tmp_path: Path) -> dict[str, str]:
    """This environment without Prefect or forumflow settings, offline, with this venv's commands first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FORUMFLOW_"))}
    return env | {
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
        "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200",
    }


def _flow_runs(base: str, **flt: Any) -> list[dict[str, Any]]:
    return list(api(base, "/flow_runs/filter", {"flow_runs": flt} if flt else {}))


def _completed(base: str, ids: list[str], procs: Processes) -> list[dict[str, Any]] | None:
    """The runs ``ids`` once all are completed; fails at once when one ends otherwise."""
    runs = _flow_runs(base, id={"any_": ids})
    for run in runs:
        if run.get("infrastructure_pid"):
            procs.extra_pids.add(int(str(run["infrastructure_pid"]).rsplit(":", 1)[-1]))
        assert run["state_type"] not in ("FAILED", "CRASHED", "CANCELLED"), f"flow run {run['name']}: {run['state']}"
    return runs if len(runs) == len(ids) and all(r["state_type"] == "COMPLETED" for r in runs) else None


def _run_id(output: str) -> str:
    match = UUID.search(output.split("UUID", 1)[-1])
    assert match is not None, f"no flow run id in:\n{output}"
    return match.group(0)


def _review_counts(base: str, run_id: str) -> dict[str, int] | None:
    """The counts a review run logged (``review at ...: N batches, {...}``), once its logs reached the server."""
    for entry in api(base, "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}}):
        found = re.search(r"review at \S+: \d+ batches, (\{.*\})", entry["message"])
        if found:
            return dict(ast.literal_eval(found.group(1)))
    return None


def _workers_of(run: dict[str, Any], workers: list[Launched]) -> list[str]:
    """The workers that ran ``run`` (both may try to submit it; one wins and begins it)."""
    return [w.name for w in workers if f"Flow run '{run['name']}' - Beginning flow run" in w.output()]


@pytest.mark.distributed
@pytest.mark.postgres
@pytest.mark.slow
def test_scale_out_on_a_prefect_server_with_two_workers(
    databases: Databases, processes: Processes, tmp_path: Path,
) -> None:
    began = time.monotonic()
    port = free_port()
    base = f"http://127.0.0.1:{port}/api"
    env = _environment(tmp_path)
    server_env = env | {
        "PREFECT_HOME": str(tmp_path / "server-home"), "PREFECT_API_DATABASE_CONNECTION_URL": databases.prefect_url,
        # Test-only speed-ups: no UI to build, and a run waiting for dispatch's concurrency slot retries soon.
        "PREFECT_SERVER_UI_ENABLED": "false", "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
    }
    server = processes.start("server", _argv("server", port=str(port)), env=server_env, cwd=tmp_path)

    with MailSink(tmp_path / "maildir", port=0) as sink:
        checkout = tmp_path / "checkout"
        client_env = env | {
            "PREFECT_HOME": str(tmp_path / "client-home"), "PREFECT_API_URL": base,
            "FORUMFLOW_DATABASE_URL": databases.forum_url, "FORUMFLOW_CODE_DIR": str(checkout),
            "FORUMFLOW_SMTP_HOST": sink.host, "FORUMFLOW_SMTP_PORT": str(sink.port), "FORUMFLOW_DATA_DIR": str(tmp_path / "data"),
        }

        # forumflow's schema, then proposals in review: their first reminders fell due an hour ago.
        processes.run("init", _argv("init"), env=client_env, cwd=tmp_path, timeout=120)
        # Entered 24 days ago, reviewed as of one hour ago: the review's events lie in the past, so the scheduled
        # dispatch runs (at the wall clock) come after them; a review ahead of the clock would block them.
        entered = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=23, hours=2)
        engine = make_engine(normalise_url(databases.forum_url))
        lifecycle = Lifecycle(load_definition(DEFAULT_FORUM_FILE))
        ids = [make_proposal(engine, lifecycle, state="in_review", now=entered, title=f"Seed bank {i}") for i in range(PROPOSALS)]
        review_at = (entered + dt.timedelta(days=23, hours=1)).isoformat()

        def server_up() -> bool:
            assert server.process.poll() is None, f"the Prefect server exited:\n{server.output()[-3000:]}"
            return healthy(base)

        wait_for(server_up, 180, "the Prefect server")
        processes.run("pool", _argv("pool"), env=client_env, cwd=tmp_path)
        deployed_at = time.monotonic()
        _checkout(checkout, dt.datetime.now(dt.UTC))
        processes.run("deploy", _argv("deploy"), env=client_env, cwd=checkout, timeout=180)
        deployments = {d["id"]: d for d in api(base, "/deployments/filter", {})}
        flows = {f["id"]: f["name"] for f in api(base, "/flows/filter", {})}
        named = {f"{flows[d['flow_id']]}/{d['name']}": d for d in deployments.values()}
        assert sorted(named) == ["dispatch/pool", "review/pool"]
        assert all(d["work_pool_name"] == "forumflow" for d in named.values())
        # FORUMFLOW_CODE_DIR set where `prefect deploy` runs is written into the deployments (README, prefect.yaml).
        pulls = [d["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] for d in named.values()]
        assert pulls == [str(checkout)] * 2

        # forumflow serve refuses to run next to them; meanwhile the two workers start.
        serve = processes.start("serve", ["forumflow", "serve"], env=client_env, cwd=tmp_path)
        worker_env = client_env | {"PREFECT_WORKER_QUERY_SECONDS": "1"}
        workers = [processes.start(f"worker-{i}", _argv("worker"), env=worker_env, cwd=tmp_path) for i in (1, 2)]

        def workers_online() -> bool:
            for w in workers:
                assert w.process.poll() is None, f"{w.name} exited:\n{w.output()[-3000:]}"
            online = api(base, "/work_pools/forumflow/workers/filter", {})
            return sum(1 for w in online if w.get("status") == "ONLINE") >= 2

        wait_for(workers_online, 120, "two online workers")
        assert serve.process.wait(timeout=120) == 1
        refusal = serve.output().strip().splitlines()
        assert len(refusal) == 1 and refusal[0].startswith("error: ") and "dispatch/pool, review/pool" in refusal[0], refusal

        # Two review runs at the same moment, one on each worker (each takes one run at a time), well before the
        # schedules' first runs could take a worker.
        before_schedules = FIRST_SCHEDULED_RUN.total_seconds() - (time.monotonic() - deployed_at)
        assert before_schedules > 20, f"the workers took too long to start ({before_schedules:.0f} s left before the schedules)"
        pair = [processes.start(f"review-{i}", _argv("review", now=review_at), env=client_env, cwd=tmp_path) for i in (1, 2)]
        run_ids = [_run_id(processes.finish(p, 120)) for p in pair]
        runs = wait_for(lambda: _completed(base, run_ids, processes), 180, "the two review runs")
        assert sorted(w for r in runs for w in _workers_of(r, workers)) == ["worker-1", "worker-2"]
        counts = [wait_for(lambda r=r: _review_counts(base, r), 60, "the review runs' logs") for r in run_ids]
        # Every reminder exactly once: one run or the other wrote each, never both.
        assert sum(c["reminders"] for c in counts) == PROPOSALS, counts
        with session_scope(engine) as s:
            reminders = s.exec(select(Event).where(Event.action == "remind")).all()
            marks = s.exec(select(ReviewMark).where(ReviewMark.kind == "remind")).all()
        assert sorted(e.proposal_id for e in reminders) == sorted(ids)
        assert all(e.payload["offset_days"] == 7 and e.payload["recipients"] == [CHAIR] for e in reminders)
        assert sorted((m.proposal_id, m.step) for m in marks) == sorted((i, 7) for i in ids)

        dispatch_id = _run_id(processes.run("dispatch", _argv("dispatch"), env=client_env, cwd=tmp_path))
        wait_for(lambda: _completed(base, [dispatch_id], processes), 180, "the dispatch run")

        # The schedules fire: a scheduled run of each deployment completes.
        def scheduled_done() -> bool:
            ours = {"any_": [d["id"] for d in named.values()]}
            done = _flow_runs(base, deployment_id=ours, state={"type": {"any_": ["COMPLETED"]}})
            return {d["deployment_id"] for d in done if d["auto_scheduled"]} == {d["id"] for d in named.values()}

        wait_for(scheduled_done, 240, "a scheduled run of review/pool and of dispatch/pool", every=2)

        # Every mail sent arrived exactly once; the reminders reached the chair.
        with session_scope(engine) as s:
            sent = s.exec(select(Delivery).where(Delivery.status == "sent")).all()
            unsent = s.exec(select(Delivery).where(col(Delivery.status).in_(["failed", "dead"]))).all()
            reminder_mail = [d.recipient for d in sent if d.event_id in {e.id for e in reminders}]
        inbox = Counter(str(m["Message-ID"]).strip() for m in sink.messages())
        assert sent and not unsent
        assert inbox == Counter(d.message_id for d in sent)
        assert set(inbox.values()) == {1}
        assert reminder_mail == [CHAIR] * PROPOSALS
        engine.dispose()
    spans = [f"{r['start_time'][11:23]}-{r['end_time'][11:23]}" for r in runs]
    print(f"scale-out test: {time.monotonic() - began:.0f} s ({before_schedules:.0f} s to spare); review runs {spans}: {counts}")
