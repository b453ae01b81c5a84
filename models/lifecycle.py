"""The lifecycle: the one place that changes a proposal.

A ``transitions`` machine is built once from the workflow in the forum definition. It is never bound
to ORM rows: each application wraps the row's state in a small plain carrier object. Every change
writes the new state and an append-only ``Event`` in the caller's transaction, guarded by a version
column and a conditional UPDATE (``SELECT ... FOR UPDATE`` does nothing on SQLite).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, null, union_all, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select
from transitions import Machine, MachineError

from config.definition import EDIT_ACTION, ActionDef, ForumDefinition, Workflow
from models.clock import shown, utc
from models.db import as_loaded, flushed_connection, is_unique_violation
from models.errors import (
    N_,
    ConflictError,
    InvalidInputError,
    NotAllowedError,
    NotFoundError,
    NotPossibleError,
    Said,
    Term,
    either,
)
from models.roster import People, people, token_column
from models.tables import (
    COMMENT_MAX,
    MAX_PROPOSAL_ID,
    NUL,
    EndorsementDecision,
    Event,
    GroupMembership,
    ManualReminder,
    Member,
    PresidingTerm,
    ProgressReport,
    Proposal,
    ProposalCreate,
    ProposalText,
    ProposalTextEdit,
    WorkingGroup,
)
from models.textdiff import FIELDS, summarise

log = logging.getLogger(__name__)

SYSTEM = "system"
CREATE = "create"
# Writes a new text version of a draft; the state does not change.
EDIT = EDIT_ACTION
# Events the scheduler records without changing the state: they exist so notifications follow.
NOTICES = frozenset({"remind", "escalate", "handover", "progress_due"})
REMIND = "remind"


@dataclass
class _Carrier:
    """Plain object the machine moves; transitions cannot bind to SQLModel rows."""

    state: str


@dataclass(frozen=True)
class Notice:
    """A system notice to record on a proposal: its action, payload, and the columns it sets (if any)."""

    proposal: Proposal
    action: str
    payload: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Write:
    """A system change to write in bulk: proposal, action, the state after it, the columns it sets, the payload."""

    proposal: Proposal
    action: str
    to_state: str
    values: dict[str, Any]
    payload: dict[str, Any]


@dataclass(frozen=True)
class Reminding:
    """What a reminder sent by hand would do now: whom it reaches, and the one already sent today, if any."""

    recipients: list[str]
    sent_today: ManualReminder | None
    next_day: dt.datetime  # when the next one may be sent, if one was sent today (midnight UTC)

    @property
    def possible(self) -> bool:
        """Whether a reminder may be sent now."""
        return bool(self.recipients) and self.sent_today is None


@dataclass(frozen=True)
class AllowedAction:
    """An action possible now and the handles of those who may take it."""

    action: str
    label: str
    actors: list[str]
    comment_required: bool = False


@dataclass(frozen=True)
class _Loaded:
    """What the checks every change by a member starts with found: the proposal, ``now`` in UTC, the people."""

    proposal: Proposal
    now: dt.datetime
    people: People
    decided: dict[str, str] | None  # the current round's decisions, when asked for


class Roster:
    """The forum's people at a moment: chairs and deputies, group members, heads, secretariat, presiding term.

    A view of the process-wide ``models.roster.People`` (read again only when the definition changes) at ``now``;
    one roster can serve a whole batch of proposals.
    """

    def __init__(self, session: Session, now: dt.datetime, forum: People | None = None) -> None:
        self.session, self.now = session, utc(now)
        self.people = forum if forum is not None else people(session)

    @property
    def chairs(self) -> dict[str, str]:
        """Chair handle by working-group key."""
        return self.people.chairs  # type: ignore[return-value]

    @property
    def deputy_chairs(self) -> dict[str, str]:
        """Deputy chair handle by working-group key (groups that have one)."""
        return self.people.deputy_chairs  # type: ignore[return-value]

    @property
    def members(self) -> dict[str, set[str]]:
        """Member handles by working-group key."""
        return self.people.memberships  # type: ignore[return-value]

    @property
    def heads(self) -> dict[str, Member]:
        """Active heads of region (with a region) by handle."""
        return self.people.heads  # type: ignore[return-value]

    @property
    def secretariat(self) -> set[str]:
        """Handles of the active secretariat."""
        return self.people.secretariat  # type: ignore[return-value]

    @functools.cached_property
    def presiding_term(self) -> PresidingTerm | None:
        """The presiding term in force at ``now``."""
        return self.people.term_at(self.now)

    @property
    def presiding_region(self) -> str | None:
        """The region presiding at ``now``."""
        term = self.presiding_term
        return term.region if term else None

    def acting_chair(self, group: str, author: str) -> str | None:
        """Who takes the chair's part for a proposal by ``author``: the deputy chair when the chair wrote it."""
        chair = self.chairs.get(group)
        return self.deputy_chairs.get(group, chair) if chair == author else chair

    def presiding_heads(self) -> set[str]:
        """Handles of the heads of the presiding region."""
        region = self.presiding_region
        return {h for h, m in self.heads.items() if region is not None and m.region == region}

    def acting_presiding_heads(self, author: str) -> set[str]:
        """Who takes the presiding region's part for a proposal by ``author``: its deputy replaces a head who wrote it."""
        heads = self.presiding_heads()
        deputy = self.presiding_term.deputy if self.presiding_term else None
        if author in heads and deputy:
            return (heads - {author}) | {deputy}
        return heads


class _Context:
    """What a permission check needs to know about a proposal at a moment (parts read on first use)."""

    def __init__(self, proposal: Proposal, roster: Roster, round_state: str, decided: dict[str, str] | None = None) -> None:
        self.proposal, self.roster, self.round_state = proposal, roster, round_state
        if decided is not None:
            self.__dict__["decided"] = decided

    @property
    def chair(self) -> str:
        chair = self.roster.chairs.get(self.proposal.group)
        if chair is None:
            raise NotFoundError(f"working group {self.proposal.group!r} not found")
        return chair

    @property
    def deputy_chair(self) -> str | None:
        return self.roster.deputy_chairs.get(self.proposal.group)

    @property
    def group_members(self) -> set[str]:
        return self.roster.members.get(self.proposal.group, set())

    @property
    def presiding_region(self) -> str | None:
        return self.roster.presiding_region

    @property
    def heads(self) -> dict[str, Member]:
        return self.roster.heads

    @property
    def secretariat(self) -> set[str]:
        return self.roster.secretariat

    @functools.cached_property
    def decided(self) -> dict[str, str]:
        p = self.proposal
        if p.state != self.round_state:
            return {}
        return {
            d.member: d.decision
            for d in self.roster.session.exec(
                select(EndorsementDecision).where(
                    EndorsementDecision.proposal_id == p.id, EndorsementDecision.round == p.round,
                    EndorsementDecision.text_version == p.text_version,
                )
            )
        }


