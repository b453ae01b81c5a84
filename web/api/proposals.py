"""Proposals: list and search, read (with ETag), events, text versions and diffs; create, edit a draft, take actions.

Every write to an existing proposal needs ``If-Match`` with the ETag the client read (``"{id}-{version}"``):
428 without it, 412 when the proposal changed since (also when another client's write wins a race at the
same moment). The lifecycle decides everything else; its refusals come back with its own message and the
actions possible now.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from sqlmodel import Session

from models.details import proposal_read
from models.errors import PLAIN, ConflictError, ForumflowError, NotAllowedError
from models.lifecycle import AllowedAction, Lifecycle, events_of, find_proposal, unknown_action
from models.search import LIMIT_MAX, OFFSET_MAX, QUERY_MAX, search_proposals
from models.tables import Event, Proposal
from models.texts import TextInfo, diff_view, proposal_create, text_edit, text_info, version_of, versions_of
from web.api.schemas import (
    ActionIn,
    AllowedOut,
    DiffOut,
    EventOut,
    EventsOut,
    ProposalDetailOut,
    ProposalIn,
    ProposalListOut,
    ProposalOut,
    TextEditIn,
    TextInfoOut,
    TextOut,
    etag_of,
)
from web.deps import ApiMember, Caller, DbSession, Now, State, request_time
from web.errors import ApiProblem, problem_responses, status_for
from web.routing import OneHopRoute
from web.state import WebState
from web.units import write_unit

log = logging.getLogger(__name__)

router = APIRouter(prefix="/proposals", tags=["proposals"], route_class=OneHopRoute)

READ = (401, 404, 422)
WRITE = (400, 401, 403, 404, 409, 412, 413, 415, 422, 428)
# Text versions and ids beyond these are not found (and never reach the database's integer columns).
VERSION_MAX = 2**31 - 1
ETAG_HEADER = {"ETag": {"description": 'The proposal\'s ETag, "{id}-{version}".', "schema": {"type": "string"}}}
_TAG = re.compile(r'"(\d{1,19})-(\d{1,19})"')

ProposalId = Annotated[int, Path(description="The proposal's id.")]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", max_length=1000, description="The ETag of the version read (428 without it, 412 if stale)."),
]


# ---------------------------------------------------------------------- building answers
def _detail(
    db: Session, state: WebState, p: Proposal, who: Caller, now: dt.datetime, allowed: list[AllowedAction] | None = None,
    text: TextInfo | None = None,
) -> ProposalDetailOut:
    """The proposal with its current text and what may happen next (``allowed`` and ``text``, when the caller has them)."""
    if text is None:
        text = text_info(db, p)
    if allowed is None:
        allowed = state.runtime.lifecycle.allowed(db, p, now)
    return _detail_of(state, p, who, now, allowed, text)


def _detail_of(
    state: WebState, p: Proposal, who: Caller, now: dt.datetime, allowed: list[AllowedAction], text: TextInfo,
) -> ProposalDetailOut:
    """The proposal with its current text and the actions possible now, all given (no database)."""
    lifecycle: Lifecycle = state.runtime.lifecycle
    assert p.id is not None
    base = ProposalOut.fields_of(p, now=now, base_url=state.settings.base_url, final_states=lifecycle.final_states)
    return ProposalDetailOut(
        **base, body=p.body, text=TextInfoOut(version=text.version, author=text.author, at=text.at),
        allowed=[
            AllowedOut(action=a.action, label=a.label, actors=a.actors, comment_required=a.comment_required) for a in allowed
        ],
        my_actions=[a.action for a in allowed if who.member.handle in a.actors],
    )


def _tags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def _matching(db: Session, proposal_id: int, if_match: str | None) -> Proposal:
    """The proposal, if ``If-Match`` names its current version: 404, 428 (missing) or 412 (stale) otherwise."""
    p = find_proposal(db, proposal_id)
    tags = _tags(if_match or "")
    if not tags or "*" in tags:
        given = "If-Match: * matches any version; name" if tags else "send If-Match with"
        raise ApiProblem(
            428, f"{given} the ETag of the version of proposal {proposal_id} you read (GET it first): "
            "writes never overwrite a change you have not seen",
        )
    if etag_of(p) not in tags:
        named = [m for t in tags if (m := _TAG.fullmatch(t)) and int(m.group(1)) == proposal_id]
        read = f"version {named[0].group(2)}" if named else "no version of it"
        raise ApiProblem(
            412, f"proposal {proposal_id} is at version {p.version}, If-Match names {read}: reload it and try again",
        )
    return p


def _named_version(proposal_id: int, if_match: str | None) -> int | None:
    """The one version of this proposal that ``If-Match`` names (then the lifecycle checks it: no read before), else None."""
    named = [int(m.group(2)) for t in _tags(if_match or "") if (m := _TAG.fullmatch(t)) and int(m.group(1)) == proposal_id]
    return named[0] if len(named) == 1 and "*" not in _tags(if_match or "") else None


def _refused(db: Session, state: WebState, exc: NotAllowedError, proposal_id: int, who: Caller, now: dt.datetime) -> ApiProblem:
    """The lifecycle's refusal, with the actions possible now (and the caller's own) as extension members (read in
    ``db`` as the refused request left it: nothing of it may be left there)."""
    p = find_proposal(db, proposal_id)
    allowed = state.runtime.lifecycle.allowed(db, p, now)
    return ApiProblem(
        status_for(exc), exc.for_reader(PLAIN),
        allowed_actions=[
            {"action": a.action, "label": a.label, "actors": a.actors, "comment_required": a.comment_required} for a in allowed
        ],
        my_actions=[a.action for a in allowed if who.member.handle in a.actors],
    )


def _answer(db: Session, state: WebState, exc: ForumflowError, proposal_id: int, who: Caller, now: dt.datetime) -> BaseException:
    """What answers a write's domain error: a refusal with the actions possible now (``_refused``), 412 for a stale
    version, else the error itself. ``db`` must hold nothing of the refused write."""
    if isinstance(exc, NotAllowedError):
        return _refused(db, state, exc, proposal_id, who, now)
    if isinstance(exc, ConflictError):
        return ApiProblem(412, f"{exc}")
    return exc


# ---------------------------------------------------------------------- taking actions
# The first route of the router: FastAPI tries a router's routes in order, and this is the API's busiest one.
@router.post(
    "/{proposal_id}/actions/{action}", response_model=EventsOut,
    responses={200: {"headers": ETAG_HEADER}, **problem_responses(*WRITE)},
)
async def take_action(
    request: Request,
    proposal_id: ProposalId,
    action: Annotated[str, Path(max_length=40, description="The action, e.g. submit, recommend, endorse, approve.")],
    body: Annotated[ActionIn | None, Body()] = None, if_match: IfMatch = None,
) -> Response:
    """Take an action as the caller; returns the events written (an endorsement may complete consensus too).

    The busiest write of the API, so its database work is one unit (``web.units``): the caller, the action and
    the commit, on the event loop on SQLite. The answer is then built from what the action read and wrote.
    """
    state: WebState = request.app.state.web
    given = body or ActionIn()
    work = functools.partial(_act, state, proposal_id, action, given, if_match)
    refusal = functools.partial(_act_refused, state, proposal_id, action, if_match)
    who, (events, p, allowed, text) = await write_unit(request, work, refusal)
    now = request_time(request)
    answer = EventsOut(events=[EventOut.of(e) for e in events], proposal=_detail_of(state, p, who, now, allowed, text))
    return Response(answer.model_dump_json(), media_type="application/json", headers={"ETag": etag_of(p)})


def _act(
    state: WebState, proposal_id: int, action: str, given: ActionIn, if_match: str | None,
    db: Session, who: Caller, now: dt.datetime,
) -> tuple[list[Event], Proposal, list[AllowedAction], TextInfo]:
    """The action in ``db`` (not committed): the events written, the proposal as they left it, the actions possible
    then, and its current text. A refusal is answered by ``_act_refused``."""
    lifecycle = state.runtime.lifecycle
    if action not in lifecycle.actions:  # bad input first: 422 whatever the ETag
        raise unknown_action(action, lifecycle.actions)
    expected = _named_version(proposal_id, if_match)
    if expected is None:  # no single version of this proposal named: _matching answers (428, 404 or 412)
        expected = _matching(db, proposal_id, if_match).version
    kept: list[Proposal] = []
    allowed: list[AllowedAction] = []
    events = lifecycle.apply(
        db, proposal_id, action, who.member.handle, comment=given.comment, percent=given.percent, now=now,
        expected_version=expected, changed=kept, allowed_after=allowed,
    )
    (p,) = kept  # the row apply read and changed
    return events, p, allowed, text_info(db, p)  # the text in the action's transaction: one small read


def _act_refused(
    state: WebState, proposal_id: int, action: str, if_match: str | None,
    db: Session, who: Caller, now: dt.datetime, exc: ForumflowError,
) -> BaseException:
    """The answer to the action's refusal, read with nothing of the action in ``db``: as if If-Match had been checked
    first (404 or 412 before anything else), else the lifecycle's own refusal. An unknown action stays 422."""
    if action not in state.runtime.lifecycle.actions:
        return exc
    _matching(db, proposal_id, if_match)
    return _answer(db, state, exc, proposal_id, who, now)


