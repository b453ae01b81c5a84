"""Text versions of proposals: validated input for every interface, and the read side (versions, diffs)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from models.db import DriverStatement
from models.errors import N_, InvalidInputError, NotFoundError, Said
from models.tables import Proposal, ProposalCreate, ProposalText, ProposalTextEdit
from models.textdiff import unified, word_changes


def input_error(exc: ValidationError) -> InvalidInputError:
    """The first problem of a validation error as one line: ``<field>: <reason>``."""
    first = exc.errors()[0]
    reason = str(first["msg"]).removeprefix("Value error, ")
    where = ".".join(str(part) for part in first["loc"])
    return InvalidInputError(f"{where}: {reason}" if where else reason)


def text_edit(*, title: str | None = None, summary: str | None = None, body: str | bytes | None = None) -> ProposalTextEdit:
    """Validated fields of a new text version (body as text or UTF-8 bytes); InvalidInputError if bad."""
    try:
        return ProposalTextEdit.model_validate({"title": title, "summary": summary, "body": body})
    except ValidationError as exc:
        raise input_error(exc) from None


def proposal_create(*, group: str, author: str, title: str, summary: str = "", body: str | bytes = "") -> ProposalCreate:
    """Validated input for a new proposal (body as text or UTF-8 bytes); InvalidInputError if bad."""
    try:
        return ProposalCreate.model_validate({"group": group, "author": author, "title": title, "summary": summary, "body": body})
    except ValidationError as exc:
        raise input_error(exc) from None


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


def text_row(t: ProposalText) -> dict[str, Any]:
    """A text version as a flat dictionary."""
    return {
        "proposal_id": t.proposal_id,
        "version": t.version,
        "title": t.title,
        "summary": t.summary,
        "body": t.body,
        "author": t.author,
        "at": _iso(t.at),
    }


def _proposal(session: Session, proposal_id: int) -> Proposal:
    from models.lifecycle import find_proposal

    return find_proposal(session, proposal_id)


def versions_of(session: Session, proposal_id: int) -> list[ProposalText]:
    """Every text version of a proposal, oldest first (NotFoundError if there is no such proposal)."""
    _proposal(session, proposal_id)
    query = select(ProposalText).where(ProposalText.proposal_id == proposal_id).order_by(col(ProposalText.version))
    return list(session.exec(query))


def version_of(session: Session, proposal_id: int, version: int | None = None) -> ProposalText:
    """One text version; the current one when ``version`` is None."""
    p = _proposal(session, proposal_id)
    wanted = p.text_version if version is None else version
    # Versions run from 1 to the current one: any other number is refused before it reaches the database (whose
    # integers would overflow on a huge one).
    row = None
    if 1 <= wanted <= p.text_version:
        row = session.exec(
            select(ProposalText).where(ProposalText.proposal_id == proposal_id, ProposalText.version == wanted)
        ).first()
    if row is None:
        raise NotFoundError(
            f"proposal {proposal_id} has no text version {wanted} (versions 1 to {p.text_version})",
            Said(
                N_("Proposal %(id)s has no text version %(version)s: versions are numbered 1 to %(n)s."),
                id=proposal_id, version=wanted, n=p.text_version,
            ),
        )
    return row


@dataclass(frozen=True)
class TextInfo:
    """Which text version is current, who wrote it and when (without the text itself)."""

    version: int
    author: str
    at: dt.datetime


_TEXT_INFO = select(col(ProposalText.author), col(ProposalText.at)).where(
    col(ProposalText.proposal_id) == bindparam("proposal_id"), col(ProposalText.version) == bindparam("version"),
)


def text_info(session: Session, proposal: Proposal) -> TextInfo:
    """The current text version of a loaded proposal, its author and time: one small read on the driver's cursor
    (every action's answer has it; not the text, which the proposal row holds too)."""
    conn = session.connection()
    row = DriverStatement.for_dialect(_TEXT_INFO, conn.dialect).first(
        conn, {"proposal_id": proposal.id, "version": proposal.text_version}
    )
    if row is None:
        raise NotFoundError(f"proposal {proposal.id} has no text version {proposal.text_version}")
    return TextInfo(proposal.text_version, row[0], row[1])


def all_texts(session: Session) -> list[dict[str, Any]]:
    """Every text version of every proposal, by proposal and version (for export)."""
    query = select(ProposalText).order_by(col(ProposalText.proposal_id), col(ProposalText.version))
    return [text_row(t) for t in session.exec(query)]


def diff_view(
    session: Session, proposal_id: int, *, from_version: int | None = None, to_version: int | None = None,
) -> dict[str, Any]:
    """The changes between two text versions (default: the last two): a unified diff and word-by-word ops per field."""
    p = _proposal(session, proposal_id)
    to_v = p.text_version if to_version is None else to_version
    from_v = max(1, to_v - 1) if from_version is None else from_version
    new = version_of(session, proposal_id, to_v)  # the one asked for first (the other may follow from it)
    old = version_of(session, proposal_id, from_v)
    fields = word_changes(old, new)
    return {
        "proposal_id": proposal_id,
        "from": from_v,
        "to": to_v,
        "current": p.text_version,
        "changed": [name for name, change in fields.items() if change["changed"]],
        "unified": unified(old, new, old_label=f"v{from_v}", new_label=f"v{to_v}"),
        "fields": fields,
    }
