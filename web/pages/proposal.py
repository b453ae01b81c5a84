"""A proposal's page and the forms that change it: actions, the confirmation page of mail links, new, edit, remind.

Every change goes through the lifecycle (``apply``, ``edit``, ``create_proposal``, ``remind_now``); a refusal
shows the page again with the lifecycle's own message and the status ``web.errors.status_for`` gives it, and
what the member typed is kept. Success redirects (303) back to the page, which says what was done.
"""

from __future__ import annotations

import datetime as dt
import functools
import gettext
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import pycountry
from fastapi import APIRouter, Form, Query
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session, col, select

from models.details import endorsement_board, progress_reports, proposal_read, timeline
from models.errors import ForumflowError, NotFoundError
from models.lifecycle import EDIT, SYSTEM, Lifecycle, find_proposal
from models.queries import is_overdue
from models.tables import EMPTY, HAS_NUL, GroupMembership, ProposalCreate, ProposalTextEdit, WorkingGroup
from models.textdiff import FIELDS
from models.texts import diff_view
from notifications.render import region_label
from web.deps import DbSession, MemberPage, Now, Page
from web.errors import status_for
from web.i18n import N_
from web.routing import OneHopRoute

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)

# Timeline labels of the events that are not actions of the workflow (those have labels of their own).
EVENT_LABELS = {
    "create": N_("Created"),
    "edit": N_("New text version"),
    "remind": N_("Reminder"),
    "escalate": N_("Escalation"),
    "handover": N_("Handed over to the new presiding region"),
    "progress_due": N_("Progress report requested"),
}
# What the page says after a change (``?done=...``); workflow actions say "Done: <action>".
DONE_MESSAGES = {
    "create": N_("The proposal was created as a draft."),
    "edit": N_("The new text version was saved."),
    "unchanged": N_("Nothing changed: the text is the same as the current version."),
    "remind": N_("The reminder was sent to those who have not acted."),
}
NO_VERSION = N_("This form does not say which version of the proposal it was filled in on. Reload the page and try again.")
FIELD_LABELS = {"title": N_("Title"), "summary": N_("Summary"), "body": N_("Text"), "group": N_("Working group")}


@dataclass
class Typed:
    """What the member typed into an action form, and why it was refused (kept when the page is shown again)."""

    action: str = ""
    comment: str = ""
    percent: str = ""
    error: str = ""


@dataclass
class TextForm:
    """The fields of the new-proposal or edit form, as typed, and the problems found per field."""

    title: str = ""
    summary: str = ""
    body: str = ""
    group: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class TimelineItem:
    """One event as the timeline shows it."""

    seq: int
    action: str
    label: str
    actor: str
    at: dt.datetime
    from_state: str
    to_state: str
    comment: str
    text_version: int | None
    recipients: list[str]
    details: list[str]


def _lines(value: str) -> str:
    """Line ends as the models store them (browsers send CRLF from a textarea)."""
    return value.replace("\r\n", "\n").replace("\r", "\n")


@functools.cache
def country_label(code: str, lang: str) -> str:
    """A member state's name in ``lang`` where pycountry has it, else its ISO name."""
    country = pycountry.countries.get(alpha_2=code)
    if country is None:
        return code
    name = str(getattr(country, "common_name", None) or country.name)
    if lang != "en":
        try:
            translated = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang])
            name = translated.gettext(str(country.name)) if name == country.name else translated.gettext(name)
        except OSError:
            pass
    return name