# ---------------------------------------------------------------------- reading
@router.get("", response_model=ProposalListOut, responses=problem_responses(*READ))
def list_proposals(
    who: ApiMember, db: DbSession, now: Now, state: State,
    in_state: Annotated[str | None, Query(alias="state", max_length=40, description="Only proposals in this state.")] = None,
    group: Annotated[str | None, Query(max_length=40, description="Only this working group's proposals (its key).")] = None,
    overdue: Annotated[bool, Query(description="Only open proposals whose deadline has passed.")] = False,
    q: Annotated[
        str | None, Query(max_length=QUERY_MAX, description="Text in the title, summary or body (any case), or an id."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX, description="Proposals per page.")] = 20,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX, description="How many to skip.")] = 0,
    page: Annotated[
        int | None, Query(ge=1, le=OFFSET_MAX // LIMIT_MAX, description="Page number from 1 (instead of offset: wins over it)."),
    ] = None,
) -> ProposalListOut:
    """Proposals matching every filter given, by id, one page at a time (``limit`` with ``offset`` or ``page``)."""
    start = (page - 1) * limit if page is not None else offset
    lifecycle = state.runtime.lifecycle
    found = search_proposals(
        db, lifecycle, now=now, state=in_state, group=group, overdue=overdue, q=q, limit=limit, offset=start,
    )
    base_url, final = state.settings.base_url, lifecycle.final_states
    return ProposalListOut(
        items=[ProposalOut.of(p, now=now, base_url=base_url, final_states=final) for p in found.items],
        total=found.total, limit=found.limit, offset=found.offset,
        next_offset=found.offset + found.limit if found.offset + found.limit < found.total else None,
    )


