"""A simulated forum year keeps every invariant, and the invariant checks do catch violations."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

from cli.main import app
from config import ForumDefinition, Settings
from flows.simulate import Checker, SimulationConfig, run_simulation
from models import Lifecycle, make_engine, session_scope
from models.outbox import Delivery, PlannedEvent
from models.review import ReviewMark
from models.tables import Event, Proposal


def test_a_small_year_keeps_every_invariant(tmp_path: Path, definition: ForumDefinition) -> None:
    config = SimulationConfig(proposals=20, days=200, seed=3)
    result, folder = run_simulation(Settings(data_dir=tmp_path), definition, config, mail=True)
    assert result.refused == []
    failures = {c.name: c.failures[:3] for c in result.checks if not c.ok}
    assert failures == {}
    assert all(c.checked > 0 for c in result.checks), [(c.name, c.checked) for c in result.checks]
    r = result.review
    assert min(r.reminders, r.escalations, r.closed, r.handovers, r.progress_due) > 0, r
    assert result.sweeps == 200 * 24 and 0 < result.sweeps_run < result.sweeps
    assert result.sent == result.planned > 0
    t = result.timings
    assert min(t.actions, t.sweeps, t.planning, t.sending, t.checks) > 0, t
    assert (folder / "maildir").is_dir() and len(list((folder / "maildir" / "new").iterdir())) == result.sent


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, definition: ForumDefinition) -> tuple[Path, SimulationConfig]:
    """A finished simulation without mail, to tamper with."""
    tmp = tmp_path_factory.mktemp("sim")
    config = SimulationConfig(proposals=15, days=120, seed=5)
    result, folder = run_simulation(Settings(data_dir=tmp), definition, config, mail=False)
    assert result.ok
    return folder, config


def _checks(folder: Path, config: SimulationConfig, lifecycle: Lifecycle) -> dict[str, bool]:
    engine = make_engine(f"sqlite:///{folder / 'forumflow.db'}")
    try:
        return {c.name: c.ok for c in Checker(engine, lifecycle, config).run()}
    finally:
        engine.dispose()


def test_the_checks_catch_a_second_reminder_and_a_reminder_to_someone_who_acted(
    simulated: tuple[Path, SimulationConfig], lifecycle: Lifecycle,
) -> None:
    folder, config = simulated
    assert all(_checks(folder, config, lifecycle).values())
    engine = make_engine(f"sqlite:///{folder / 'forumflow.db'}")
    with session_scope(engine) as s:
        # A round reminder that names a head who had already endorsed in that round.
        endorsements = list(s.exec(select(Event).where(Event.action == "endorse")))
        reminder = next(
            e for e in s.exec(select(Event).where(Event.action == "remind").order_by(Event.id))  # type: ignore[arg-type]
            if e.to_state == "reviewed" and any(x.proposal_id == e.proposal_id and x.at <= e.at for x in endorsements)
        )
        endorser = next(
            x.actor for x in s.exec(select(Event).where(Event.proposal_id == reminder.proposal_id, Event.action == "endorse"))
            if x.at <= reminder.at
        )
        proposal = s.get(Proposal, reminder.proposal_id)
        assert proposal is not None
        lifecycle.notice(
            s, proposal, "remind", now=reminder.at,
            payload=dict(reminder.payload, recipients=sorted([*reminder.payload["recipients"], endorser])),
        )
    engine.dispose()
    checks = _checks(folder, config, lifecycle)
    assert checks["every reminder issued exactly once per (proposal, state entry, offset), on time"] is False
    assert checks["no reminder to someone who had already acted"] is False
    assert checks["replay of the event log reproduces every proposal's state"] is True


def test_simulate_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORUMFLOW_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(
        app, ["simulate", "--proposals", "6", "--days", "45", "--seed", "2", "--no-mail", "--json", "--start", "2022-12-01"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["sweeps"] == 45 * 24
    assert set(data["timings"]) == {"actions", "sweeps", "planning", "sending", "checks", "other"}
    assert sum(data["timings"].values()) == pytest.approx(data["seconds"], abs=0.02)
    assert data["timings"]["sending"] == 0  # no mail
    assert data["config"]["start"] == dt.datetime(2022, 12, 1, tzinfo=dt.UTC).isoformat()
    assert Path(data["folder"], "forumflow.db").is_file()

    table = CliRunner().invoke(app, ["simulate", "--proposals", "3", "--days", "10", "--no-mail"])
    assert table.exit_code == 0, table.output
    assert "time spent" in table.output and "planning" in table.output and "sweeps" in table.output


def _outcome(folder: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a simulation wrote that the review and planning decide: events, marks, deliveries."""
    engine = make_engine(f"sqlite:///{folder / 'forumflow.db'}")
    try:
        with session_scope(engine) as s:
            return {
                "events": [(e.id, e.proposal_id, e.seq, e.action, e.from_state, e.to_state, e.actor, e.at, e.payload)
                           for e in s.exec(select(Event).order_by(col(Event.id)))],
                "proposals": [tuple(p.model_dump().values()) for p in s.exec(select(Proposal).order_by(col(Proposal.id)))],
                "marks": [(m.proposal_id, m.anchor, m.kind, m.step, m.at, m.event_id)
                          for m in s.exec(select(ReviewMark).order_by(col(ReviewMark.id)))],
                "planned": [(p.event_id, p.planned_at, p.deliveries)
                            for p in s.exec(select(PlannedEvent).order_by(col(PlannedEvent.event_id)))],
                "deliveries": [(d.event_id, d.recipient, d.kind, d.next_attempt_at, d.created_at)
                               for d in s.exec(select(Delivery).order_by(col(Delivery.id)))],
            }
    finally:
        engine.dispose()