def _int(value: str | None) -> int | None:
    """A whole number typed in a form or query (None when empty); ValueError when it is not one."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not text.lstrip("-").isdigit() or len(text) > 20:
        raise ValueError(value)
    return int(text)


# ---------------------------------------------------------------------- the page
def _timeline(page: Page, lifecycle: Lifecycle, db: Session, proposal_id: int, names: Mapping[str, str]) -> list[TimelineItem]:
    ui = page.ui
    items = []
    for ev in timeline(db, proposal_id):
        payload = ev.payload or {}
        label = ui.gettext(EVENT_LABELS[ev.action]) if ev.action in EVENT_LABELS else ui.action(ev.action)
        recipients = payload.get("recipients")
        details: list[str] = []
        if isinstance(payload.get("percent"), int):
            details.append(ui.gettext("Progress: %(percent)s%%") % {"percent": payload["percent"]})
        if ev.action in (lifecycle.workflow.endorsement.endorse, lifecycle.workflow.endorsement.object) and payload.get("region"):
            details.append(ui.gettext("For %(region)s") % {"region": region_label(str(payload["region"]), ui.lang)})
        if isinstance(payload.get("level"), int):
            details.append(ui.gettext("Escalation level %(level)s") % {"level": payload["level"]})
        if payload.get("to_region"):
            details.append(ui.gettext("Now presiding: %(region)s") % {"region": region_label(str(payload["to_region"]), ui.lang)})
        if ev.action == EDIT and isinstance(payload.get("fields"), list):
            changed = ", ".join(ui.gettext(FIELD_LABELS.get(str(f), str(f))) for f in payload["fields"])
            details.append(ui.gettext("Changed: %(fields)s") % {"fields": changed})
        version = payload.get("text_version")
        items.append(
            TimelineItem(
                seq=ev.seq, action=ev.action, label=label,
                actor=ui.gettext("The scheduled review") if ev.actor == SYSTEM else names.get(ev.actor, ev.actor),
                at=ev.at, from_state=ev.from_state, to_state=ev.to_state, comment=ev.comment,
                text_version=version if isinstance(version, int) else None,
                recipients=[names.get(str(h), str(h)) for h in recipients] if isinstance(recipients, list) else [],
                details=details,
            )
        )
    return items


def _diff(
    page: Page, db: Session, proposal_id: int, current: int, from_: str | None, to: str | None,
) -> tuple[dict[str, Any] | None, str]:
    """The differences to show (None with one version only) and a problem with the chosen versions, if any."""
    try:
        from_v, to_v = _int(from_), _int(to)
    except ValueError:
        return None, page.ui.gettext("Choose two text versions by their numbers.")
    if current < 2 and from_v is None and to_v is None:
        return None, ""
    try:
        return diff_view(db, proposal_id, from_version=from_v, to_version=to_v), ""
    except NotFoundError:
        return None, page.ui.gettext("There is no such text version: versions are numbered 1 to %(n)s.") % {"n": current}


def render_proposal(
    page: Page, db: Session, now: dt.datetime, proposal_id: int, *, status: int = 200, typed: Typed | None = None,
    error: str = "", done: str = "", from_: str | None = None, to: str | None = None,
) -> Response:
    """The proposal's page for the signed-in member (``typed``: an action form to show again with its problem)."""
    assert page.viewer is not None
    runtime = page.state.runtime
    lifecycle, definition = runtime.lifecycle, runtime.definition
    handle = page.viewer.member.handle
    # The proposal, its current text and the cached roster (names, heads, chairs) in one read, the roster handed to
    # everything below that would read it again.
    read = proposal_read(db, proposal_id)
    p, forum = read.proposal, read.people
    names = forum.names
    board = endorsement_board(db, lifecycle, p, list(definition.member_states), forum.heads)
    decided = board.decided if board is not None else None  # the round's decisions, read with the board
    allowed = lifecycle.allowed(db, p, now, forum=forum, decided=decided)
    mine = [a for a in allowed if handle in a.actors and a.action != EDIT]
    can_edit = any(a.action == EDIT and handle in a.actors for a in allowed)
    diff, diff_error = _diff(page, db, proposal_id, p.text_version, from_, to)
    if diff_error and status == 200:
        status = 422
    # A progress report is written with the proposal's last_progress_at, in the same transaction: none without it.
    reports = progress_reports(db, proposal_id) if p.last_progress_at is not None else []
    done_message = ""
    if done in DONE_MESSAGES:
        done_message = page.ui.gettext(DONE_MESSAGES[done])
    elif done in lifecycle.actions:
        done_message = page.ui.gettext("Done: %(action)s.") % {"action": page.ui.action(done)}
    groups = page.group_names
    return page.render(
        "proposal.html", status=status,
        # Text versions are numbered 1, 2, ... up to the current one (create writes 1, each edit the next).
        p=p, text=read.text, versions=list(range(1, p.text_version + 1)),
        group_name=groups.get(p.group, p.group), names=names,
        actions=[(a, lifecycle.actions[a.action]) for a in mine], can_edit=can_edit,
        reminding=lifecycle.reminding(db, p, handle, now, forum=forum, decided=decided),
        diff=diff, diff_error=diff_error, fields=FIELDS, field_labels=FIELD_LABELS,
        board=board, country_label=country_label, region_label=region_label,
        progress_state=lifecycle.workflow.progress.state, reports=reports,
        timeline=_timeline(page, lifecycle, db, proposal_id, names),
        typed=typed or Typed(), error=error, done=done_message, final=p.state in lifecycle.final_states,
        # A refused comment whose action is no longer offered (someone else acted meanwhile) has no form to go back
        # into: it is shown by itself, so it is not lost.
        unsent=bool(typed and typed.comment.strip() and typed.action not in {a.action for a in mine}),
        overdue=is_overdue(lifecycle, p, now),
    )


