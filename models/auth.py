"""Who is signed in: one-time sign-in tokens, web sessions and rate-limit counters, all in the database.

Secrets never rest in the clear: a sign-in token and a session id are random strings handed to the
person once, and only their SHA-256 is stored. A token is consumed by one conditional UPDATE (unused,
unexpired), so two clicks, two tabs or two app processes can never both sign in with it. Sessions are
checked against the member on every request: a member deactivated by a definition sync is signed out.
Rate limits are fixed-window counters shared by every app process through the database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Index, bindparam, delete, func, insert, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel, col, select

from models.db import as_loaded, flushed_connection, utc_field
from models.errors import ForumflowError, InvalidInputError
from models.lifecycle import utc
from models.tables import Member

log = logging.getLogger(__name__)

TOKEN_BYTES = 32
MAX_ADDRESS = 254
# Finished tokens, sessions and counters are kept this long (for a look at what happened), then deleted.
KEEP = dt.timedelta(days=1)


class SignInToken(SQLModel, table=True):
    """A one-time sign-in link's token (its hash), for one member, until it expires or is used."""

    __tablename__ = "sign_in_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    member: str = Field(foreign_key="member.handle", max_length=40, index=True)
    created_at: dt.datetime = utc_field()
    expires_at: dt.datetime = utc_field(index=True)
    used_at: dt.datetime | None = utc_field(default=None)


class WebSession(SQLModel, table=True):
    """A signed-in browser: the hash of the cookie's random id, its member, its CSRF token and lifetime."""

    __tablename__ = "web_session"

    id_hash: str = Field(primary_key=True, max_length=64)
    member: str = Field(foreign_key="member.handle", max_length=40, index=True)
    csrf_token: str = Field(max_length=64)
    created_at: dt.datetime = utc_field()
    expires_at: dt.datetime = utc_field(index=True)
    ended_at: dt.datetime | None = utc_field(default=None)


# Built once (building a statement costs more than running it): a session by its id's hash, with its member; a Core
# statement (every column of both tables, in table order), its rows made instances as a query would (``as_loaded``).
_ws, _m = WebSession.__table__, Member.__table__  # type: ignore[attr-defined]
_SESSION = sa_select(*_ws.columns, *_m.columns).join_from(_ws, _m, _m.c.handle == _ws.c.member).where(
    _ws.c.id_hash == bindparam("id_hash")
)
_SESSION_KEYS, _MEMBER_KEYS = tuple(c.key for c in _ws.columns), tuple(c.key for c in _m.columns)


class RateCounter(SQLModel, table=True):
    """How often something keyed (an address, a client) happened in one fixed window."""

    __tablename__ = "rate_counter"
    __table_args__ = (Index("ix_rate_counter_window", "window_start"),)

    key: str = Field(primary_key=True, max_length=100)
    window_start: dt.datetime = utc_field(primary_key=True)
    hits: int = 0


class RateLimitedError(ForumflowError):
    """Too many requests of one kind from one address or client; ``retry_after`` seconds until the next window."""

    exit_code = 1

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignedIn:
    """A live session and its member."""

    session: WebSession
    member: Member


