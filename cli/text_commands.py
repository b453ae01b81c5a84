"""Text commands: ``edit`` (a new text version of a draft), ``text`` (one version) and ``diff`` (two versions).

``cli.main`` imports this module while it is being imported itself, so everything from it is imported
inside the command functions.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.reporting import reported


def read_body(path: Path) -> bytes:
    """The raw bytes of a body file (``-`` reads standard input); exit 2 if it cannot be read."""
    from cli.main import fail

    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        fail(f"--body-file {path}: {exc.strerror or exc}", 2)


def edit(
    ctx: typer.Context,
    proposal_id: Annotated[int, typer.Argument(help="Proposal id.")],
    actor: Annotated[str, typer.Option("--as", help="Handle of the author.")],
    title: Annotated[str | None, typer.Option("--title", help="New title.")] = None,
    summary: Annotated[str | None, typer.Option("--summary", help="New summary.")] = None,
    body_file: Annotated[Path | None, typer.Option("--body-file", help="File with the new text (UTF-8; - reads stdin).")] = None,
    expected_version: Annotated[
        int | None, typer.Option("--expected-version", help="Refuse with exit 5 if the proposal changed since this version.")
    ] = None,
) -> None:
    """Write a new text version of a draft (first draft or returned); only its author may."""
    from cli.main import now_utc, out, runtime
    from models.db import session_scope
    from models.texts import text_edit

    body = read_body(body_file) if body_file is not None else None
    with reported(ctx):
        data = text_edit(title=title, summary=summary, body=body)
        rt = runtime(ctx)
        with session_scope(rt.engine) as session:
            event = rt.lifecycle.edit(session, proposal_id, actor, data, now=now_utc(), expected_version=expected_version)
            payload = dict(event.payload) if event is not None else None
    if payload is None:
        out.print(f"proposal {proposal_id}: the text is unchanged; nothing written", markup=False, highlight=False)
        return
    version, changed = payload["text_version"], ", ".join(payload.get("fields", []))
    out.print(f"proposal {proposal_id}: text version {version} by {actor} ({changed} changed)", markup=False, highlight=False)


def text(
    ctx: typer.Context,
    proposal_id: Annotated[int, typer.Argument(help="Proposal id.")],
    version: Annotated[int | None, typer.Option("--version", help="Text version (default: the current one).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One text version of a proposal, in full."""
    from cli.main import print_json, runtime
    from models.db import session_scope
    from models.texts import text_row, version_of, versions_of

    rt = runtime(ctx)
    with reported(ctx), session_scope(rt.engine) as session:
        row = text_row(version_of(session, proposal_id, version))
        count = len(versions_of(session, proposal_id))
    if as_json:
        print_json(row | {"versions": count})
        return
    sys.stdout.write(format_text(row, count))


def format_text(row: dict[str, Any], count: int) -> str:
    """A text version as people read it: title, who and when, summary, body."""
    head = f"#{row['proposal_id']} {row['title']}\n"
    meta = f"text version {row['version']} of {count} · by {row['author']} · {row['at'][:16].replace('T', ' ')} UTC\n"
    parts = [head, meta]
    if row["summary"]:
        parts.append("\n" + row["summary"].rstrip("\n") + "\n")
    if row["body"]:
        parts.append("\n" + row["body"].rstrip("\n") + "\n")
    return "".join(parts)


def diff(
    ctx: typer.Context,
    proposal_id: Annotated[int, typer.Argument(help="Proposal id.")],
    from_version: Annotated[int | None, typer.Option("--from", help="Older version (default: the one before --to).")] = None,
    to_version: Annotated[int | None, typer.Option("--to", help="Newer version (default: the current one).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the changes as data, word by word per field.")] = False,
) -> None:
    """What changed between two text versions: a unified diff of title, summary and body."""
    from cli.main import print_json, runtime
    from models.db import session_scope
    from models.texts import diff_view

    rt = runtime(ctx)
    with reported(ctx), session_scope(rt.engine) as session:
        view = diff_view(session, proposal_id, from_version=from_version, to_version=to_version)
    if as_json:
        print_json(view)
        return
    if not view["unified"]:
        sys.stdout.write(f"no changes between text versions {view['from']} and {view['to']} of proposal {proposal_id}\n")
        return
    sys.stdout.write(view["unified"])


def register(app: typer.Typer) -> None:
    """Add the text commands to ``app``."""
    app.command("edit")(edit)
    app.command("text")(text)
    app.command("diff")(diff)
