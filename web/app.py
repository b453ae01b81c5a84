"""The application factory: ``create_app(settings)`` builds the web app; nothing is built at import time.

Layout of the app::

    /                 pages (web.pages): My actions, sign-in, language switch, ...
    /static/...       web/static (htmx, CSS), nothing from another host
    /api/v1/...       the JSON API (web.api), a FastAPI app of its own; OpenAPI at /api/v1/openapi.json

Around both: ``SecurityMiddleware`` (security headers, Origin check of unsafe requests) and
``UnexpectedErrors`` (a bare 500, never a traceback).
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from config.settings import Settings
from models.runtime import Runtime, runtime_for
from web.api import PREFIX, create_api
from web.errors import UnexpectedErrors
from web.pages import router as pages_router
from web.pages.errors import install_page_handlers
from web.security import SecurityMiddleware
from web.state import Clock, WebState, pool_slots, wall_clock
from web.templating import Templates
from web.writelock import serialise_writes

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


_frozen = False
# How long a thread may keep the interpreter while another waits for it (Python's default: 5 ms). Routes run in
# worker threads; the event loop, which reads requests and sends answers, must wait that long for its turn each
# time one of them is busy, and a request needs the loop several times. 1 ms keeps those waits short.
SWITCH_INTERVAL = 0.001


@asynccontextmanager
async def _settled_heap(app: FastAPI) -> AsyncIterator[None]:
    """At the first start-up of the process, after the imports and the app are built: move what exists to the
    collector's permanent generation (once: an app started again, as in tests, does not freeze what came since),
    and shorten the interpreter's switch interval (``SWITCH_INTERVAL``).

    The modules, templates, definition and roster live as long as the process; without the freeze every full
    collection walks them again, a pause in the middle of some request.
    """
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()
        sys.setswitchinterval(SWITCH_INTERVAL)
    yield


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None, clock: Clock | None = None) -> FastAPI:
    """The web app on the shared runtime for ``settings`` (or on ``runtime``, e.g. a test's database).

    ``clock`` gives the moment of each request (default: the wall clock, UTC); tests pass their own.
    """
    if runtime is None:
        runtime = runtime_for(settings or Settings())
    settings = settings or runtime.settings
    serialise_writes(runtime.engine)
    state = WebState(
        runtime=runtime, settings=settings, clock=clock or wall_clock, templates=Templates(runtime.definition),
        admission=anyio.Semaphore(pool_slots(runtime.engine), fast_acquire=True),
    )
    app = FastAPI(
        title=runtime.definition.forum.name, docs_url=None, redoc_url=None, openapi_url=None, lifespan=_settled_heap,
    )
    app.state.web = state
    install_page_handlers(app)
    # The mounts first: a request under them is matched by its prefix at once, not after every page's route.
    app.mount(PREFIX, create_api(state), name="api")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(pages_router)
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(SecurityMiddleware, origin=state.origin)
    log.info("web app for %s at %s", runtime.definition.forum.key, settings.base_url)
    return app
