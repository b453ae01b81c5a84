"""The framework's own cost, for bench/web.py: the API's action route on FastAPI and uvicorn, doing nothing else.

``create_app`` builds a bare FastAPI app with one route of the same path and parameters as
``POST /api/v1/proposals/{id}/actions/{action}`` (the path's two, a JSON body, ``If-Match``), answering every request
with a fixed JSON body as long as the real answer (``FORUMFLOW_BENCH_FLOOR_BYTES``) and an ETag: no middleware of
forumflow's, no caller, no database. Its CPU time per request is what FastAPI and uvicorn cost before forumflow
does anything, so ``direct / (direct + floor)`` is the most the HTTP/direct ratio can be on this machine.

Run by bench/web.py as ``uvicorn --factory bench.web_floor:create_app``.
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import Body, FastAPI, Header, Path, Response
from pydantic import BaseModel


class ActionIn(BaseModel):
    """The action's body, as the API's (``web.api.schemas.ActionIn``)."""

    comment: str | None = None
    percent: int | None = None


def create_app() -> FastAPI:
    """The bare app (see the module)."""
    size = int(os.environ.get("FORUMFLOW_BENCH_FLOOR_BYTES", "2000"))
    answer = b'{"filler":"' + b"x" * max(0, size - 13) + b'"}'
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/api/v1/proposals/{proposal_id}/actions/{action}")
    async def take_action(
        proposal_id: Annotated[int, Path()],
        action: Annotated[str, Path(max_length=40)],
        body: Annotated[ActionIn | None, Body()] = None,
        if_match: Annotated[str | None, Header(alias="If-Match", max_length=1000)] = None,
    ) -> Response:
        return Response(answer, media_type="application/json", headers={"ETag": f'"{proposal_id}-1"'})

    return app
