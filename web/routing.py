"""Routes that do their database work in one trip to a worker thread, committing there.

FastAPI runs a plain ``def`` route in the threadpool, then (for a ``response_model``) checks its answer in a second
trip, and the request's session is committed by its dependency in a third. Every trip is a hand-over between the
event loop and a worker thread, and under load each one waits for the other threads' turn. ``OneHopRoute`` (the
``route_class`` of every router of the app) turns a plain ``def`` route into an ``async`` one that makes one trip:
the route, then the commit of its ``DbSession`` (or the rollback, when it raised), in the same worker thread.
FastAPI then checks the answer on the event loop (cheap for a model it already is) and the dependency only closes
a session that has nothing left to do.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from sqlmodel import Session


def _settle(session: Session, *, commit: bool) -> None:
    """Commit or roll back, then close: the session's connection goes back to the pool."""
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


async def finish(session: Session, *, commit: bool) -> None:
    """End a request's session: at once when it holds no transaction (nothing to wait for), else in a worker thread."""
    if not session.in_transaction() and not (session.new or session.dirty or session.deleted):
        session.close()
        return
    await run_in_threadpool(_settle, session, commit=commit)


def _sessions(kwargs: dict[str, Any]) -> list[Session]:
    return [v for v in kwargs.values() if isinstance(v, Session)]


def in_one_hop(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` (a plain function) as a coroutine that runs it and commits its sessions in one worker thread."""

    def run(kwargs: dict[str, Any]) -> Any:
        sessions = _sessions(kwargs)
        try:
            result = endpoint(**kwargs)
        except BaseException:
            for session in sessions:
                session.rollback()
            raise
        for session in sessions:
            session.commit()
        return result

    @functools.wraps(endpoint)
    async def one_hop(**kwargs: Any) -> Any:
        return await run_in_threadpool(run, kwargs)

    return one_hop


class OneHopRoute(APIRoute):
    """An ``APIRoute`` whose plain ``def`` endpoint runs with its commit in one worker-thread trip (see the module)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint) and inspect.isfunction(endpoint):
            endpoint = in_one_hop(endpoint)
        super().__init__(path, endpoint, **kwargs)
