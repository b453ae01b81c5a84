"""Personal API tokens: a member's scripts send one as ``Authorization: Bearer ...`` instead of a session cookie.

A token is a random string shown to its member once, at creation; only its SHA-256 is stored. It works
until it is revoked or its member leaves the forum (a deactivated member's tokens are refused at once and
deleted by the next definition sync). ``last_used_at`` is kept to the minute, so a script calling the API
in a loop does not write on every request.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, or_, update
from sqlmodel import Field, Session, SQLModel, col, select

from models.auth import new_secret, secret_hash
from models.clock import utc
from models.db import DriverStatement, utc_field
from models.errors import InvalidInputError, NotFoundError
from models.roster import people, token_column
from models.tables import NUL, Member

log = logging.getLogger(__name__)

# Tokens start with this, so a leaked one is recognisable (e.g. by secret scanners) and never mistaken for a session id.
PREFIX = "ffp_"
NAME_MAX = 100
# ``last_used_at`` is written at most once per this interval and token.
USE_GRANULARITY = dt.timedelta(minutes=1)
# The largest id a token row can have (PostgreSQL INTEGER): larger ids are simply not found.
MAX_TOKEN_ID = 2**31 - 1


class ApiToken(SQLModel, table=True):
    """A member's personal API token (its hash), its name, and when it was made, last used and revoked."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    member: str = Field(foreign_key="member.handle", max_length=40, index=True)
    name: str = Field(max_length=NAME_MAX)
    created_at: dt.datetime = utc_field()
    last_used_at: dt.datetime | None = utc_field(default=None)
    revoked_at: dt.datetime | None = utc_field(default=None)


# Built once (building a statement costs more than running it): a live token by its hash (what a use of it needs),
# with the generation of the forum's definition, so its member comes from the process's roster (models.roster).
_LIVE_TOKEN = select(
    col(ApiToken.id), col(ApiToken.member), col(ApiToken.last_used_at), token_column(),
).where(col(ApiToken.token_hash) == bindparam("token_hash"), col(ApiToken.revoked_at).is_(None))


@dataclass(frozen=True)
class LiveToken:
    """A live token as a request uses it: its id, its member's handle and when it was last used (to the minute)."""

    id: int
    member: str
    last_used_at: dt.datetime | None


@dataclass(frozen=True)
class NewToken:
    """A token just created: its row and the raw token, to be shown once."""

    token: ApiToken
    raw: str


def token_name(name: str) -> str:
    """A token's name, trimmed; InvalidInputError when empty, too long or holding control characters."""
    name = " ".join(name.split())
    if not name:
        raise InvalidInputError("name: must not be empty")
    if len(name) > NAME_MAX:
        raise InvalidInputError(f"name: at most {NAME_MAX} characters")
    if NUL in name or any(ord(c) < 32 for c in name):
        raise InvalidInputError("name: must not contain control characters")
    return name


def _active_member(session: Session, handle: str) -> Member:
    member = session.get(Member, handle)
    if member is None or not member.active:
        raise NotFoundError(f"member {handle!r} not found")
    return member


def create_token(session: Session, handle: str, *, name: str, now: dt.datetime) -> NewToken:
    """A new token for an active member; only its hash is stored, the raw token is returned once."""
    now = utc(now)
    name = token_name(name)
    member = _active_member(session, handle)
    raw = PREFIX + new_secret()
    token_id = session.execute(
        insert(ApiToken).values(token_hash=secret_hash(raw), member=member.handle, name=name, created_at=now)
        .returning(col(ApiToken.id))
    ).scalar_one()
    row = session.get(ApiToken, token_id)
    assert row is not None
    log.info("%s created API token %s (%s)", member.handle, token_id, name)
    return NewToken(row, raw)


def tokens_of(session: Session, handle: str) -> list[ApiToken]:
    """A member's live (not revoked) tokens, newest first."""
    query = select(ApiToken).where(ApiToken.member == handle, col(ApiToken.revoked_at).is_(None))
    return list(session.exec(query.order_by(col(ApiToken.created_at).desc(), col(ApiToken.id).desc())))


def revoke_token(session: Session, token_id: int, *, now: dt.datetime, member: str | None = None) -> ApiToken:
    """Revoke a live token (of ``member`` when given); NotFoundError when there is no such live token."""
    now = utc(now)
    row = session.get(ApiToken, token_id) if 0 < token_id <= MAX_TOKEN_ID else None
    if row is None or row.revoked_at is not None or (member is not None and row.member != member):
        raise NotFoundError(f"API token {token_id} not found")
    result = session.execute(
        update(ApiToken)
        .where(col(ApiToken.id) == token_id, col(ApiToken.revoked_at).is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]  # revoked at the same moment elsewhere
        raise NotFoundError(f"API token {token_id} not found")
    session.refresh(row)
    log.info("API token %s of %s revoked", token_id, row.member)
    return row


def live_token(session: Session, raw: str) -> tuple[LiveToken, Member] | None:
    """The live token ``raw`` and its active member, or None; one statement, on the driver's cursor (every API
    request asks), the member the roster's copy."""
    if not raw.startswith(PREFIX) or len(raw) > 200:
        return None
    conn = session.connection()
    row = DriverStatement.for_dialect(_LIVE_TOKEN, conn.dialect).first(conn, {"token_hash": secret_hash(raw)})
    if row is None:
        return None
    token_id, handle, last_used_at, generation = row
    member = people(session, generation, known=True).members.get(handle)
    if member is None:  # inactive (or gone): refused at once, as the definition sync deletes the token later
        return None
    return LiveToken(token_id, handle, last_used_at), member


def use_is_new(token: LiveToken, now: dt.datetime) -> bool:
    """Whether a use of ``token`` at ``now`` must be noted (``last_used_at`` is kept to the minute)."""
    return token.last_used_at is None or token.last_used_at <= utc(now) - USE_GRANULARITY


def note_use(session: Session, token: LiveToken, now: dt.datetime) -> None:
    """Note a use of ``token`` at ``now`` (unless another request noted one within the minute)."""
    now = utc(now)
    session.execute(
        update(ApiToken)
        .where(
            col(ApiToken.id) == token.id,
            or_(col(ApiToken.last_used_at).is_(None), col(ApiToken.last_used_at) <= now - USE_GRANULARITY),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def member_for_token(session: Session, raw: str, *, now: dt.datetime) -> Member | None:
    """The active member a live token belongs to, or None; notes when it was used (to the minute)."""
    found = live_token(session, raw)
    if found is None:
        return None
    token, member = found
    if use_is_new(token, now):
        note_use(session, token, now)
    return member


def forget_tokens(session: Session, handles: list[str]) -> int:
    """Delete every token of these members (they left the forum: a definition sync); how many there were."""
    if not handles:
        return 0
    result = session.execute(delete(ApiToken).where(col(ApiToken.member).in_(handles)))
    count = int(result.rowcount)  # type: ignore[attr-defined]
    if count:
        log.info("deleted %d API token(s) of %d member(s) who left the forum", count, len(handles))
    return count
