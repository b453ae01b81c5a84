"""Token commands: ``token create`` (prints a personal API token once), ``token list`` and ``token revoke``.

``cli.main`` imports this module while it is being imported itself, so everything from it is imported
inside the command functions.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.reporting import reported

token_app = typer.Typer(help="Personal API tokens (sent as Authorization: Bearer ...).", no_args_is_help=True)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "never"


@token_app.command("create")
def create(
    ctx: typer.Context,
    actor: Annotated[str, typer.Option("--as", help="Handle of the member the token acts for.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for, e.g. the script using it.")] = "cli",
) -> None:
    """Make a personal API token and print it (once: only its hash is kept)."""
    from cli.main import err, now_utc, runtime
    from models.db import session_scope
    from models.tokens import create_token

    with reported(ctx):
        rt = runtime(ctx)
        with session_scope(rt.engine) as session:
            new = create_token(session, actor, name=name, now=now_utc())
        err.print(
            f"API token {new.token.id} ({new.token.name}) for {actor}; it is shown only now. "
            "Send it as 'Authorization: Bearer <token>'.", markup=False, highlight=False,
        )
        print(new.raw)


@token_app.command("list")
def list_tokens(
    ctx: typer.Context,
    actor: Annotated[str, typer.Option("--as", help="Handle of the member.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A member's live tokens: id, name, when made and last used (never the tokens themselves)."""
    from rich.markup import escape
    from rich.table import Table

    from cli.main import fail, out, print_json, runtime
    from models.db import session_scope
    from models.tables import Member
    from models.tokens import tokens_of

    with reported(ctx):
        rt = runtime(ctx)
        with session_scope(rt.engine) as session:
            if session.get(Member, actor) is None:
                fail(f"member {actor!r} not found", 4)
            rows = tokens_of(session, actor)
        if as_json:
            print_json([
                {"id": t.id, "name": t.name, "created_at": t.created_at.isoformat(),
                 "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None}
                for t in rows
            ])
            return
        if not rows:
            out.print(f"{actor} has no API tokens", markup=False, highlight=False)
            return
        table = Table("id", "name", "created", "last used", title=f"API tokens of {escape(actor)}")
        for t in rows:
            table.add_row(str(t.id), escape(t.name), _when(t.created_at), _when(t.last_used_at))
        out.print(table)


@token_app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(help="The token's id (see token list).")],
) -> None:
    """Revoke a token: requests sending it are refused from now on."""
    from cli.main import now_utc, out, runtime
    from models.db import session_scope
    from models.tokens import revoke_token

    with reported(ctx):
        rt = runtime(ctx)
        with session_scope(rt.engine) as session:
            row = revoke_token(session, token_id, now=now_utc())
        out.print(f"API token {row.id} ({row.name}) of {row.member} revoked", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the token commands to ``app``."""
    app.add_typer(token_app, name="token")
