"""A simulated forum year keeps every invariant, and the invariant checks do catch violations."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from cli.main import app
from config import ForumDefinition, Settings
from flows.simulate import Checker, SimulationConfig, run_simulation
from models import Lifecycle, make_engine, session_scope
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
    assert result.sweeps == 200 * 24
    assert result.sent == result.planned > 0
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
    assert data["config"]["start"] == dt.datetime(2022, 12, 1, tzinfo=dt.UTC).isoformat()
    assert Path(data["folder"], "forumflow.db").is_file()