@router.get("/proposals/{proposal_id:int}")
def proposal_page(
    page: MemberPage, db: DbSession, now: Now, proposal_id: int,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
    done: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    """The proposal: text, differences between versions, my actions, the round, progress and the timeline."""
    return render_proposal(page, db, now, proposal_id, done=done, from_=from_, to=to)


# ---------------------------------------------------------------------- actions
def _refused(page: Page, db: Session, now: dt.datetime, proposal_id: int, exc: ForumflowError, typed: Typed) -> Response:
    """The page again, after a refusal: the lifecycle's message, what was typed, the status of the refusal."""
    db.rollback()  # nothing of the refused request stays (a failed flush leaves the session needing it)
    typed.error = page.say(exc)
    return render_proposal(page, db, now, proposal_id, status=status_for(exc), typed=typed, error=typed.error)


def _bad_form(page: Page, db: Session, now: dt.datetime, proposal_id: int, message: str, typed: Typed) -> Response:
    typed.error = message
    return render_proposal(page, db, now, proposal_id, status=422, typed=typed, error=message)


FormText = Annotated[str, Form()]


@router.post("/proposals/{proposal_id:int}/actions/{action}")
def take_action(
    page: MemberPage, db: DbSession, now: Now, proposal_id: int, action: str,
    expected_version: FormText = "", comment: FormText = "", percent: FormText = "",
) -> Response:
    """Take ``action`` through the lifecycle, refused if the proposal changed since the form was shown."""
    assert page.viewer is not None
    typed = Typed(action=action, comment=_lines(comment), percent=percent)
    try:
        version = _int(expected_version)
    except ValueError:
        version = None
    if version is None:
        return _bad_form(page, db, now, proposal_id, page.ui.gettext(NO_VERSION), typed)
    try:
        amount = _int(percent)
    except ValueError:
        message = page.ui.gettext("Enter the progress as a whole number from 0 to 100.")
        return _bad_form(page, db, now, proposal_id, message, typed)
    try:
        page.state.runtime.lifecycle.apply(
            db, proposal_id, action, page.viewer.member.handle, comment=typed.comment, percent=amount, now=now,
            expected_version=version,
        )
    except ForumflowError as exc:
        return _refused(page, db, now, proposal_id, exc, typed)
    return page.redirect(f"/proposals/{proposal_id}?done={action}")


@router.get("/proposals/{proposal_id:int}/actions/{action}")
def confirm_action(page: MemberPage, db: DbSession, now: Now, proposal_id: int, action: str) -> Response:
    """Ask to confirm ``action`` (a mail's link opens this; mail scanners open links: only the POST acts)."""
    assert page.viewer is not None
    lifecycle = page.state.runtime.lifecycle
    p = find_proposal(db, proposal_id)
    spec = lifecycle.actions.get(action)
    if spec is None or action == EDIT:
        raise NotFoundError(f"proposal {proposal_id} has no action {action!r}")
    problem, status = "", 200
    try:
        lifecycle.check(db, proposal_id, action, page.viewer.member.handle, now=now)
    except ForumflowError as exc:
        problem, status = page.say(exc), status_for(exc)
    return page.render(
        "action_confirm.html", status=status, p=p, action=action, spec=spec, problem=problem, typed=Typed(action=action),
    )


@router.post("/proposals/{proposal_id:int}/remind")
def remind(page: MemberPage, db: DbSession, now: Now, proposal_id: int, expected_version: FormText = "") -> Response:
    """Remind those who have not acted (the chair or the presiding region; at most once a day per proposal)."""
    assert page.viewer is not None
    try:
        version = _int(expected_version)
    except ValueError:
        version = None
    try:
        page.state.runtime.lifecycle.remind_now(db, proposal_id, page.viewer.member.handle, now=now, expected_version=version)
    except ForumflowError as exc:
        return _refused(page, db, now, proposal_id, exc, Typed(action="remind"))
    return page.redirect(f"/proposals/{proposal_id}?done=remind")


# ---------------------------------------------------------------------- new and edit
def _field_errors(page: Page, exc: ValidationError) -> dict[str, str]:
    """The input model's problems by field (the first one per field), in the reader's words."""
    out: dict[str, str] = {}
    for problem in exc.errors():
        where = str(problem["loc"][0]) if problem["loc"] else "title"
        out.setdefault(where, _problem_text(page, problem))
    return out


def _problem_text(page: Page, problem: Mapping[str, Any]) -> str:
    """One problem of a form field, as the reader reads it."""
    ctx = problem.get("ctx") or {}
    kind = problem["type"]
    error = str(ctx.get("error", ""))
    if kind == "string_too_long":
        return page.ui.gettext("At most %(n)s characters.") % {"n": ctx.get("max_length")}
    if kind in ("string_too_short", "missing") or error == EMPTY:
        return page.ui.gettext("This must not be empty.")
    if error == HAS_NUL:
        return page.ui.gettext("This must not contain a NUL character.")
    return page.ui.gettext("This is not valid here.")


def _my_groups(db: Session, handle: str) -> list[WorkingGroup]:
    query = (
        select(WorkingGroup)
        .join(GroupMembership, col(GroupMembership.group_key) == col(WorkingGroup.key))
        .where(GroupMembership.member == handle, col(WorkingGroup.active))
        .order_by(col(WorkingGroup.name))
    )
    return list(db.exec(query))


def _new_form(page: Page, db: Session, form: TextForm, status: int = 200) -> Response:
    assert page.viewer is not None
    groups = _my_groups(db, page.viewer.member.handle)
    if not form.group and len(groups) == 1:
        form.group = groups[0].key
    names = page.group_names
    groups.sort(key=lambda g: names.get(g.key, g.name))
    return page.render(
        "proposal_form.html", status=status, form=form, groups=groups, group_names=names, p=None, field_labels=FIELD_LABELS,
    )


@router.get("/proposals/new")
def new_proposal_form(page: MemberPage, db: DbSession, group: Annotated[str, Query(max_length=40)] = "") -> Response:
    """The form for a new proposal, in one of my working groups."""
    return _new_form(page, db, TextForm(group=group))


@router.post("/proposals/new")
def new_proposal(
    page: MemberPage, db: DbSession, now: Now,
    group: FormText = "", title: FormText = "", summary: FormText = "", body: FormText = "",
) -> Response:
    """Create a draft through the lifecycle; problems are shown next to their fields, and the input is kept."""
    assert page.viewer is not None
    form = TextForm(title=title, summary=_lines(summary), body=_lines(body), group=group)
    if not group:
        form.errors["group"] = page.ui.gettext("Choose a working group.")
    try:
        data = ProposalCreate.model_validate(
            {"group": group, "author": page.viewer.member.handle, "title": title, "summary": form.summary, "body": form.body}
        )
    except ValidationError as exc:
        form.errors = _field_errors(page, exc) | form.errors
    if form.errors:
        return _new_form(page, db, form, 422)
    try:
        proposal = page.state.runtime.lifecycle.create_proposal(session=db, proposal_in=data, now=now)
    except ForumflowError as exc:
        db.rollback()
        form.error = page.say(exc)
        return _new_form(page, db, form, status_for(exc))
    return page.redirect(f"/proposals/{proposal.id}?done=create")


def _edit_form(page: Page, db: Session, now: dt.datetime, proposal_id: int, form: TextForm | None, status: int = 200) -> Response:
    """The edit form: the current text, or what was typed; the problem of a refused edit, if any."""
    p = find_proposal(db, proposal_id)
    if form is None:
        form = TextForm(title=p.title, summary=p.summary, body=p.body)
        try:  # say at once when this member cannot edit it now (they still see the text)
            page.state.runtime.lifecycle.check_edit(db, proposal_id, page.viewer.member.handle if page.viewer else "", now=now)
        except ForumflowError as exc:
            form.error, status = page.say(exc), status_for(exc)
    return page.render(
        "proposal_form.html", status=status, form=form, groups=[], group_names={}, p=p, field_labels=FIELD_LABELS,
    )


@router.get("/proposals/{proposal_id:int}/edit")
def edit_form(page: MemberPage, db: DbSession, now: Now, proposal_id: int) -> Response:
    """The draft's current text in a form, for its author."""
    return _edit_form(page, db, now, proposal_id, None)


@router.post("/proposals/{proposal_id:int}/edit")
def edit(
    page: MemberPage, db: DbSession, now: Now, proposal_id: int,
    expected_version: FormText = "", title: FormText = "", summary: FormText = "", body: FormText = "",
) -> Response:
    """Write a new text version through ``Lifecycle.edit``; an unchanged text writes nothing and says so."""
    assert page.viewer is not None
    form = TextForm(title=title, summary=_lines(summary), body=_lines(body))
    try:
        version = _int(expected_version)
    except ValueError:
        version = None
    if version is None:
        form.error = page.ui.gettext(NO_VERSION)
        return _edit_form(page, db, now, proposal_id, form, 422)
    try:
        text = ProposalTextEdit.model_validate({"title": title, "summary": form.summary, "body": form.body})
    except ValidationError as exc:
        form.errors = _field_errors(page, exc)
        return _edit_form(page, db, now, proposal_id, form, 422)
    try:
        event = page.state.runtime.lifecycle.edit(
            db, proposal_id, page.viewer.member.handle, text, now=now, expected_version=version,
        )
    except ForumflowError as exc:
        db.rollback()
        form.error = page.say(exc)
        return _edit_form(page, db, now, proposal_id, form, status_for(exc))
    return page.redirect(f"/proposals/{proposal_id}?done={'edit' if event is not None else 'unchanged'}")