@dataclass(frozen=True)
class NewSession:
    """What the browser receives at sign-in: the raw session id (for the cookie) and the session's CSRF token."""

    raw_id: str
    csrf_token: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class SignInGrant:
    """A raw one-time token for a member (to be put in a link and mailed or handed out)."""

    member: Member
    token: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` events per ``window``."""

    limit: int
    window: dt.timedelta = dt.timedelta(hours=1)


def secret_hash(raw: str) -> str:
    """The stored form of a token or session id: its SHA-256, hex."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


# ---------------------------------------------------------------------- rate limits
def _window_start(now: dt.datetime, window: dt.timedelta) -> dt.datetime:
    seconds = int(window.total_seconds())
    epoch = int(now.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % seconds, dt.UTC)


def hit(session: Session, key: str, rate: RateLimit, *, now: dt.datetime) -> int:
    """Count one event for ``key`` in the current window; raises RateLimitedError past the limit.

    One INSERT ... ON CONFLICT DO UPDATE ... RETURNING, so concurrent processes never lose a count.
    """
    now = utc(now)
    start = _window_start(now, rate.window)
    table = RateCounter.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    stmt: Any
    if dialect == "postgresql":
        stmt = postgresql.insert(table)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table)
    else:  # pragma: no cover - forumflow runs on SQLite and PostgreSQL only
        raise NotImplementedError(dialect)
    stmt = (
        stmt.values(key=key, window_start=start, hits=1)
        .on_conflict_do_update(index_elements=["key", "window_start"], set_={"hits": table.c.hits + 1})
        .returning(table.c.hits)
    )
    count = int(session.execute(stmt).scalar_one())
    if count > rate.limit:
        retry_after = max(1, int((start + rate.window - now).total_seconds()))
        raise RateLimitedError(f"too many requests; try again in {retry_after} seconds", retry_after)
    return count


# ---------------------------------------------------------------------- sign-in tokens
def normalise_address(address: str) -> str:
    """The entered mail address, trimmed and lower-cased; InvalidInputError when it cannot be an address."""
    address = address.strip()
    if not address or len(address) > MAX_ADDRESS or "@" not in address[1:-1] or any(c.isspace() for c in address):
        raise InvalidInputError("enter a mail address, e.g. name@example.org")
    return address.lower()


def grant_sign_in(session: Session, member: Member, *, now: dt.datetime, valid: dt.timedelta) -> SignInGrant:
    """A new one-time token for an active member; only its hash is stored."""
    now = utc(now)
    raw = new_secret()
    expires = now + valid
    session.execute(
        insert(SignInToken).values(token_hash=secret_hash(raw), member=member.handle, created_at=now, expires_at=expires)
    )
    return SignInGrant(member, raw, expires)


def request_sign_in(
    session: Session, address: str, *, client: str, now: dt.datetime, valid: dt.timedelta,
    per_address: RateLimit, per_client: RateLimit,
) -> list[SignInGrant]:
    """Tokens for the active members with this address (usually one; none when nobody has it).

    Both limits are counted whether or not the address belongs to anyone, so the answer tells nothing
    about who is a member. The address is counted by its hash: unknown addresses are not stored.
    """
    now = utc(now)
    normal = normalise_address(address)
    purge(session, now=now)
    hit(session, f"sign-in:client:{client}"[:100], per_client, now=now)
    hit(session, f"sign-in:address:{secret_hash(normal)}", per_address, now=now)
    members = session.exec(
        select(Member).where(func.lower(Member.email) == normal, col(Member.active)).order_by(col(Member.handle))
    ).all()
    grants = [grant_sign_in(session, m, now=now, valid=valid) for m in members]
    log.info("sign-in requested from %s: %d link(s)", client, len(grants))
    return grants


def member_for_token(session: Session, raw: str, *, now: dt.datetime) -> Member | None:
    """The active member a valid (unused, unexpired) token signs in, without using it up."""
    now = utc(now)
    row = session.exec(
        select(SignInToken).where(
            SignInToken.token_hash == secret_hash(raw), col(SignInToken.used_at).is_(None), SignInToken.expires_at > now
        )
    ).first()
    if row is None:
        return None
    member = session.get(Member, row.member)
    return member if member is not None and member.active else None


def consume_sign_in(session: Session, raw: str, *, now: dt.datetime) -> Member | None:
    """Use the token up (one conditional UPDATE); the member it signs in, or None when it is not valid."""
    now = utc(now)
    digest = secret_hash(raw)
    result = session.execute(
        update(SignInToken)
        .where(
            col(SignInToken.token_hash) == digest, col(SignInToken.used_at).is_(None), col(SignInToken.expires_at) > now
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    handle = session.exec(select(SignInToken.member).where(SignInToken.token_hash == digest)).one()
    member = session.get(Member, handle)
    return member if member is not None and member.active else None


# ---------------------------------------------------------------------- sessions
def start_session(
    session: Session, member: Member, *, now: dt.datetime, valid: dt.timedelta, replacing: str | None = None
) -> NewSession:
    """A new session for ``member`` (a new id every sign-in); the one being replaced, if any, ends."""
    now = utc(now)
    if replacing:
        end_session(session, replacing, now=now)
    raw, csrf = new_secret(), new_secret()
    expires = now + valid
    session.execute(
        insert(WebSession).values(
            id_hash=secret_hash(raw), member=member.handle, csrf_token=csrf, created_at=now, expires_at=expires
        )
    )
    log.info("%s signed in", member.handle)
    return NewSession(raw, csrf, expires)


def _session_of(session: Session, raw_id: str) -> tuple[WebSession, Member] | None:
    """The session with this id, live or not, and its member (one statement)."""
    found = flushed_connection(session).execute(_SESSION, {"id_hash": secret_hash(raw_id)}).first()
    if found is None:
        return None
    width = len(_SESSION_KEYS)
    row = as_loaded(session, WebSession, dict(zip(_SESSION_KEYS, found[:width], strict=True)))
    return row, as_loaded(session, Member, dict(zip(_MEMBER_KEYS, found[width:], strict=True)))


def session_holder(session: Session, raw_id: str) -> Member | None:
    """The member a session id belonged to, whether the session is live or has ended (to keep their language on the
    page that says it ended); None for an id that never was one."""
    found = _session_of(session, raw_id)
    return found[1] if found is not None else None


def signed_in(session: Session, raw_id: str, *, now: dt.datetime) -> SignedIn | None:
    """The live session with this id and its active member; a session of a deactivated member ends here."""
    now = utc(now)
    found = _session_of(session, raw_id)
    if found is None:
        return None
    row, member = found
    if row.ended_at is not None or row.expires_at <= now:
        return None
    if not member.active:  # deactivated since (the sync also ends the sessions)
        return None
    return SignedIn(row, member)


def end_session(session: Session, raw_id: str, *, now: dt.datetime) -> bool:
    """End the session with this id; whether one was live."""
    result = session.execute(
        update(WebSession)
        .where(col(WebSession.id_hash) == secret_hash(raw_id), col(WebSession.ended_at).is_(None))
        .values(ended_at=utc(now))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def forget_members(session: Session, handles: list[str]) -> None:
    """Sign out members who left the forum: delete their sessions and their unused sign-in links."""
    if not handles:
        return
    session.execute(delete(WebSession).where(col(WebSession.member).in_(handles)))
    session.execute(delete(SignInToken).where(col(SignInToken.member).in_(handles)))
    log.info("signed out %d member(s) who left the forum", len(handles))


def purge(session: Session, *, now: dt.datetime) -> None:
    """Delete tokens, sessions and counters that ended more than a day ago."""
    before = utc(now) - KEEP
    session.execute(delete(SignInToken).where(col(SignInToken.expires_at) < before))
    session.execute(delete(WebSession).where(col(WebSession.expires_at) < before))
    session.execute(delete(WebSession).where(col(WebSession.ended_at) < before))
    session.execute(delete(RateCounter).where(col(RateCounter.window_start) < before))
