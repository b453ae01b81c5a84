"""The forum's people, read once per process and reused until the forum definition is loaded again.

``sync_definition`` (``forumflow init``) writes a new random token in the one row of ``definition_generation``
(``bump``). ``people`` reads that token (one tiny SELECT, or none when the caller read it with something else)
and returns the ``People`` cached for it, reading members, groups, memberships and presiding terms only the
first time a process meets the token. Anything that changes those tables must call ``bump`` in its transaction.
A database without the row (never synced) is read every time.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ScalarSelect
from sqlmodel import Session, col, select

from models.tables import DefinitionGeneration, GroupMembership, Member, PresidingTerm, WorkingGroup

log = logging.getLogger(__name__)

# Rosters kept per process (one per database the process works with, and a few more).
_KEEP = 16
_cache: OrderedDict[str, People] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class Group:
    """A working group: its name, chair, deputy chair, and whether it is active."""

    key: str
    name: str
    chair: str
    deputy_chair: str | None
    active: bool


@dataclass(frozen=True)
class People:
    """Who is who in the forum at one generation of its definition; never changed once built (shared)."""

    everyone: Mapping[str, Member]  # every member, active or not (detached copies: read, never add to a session)
    groups: Mapping[str, Group]
    memberships: Mapping[str, frozenset[str]]  # group key -> member handles (active or not)
    terms: tuple[PresidingTerm, ...]  # by id
    members: Mapping[str, Member]  # active members by handle
    heads: Mapping[str, Member]  # active heads of region with a region, by handle
    secretariat: frozenset[str]  # handles of the active secretariat
    chairs: Mapping[str, str]  # group key -> chair handle
    deputy_chairs: Mapping[str, str]  # group key -> deputy chair handle (groups that have one)
    country_of: Mapping[str, str]  # active head's handle -> the member state of their region ("CN" for "CN-HL")
    member_states: frozenset[str]  # the member states taking part: those with an active head of region

    @classmethod
    def load(cls, session: Session) -> People:
        """Read members, groups, memberships and presiding terms."""
        everyone = {m.handle: _copy(m) for m in session.exec(select(Member))}
        groups = {
            g.key: Group(g.key, g.name, g.chair, g.deputy_chair, g.active) for g in session.exec(select(WorkingGroup))
        }
        memberships: dict[str, set[str]] = {}
        for gm in session.exec(select(GroupMembership)):
            memberships.setdefault(gm.group_key, set()).add(gm.member)
        terms = tuple(_copy(t) for t in session.exec(select(PresidingTerm).order_by(col(PresidingTerm.id))))
        active = {h: m for h, m in everyone.items() if m.active}
        heads = {h: m for h, m in active.items() if "head_of_region" in m.role_set and m.region}
        country_of = {h: (m.region or "").split("-")[0] for h, m in heads.items()}
        return cls(
            everyone=everyone, groups=groups, memberships={k: frozenset(v) for k, v in memberships.items()}, terms=terms,
            members=active, heads=heads, secretariat=frozenset(h for h, m in active.items() if "secretariat" in m.role_set),
            chairs={g.key: g.chair for g in groups.values()},
            deputy_chairs={g.key: g.deputy_chair for g in groups.values() if g.deputy_chair},
            country_of=country_of, member_states=frozenset(country_of.values()),
        )

    @functools.cached_property
    def names(self) -> Mapping[str, str]:
        """Every member's name by handle (members who left included: the history names them); made once, shared."""
        return {h: m.name for h, m in self.everyone.items()}

    def term_at(self, at: dt.datetime) -> PresidingTerm | None:
        """The presiding term covering the UTC date of ``at``."""
        day = at.astimezone(dt.UTC).date()
        return next((t for t in self.terms if t.start <= day <= t.end), None)


def _copy(row: Any) -> Any:
    """A detached copy of a table row, safe to share between sessions and threads for reading."""
    return type(row)(**row.model_dump())


# Built once (building a statement costs more than running it): the generation token.
_TOKEN = select(DefinitionGeneration.token).where(DefinitionGeneration.id == 1)


def token_column() -> ScalarSelect[Any]:
    """A scalar subquery giving the generation token (NULL when the definition was never loaded)."""
    return _TOKEN.scalar_subquery()


def people(session: Session, token: str | None = None, *, known: bool = False) -> People:
    """The forum's people as ``session`` sees them; from the cache when the generation token is unchanged.

    ``known`` says the caller read ``token`` already (with another statement); else it is read here.
    """
    if not known:
        token = session.exec(_TOKEN).first()
    if token is None:
        return People.load(session)
    with _lock:
        cached = _cache.get(token)
        if cached is not None:
            _cache.move_to_end(token)
            return cached
    loaded = People.load(session)
    with _lock:
        _cache[token] = loaded
        while len(_cache) > _KEEP:
            _cache.popitem(last=False)
    log.debug("roster loaded for definition generation %s", token)
    return loaded


def bump(session: Session) -> int:
    """Mark the people as changed (a new generation and token) in the caller's transaction; returns the generation."""
    row = session.get(DefinitionGeneration, 1)
    if row is None:
        row = DefinitionGeneration(id=1, generation=0, token="")
    row.generation += 1
    row.token = uuid.uuid4().hex
    session.add(row)
    session.flush()
    return row.generation
