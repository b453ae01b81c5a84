"""Sign-in tokens, sessions and rate counters in the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from models import session_scope
from models.auth import (
    RateCounter,
    RateLimit,
    RateLimitedError,
    SignInToken,
    WebSession,
    consume_sign_in,
    grant_sign_in,
    hit,
    member_for_token,
    purge,
    request_sign_in,
    signed_in,
    start_session,
)
from models.errors import InvalidInputError
from models.tables import Member
from tests.factories import T0

VALID = dt.timedelta(minutes=15)


def grant(engine: Engine, handle: str = "petrov", now: dt.datetime = T0) -> str:
    with session_scope(engine) as s:
        member = s.get(Member, handle)
        assert member is not None
        return grant_sign_in(s, member, now=now, valid=VALID).token


def test_a_token_is_consumed_exactly_once_under_concurrency(forum: Engine) -> None:
    token = grant(forum)
    results: list[str | None] = []
    barrier = threading.Barrier(4)

    def use() -> None:
        barrier.wait(timeout=10)
        with session_scope(forum) as s:
            member = consume_sign_in(s, token, now=T0 + dt.timedelta(minutes=1))
            results.append(member.handle if member else None)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(map(str, results)) == [
        "None", "None", "None", "petrov"]


def test_token_validity_window(forum: Engine) -> None:
    token = grant(forum)
    with session_scope(forum) as s:
        assert member_for_token(s, token, now=T0 + VALID - dt.timedelta(seconds=1)) is not None
        assert member_for_token(s, token, now=T0 + VALID) is None
        assert consume_sign_in(s, token, now=T0 + VALID) is None
        assert member_for_token(s, "not-a-token", now=T0) is None


def test_only_hashes_are_stored(forum: Engine) -> None:
    token = grant(forum)
    with session_scope(forum) as s:
        member = s.get(Member, "petrov")
        assert member is not None
        new = start_session(s, member, now=T0, valid=dt.timedelta(hours=12))
    with session_scope(forum) as s:
        stored = [*s.exec(select(SignInToken.token_hash)), *s.exec(select(WebSession.id_hash))]
    assert token not in stored and new.raw_id not in stored and all(len(h) == 64 for h in stored)
    with session_scope(forum) as s:
        who = signed_in(s, new.raw_id, now=T0)
        assert who is not None and who.member.handle == "petrov" and who.session.csrf_token == new.csrf_token
        assert signed_in(s, new.raw_id, now=T0 + dt.timedelta(hours=12)) is None


def test_rate_counter_counts_every_hit_from_many_threads(forum: Engine) -> None:
    rate = RateLimit(limit=1000)
    barrier = threading.Barrier(4)

    def hammer() -> None:
        barrier.wait(timeout=10)
        for _ in range(10):
            with session_scope(forum) as s:
                hit(s, "k", rate, now=T0)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    with session_scope(forum) as s:
        assert s.exec(select(RateCounter.hits).where(RateCounter.key == "k")).one() == 40


def test_rate_limit_window(forum: Engine) -> None:
    rate = RateLimit(limit=2, window=dt.timedelta(hours=1))
    start = T0.replace(minute=0)
    for i in range(2):
        with session_scope(forum) as s:
            assert hit(s, "k", rate, now=start + dt.timedelta(minutes=10 * i)) == i + 1
    with session_scope(forum) as s, pytest.raises(RateLimitedError) as refused:
        hit(s, "k", rate, now=start + dt.timedelta(minutes=45))
    assert refused.value.retry_after == 15 * 60
    with session_scope(forum) as s:
        assert hit(s, "k", rate, now=start + dt.timedelta(hours=1)) == 1  # a new window


@pytest.mark.parametrize("address", ["", "plain", "@example.org", "name@", "a b@example.org", "x" * 250 + "@e.org"])
def test_request_refuses_what_is_no_address(forum: Engine, address: str) -> None:
    with session_scope(forum) as s, pytest.raises(InvalidInputError):
        request_sign_in(s, address, client="c", now=T0, valid=VALID, per_address=RateLimit(5), per_client=RateLimit(5))


def test_purge_drops_what_ended_a_day_ago(forum: Engine) -> None:
    grant(forum, now=T0)
    with session_scope(forum) as s:
        hit(s, "k", RateLimit(5), now=T0)
    with session_scope(forum) as s:
        purge(s, now=T0 + dt.timedelta(hours=20))
        assert s.exec(select(SignInToken)).all() != [] and s.exec(select(RateCounter)).all() != []
    with session_scope(forum) as s:
        purge(s, now=T0 + dt.timedelta(days=2))
        assert s.exec(select(SignInToken)).all() == [] and s.exec(select(RateCounter)).all() == []


# A process whose first use of the ORM is ``signed_in`` (a web worker's first request): its rows become instances.
FIRST_USE = """
import datetime as dt
from sqlalchemy import create_engine, insert
from sqlmodel import Session, SQLModel
from models.auth import WebSession, secret_hash, signed_in
from models.tables import Member
now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
engine = create_engine("sqlite://")
SQLModel.metadata.create_all(engine)
with engine.begin() as c:
    c.execute(insert(Member.__table__).values(handle="a", name="A", email="a@example.org"))
    c.execute(insert(WebSession.__table__).values(
        id_hash=secret_hash("raw"), member="a", csrf_token="t", created_at=now, expires_at=now + dt.timedelta(hours=1)))
with Session(engine) as s:
    who = signed_in(s, "raw", now=now)
    assert who is not None and who.member.handle == "a" and who.session.csrf_token == "t", who
print("found")
"""


def test_a_session_is_found_by_a_process_that_has_not_used_the_orm_yet() -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", FIRST_USE], capture_output=True, text=True, timeout=120, check=False)
    assert (r.returncode, r.stdout.strip()) == (0, "found"), r.stderr[-2000:]