def past_deadline(deadline: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether ``deadline`` has passed at ``now`` (strictly after it): what every "overdue" means."""
    return deadline is not None and deadline < now


def proposal_not_found(proposal_id: int) -> NotFoundError:
    """The error of a proposal that does not exist."""
    return NotFoundError(f"proposal {proposal_id} not found", Said(N_("Proposal %(id)s was not found."), id=proposal_id))


def unknown_action(action: str, actions: Iterable[str]) -> InvalidInputError:
    """The error of an action the workflow does not have."""
    return InvalidInputError(
        f"unknown action {action!r}; actions: {', '.join(actions)}", Said(N_("There is no action “%(action)s”."), action=action)
    )


def no_such_group(key: str) -> Said:
    """"There is no working group KEY", for any reader."""
    return Said(N_("There is no working group “%(group)s”."), group=key)


def unknown_group(key: str, groups: Iterable[str]) -> InvalidInputError:
    """The error of a working group named in a request that the forum does not have (bad input, wherever it is)."""
    return InvalidInputError(f"group: unknown working group {key!r}; groups: {', '.join(groups)}", no_such_group(key))


def _no_member(handle: str) -> Said:
    return Said(N_("There is no active member “%(person)s”."), person=handle)


def _chair_of(key: str, chair: str) -> Said:
    return Said(
        N_("the chair of the working group %(group)s (%(person)s)"), group=Term("group", key), person=Term("person", chair)
    )


def _deputy_chair_of(key: str, deputy: str) -> Said:
    return Said(
        N_("the deputy chair of the working group %(group)s (%(person)s), as the chair wrote it"),
        group=Term("group", key), person=Term("person", deputy),
    )


def _presiding_head(code: str) -> Said:
    return Said(N_("the head of the presiding region %(region)s"), region=Term("region", code))


def _presiding_deputy(code: str, deputy: str) -> Said:
    return Said(
        N_("the deputy for the presiding region %(region)s (%(person)s), as its head wrote it"),
        region=Term("region", code), person=Term("person", deputy),
    )


def _not_possible(action: str, state: str) -> Said:
    return Said(
        N_("“%(action)s” is not possible while the proposal is “%(state)s”."),
        action=Term("action", action), state=Term("state", state),
    )


class Lifecycle:
    """The workflow of one forum definition, applied to proposals in a database."""

    def __init__(self, definition: ForumDefinition) -> None:
        self.definition = definition
        self.workflow: Workflow = definition.workflow
        self.actions: dict[str, ActionDef] = {a.name: a for a in self.workflow.actions}
        self.machine = Machine(
            model=None,
            states=self.workflow.state_names,
            transitions=[
                {"trigger": a.name, "source": a.source, "dest": a.dest} for a in self.workflow.actions
            ],
            initial=self.workflow.initial,
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )
        self.final_states = {s.name for s in self.workflow.states if s.final}
        # States awaiting a decision of the presiding region (they carry ``presiding_region``).
        self.approval_states = frozenset(
            a.source[0] for a in self.workflow.actions if "presiding_head" in a.roles and len(a.source) == 1
        )
        self._moves: dict[tuple[str, str], str] = {}
        self.open_states = [s for s in self.workflow.state_names if s not in self.final_states]
        # Editing is built in: the author writes new text versions while the proposal is a draft.
        self.edit_action = ActionDef(
            name=EDIT, label="Edit the text", source=[self.workflow.initial], dest=self.workflow.initial, roles=["author"],
        )

    # ------------------------------------------------------------------ the machine
    def next_state(self, state: str, action: str) -> str:
        """Run the machine: the state after ``action`` from ``state``; NotAllowedError if impossible."""
        if action not in self.actions:
            raise unknown_action(action, self.actions)
        known = self._moves.get((state, action))
        if known is not None:
            return known  # the machine is fixed: a move it made once it makes again
        carrier = _Carrier(state)
        self.machine.add_model(carrier, initial=state)
        try:
            carrier.trigger(action)  # type: ignore[attr-defined]
        except MachineError:
            raise NotPossibleError(
                f"{action!r} is not possible in state {state!r}; possible: {', '.join(self.triggers(state)) or 'none'}",
                _not_possible(action, state),
            ) from None
        finally:
            self.machine.remove_model(carrier)
        self._moves[(state, action)] = carrier.state
        return carrier.state

    def triggers(self, state: str) -> list[str]:
        """Actions defined from ``state``, in definition order."""
        return [a.name for a in self.workflow.actions if state in a.source]

    def replay(self, events: Sequence[Event]) -> str:
        """Reproduce a proposal's state from its events; raises ValueError on an impossible log."""
        state: str | None = None
        for ev in sorted(events, key=lambda e: e.seq):
            if ev.action == CREATE:
                if state is not None:
                    raise ValueError(f"event {ev.seq}: second create")
                state = self.workflow.initial
            elif state is None:
                raise ValueError(f"event {ev.seq}: log does not start with create")
            elif ev.action in NOTICES or ev.action == EDIT:
                if ev.from_state != state or ev.to_state != state:
                    raise ValueError(f"event {ev.seq}: {ev.action} changes state")
                if ev.action == EDIT and state not in self.edit_action.source:
                    raise ValueError(f"event {ev.seq}: edit in state {state!r}")
            else:
                if ev.from_state != state:
                    raise ValueError(f"event {ev.seq}: from {ev.from_state!r} but state is {state!r}")
                state = self.next_state(state, ev.action)
            if ev.to_state != state:
                raise ValueError(f"event {ev.seq}: recorded {ev.to_state!r}, replay gives {state!r}")
        if state is None:
            raise ValueError("empty event log")
        return state

    @staticmethod
    def replay_text_version(events: Sequence[Event]) -> int:
        """Reproduce a proposal's current text version from its events: 1 at create, one more per edit.

        Every event names the text version it concerns; raises ValueError when one names another.
        """
        version = 0
        for ev in sorted(events, key=lambda e: e.seq):
            if ev.action == CREATE:
                version = 1
            elif ev.action == EDIT:
                version += 1
            named = (ev.payload or {}).get("text_version")
            if named is not None and named != version:
                raise ValueError(f"event {ev.seq}: concerns text version {named}, replay gives {version}")
        if version == 0:
            raise ValueError("log does not start with create")
        return version

    # ------------------------------------------------------------------ context
    def _context(
        self, session: Session, proposal: Proposal, now: dt.datetime, forum: People | None = None,
        decided: dict[str, str] | None = None,
    ) -> _Context:
        ctx = _Context(proposal, Roster(session, now, forum), self.workflow.endorsement.state, decided)
        ctx.chair  # noqa: B018 - an unknown working group is reported before anything else
        return ctx

    def _holders(self, ctx: _Context, action: ActionDef) -> list[str]:
        """Handles who may take ``action`` on the proposal in ``ctx``."""
        p = ctx.proposal
        who: set[str] = set()
        for role in action.roles:
            if role == "author":
                who.add(p.author)
            elif role == "group_chair":
                # The no-self rule hands the chair's step to the deputy chair when the chair wrote the proposal.
                chair = ctx.chair
                who.add((ctx.deputy_chair or chair) if action.not_author and chair == p.author else chair)
            elif role == "group_member":
                who |= ctx.group_members
            elif role == "secretariat":
                who |= ctx.secretariat
            elif role == "presiding_head":
                roster = ctx.roster
                who |= roster.acting_presiding_heads(p.author) if action.not_author else roster.presiding_heads()
            elif role == "head_of_region":
                who |= set(ctx.heads)
                if action.name in (self.workflow.endorsement.endorse, self.workflow.endorsement.object):
                    who -= set(ctx.decided)
        if action.not_author:
            who.discard(p.author)
        return sorted(who)

    def _refusal(self, ctx: _Context, action: ActionDef, actor: str) -> tuple[str, Said]:
        """Why ``actor`` may not take ``action``: a sentence naming who may (the command line's, and for any reader)."""
        p = ctx.proposal
        if action.not_author and actor == p.author:
            return (
                f"{actor} may not {action.name} their own proposal",
                Said(N_("You may not take the action “%(action)s” on your own proposal."), action=Term("action", action.name)),
            )
        if actor in ctx.decided and action.name in (self.workflow.endorsement.endorse, self.workflow.endorsement.object):
            decision = ctx.decided[actor]
            decided_as = self.workflow.endorsement.endorse if decision == "endorse" else self.workflow.endorsement.object
            return (
                f"{actor} has already decided ({decision}) in this endorsement round",
                Said(
                    N_("You have already decided in this endorsement round (“%(decision)s”)."),
                    decision=Term("action", decided_as),
                ),
            )
        scopes = [self._scope(ctx, action, role) for role in action.roles]
        who = either(*(said for _, said in scopes))
        if action.name == EDIT:
            said = Said(N_("Only %(who)s may edit the text of this proposal."), who=who)
        else:
            said = Said(
                N_("Only %(who)s may take the action “%(action)s” on this proposal."), who=who, action=Term("action", action.name)
            )
        return f"{actor} may not {action.name} proposal {p.id}: only {' or '.join(text for text, _ in scopes)} may", said

    def _scope(self, ctx: _Context, action: ActionDef, role: str) -> tuple[str, Said]:
        """Who holds ``role`` for ``action`` on the proposal, in words."""
        p = ctx.proposal
        if role == "author":
            return f"the author ({p.author})", Said(N_("the author (%(person)s)"), person=Term("person", p.author))
        if role == "group_chair":
            return self._chair_scope(ctx, action)
        if role == "group_member":
            members = Said(N_("members of the working group %(group)s"), group=Term("group", p.group))
            return f"members of working group {p.group}", members
        if role == "head_of_region":
            text = "heads of the participating regions, each for their own region"
            return text, Said(N_("heads of the participating regions, each for their own region"))
        if role == "presiding_head":
            return self._presiding_scope(ctx, action)
        if role == "secretariat":
            return "the secretariat", Said(N_("the secretariat"))
        return "the system (scheduled review)", Said(N_("the scheduled review"))

    @staticmethod
    def _chair_scope(ctx: _Context, action: ActionDef) -> tuple[str, Said]:
        p = ctx.proposal
        if action.not_author and ctx.chair == p.author and ctx.deputy_chair:
            return (
                f"the deputy chair of working group {p.group} ({ctx.deputy_chair}), as the chair wrote it",
                _deputy_chair_of(p.group, ctx.deputy_chair),
            )
        return (
            f"the chair of working group {p.group} ({ctx.chair})",
            _chair_of(p.group, ctx.chair),
        )

    @staticmethod
    def _presiding_scope(ctx: _Context, action: ActionDef) -> tuple[str, Said]:
        roster, p = ctx.roster, ctx.proposal
        term = roster.presiding_term
        if term is None:
            day = roster.now.date().isoformat()
            return (
                f"the head of the presiding region, but no presiding term covers {day}: "
                "a term must be added to the forum definition",
                Said(
                    N_("the head of the presiding region, but no presiding term covers %(day)s (the secretariat must add one)"),
                    day=day,
                ),
            )
        if action.not_author and p.author in roster.presiding_heads() and term.deputy:
            return (
                f"the deputy for the presiding region {term.region} ({term.deputy}), as its head wrote it",
                _presiding_deputy(term.region, term.deputy),
            )
        return (
            f"the head of the presiding region {term.region}",
            _presiding_head(term.region),
        )

    def allowed(
        self, session: Session, proposal: Proposal, now: dt.datetime, *, forum: People | None = None,
        decided: dict[str, str] | None = None,
    ) -> list[AllowedAction]:
        """The actions possible on ``proposal`` at ``now`` and who may take each (system actions excluded).

        ``forum`` and ``decided`` (the current round's decisions by member, ``{}`` when the proposal is not in a
        round): what the caller has read already; read here when not given.
        """
        return self._allowed(self._context(session, proposal, utc(now), forum, decided))

    def _allowed(self, ctx: _Context) -> list[AllowedAction]:
        """The actions possible on the proposal in ``ctx`` and who may take each (system actions excluded)."""
        proposal = ctx.proposal
        out = []
        for name in self.triggers(proposal.state):
            action = self.actions[name]
            if action.roles == ["system"]:
                continue
            out.append(AllowedAction(name, action.label or name, self._holders(ctx, action), action.comment_required))
        if proposal.state in self.edit_action.source:
            out.append(AllowedAction(EDIT, self.edit_action.label, self._holders(ctx, self.edit_action)))
        return out

    def _allowed_after(
        self, proposal: Proposal, ctx: _Context, action: str, actor: str, round_before: int,
    ) -> list[AllowedAction]:
        """The actions possible once ``action`` by ``actor`` is in, from what ``apply`` read for it (``ctx``).

        The round's decisions are known without reading them: none outside a round or in a new one, the ones read
        plus the actor's after an endorsement or objection; otherwise they are read if a check needs them.
        """
        rnd = self.workflow.endorsement
        decided: dict[str, str] | None = None
        if proposal.state != rnd.state or proposal.round != round_before:
            decided = {}
        elif action in (rnd.endorse, rnd.object):
            decided = ctx.decided | {actor: "endorse" if action == rnd.endorse else "object"}
        return self._allowed(_Context(proposal, ctx.roster, rnd.state, decided))

    def describe_allowed(self, session: Session, proposal: Proposal, now: dt.datetime) -> str:
        """One line: 'allowed now: submit by a; withdraw by a' (or 'no actions possible')."""
        parts = [f"{a.action} by {', '.join(a.actors) or 'nobody'}" for a in self.allowed(session, proposal, now)]
        return "allowed now: " + ("; ".join(parts) if parts else f"none (state {proposal.state} is final)")

    # ------------------------------------------------------------------ creating
    def create_proposal(self, *, session: Session, proposal_in: ProposalCreate, now: dt.datetime) -> Proposal:
        """Create a drafted proposal by a working-group member and write its ``create`` event."""
        now = utc(now)
        data = ProposalCreate.model_validate(proposal_in.model_dump())
        title = " ".join(data.title.split())
        if not title:
            raise InvalidInputError("title must not be empty", Said(N_("The title must not be empty.")))
        group = session.get(WorkingGroup, data.group)
        if group is None or not group.active:
            raise unknown_group(data.group, (g.key for g in self.definition.working_groups))
        author = session.get(Member, data.author)
        if author is None or not author.active:
            raise NotFoundError(f"member {data.author!r} not found", _no_member(data.author))
        if session.get(GroupMembership, (group.key, author.handle)) is None:
            raise NotAllowedError(
                f"{author.handle} is not a member of working group {group.key} and may not propose there",
                Said(
                    N_("You are not a member of the working group %(group)s and may not propose there."),
                    group=Term("group", group.key),
                ),
            )
        proposal = Proposal(
            title=title,
            summary=data.summary,
            body=data.body,
            group=group.key,
            author=author.handle,
            state=self.workflow.initial,
            version=1,
            state_entered_at=now,
            deadline=self._deadline(self.workflow.initial, now),
            created_at=now,
            updated_at=now,
        )
        session.add(proposal)
        session.flush()
        assert proposal.id is not None
        session.add(
            ProposalText(
                proposal_id=proposal.id, version=1, title=title, summary=data.summary, body=data.body,
                author=author.handle, at=now,
            )
        )
        session.add(
            Event(
                proposal_id=proposal.id, seq=1, action=CREATE, from_state="", to_state=proposal.state,
                actor=author.handle, at=now, payload={"title": title, "group": group.key, "text_version": 1},
            )
        )
        session.flush()
        return proposal

    # ------------------------------------------------------------------ editing
    def _load(
        self, session: Session, proposal_id: int, actor: str, now: dt.datetime, expected_version: int | None,
        *, decisions: bool = False,
    ) -> _Loaded:
        """The proposal, ``now`` in UTC and the forum's people, after the checks every change by a member starts with.

        Not found (proposal or active member), a time before the proposal's newest event, a stale version. One
        statement reads the proposal and the definition's generation (and, with ``decisions``, the decisions of
        its current round); the people come from the process's cache while the generation is unchanged.
        """
        if not 0 < proposal_id <= MAX_PROPOSAL_ID:
            raise proposal_not_found(proposal_id)
        rows = flushed_connection(session).execute(_load_statement(decisions), {"pid": proposal_id}).all()
        found = [row for row in rows if row[_ID] is not None]
        if not found:
            raise proposal_not_found(proposal_id)
        (first,) = found
        proposal = proposal_in_row(session, first)
        token = first[_WIDTH]
        decided = None
        if decisions:
            # The decisions of the round in progress; none when the proposal is not in a round.
            in_round = proposal.state == self.workflow.endorsement.state
            decided = {row[-2]: row[-1] for row in rows if row[_ID] is None} if in_round else {}
        # A stale version first: a request that lost a race to a later one is told so (not that its time is earlier).
        if expected_version is not None and proposal.version != expected_version:
            raise ConflictError(
                f"proposal {proposal_id} changed since it was read (version {proposal.version}, expected {expected_version})",
                Said(N_("Someone else changed proposal %(id)s since you read it. Reload it and try again."), id=proposal_id),
            )
        now = utc(now)
        # Every event sets updated_at to the later of it and its own time: it is the newest event's time.
        if now < proposal.updated_at:
            raise InvalidInputError(
                f"proposal {proposal_id}: {shown(now)} is earlier than its newest event ({shown(proposal.updated_at)}): "
                "an action cannot be recorded before it",
                Said(
                    N_("Proposal %(id)s has an event of %(newest)s, later than %(now)s: an action cannot be recorded before it."),
                    id=proposal_id, newest=Term("when", proposal.updated_at), now=Term("when", now),
                ),
            )
        forum = people(session, token, known=True)
        if actor not in forum.members:
            raise NotFoundError(f"member {actor!r} not found", _no_member(actor))
        return _Loaded(proposal, now, forum, decided)

    def _edit_checked(
        self, session: Session, proposal_id: int, actor: str, now: dt.datetime, expected_version: int | None,
    ) -> tuple[Proposal, dt.datetime]:
        """The checks of ``edit`` before the text is looked at; raises as ``edit`` would."""
        loaded = self._load(session, proposal_id, actor, now, expected_version)
        proposal, now = loaded.proposal, loaded.now
        spec = self.edit_action
        if proposal.state not in spec.source:
            raise NotPossibleError(
                f"{EDIT!r} is not possible in state {proposal.state!r}: only a draft ({', '.join(spec.source)}) is edited; "
                f"{self.describe_allowed(session, proposal, now)}",
                Said(
                    N_("Only a draft can be edited; this proposal is “%(state)s”."), state=Term("state", proposal.state)
                ),
            )
        ctx = self._context(session, proposal, now, loaded.people)
        if actor not in self._holders(ctx, spec):
            text, said = self._refusal(ctx, spec, actor)
            raise NotAllowedError(f"{text}; {self.describe_allowed(session, proposal, now)}", said)
        return proposal, now

    def check_edit(self, session: Session, proposal_id: int, actor: str, *, now: dt.datetime) -> None:
        """Raise what ``edit`` would raise before looking at the text; write nothing (a page showing the edit form)."""
        self._edit_checked(session, proposal_id, actor, now, None)

    def edit(
        self, session: Session, proposal_id: int, actor: str, text: ProposalTextEdit, *, now: dt.datetime,
        expected_version: int | None = None,
    ) -> Event | None:
        """Write a new text version of a draft as its author; returns the ``edit`` event, or None if nothing changed.

        The same checks as ``apply`` (not found, stale, state, role and scope), then the fields given in
        ``text`` replace the current ones. A text equal to the current one writes nothing.
        """
        proposal, now = self._edit_checked(session, proposal_id, actor, now, expected_version)
        new = {name: getattr(text, name) if getattr(text, name) is not None else getattr(proposal, name) for name in FIELDS}
        changed = [name for name in FIELDS if new[name] != getattr(proposal, name)]
        if not changed:
            log.debug("proposal %s: edit by %s changes nothing", proposal_id, actor)
            return None
        version = proposal.text_version + 1
        session.add(ProposalText(proposal_id=proposal_id, version=version, author=actor, at=now, **new))
        values = {**new, "text_version": version, "updated_at": now}
        return self._write(session, proposal, EDIT, actor, proposal.state, values, "", {"fields": changed}, now)

    # ------------------------------------------------------------------ applying
    def _deadline(self, state: str, entered: dt.datetime) -> dt.datetime | None:
        sla = self.workflow.state(state).sla_days
        return entered + dt.timedelta(days=sla) if sla else None

    def _checked(
        self, session: Session, proposal_id: int, action: str, actor: str, now: dt.datetime, expected_version: int | None,
    ) -> tuple[Proposal, ActionDef, _Context, dt.datetime]:
        """The checks of ``apply`` that do not depend on the comment or percent; raises as ``apply`` would."""
        if action == EDIT:
            raise InvalidInputError(
                f"{EDIT!r} takes a new text (a title, a summary or a body): it is not taken as an action",
                Said(N_("A new text is written with the edit form: it is not taken as an action.")),
            )
        if action not in self.actions:
            raise unknown_action(action, self.actions)
        spec = self.actions[action]
        # The system actor is the scheduled review's alone: it records its actions through close_round(s),
        # notice(_many) and the consensus that follows an endorsement, never through apply.
        if actor == SYSTEM:
            raise NotAllowedError(
                f"nobody may act as {SYSTEM!r}: its actions are taken by the scheduled review only",
                Said(N_("Nobody may act as the scheduled review.")),
            )
        if SYSTEM in spec.roles:
            raise NotAllowedError(
                f"{actor} may not {action}: only the system (scheduled review) may",
                Said(N_("Only the scheduled review takes the action “%(action)s”."), action=Term("action", action)),
            )
        rnd = self.workflow.endorsement
        loaded = self._load(session, proposal_id, actor, now, expected_version, decisions=action in (rnd.endorse, rnd.object))
        proposal, now = loaded.proposal, loaded.now
        if proposal.state not in spec.source:
            raise NotPossibleError(
                f"{action!r} is not possible in state {proposal.state!r}; {self.describe_allowed(session, proposal, now)}",
                _not_possible(action, proposal.state),
            )
        ctx = self._context(session, proposal, now, loaded.people, loaded.decided)
        if actor not in self._holders(ctx, spec):
            text, said = self._refusal(ctx, spec, actor)
            raise NotAllowedError(f"{text}; {self.describe_allowed(session, proposal, now)}", said)
        return proposal, spec, ctx, now

    def check(
        self, session: Session, proposal_id: int, action: str, actor: str, *, now: dt.datetime,
        expected_version: int | None = None,
    ) -> None:
        """Raise what ``apply`` would raise before looking at a comment or percent; write nothing (a page asking to confirm)."""
        self._checked(session, proposal_id, action, actor, now, expected_version)

    def apply(
        self,
        session: Session,
        proposal_id: int,
        action: str,
        actor: str,
        *,
        comment: str = "",
        percent: int | None = None,
        now: dt.datetime,
        expected_version: int | None = None,
        changed: list[Proposal] | None = None,
        allowed_after: list[AllowedAction] | None = None,
    ) -> list[Event]:
        """Take ``action`` on a proposal as ``actor`` at ``now``; returns the events written (flushed, not committed).

        Checks role and scope, runs the machine, sets state and deadline, writes the event; an endorsement
        that completes consensus also writes the system's ``consensus`` event. Raises and writes nothing
        when the action is unknown, impossible, forbidden or stale. With ``changed``, the proposal's row as the
        action left it is appended to it (the row is read with a Core statement and not kept in the session); with
        ``allowed_after``, the actions possible then (as ``allowed`` gives them), known from what was read.
        """
        proposal, spec, ctx, now = self._checked(session, proposal_id, action, actor, now, expected_version)
        round_before = proposal.round
        if changed is not None:
            changed.append(proposal)
        comment = comment.strip()
        if NUL in comment:
            raise InvalidInputError(
                "comment must not contain a NUL character", Said(N_("The comment must not contain a NUL character."))
            )
        if len(comment) > COMMENT_MAX:
            raise InvalidInputError(
                f"comment: at most {COMMENT_MAX} characters (this one has {len(comment)})",
                Said(N_("The comment may have at most %(n)s characters."), n=COMMENT_MAX),
            )
        if spec.comment_required and not comment:
            raise InvalidInputError(
                f"{action!r} requires a comment (--comment)",
                Said(N_("“%(action)s” needs a comment."), action=Term("action", action)),
            )
        payload: dict[str, Any] = {}
        if spec.percent:
            if percent is None or not 0 <= percent <= 100:
                raise InvalidInputError(
                    f"{action!r} requires a percent between 0 and 100 (--percent)",
                    Said(N_("“%(action)s” needs the progress: a whole number from 0 to 100."), action=Term("action", action)),
                )
            if percent < proposal.percent:
                raise InvalidInputError(
                    f"progress cannot go back from {proposal.percent}% to {percent}%",
                    Said(N_("Progress cannot go back from %(before)s%% to %(after)s%%."), before=proposal.percent, after=percent),
                )
            payload["percent"] = percent
        elif percent is not None:
            raise InvalidInputError(
                f"{action!r} takes no percent",
                Said(N_("“%(action)s” takes no progress percent."), action=Term("action", action)),
            )

        rnd = self.workflow.endorsement
        if action in (rnd.endorse, rnd.object):
            head = ctx.heads[actor]
            assert head.region is not None
            payload |= {"region": head.region, "round": proposal.round}
            decision = {
                "proposal_id": proposal_id, "round": proposal.round, "member": actor, "region": head.region,
                "country": head.region.split("-")[0], "decision": "endorse" if action == rnd.endorse else "object",
                "text_version": proposal.text_version, "at": now,
            }
            try:  # the same head deciding twice at once: the second one to write loses
                session.connection().execute(_insert(EndorsementDecision), decision)
            except IntegrityError as exc:
                if not is_unique_violation(exc, "uq_decision_member"):
                    raise
                raise ConflictError(
                    f"proposal {proposal_id}: {actor} has just decided in round {payload['round']} (at the same time); "
                    "reload and try again",
                    Said(N_("Your decision in this round was recorded at the same moment from elsewhere. Reload the page.")),
                ) from None
        if spec.percent:
            report = {"proposal_id": proposal_id, "percent": percent or 0, "note": comment, "actor": actor, "at": now}
            session.connection().execute(_insert(ProgressReport), report)

        region = lambda: ctx.roster.presiding_region  # noqa: E731
        events = [self._transition(session, proposal, action, actor, comment=comment, payload=payload, now=now, region=region)]
        if action == rnd.endorse and self._consensus(session, proposal, ctx, actor):
            agreed = {"round": payload["round"]}
            events.append(
                self._transition(session, proposal, rnd.consensus, SYSTEM, comment="", payload=agreed, now=now, region=region)
            )
        if allowed_after is not None:
            allowed_after.extend(self._allowed_after(proposal, ctx, action, actor, round_before))
        return events

    def _consensus(self, session: Session, proposal: Proposal, ctx: _Context, new_endorser: str) -> bool:
        """Every member state taking part (with a head of region) has endorsed, none objected."""
        decided = dict(ctx.decided)
        decided[new_endorser] = "endorse"
        if "object" in decided.values():
            return False
        country_of = ctx.roster.people.country_of
        endorsed = {country_of[h] for h, d in decided.items() if d == "endorse" and h in country_of}
        return ctx.roster.people.member_states <= endorsed

    def _transition(
        self, session: Session, proposal: Proposal, action: str, actor: str, *, comment: str,
        payload: dict[str, Any], now: dt.datetime, region: Callable[[], str | None] | None = None,
    ) -> Event:
        """Move the proposal through the machine and write the event; conditional on the version read."""
        old_state = proposal.state
        values, payload = self._transition_values(
            proposal, action, payload, now, region or (lambda: Roster(session, now).presiding_region)
        )
        if values.get("round", 0) > 1:  # a new endorsement round after an earlier one
            payload = payload | self._previous_round(session, proposal)
        return self._write(session, proposal, action, actor, old_state, values, comment, payload, now)

    def _previous_round(self, session: Session, proposal: Proposal) -> dict[str, Any]:
        """For a new endorsement round: who endorsed which text in the round before, and what changed since.

        Endorsements belong to the text they were given to and to their round: they do not count in the new
        one. The payload names the earlier endorsers (so they are asked again) and summarises the change.
        """
        d = EndorsementDecision
        query = select(d.member, d.text_version).where(
            d.proposal_id == proposal.id, d.round == proposal.round, d.decision == "endorse"
        )
        earlier: dict[str, int] = dict(session.exec(query).all())
        if not earlier:
            return {}
        before = max(earlier.values())
        t = ProposalText
        old = session.exec(select(t).where(t.proposal_id == proposal.id, t.version == before)).one()
        change = summarise(old, proposal, from_version=before, to_version=proposal.text_version)
        return {"earlier_endorsers": sorted(earlier), "text_change": change.as_dict()}

    def _transition_values(
        self, proposal: Proposal, action: str, payload: dict[str, Any], now: dt.datetime, region: Callable[[], str | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The columns ``action`` sets on ``proposal`` at ``now`` (through the machine), and the event payload."""
        old_state = proposal.state
        new_state = self.next_state(old_state, action)
        values: dict[str, Any] = {"state": new_state, "updated_at": now}
        if new_state != old_state:
            values |= {"state_entered_at": now, "deadline": self._deadline(new_state, now)}
            if new_state == self.workflow.endorsement.state:
                values["round"] = proposal.round + 1
                payload = payload | {"round": proposal.round + 1}
            if new_state == self.workflow.progress.state:
                values["last_progress_at"] = now
        if new_state in self.approval_states:
            values["presiding_region"] = region()
        if action == self.workflow.progress.action:
            values |= {"last_progress_at": now, "percent": payload["percent"]}
        return values, payload

    def _write(
        self, session: Session, proposal: Proposal, action: str, actor: str, old_state: str,
        values: dict[str, Any], comment: str, payload: dict[str, Any], now: dt.datetime,
    ) -> Event:
        version = proposal.version
        # updated_at is the newest event's time (actions are checked against it): it never goes back.
        values = values | {"updated_at": max(proposal.updated_at, now)}
        # Only the columns that change are set: an index on a column set to its own value is written all the same.
        values = {key: value for key, value in values.items() if getattr(proposal, key) != value} | {"version": version + 1}
        assert proposal.id is not None
        connection = flushed_connection(session)  # rows the caller added first are written first
        params = {f"v_{key}": value for key, value in values.items()} | {"w_id": proposal.id, "w_version": version}
        result = connection.execute(_conditional_update(frozenset(values)), params)
        if result.rowcount != 1:
            raise ConflictError(
                f"proposal {proposal.id} was changed by someone else; reload and try again",
                Said(N_("Someone else changed proposal %(id)s at the same moment. Reload it and try again."), id=proposal.id),
            )
        # The row is already written: update the loaded object without marking it dirty.
        for key, value in values.items():
            set_committed_value(proposal, key, value)
        row = {
            "proposal_id": proposal.id, "seq": version + 1, "action": action, "from_state": old_state,
            "to_state": values.get("state", old_state), "actor": actor, "at": now, "comment": comment,
            "payload": payload | {"text_version": proposal.text_version},  # every event names the text it concerns
        }
        (event_id,) = connection.execute(_insert(Event), row).inserted_primary_key  # type: ignore[misc]
        ev = as_loaded(session, Event, row | {"id": event_id})
        log.debug("proposal %s: %s by %s (%s -> %s)", proposal.id, action, actor, old_state, ev.to_state)
        return ev

    def notice(
        self, session: Session, proposal: Proposal, action: str, *, now: dt.datetime, payload: dict[str, Any],
        values: dict[str, Any] | None = None, comment: str = "",
    ) -> Event:
        """Record a system notice (reminder, escalation, hand-over) that does not change the state."""
        if action not in NOTICES:
            raise ValueError(f"{action!r} is not a notice")
        return self._write(
            session, proposal, action, SYSTEM, proposal.state, dict(values or {}, updated_at=utc(now)), comment, payload, utc(now)
        )

    def notice_many(self, session: Session, notices: Sequence[Notice], *, now: dt.datetime) -> list[int]:
        """Record many system notices at once; returns the new events' ids in the order of ``notices``.

        One conditional UPDATE per proposal (its version moves by its number of notices) and one multi-row
        INSERT of the events: the scheduled review writes thousands of notices in a sweep. A proposal changed
        since it was read raises ConflictError; the caller's transaction must then be rolled back.
        """
        now = utc(now)
        for n in notices:
            if n.action not in NOTICES:
                raise ValueError(f"{n.action!r} is not a notice")
        return self._write_many(
            session, [_Write(n.proposal, n.action, n.proposal.state, dict(n.values), n.payload) for n in notices], now
        )

    def _write_many(self, session: Session, writes: Sequence[_Write], now: dt.datetime) -> list[int]:
        """Write state changes and their events in bulk, by the system actor; event ids in the order of ``writes``."""
        if not writes:
            return []
        by_proposal: dict[int, list[int]] = {}
        for i, w in enumerate(writes):
            if w.proposal.id is None:
                raise ValueError("a write needs a stored proposal")
            by_proposal.setdefault(w.proposal.id, []).append(i)
        connection = session.connection()
        rows: list[dict[str, Any]] = [{} for _ in writes]
        # Proposals whose writes set the same columns share one conditional UPDATE, run as an executemany.
        updates: dict[frozenset[str], list[dict[str, Any]]] = {}
        for pid, indexes in by_proposal.items():
            proposal = writes[indexes[0]].proposal
            version, state = proposal.version, proposal.state
            values: dict[str, Any] = {"updated_at": now}
            for k, i in enumerate(indexes, 1):
                w = writes[i]
                values |= w.values
                rows[i] = {
                    "proposal_id": pid, "seq": version + k, "action": w.action, "from_state": state, "to_state": w.to_state,
                    "actor": SYSTEM, "at": now, "comment": "", "payload": w.payload | {"text_version": proposal.text_version},
                }
                state = w.to_state
            values["updated_at"] = max(proposal.updated_at, now)  # the newest event's time: it never goes back
            values["version"] = version + len(indexes)
            params = {f"v_{key}": value for key, value in values.items()} | {"w_id": pid, "w_version": version}
            updates.setdefault(frozenset(values), []).append(params)
            for key, value in values.items():
                set_committed_value(proposal, key, value)
        for columns, params_list in updates.items():
            result = connection.execute(_conditional_update(columns), params_list)
            if result.rowcount != len(params_list):
                raise ConflictError("a proposal was changed by someone else during the review; reload and try again")
        events = Event.__table__  # type: ignore[attr-defined]
        ids = connection.execute(insert(events).returning(events.c.id, sort_by_parameter_order=True), rows).scalars().all()
        log.debug("%d system events on %d proposals", len(writes), len(by_proposal))
        return [int(i) for i in ids]

    # ------------------------------------------------------------------ reminders sent by hand
    def _reminders_by(self, ctx: _Context) -> set[str]:
        """Who may send a reminder by hand: the group's chair (and the deputy chair who holds the chair's step on
        the chair's own proposal), the heads of the presiding region (and the term's deputy who holds their step)."""
        p, roster = ctx.proposal, ctx.roster
        who = {ctx.chair}
        if ctx.chair == p.author and ctx.deputy_chair:
            who.add(ctx.deputy_chair)
        return who | roster.presiding_heads() | roster.acting_presiding_heads(p.author)

    def _remind_refusal(self, ctx: _Context, actor: str) -> tuple[str, Said]:
        p, roster = ctx.proposal, ctx.roster
        chair = f"the chair of working group {p.group} ({ctx.chair})"
        chairs = [_chair_of(p.group, ctx.chair)]
        if ctx.chair == p.author and ctx.deputy_chair:
            chair += f" or its deputy chair ({ctx.deputy_chair}), as the chair wrote it"
            chairs.append(
                _deputy_chair_of(p.group, ctx.deputy_chair)
            )
        term = roster.presiding_term
        presiding = f"the head of the presiding region {term.region}" if term else "the head of the presiding region"
        heads = [
            _presiding_head(term.region) if term
            else Said(N_("the head of the presiding region"))
        ]
        if term is not None and term.deputy and p.author in roster.presiding_heads():
            presiding += f" or its deputy ({term.deputy}), as its head wrote it"
            heads.append(
                _presiding_deputy(term.region, term.deputy)
            )
        return (
            f"{actor} may not send a reminder on proposal {p.id}: only {chair} or {presiding} may",
            Said(N_("Only %(who)s may send a reminder on this proposal."), who=either(*chairs, *heads)),
        )

    @staticmethod
    def _day_bounds(now: dt.datetime) -> tuple[dt.date, dt.datetime]:
        """The UTC day of ``now`` and the start of the next one."""
        day = now.date()
        return day, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)

    def reminders_by(self, session: Session, proposal: Proposal, now: dt.datetime) -> list[str]:
        """Handles who may send a reminder by hand on ``proposal`` at ``now`` (none once it is final)."""
        if proposal.state in self.final_states:
            return []
        return sorted(self._reminders_by(self._context(session, proposal, utc(now))))

    def reminding(
        self, session: Session, proposal: Proposal, actor: str, now: dt.datetime, *, forum: People | None = None,
        decided: dict[str, str] | None = None,
    ) -> Reminding | None:
        """What a reminder by ``actor`` would do at ``now``; None when ``actor`` may not send one (or it is final).

        ``forum`` and ``decided``: as for ``allowed``.
        """
        now = utc(now)
        if proposal.state in self.final_states:
            return None
        ctx = self._context(session, proposal, now, forum, decided)
        if actor not in self._reminders_by(ctx):
            return None
        return self._reminding(session, ctx, actor, now)

    def _reminding(self, session: Session, ctx: _Context, actor: str, now: dt.datetime) -> Reminding:
        day, next_day = self._day_bounds(now)
        sent = session.exec(
            select(ManualReminder).where(ManualReminder.proposal_id == ctx.proposal.id, ManualReminder.day == day)
        ).first()
        recipients = [h for h in self._must_act(ctx) if h != actor]
        return Reminding(recipients, sent, next_day)

    def remind_now(
        self, session: Session, proposal_id: int, actor: str, *, now: dt.datetime, expected_version: int | None = None,
    ) -> Event:
        """Record a ``remind`` notice by ``actor`` to everyone else who must still act; at most once a UTC day per proposal.

        The event is the member's (the system actor is the scheduler's alone) and names its ``recipients``; the
        outbox mails them as it does the scheduled reminders. A second reminder on the same day is refused, also
        when two are sent at the same moment (the unique key of ``manual_reminder`` decides).
        """
        if actor == SYSTEM:
            raise NotAllowedError(
                f"nobody may act as {SYSTEM!r}: its actions are taken by the scheduled review only",
                Said(N_("Nobody may act as the scheduled review.")),
            )
        loaded = self._load(session, proposal_id, actor, now, expected_version)
        proposal, now = loaded.proposal, loaded.now
        if proposal.state in self.final_states:
            raise NotPossibleError(
                f"proposal {proposal_id} is {proposal.state!r}: nobody has anything left to do",
                Said(
                    N_("Proposal %(id)s is “%(state)s”: nobody has anything left to do."),
                    id=proposal_id, state=Term("state", proposal.state),
                ),
            )
        ctx = self._context(session, proposal, now, loaded.people)
        if actor not in self._reminders_by(ctx):
            raise NotAllowedError(*self._remind_refusal(ctx, actor))
        state = self._reminding(session, ctx, actor, now)
        if state.sent_today is not None:
            sent = state.sent_today
            raise NotPossibleError(
                f"proposal {proposal_id} was already reminded today by {sent.member} at {sent.at:%H:%M} UTC; "
                f"the next reminder may be sent from {state.next_day:%Y-%m-%d %H:%M} UTC",
                Said(
                    N_(
                        "%(person)s already sent a reminder on this proposal today (%(at)s); "
                        "the next one may be sent from %(next)s."
                    ),
                    person=Term("person", sent.member), at=Term("when", sent.at), next=Term("when", state.next_day),
                ),
            )
        if not state.recipients:
            raise NotPossibleError(
                f"nobody but {actor} must act on proposal {proposal_id} now: there is nobody to remind",
                Said(N_("Nobody but you must act on this proposal now: there is nobody to remind.")),
            )
        mark = ManualReminder(proposal_id=proposal_id, day=now.date(), member=actor, at=now)
        session.add(mark)
        try:  # two reminders at the same moment: the second one to write loses here
            session.flush()
        except IntegrityError as exc:
            if not is_unique_violation(exc, "uq_manual_reminder_day"):
                raise
            raise ConflictError(
                f"proposal {proposal_id} was reminded by someone else at the same moment; "
                f"the next reminder may be sent from {state.next_day:%Y-%m-%d %H:%M} UTC",
                Said(
                    N_(
                        "Someone else sent a reminder on this proposal at the same moment; "
                        "the next one may be sent from %(next)s."
                    ),
                    next=Term("when", state.next_day),
                ),
            ) from None
        payload: dict[str, Any] = {"recipients": state.recipients}
        from models.review import plan  # the review imports this module

        todo = plan(self.workflow, proposal)
        if todo is not None:
            payload["deadline"] = todo.deadline.isoformat()
        event = self._write(session, proposal, REMIND, actor, proposal.state, {"updated_at": now}, "", payload, now)
        mark.event_id = event.id
        session.flush()
        log.info("proposal %s: reminder by %s to %s", proposal_id, actor, ", ".join(state.recipients))
        return event

    # ------------------------------------------------------------------ the silence procedure
    def close_round(self, session: Session, proposal_id: int, *, now: dt.datetime) -> Event | None:
        """At or after the round's deadline, endorse under the silence procedure (nobody objected).

        Returns the ``silence`` event, or None when the proposal is not in a round or the deadline
        has not come. An objection always ends the round earlier, so an open round has none.
        """
        now = utc(now)
        proposal = session.get(Proposal, proposal_id)
        if proposal is None:
            raise proposal_not_found(proposal_id)
        rnd = self.workflow.endorsement
        if proposal.state != rnd.state or proposal.deadline is None or now < proposal.deadline:
            return None
        objections = session.exec(
            select(func.count()).select_from(EndorsementDecision).where(
                EndorsementDecision.proposal_id == proposal_id,
                EndorsementDecision.round == proposal.round,
                EndorsementDecision.text_version == proposal.text_version,
                EndorsementDecision.decision == "object",
            )
        ).one()
        if objections:  # cannot happen through apply(); kept so a hand-edited database does not pass silently
            raise ConflictError(f"proposal {proposal_id} has objections in round {proposal.round}")
        endorsed = sorted(
            session.exec(
                select(EndorsementDecision.region).where(
                    EndorsementDecision.proposal_id == proposal_id, EndorsementDecision.round == proposal.round,
                    EndorsementDecision.text_version == proposal.text_version,
                )
            )
        )
        return self._transition(
            session, proposal, rnd.silence, SYSTEM, comment="",
            payload={"round": proposal.round, "endorsed_by": endorsed, "deadline": proposal.deadline.isoformat()},
            now=now,
        )

    def close_rounds(self, session: Session, proposals: Sequence[Proposal], *, now: dt.datetime) -> dict[int, int]:
        """``close_round`` for many proposals with a fixed number of queries; returns closed proposal id -> event id.

        Proposals not in a round, or whose deadline has not come, are left alone; a round with an objection
        (impossible through ``apply``) is left open and logged.
        """
        now = utc(now)
        rnd = self.workflow.endorsement
        due = [p for p in proposals if p.id is not None and p.state == rnd.state and p.deadline is not None and p.deadline <= now]
        if not due:
            return {}
        rounds = {p.id: (p.round, p.text_version) for p in due}
        endorsed: dict[int, list[str]] = {pid: [] for pid in rounds if pid is not None}
        objected: set[int] = set()
        d = EndorsementDecision
        decisions = session.execute(
            sa_select(col(d.proposal_id), col(d.round), col(d.text_version), col(d.region), col(d.decision))
            .where(col(d.proposal_id).in_(list(rounds)))
        )
        for pid, rnd_no, text_version, decided_for, decision in decisions:
            if (rnd_no, text_version) == rounds[pid]:
                endorsed[pid].append(decided_for)
                if decision == "object":
                    objected.add(pid)
        region = functools.cache(lambda: presiding_region(session, now))
        writes = []
        for p in due:
            if p.id in objected:
                log.error("proposal %s has objections in round %s; not closed by silence", p.id, p.round)
                continue
            deadline = p.deadline.isoformat() if p.deadline else None
            payload = {"round": p.round, "endorsed_by": sorted(endorsed.get(p.id or 0, [])), "deadline": deadline}
            values, payload = self._transition_values(p, rnd.silence, payload, now, region)
            writes.append(_Write(p, rnd.silence, values["state"], values, payload))
        ids = self._write_many(session, writes, now)
        return {w.proposal.id or 0: event_id for w, event_id in zip(writes, ids, strict=True)}

    # ------------------------------------------------------------------ reading
    def must_act(self, session: Session, proposal: Proposal, now: dt.datetime) -> list[str]:
        """Handles who must still act on ``proposal`` now (for reminders): holders of its non-withdraw actions."""
        if proposal.state in self.final_states:
            return []
        return self._must_act(self._context(session, proposal, utc(now)))

    def _contexts(
        self, session: Session, proposals: Sequence[Proposal], now: dt.datetime, roster: Roster | None = None,
    ) -> list[_Context]:
        """The permission contexts of the open proposals among ``proposals``, with one query for every round's decisions."""
        roster = roster or Roster(session, now)
        rnd = self.workflow.endorsement.state
        in_round = {p.id: (p.round, p.text_version) for p in proposals if p.state == rnd}
        decided: dict[int, dict[str, str]] = {pid: {} for pid in in_round if pid is not None}
        if in_round:
            d = EndorsementDecision
            rows = session.execute(
                sa_select(col(d.proposal_id), col(d.round), col(d.text_version), col(d.member), col(d.decision))
                .where(col(d.proposal_id).in_(list(in_round)))
            )
            for pid, rnd_no, text_version, member, decision in rows:
                if (rnd_no, text_version) == in_round[pid]:
                    decided[pid][member] = decision
        open_ones = [p for p in proposals if p.id is not None and p.state not in self.final_states]
        return [_Context(p, roster, rnd, decided.get(p.id or 0)) for p in open_ones]

    def must_act_many(
        self, session: Session, proposals: Sequence[Proposal], now: dt.datetime, *, roster: Roster | None = None,
    ) -> dict[int, list[str]]:
        """``must_act`` for many proposals with a fixed number of queries (for the scheduled review)."""
        return {ctx.proposal.id: self._must_act(ctx) for ctx in self._contexts(session, proposals, now, roster)}  # type: ignore[misc]

    def waiting_on(
        self, session: Session, proposals: Sequence[Proposal], handle: str, now: dt.datetime,
    ) -> list[tuple[Proposal, list[AllowedAction]]]:
        """The proposals among ``proposals`` where ``handle`` must act now, each with the actions they may take then.

        As ``must_act`` and ``allowed`` answer one by one, with a fixed number of queries for them all.
        """
        out = []
        for ctx in self._contexts(session, proposals, utc(now)):
            if handle in self._must_act(ctx):
                out.append((ctx.proposal, [a for a in self._allowed(ctx) if handle in a.actors]))
        return out

    def _must_act(self, ctx: _Context) -> list[str]:
        proposal = ctx.proposal
        who: set[str] = set()
        for name in self.triggers(proposal.state):
            spec = self.actions[name]
            if spec.roles == ["system"] or name == "withdraw":
                continue
            if proposal.state == self.workflow.endorsement.state:
                # In a round only heads of states that have not endorsed yet still have to act.
                if name != self.workflow.endorsement.endorse:
                    continue
                country_of = ctx.roster.people.country_of
                done = {country_of[h] for h in ctx.decided if h in country_of}
                who |= {h for h in self._holders(ctx, spec) if country_of[h] not in done}
                continue
            who |= set(self._holders(ctx, spec))
        return sorted(who)


# The proposal's columns by attribute name, in table order (the order a Core SELECT of the table gives them).
_PROPOSAL_KEYS = tuple(c.key for c in Proposal.__table__.columns)  # type: ignore[attr-defined]
_WIDTH, _ID = len(_PROPOSAL_KEYS), _PROPOSAL_KEYS.index("id")


def proposal_in_row(session: Session, row: Sequence[Any]) -> Proposal:
    """The proposal in the first columns of a Core row that selects the table's columns first (in table order).

    The caller's copy when its session holds one (as a query would give it), else a copy of the row only the caller
    holds: the session keeps no instance nobody refers to, so it need not be put there.
    """
    return as_loaded(session, Proposal, dict(zip(_PROPOSAL_KEYS, row[:_WIDTH], strict=True)), attach=False)


@functools.cache
def _load_statement(decisions: bool) -> Any:
    """SELECT the proposal ``:pid`` (its columns in table order) and the definition's generation token.

    With ``decisions``, a row for each decision of its current round follows (UNION ALL): every column NULL but the
    last two, member and decision (a join would repeat the proposal's columns, each read again, on every row).
    The proposal's row is the one with its id.
    """
    p = Proposal.__table__  # type: ignore[attr-defined]
    proposal = sa_select(*p.columns, token_column().label("generation_token")).where(p.c.id == bindparam("pid"))
    if not decisions:
        return proposal
    d = EndorsementDecision.__table__  # type: ignore[attr-defined]
    current = and_(d.c.proposal_id == p.c.id, d.c.round == p.c.round, d.c.text_version == p.c.text_version)
    decided = (
        sa_select(*[null() for _ in p.columns], null(), d.c.member, d.c.decision)
        .select_from(d.join(p, current)).where(p.c.id == bindparam("pid"))
    )
    return union_all(proposal.add_columns(null().label("decided_member"), null().label("decided")), decided)


@functools.cache
def _insert(model: type[Any]) -> Any:
    """INSERT INTO the table of ``model`` (a Core statement: the columns are those of the parameters given)."""
    return insert(model.__table__)


@functools.cache
def _conditional_update(columns: frozenset[str]) -> Any:
    """UPDATE proposal SET <columns> WHERE id = :w_id AND version = :w_version, with bind names v_<column>."""
    table = Proposal.__table__  # type: ignore[attr-defined]
    return (
        update(table)
        .where(table.c.id == bindparam("w_id"), table.c.version == bindparam("w_version"))
        .values({table.c[name]: bindparam(f"v_{name}") for name in sorted(columns)})
    )


def _heads(session: Session) -> dict[str, Member]:
    """Active heads of region (with a region) by handle."""
    return {
        m.handle: m
        for m in session.exec(select(Member).where(col(Member.roles).contains("head_of_region"), Member.active))
        if "head_of_region" in m.role_set and m.region
    }


def _secretariat(session: Session) -> set[str]:
    """Handles of the active secretariat."""
    return {
        m.handle
        for m in session.exec(select(Member).where(col(Member.roles).contains("secretariat"), Member.active))
        if "secretariat" in m.role_set
    }


def presiding_term(session: Session, now: dt.datetime) -> PresidingTerm | None:
    """The presiding term that covers ``now`` (its UTC date), if any."""
    day = utc(now).date()
    return session.exec(select(PresidingTerm).where(PresidingTerm.start <= day, PresidingTerm.end >= day)).first()


def presiding_region(session: Session, now: dt.datetime) -> str | None:
    """The region whose presiding term covers ``now`` (its UTC date), if any."""
    term = presiding_term(session, now)
    return term.region if term else None


def find_proposal(session: Session, proposal_id: int) -> Proposal:
    """The proposal, or NotFoundError (also for an id no proposal row can have)."""
    proposal = session.get(Proposal, proposal_id) if 0 < proposal_id <= MAX_PROPOSAL_ID else None
    if proposal is None:
        raise proposal_not_found(proposal_id)
    return proposal


def events_of(session: Session, proposal_id: int) -> list[Event]:
    """A proposal's events in order."""
    return list(session.exec(select(Event).where(Event.proposal_id == proposal_id).order_by(col(Event.seq))))


def proposals_in(session: Session, states: Iterable[str]) -> list[Proposal]:
    """Proposals in any of ``states``, by id."""
    return list(session.exec(select(Proposal).where(col(Proposal.state).in_(list(states))).order_by(col(Proposal.id))))
