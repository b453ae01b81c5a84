"""Random action sequences by random actors: the state is always valid and replay reproduces it and the text version."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from config import ForumDefinition
from models import ForumflowError, Lifecycle, create_schema, events_of, make_engine, session_scope, sync_definition
from models.lifecycle import AllowedAction
from models.tables import EndorsementDecision, Proposal, ProposalTextEdit
from tests.factories import T0, make_proposal

ACTORS = ["zhao.lei", "kuznetsov", "nurlanova", "petrov", "karimov", "li.ming", "wang.jianguo", "deshmukh",
          "seitkazieva", "toktogulov", "khan.ayesha", "rakhimov", "yousafzai", "secretariat", "system", "tursunov",
          "yusupova", "sokolova", "nobody"]
ACTIONS = ["submit", "recommend", "return", "reject", "endorse", "object", "approve", "refer_back",
           "report_progress", "complete", "withdraw", "consensus", "silence", "close_round", "edit", "fly"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), length=st.integers(min_value=1, max_value=45))
def test_random_sequences_keep_a_valid_replayable_state(
    definition: ForumDefinition, lifecycle: Lifecycle, data: st.DataObject, length: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'p.db'}")
        create_schema(engine)
        with session_scope(engine) as s:
            sync_definition(s, definition)
        pid = make_proposal(engine, lifecycle)
        now = T0
        for _ in range(length):
            now += dt.timedelta(days=data.draw(st.integers(min_value=0, max_value=25), label="days"))
            with session_scope(engine) as s:
                before = s.get(Proposal, pid)
                assert before is not None
                prior = (before.state, before.version, before.text_version)
                allowed = [(a.action, h) for a in lifecycle.allowed(s, before, now) for h in a.actors]
                    # Mostly plausible steps (an allowed action by someone allowed), sometimes anything at all.
            roll = data.draw(st.integers(min_value=0, max_value=9), label="roll")
            forward = [(a, h) for a, h in allowed if a not in ("withdraw", "reject")]
            if forward and roll < 6:
                action, actor = data.draw(st.sampled_from(forward), label="step")
            elif allowed and roll < 8:
                action, actor = data.draw(st.sampled_from(allowed), label="step")
            else:
                action = data.draw(st.sampled_from(ACTIONS), label="action")
                actor = data.draw(st.sampled_from(ACTORS), label="actor")
            comment = data.draw(st.sampled_from(["", "because"]), label="comment")
            percent = data.draw(st.one_of(st.none(), st.integers(min_value=-5, max_value=110)), label="percent")
            try:
                with session_scope(engine) as s:
                    if action == "close_round":
                        lifecycle.close_round(s, pid, now=now)
                    elif action == "edit":
                        body = data.draw(st.sampled_from(["", "Budget: 2 million.", "Budget: 3 million.\nSite: Harbin."]))
                        lifecycle.edit(s, pid, actor, ProposalTextEdit(body=body), now=now)
                    else:
                        after: list[AllowedAction] = []
                        lifecycle.apply(s, pid, action, actor, comment=comment, percent=percent, now=now, allowed_after=after)
                succeeded = True
            except ForumflowError:
                succeeded = False
            with session_scope(engine) as s:
                p = s.get(Proposal, pid)
                assert p is not None
                assert p.state in lifecycle.workflow.state_names
                if not succeeded:
                    assert (p.state, p.version, p.text_version) == prior
                elif action not in ("close_round", "edit"):  # what apply said may happen next is what a fresh read says
                    assert after == lifecycle.allowed(s, p, now)
                events = events_of(s, pid)
                assert lifecycle.replay(events) == p.state
                assert lifecycle.replay_text_version(events) == p.text_version
                assert p.version == len(events)
                assert 0 <= p.percent <= 100
                if p.state == "reviewed":
                    decisions = s.exec(
                        select(EndorsementDecision).where(
                            EndorsementDecision.proposal_id == pid, EndorsementDecision.round == p.round,
                            EndorsementDecision.text_version == p.text_version,
                        )
                    ).all()
                    assert all(d.decision == "endorse" for d in decisions)
                sla = lifecycle.workflow.state(p.state).sla_days
                if sla:
                    assert p.deadline == p.state_entered_at + dt.timedelta(days=sla)
        event(f"final state: {p.state}")
        engine.dispose()
