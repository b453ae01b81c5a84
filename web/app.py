"""The application factory: ``create_app(settings)`` builds the web app; nothing is built at import time.

Layout of the app::

    /                 pages (web.pages): My actions, sign-in, language switch, ...
    /static/...       web/static (htmx, CSS), nothing from another host
    /api/v1/...       the JSON API (web.api), a FastAPI app of its own; OpenAPI at /api/v1/openapi.json

Around both: ``SecurityMiddleware`` (security headers, Origin check of unsafe requests) and
``UnexpectedErrors`` (a bare 500, never a traceback).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from config.settings import Settings
from models.runtime import Runtime, runtime_for
from web.api import PREFIX, create_api
from web.errors import UnexpectedErrors
from web.pages import router as pages_router
from web.pages.errors import install_page_handlers
from web.security import SecurityMiddleware
from web.state import Clock, WebState, wall_clock
from web.templating import Templates

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None, clock: Clock | None = None) -> FastAPI:
    """The web app on the shared runtime for ``settings`` (or on ``runtime``, e.g. a test's database).

    ``clock`` gives the moment of each request (default: the wall clock, UTC); tests pass their own.
    """
    if runtime is None:
        runtime = runtime_for(settings or Settings())
    settings = settings or runtime.settings
    state = WebState(runtime=runtime, settings=settings, clock=clock or wall_clock, templates=Templates(runtime.definition))
    app = FastAPI(title=runtime.definition.forum.name, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = state
    install_page_handlers(app)
    app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(PREFIX, create_api(state), name="api")
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(SecurityMiddleware, origin=state.origin)
    log.info("web app for %s at %s", runtime.definition.forum.key, settings.base_url)
    return app