@router.get(
    "/{proposal_id}", response_model=ProposalDetailOut,
    responses={
        200: {"headers": ETAG_HEADER},
        304: {"description": "Not Modified: If-None-Match names the current version", "headers": ETAG_HEADER},
        **problem_responses(*READ),
    },
)
def get_proposal(
    proposal_id: ProposalId, who: ApiMember, db: DbSession, now: Now, state: State, response: Response,
    if_none_match: Annotated[
        str | None, Header(alias="If-None-Match", max_length=1000, description="An ETag read before: 304 if still current."),
    ] = None,
) -> Any:
    """A proposal: its current text in full, state, deadline, and the actions possible now (with ``ETag``)."""
    read = proposal_read(db, proposal_id)  # with its current text's author and the roster, in one statement
    p = read.proposal
    tag = etag_of(p)
    tags = _tags(if_none_match or "")
    if "*" in tags or tag in tags or f"W/{tag}" in tags:
        return Response(status_code=304, headers={"ETag": tag, "Cache-Control": "private, no-cache"})
    response.headers["ETag"] = tag
    response.headers["Cache-Control"] = "private, no-cache"
    return _detail(db, state, p, who, now, state.runtime.lifecycle.allowed(db, p, now, forum=read.people), read.text)


@router.get("/{proposal_id}/events", response_model=list[EventOut], responses=problem_responses(*READ))
def get_events(proposal_id: ProposalId, who: ApiMember, db: DbSession) -> list[EventOut]:
    """The proposal's full timeline, oldest first: every event, who and when, reminders and escalations included."""
    find_proposal(db, proposal_id)
    return [EventOut.of(e) for e in events_of(db, proposal_id)]


