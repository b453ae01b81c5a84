"""Load or re-sync a forum definition into the database; never touches proposals or events."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import delete
from sqlmodel import Session, col, select

from config.definition import ForumDefinition
from models.roster import bump
from models.tables import GroupMembership, Member, PresidingTerm, Region, WorkingGroup

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What a sync changed."""

    regions: int
    members_added: int
    members_updated: int
    members_deactivated: int
    groups: int
    terms: int


def sync_definition(session: Session, definition: ForumDefinition) -> SyncReport:
    """Upsert regions, members, groups (with deputy chairs), memberships and terms (with deputies).

    Members and groups gone from the file are deactivated.
    """
    for code in definition.regions:
        region = session.get(Region, code) or Region(code=code, name="", country=code.split("-")[0])
        region.name = definition.region_name(code)
        session.add(region)
    session.flush()

    added = updated = 0
    wanted = {m.handle for m in definition.members}
    for m in definition.members:
        row = session.get(Member, m.handle)
        if row is None:
            row, added = Member(handle=m.handle, name=m.name, email=m.email), added + 1
        else:
            updated += 1
        row.name, row.email, row.language, row.timezone = m.name, m.email, m.language, m.timezone
        row.region, row.roles, row.notify, row.active = m.region, ",".join(m.roles), m.notify, True
        session.add(row)
    gone = [row for row in session.exec(select(Member)) if row.handle not in wanted and row.active]
    for row in gone:
        row.active = False
        session.add(row)
    session.flush()
    from models.auth import forget_members  # sign-in tables: imported only when a sync runs
    from models.tokens import forget_tokens

    forget_members(session, [row.handle for row in gone])  # their web sessions and sign-in links end
    # API tokens of every member not in the forum end (also of one deactivated otherwise, e.g. by hand).
    forget_tokens(session, list(session.exec(select(Member.handle).where(col(Member.active).is_(False)))))

    keys = {g.key for g in definition.working_groups}
    for g in definition.working_groups:
        group = session.get(WorkingGroup, g.key) or WorkingGroup(key=g.key, name=g.name, chair=g.chair)
        group.name, group.chair, group.deputy_chair, group.active = g.name, g.chair, g.deputy_chair, True
        session.add(group)
    for group in session.exec(select(WorkingGroup)):
        if group.key not in keys:
            group.active = False
            session.add(group)
    session.flush()
    session.execute(delete(GroupMembership))
    for g in definition.working_groups:
        for handle in g.members:
            session.add(GroupMembership(group_key=g.key, member=handle))
    session.execute(delete(PresidingTerm))
    for t in definition.presiding_terms:
        session.add(PresidingTerm(region=t.region, start=t.start, end=t.end, deputy=t.deputy))
    session.flush()
    bump(session)  # rosters cached by any process are read again
    report = SyncReport(
        len(definition.regions), added, updated, len(gone), len(definition.working_groups), len(definition.presiding_terms)
    )
    log.info("definition synced: %s", report)
    return report
