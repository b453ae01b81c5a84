"""``forumflow demo``: a fresh forum on the embedded defaults, proposals taken through the lifecycle."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine

from config.definition import ForumDefinition
from config.settings import Settings
from models import Lifecycle, create_schema, events_of, make_engine, session_scope, sync_definition
from models.tables import Proposal, ProposalCreate

START = dt.datetime(2021, 2, 1, 6, 0, tzinfo=dt.UTC)


@dataclass
class Clock:
    """Simulated time: the demo moves it forward explicitly."""

    now: dt.datetime = START

    def advance(self, **delta: float) -> dt.datetime:
        """Move forward by a timedelta and return the new time."""
        self.now += dt.timedelta(**delta)
        return self.now


@dataclass
class Scenario:
    """Runs actions against one engine with a simulated clock."""

    engine: Engine
    lifecycle: Lifecycle
    clock: Clock = field(default_factory=Clock)
    ids: dict[str, int] = field(default_factory=dict)

    def propose(self, key: str, group: str, author: str, title: str, summary: str) -> None:
        """Draft a proposal and remember its id under ``key``."""
        with session_scope(self.engine) as s:
            data = ProposalCreate(group=group, author=author, title=title, summary=summary)
            p = self.lifecycle.create_proposal(session=s, proposal_in=data, now=self.clock.now)
            assert p.id is not None
            self.ids[key] = p.id

    def act(self, key: str, action: str, actor: str, comment: str = "", percent: int | None = None) -> None:
        """Apply an action at the current simulated time."""
        with session_scope(self.engine) as s:
            self.lifecycle.apply(s, self.ids[key], action, actor, comment=comment, percent=percent, now=self.clock.now)

    def endorse_by(self, key: str, heads: list[str]) -> None:
        """Several heads of region endorse, an hour apart."""
        for head in heads:
            self.clock.advance(hours=1)
            self.act(key, "endorse", head)

    def close_round(self, key: str) -> None:
        """Close an endorsement round under the silence procedure at its deadline."""
        with session_scope(self.engine) as s:
            p = s.get(Proposal, self.ids[key])
            assert p is not None and p.deadline is not None
            if p.deadline > self.clock.now:
                self.clock.now = p.deadline
            self.lifecycle.close_round(s, self.ids[key], now=self.clock.now)


ONE_HEAD_PER_STATE = ["wang.jianguo", "deshmukh", "seitkazieva", "toktogulov", "khan.ayesha", "petrov", "rakhimov", "karimov"]


def play(sc: Scenario) -> None:
    """The demo story: consensus, a return, an objection, the silence procedure, a rejection, a withdrawal."""
    c = sc.clock
    sc.propose("agro", "industry", "zhao.lei", "Joint agro-industrial park on the Chelyabinsk–Harbin corridor",
               "Shared cold-chain logistics and seed testing for member regions.")
    sc.propose("trade", "trade", "chen.jing", "Single window for cross-border e-commerce between border regions",
               "Harmonised customs data for parcels under 200 EUR.")
    sc.propose("science", "science", "iyer.kavya", "Regional innovation vouchers for joint research teams",
               "Small grants for teams from at least three member states.")
    sc.propose("museum", "education", "sultanova", "Travelling exhibition of Silk Road manuscripts", "")
    sc.propose("visa", "tourism", "umarov", "Group e-visa for heritage tours", "")

    c.advance(days=2)
    for key, author in (("agro", "zhao.lei"), ("trade", "chen.jing"), ("science", "iyer.kavya"),
                        ("museum", "sultanova"), ("visa", "umarov")):
        c.advance(hours=3)
        sc.act(key, "submit", author)

    # The trade group returns its proposal for more detail; the author resubmits.
    c.advance(days=5)
    sc.act("trade", "return", "tursunov", comment="Please add the customs data fields and a pilot crossing.")
    c.advance(days=6)
    sc.act("trade", "submit", "chen.jing")
    sc.act("visa", "withdraw", "umarov", comment="Covered by the national e-visa reform.")
    c.advance(days=2)
    sc.act("museum", "reject", "mehta.arjun", comment="Outside the group's mandate; refer to the cultural ministries.")

    # Agro: recommended, endorsed by consensus, approved by the presiding region, implemented.
    sc.act("agro", "recommend", "kuznetsov")
    sc.endorse_by("agro", ONE_HEAD_PER_STATE)
    c.advance(days=3)
    sc.act("agro", "approve", "petrov")

    # Trade: recommended, one head objects, the group revises and recommends again, consensus.
    c.advance(days=1)
    sc.act("trade", "recommend", "tursunov")
    sc.endorse_by("trade", ONE_HEAD_PER_STATE[:3])
    c.advance(days=2)
    sc.act("trade", "object", "yousafzai", comment="The data fields must follow the WCO data model.")
    c.advance(days=4)
    sc.act("trade", "recommend", "tursunov", comment="Aligned with the WCO data model.")
    sc.endorse_by("trade", ONE_HEAD_PER_STATE)
    c.advance(days=1)
    sc.act("trade", "approve", "petrov")

    # Science: recommended, some heads endorse, nobody objects; the round closes by silence.
    sc.act("science", "recommend", "liu.yang")
    sc.endorse_by("science", ["li.ming", "sokolova", "nurlanov"])
    sc.close_round("science")
    c.advance(days=2)
    sc.act("science", "approve", "petrov")

    # Implementation reports.
    for pct, note in ((30, "Site selected in the Chelyabinsk free economic zone."), (70, "Cold-chain terminal built."),
                      (100, "Terminal in operation; first shipments to Harbin.")):
        c.advance(days=60)
        sc.act("agro", "report_progress", "zhao.lei", comment=note, percent=pct)
    sc.act("agro", "complete", "kuznetsov")
    c.advance(days=20)
    sc.act("trade", "report_progress", "tursunov", comment="Pilot at Khorgos.", percent=25)


def run_demo(settings: Settings, definition: ForumDefinition, console: Console, *, fresh: bool = True) -> Path:
    """Build a fresh demo database in the data dir, play the story, print timelines; returns the database path."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = (settings.data_dir / "demo.db").resolve()
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    lifecycle = Lifecycle(definition)
    with session_scope(engine) as s:
        sync_definition(s, definition)
    sc = Scenario(engine, lifecycle)
    play(sc)

    console.print(f"[bold]{definition.forum.name}[/] — demo from {START:%Y-%m-%d} to {sc.clock.now:%Y-%m-%d} (simulated)")
    with session_scope(engine) as s:
        for pid in sc.ids.values():
            p = s.get(Proposal, pid)
            assert p is not None
            table = Table("when (UTC)", "action", "from → to", "actor", "comment", title=f"#{pid} {p.title} [{p.group}]")
            for e in events_of(s, pid):
                table.add_row(f"{e.at:%Y-%m-%d %H:%M}", e.action, f"{e.from_state or '·'} → {e.to_state}", e.actor, e.comment)
            console.print(table)
        summary = Table("id", "group", "state", "events", "title", title="Summary")
        for pid in sc.ids.values():
            p = s.get(Proposal, pid)
            assert p is not None
            summary.add_row(str(pid), p.group, p.state, str(p.version), p.title)
        console.print(summary)
    console.print(f"Explore it: forumflow --db sqlite:///{path} list", markup=False)
    engine.dispose()
    return path
