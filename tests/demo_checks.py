"""What the demo must have done, read from its database, and the figures it printed, checked against it."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from sqlmodel import col, select

from models import make_engine, session_scope
from models.tables import Event, Proposal

# The story's proposals in the order the demo drafts them, and where each must end.
FINAL_STATES = ["implemented", "implementing", "implementing", "rejected", "withdrawn", "implementing"]
# Actions the story takes itself (the review's come on top), each exactly this often.
SCRIPTED = {
    "create": 6, "return": 2, "withdraw": 1, "reject": 1, "object": 1, "consensus": 2, "approve": 4, "complete": 1,
    "report_progress": 6,
}
# The printed figures of the review and the event each counts.
REVIEW_KINDS = {"reminders": "remind", "escalations": "escalate", "handovers": "handover", "progress_due": "progress_due",
                "closed": "silence"}
SUMMARY = re.compile(r"^(\d+) events; the review flow ran (\d+) times and wrote: (.+)$", re.MULTILINE)


def check_demo(db: Path, output: str) -> int:
    """Assert the story on the demo's database and its printed summary; returns how many review runs it printed."""
    engine = make_engine(f"sqlite:///{db}")
    try:
        with session_scope(engine) as s:
            states = [p.state for p in s.exec(select(Proposal).order_by(col(Proposal.id)))]
            events = list(s.exec(select(Event)))
    finally:
        engine.dispose()
    assert states == FINAL_STATES
    actions = Counter(e.action for e in events)
    assert {a: actions[a] for a in SCRIPTED} == SCRIPTED
    by_system = Counter(e.action for e in events if e.actor == "system")
    assert by_system["consensus"] == SCRIPTED["consensus"]
    handovers = {(e.payload["from_region"], e.payload["to_region"]) for e in events if e.action == "handover"}
    assert handovers == {("RU-CHE", "UZ-SA")}  # the term changed on 1 January 2023, and only then

    match = SUMMARY.search(output)
    assert match, output
    total, runs, wrote = int(match.group(1)), int(match.group(2)), match.group(3)
    assert total == len(events)
    printed = {k: int(v) for k, v in (part.rsplit(" ", 1) for part in wrote.split(", "))}
    from_db = {label: by_system[action] for label, action in REVIEW_KINDS.items()}
    assert printed == from_db
    assert all(from_db.values()), from_db  # the review reminded, escalated, closed rounds, handed over, asked for progress
    return runs