def test_skipping_the_hours_before_anything_is_due_changes_nothing(tmp_path: Path, definition: ForumDefinition) -> None:
    # Over the RU-CHE -> UZ-SA hand-over, long enough for progress reviews.
    start = dt.datetime(2022, 9, 1, tzinfo=dt.UTC)
    runs = {}
    for every_hour in (True, False):
        config = SimulationConfig(proposals=20, days=200, seed=3, start=start, every_hour=every_hour)
        result, folder = run_simulation(Settings(data_dir=tmp_path / str(every_hour)), definition, config)
        assert result.ok, [c.failures[:3] for c in result.checks if not c.ok] or result.refused[:3]
        runs[every_hour] = (result, _outcome(folder))
    (hourly, reference), (skipping, outcome) = runs[True], runs[False]
    assert hourly.sweeps_run == hourly.sweeps == skipping.sweeps == 200 * 24
    assert skipping.sweeps_run < hourly.sweeps_run / 3  # most hours had nothing due and were skipped
    r = skipping.review
    assert min(r.reminders, r.escalations, r.closed, r.handovers, r.progress_due) > 0, r
    assert (skipping.review, skipping.actions, skipping.planned, skipping.states) == (
        hourly.review, hourly.actions, hourly.planned, hourly.states)
    for table, rows in reference.items():
        assert outcome[table] == rows, table


def test_the_time_is_told_by_part(tmp_path: Path, definition: ForumDefinition, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each part's figure is the time spent in it: a clock that only the timed work moves gives exact figures."""
    import notifications.planning
    from flows import simulate

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(simulate, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    calls: Counter[str] = Counter()

    def costs(name: str, seconds: float, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            clock.now += seconds
            return fn(*args, **kwargs)
        return timed

    monkeypatch.setattr(Lifecycle, "apply", costs("apply", 1.0, Lifecycle.apply))
    monkeypatch.setattr(Lifecycle, "create_proposal", costs("create", 1.0, Lifecycle.create_proposal))
    monkeypatch.setattr(simulate, "sweep_in", costs("sweep", 100.0, simulate.sweep_in))
    monkeypatch.setattr(notifications.planning, "plan_events", costs("plan", 10_000.0, notifications.planning.plan_events))
    monkeypatch.setattr(simulate.Checker, "run", costs("check", 1_000_000.0, simulate.Checker.run))
    config = SimulationConfig(proposals=8, days=60, seed=4)
    result, _ = run_simulation(Settings(data_dir=tmp_path), definition, config)

    t = result.timings
    assert calls["apply"] > 0 and calls["sweep"] == result.sweeps_run > 0 and calls["plan"] > 0
    assert t.actions == calls["apply"] + calls["create"]
    assert t.sweeps == 100.0 * calls["sweep"]
    assert t.planning == 10_000.0 * calls["plan"]
    assert (t.checks, t.sending, t.other) == (1_000_000.0, 0.0, 0.0)
    assert result.seconds == t.actions + t.sweeps + t.planning + t.checks


def test_a_refused_action_leaves_nothing_behind(
    tmp_path: Path, definition: ForumDefinition, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Actions share their hour's transaction: one refused after writing is undone alone, the hour's others kept."""
    from models.errors import NotPossibleError

    real = Lifecycle.apply
    refused: list[tuple[int, str, dt.datetime]] = []

    def apply_then_refuse(self: Lifecycle, session: Any, proposal_id: int, action: str, actor: str, **kw: Any) -> Any:
        events = real(self, session, proposal_id, action, actor, **kw)
        if not refused and action == "submit":
            refused.append((proposal_id, action, kw["now"]))
            raise NotPossibleError("refused after writing, for the test")
        return events

    monkeypatch.setattr(Lifecycle, "apply", apply_then_refuse)
    config = SimulationConfig(proposals=6, days=30, seed=2)
    result, folder = run_simulation(Settings(data_dir=tmp_path), definition, config)
    assert len(result.refused) == 1 and "refused after writing" in result.refused[0]
    (pid, action, at) = refused[0]
    outcome = _outcome(folder)
    assert not [e for e in outcome["events"] if e[1] == pid and e[3] == action and e[7] == at]
    assert [e for e in outcome["events"] if e[1] == pid and e[3] == "create"]  # its creation was kept
    failures = {c.name: c.failures[:3] for c in result.checks if not c.ok}
    assert failures == {}
