"""Loading and re-syncing the definition is idempotent and never loses proposals or events."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from config import ForumDefinition
from models import Lifecycle, session_scope, sync_definition
from models.tables import Event, GroupMembership, Member, Proposal, Region
from tests.factories import make_proposal


def counts(engine: Engine) -> tuple[int, ...]:
    with session_scope(engine) as s:
        return tuple(
            s.exec(select(func.count()).select_from(t)).one() for t in (Region, Member, GroupMembership, Proposal, Event)
        )


def test_sync_is_idempotent_and_keeps_proposals(forum: Engine, definition: ForumDefinition, lifecycle: Lifecycle) -> None:
    make_proposal(forum, lifecycle, state="reviewed")
    before = counts(forum)
    with session_scope(forum) as s:
        report = sync_definition(s, definition)
    assert report.members_added == 0 and report.members_updated == len(definition.members)
    assert counts(forum) == before
    with session_scope(forum) as s:
        assert s.get(Region, "RU-CHE").name == definition.region_name("RU-CHE")  # type: ignore[union-attr]


def test_members_gone_from_the_file_are_deactivated_not_deleted(
    forum: Engine, definition: ForumDefinition, lifecycle: Lifecycle
) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    slimmer = definition.model_copy(
        update={
            "members": [m for m in definition.members if m.handle != "sharma.anil"],
            "working_groups": [
                g.model_copy(update={"members": [h for h in g.members if h != "sharma.anil"]}) for g in definition.working_groups
            ],
        }
    )
    with session_scope(forum) as s:
        report = sync_definition(s, slimmer)
    assert report.members_deactivated == 1
    with session_scope(forum) as s:
        gone = s.get(Member, "sharma.anil")
        assert gone is not None and gone.active is False
        assert s.get(Proposal, pid) is not None
        assert s.get(GroupMembership, ("industry", "sharma.anil")) is None
    with session_scope(forum) as s:
        sync_definition(s, definition)
        assert s.get(Member, "sharma.anil").active is True  # type: ignore[union-attr]