@router.get("/{proposal_id}/texts", response_model=list[TextOut], responses=problem_responses(*READ))
def get_texts(proposal_id: ProposalId, who: ApiMember, db: DbSession) -> list[TextOut]:
    """Every text version of the proposal, oldest first."""
    return [TextOut.of(t) for t in versions_of(db, proposal_id)]


@router.get("/{proposal_id}/texts/{version}", response_model=TextOut, responses=problem_responses(*READ))
def get_text(
    proposal_id: ProposalId, version: Annotated[int, Path(ge=1, le=VERSION_MAX, description="The text version.")],
    who: ApiMember, db: DbSession,
) -> TextOut:
    """One text version of the proposal, in full."""
    return TextOut.of(version_of(db, proposal_id, version))


@router.get(
    "/{proposal_id}/diff", response_model=DiffOut, responses=problem_responses(*READ), response_model_exclude_none=True,
)
def get_diff(
    proposal_id: ProposalId, who: ApiMember, db: DbSession,
    from_version: Annotated[
        int | None, Query(alias="from", ge=1, le=VERSION_MAX, description="The older version (default: the one before `to`)."),
    ] = None,
    to_version: Annotated[
        int | None, Query(alias="to", ge=1, le=VERSION_MAX, description="The newer version (default: the current one)."),
    ] = None,
) -> DiffOut:
    """The changes between two text versions: a unified diff and word-by-word changes per field."""
    return DiffOut.model_validate(diff_view(db, proposal_id, from_version=from_version, to_version=to_version))


# ---------------------------------------------------------------------- writing
@router.post(
    "", response_model=ProposalDetailOut, status_code=201,
    responses={
        201: {"headers": {**ETAG_HEADER, "Location": {"description": "The new proposal.", "schema": {"type": "string"}}}},
        **problem_responses(400, 401, 403, 413, 415, 422),
    },
)
def create_proposal(
    body: Annotated[ProposalIn, Body()], who: ApiMember, db: DbSession, now: Now, state: State,
    request: Request, response: Response,
) -> ProposalDetailOut:
    """Draft a new proposal in a working group the caller belongs to (its text version 1); 201 with Location and ETag."""
    data = proposal_create(group=body.group, author=who.member.handle, title=body.title, summary=body.summary, body=body.body)
    p = state.runtime.lifecycle.create_proposal(session=db, proposal_in=data, now=now)  # an unknown group: 422
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/proposals/{p.id}"
    response.headers["ETag"] = etag_of(p)
    log.info("proposal %s drafted by %s through the API", p.id, who.member.handle)
    return _detail(db, state, p, who, now)


@router.patch(
    "/{proposal_id}", response_model=ProposalDetailOut,
    responses={200: {"headers": ETAG_HEADER}, **problem_responses(*WRITE)},
)
def edit_proposal(
    proposal_id: ProposalId, body: Annotated[TextEditIn, Body()], who: ApiMember, db: DbSession, now: Now,
    state: State, response: Response, if_match: IfMatch = None,
) -> ProposalDetailOut:
    """Write a new text version of a draft (its author only); the fields given replace the current ones.

    A text equal to the current one writes nothing and keeps the ETag.
    """
    edit = text_edit(title=body.title, summary=body.summary, body=body.body)  # bad input first: 422 whatever the ETag
    p = _matching(db, proposal_id, if_match)
    try:
        state.runtime.lifecycle.edit(db, proposal_id, who.member.handle, edit, now=now, expected_version=p.version)
    except (NotAllowedError, ConflictError) as exc:
        db.rollback()  # nothing of the refused edit stays (a failed flush leaves the session needing it)
        raise _answer(db, state, exc, proposal_id, who, now) from None
    response.headers["ETag"] = etag_of(p)
    return _detail(db, state, p, who, now)
