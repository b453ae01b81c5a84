"""Web commands: ``web`` (run the web app with uvicorn) and ``web-link`` (a one-time sign-in link).

``cli.main`` imports this module while it is being imported itself, so everything heavy (FastAPI,
uvicorn, the web package) is imported inside the command functions: other commands never load them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from cli.reporting import reported

MAX_LINK_MINUTES = 7 * 24 * 60
Host = Annotated[str, typer.Option("--host", help="Address the web app listens on.")]
Port = Annotated[int, typer.Option("--port", min=1, max=65535, help="Port the web app listens on.")]


def web(ctx: typer.Context, host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Run the web app (pages and the JSON API) with uvicorn in the foreground; Ctrl-C stops."""
    from cli.main import err, guarded, runtime

    rt = guarded(runtime)(ctx)
    import uvicorn

    from web.app import create_app
    from web.server import settings_for

    settings = settings_for(rt.settings, host, port)  # without FORUMFLOW_BASE_URL, mail links point here
    app = create_app(settings, runtime=rt)
    err.print(
        f"web app on {host}:{port}; links in mail start with {settings.base_url}; Ctrl-C stops",
        markup=False, highlight=False,
    )
    # Behind a reverse proxy on this host, uvicorn takes the client address and scheme from its
    # X-Forwarded-* headers (trusted from FORWARDED_ALLOW_IPS, default 127.0.0.1).
    uvicorn.run(app, host=host, port=port, proxy_headers=True, log_level="info")


def web_link(
    ctx: typer.Context,
    handle: Annotated[str, typer.Argument(help="The member to sign in.")],
    minutes: Annotated[
        int, typer.Option("--minutes", min=1, max=MAX_LINK_MINUTES, help="How long the link stays valid.")
    ] = 15,
    host: Host = "127.0.0.1",
    port: Port = 8000,
) -> None:
    """Print a one-time sign-in link for a member (to hand out for a first sign-in, or for tests).

    The link points at FORUMFLOW_BASE_URL or else, as ``forumflow web`` does, at ``--host`` and ``--port``.
    """
    from cli.main import fail, now_utc, out, runtime
    from models.auth import grant_sign_in
    from models.db import session_scope
    from models.tables import Member
    from notifications.signin import sign_in_url
    from web.server import settings_for

    with reported(ctx):
        rt = runtime(ctx)
        with session_scope(rt.engine) as session:
            member = session.get(Member, handle)
            if member is None or not member.active:
                fail(f"member {handle!r} not found", 4)
            grant = grant_sign_in(session, member, now=now_utc(), valid=dt.timedelta(minutes=minutes))
        base_url = settings_for(rt.settings, host, port).base_url
        out.print(sign_in_url(base_url, grant.token), markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the web commands to ``app``."""
    app.command("web")(web)
    app.command("web-link")(web_link)
