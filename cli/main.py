"""The ``forumflow`` command line: parse, call models, print. No business rule lives here.

Exit codes: 0 success; 2 usage error; 3 action not allowed; 4 not found; 5 conflict.
This module must not import prefect: flow commands import it lazily.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from cli.console import LazyConsole, plain
from cli.events import event_note
from config.definition import ForumDefinition, ForumDefinitionError, load_definition
from config.settings import Settings
from models.clock import check_recorded_at, utc
from models.errors import ForumflowError, InvalidInputError

if TYPE_CHECKING:
    from models.runtime import Runtime


class _Commands(TyperGroup):
    """The command group; a database error that escaped a command becomes one line here, never a traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's click Context
        """Run the command; map leftover SQLAlchemy errors (conflicting writes exit 5, others exit 1)."""
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError

        try:
            return super().invoke(ctx)
        except IntegrityError as exc:
            fail(f"conflict: another command wrote the same data at the same time; try again ({_first_line(exc)})", 5)
        except SQLAlchemyError as exc:
            fail(f"database {_database_of(ctx)}: {_first_line(exc)}", 1)


def _first_line(exc: Exception) -> str:
    """The driver's first line of complaint."""
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]


def _database_of(ctx: typer.Context) -> str:
    """The database URL in force (password masked), for messages."""
    try:
        return _shown_url(settings_of(ctx).db_url)
    except Exception:  # settings that cannot even be read
        return "(unknown)"


def _new_app() -> typer.Typer:
    """The ``forumflow`` command group, empty."""
    return typer.Typer(
        cls=_Commands,
        name="forumflow",
        help="Proposal lifecycle of a multi-party forum's working groups.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )


app = _new_app()
# rich is imported when a console first prints through it: plain lines (``act``, errors) go without it.
out = LazyConsole()
err = LazyConsole(stderr=True)


@dataclass
class _Options:
    db: str | None
    forum: Path | None
    data_dir: Path | None
    runtime: Runtime | None = None


def fail(message: str, code: int) -> NoReturn:
    """Print one line to stderr and exit with ``code``."""
    err.line(f"error: {message}")
    raise typer.Exit(code=code)


def fail_with(exc: ForumflowError, ctx: typer.Context | None = None) -> NoReturn:
    """Print a domain error as one line and exit with its code. Bad input about a field that the command (``ctx``)
    takes as an option names the option: ``title: must not be empty`` is printed as ``--title: must not be empty``."""
    message = str(exc)
    field, sep, rest = message.partition(": ")
    if isinstance(exc, InvalidInputError) and sep and field.isidentifier() and ctx is not None:
        for param in ctx.command.params:
            if param.name in (field, f"{field}_file") and param.opts and param.opts[0].startswith("--"):
                message = f"{param.opts[0]}: {rest}"
                break
    fail(message, exc.exit_code)


def settings_of(ctx: typer.Context) -> Settings:
    """Settings from the environment, overridden by the global options."""
    opts: _Options = ctx.find_root().obj
    overrides: dict[str, Any] = {}
    if opts.db:
        overrides["database_url"] = opts.db
    if opts.forum:
        overrides["forum_file"] = opts.forum
    if opts.data_dir:
        overrides["data_dir"] = opts.data_dir
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if field in overrides:
            fail(f"{_OPTION_OF[field]}: {_reason(first['msg'])}", 2)
        shown = str(first.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        fail(f"{Settings.variable(field)}={shown}: {_reason(first['msg'])}", 2)


_OPTION_OF = {"database_url": "--db", "forum_file": "--forum", "data_dir": "--data-dir"}


def _reason(message: str) -> str:
    """A validation message without pydantic's 'Value error, ' prefix."""
    return message.removeprefix("Value error, ")


def definition_of(settings: Settings) -> ForumDefinition:
    """Load the forum definition, or exit 2 with the loader's one-line reason."""
    try:
        return load_definition(settings.forum_file)
    except ForumDefinitionError as exc:
        fail(str(exc), 2)


def runtime(ctx: typer.Context, *, sync_if_empty: bool = True) -> Runtime:
    """Build (once per invocation) settings, definition, lifecycle and engine through the shared runtime."""
    opts: _Options = ctx.find_root().obj
    if opts.runtime is not None:
        return opts.runtime
    from models.runtime import open_runtime

    try:
        opts.runtime = open_runtime(settings_of(ctx), sync_if_empty=sync_if_empty)
    except ForumDefinitionError as exc:
        fail(str(exc), 2)
    except ForumflowError as exc:  # the database cannot be reached, or its schema is behind: one line
        fail_with(exc)
    return opts.runtime


def _shown_url(url: str) -> str:
    """A database URL with its password masked."""
    from models.runtime import shown_url

    return shown_url(url)


def now_utc() -> dt.datetime:
    """The wall clock, for interfaces only; logic always receives ``now``."""
    return dt.datetime.now(dt.UTC)


def parse_when(value: str | None, option: str = "--now") -> dt.datetime:
    """Parse an ISO date or datetime (UTC when no offset is given) within the engine's calendar; None means now."""
    if value is None:
        return now_utc()
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option}: invalid time {value!r}: use ISO 8601, e.g. 2022-03-01T09:00:00+00:00", 2)
    try:
        return utc(when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when)
    except InvalidInputError as exc:
        fail(f"{option}: {exc}", 2)


def recorded_at(value: str | None) -> dt.datetime:
    """The moment an action happened: ``--at`` (not in the future), or now."""
    wall = now_utc()
    if value is None:
        return wall
    try:
        return check_recorded_at(parse_when(value, "--at"), wall)
    except InvalidInputError as exc:
        fail(f"--at: {exc}", 2)


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def guarded(func: Any) -> Any:
    """Turn expected domain errors into a one-line message and their exit code."""
    import functools

    from cli.reporting import reported

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with reported(kwargs.get("ctx")):
            return func(*args, **kwargs)

    return wrapper


@app.callback()
def _root(
    ctx: typer.Context,
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL (default: FORUMFLOW_DATABASE_URL or SQLite in the data dir).")
    ] = None,
    forum: Annotated[Path | None, typer.Option("--forum", help="Forum definition file (default: the shipped SCO forum).")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data directory (default: ./.forumflow).")] = None,
) -> None:
    """Proposal lifecycle of a multi-party forum's working groups."""
    ctx.obj = _Options(db=db, forum=forum, data_dir=data_dir)


# ---------------------------------------------------------------------------- setup and forum
@app.command()
@guarded
def init(ctx: typer.Context) -> None:
    """Create or upgrade the schema to the newest revision and load or re-sync the forum definition.

    Idempotent and safe to run twice at once (the second waits for the first); never deletes proposals.
    """
    from models.runtime import initialise

    opts: _Options = ctx.find_root().obj
    try:
        done = initialise(settings_of(ctx))
    except ForumDefinitionError as exc:
        fail(str(exc), 2)
    rt = opts.runtime = done.runtime
    report = done.sync
    out.print(done.schema_line(), markup=False, highlight=False)
    out.print(
        f"[bold]{plain(rt.definition.forum.name)}[/]: {report.regions} regions, {report.groups} working groups, "
        f"{report.terms} presiding terms; members {report.members_added} added, {report.members_updated} updated, "
        f"{report.members_deactivated} deactivated"
    )
    out.print(f"database: {_shown_url(str(rt.engine.url))}", markup=False)


@app.command()
@guarded
def forum(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Summary of the forum: member states, regions, presiding terms, working groups, proposals."""
    from rich.table import Table

    from models import session_scope
    from models.queries import forum_summary

    rt = runtime(ctx)
    with session_scope(rt.engine) as session:
        data = forum_summary(session, rt.lifecycle, now_utc())
    if as_json:
        print_json(data)
        return
    out.print(f"[bold]{plain(data['forum'])}[/]  member states: {plain(', '.join(data['member_states']))}")
    today = now_utc().date().isoformat()
    out.print(f"presiding now: {data['presiding_region_now'] or f'— (no presiding term covers {today})'}", markup=False)
    terms = Table("region", "start", "end", "deputy", title="Presiding terms")
    for t in data["presiding_terms"]:
        terms.add_row(*map(plain, (t["region"], t["start"], t["end"], t["deputy"] or "—")))
    out.print(terms)
    for gap in data["presiding_gaps"]:
        out.print(gap["message"], markup=False)
    regions = Table("code", "name", "head", title="Participating regions")
    for r in data["regions"]:
        regions.add_row(*map(plain, (r["code"], r["name"], r["head"] or "—")))
    out.print(regions)
    groups = Table("key", "name", "chair", "deputy chair", "members", title="Working groups")
    for g in data["working_groups"]:
        groups.add_row(*map(plain, (g["key"], g["name"], g["chair"], g["deputy_chair"] or "—", len(g["members"]))))
    out.print(groups)
    out.print("proposals: " + ", ".join(f"{k} {v}" for k, v in data["proposals"].items()), markup=False)


@app.command()
def diagram(ctx: typer.Context) -> None:
    """The workflow as a Mermaid state diagram."""
    from models import Lifecycle
    from models.queries import mermaid

    sys.stdout.write(mermaid(Lifecycle(definition_of(settings_of(ctx)))))


# ---------------------------------------------------------------------------- proposals
AT_HELP = (
    "Record it as having happened at this ISO time (a decision taken at a meeting), e.g. 2022-12-20T10:00Z; "
    "not in the future, not before the proposal's newest event. Default: now."
)
# The options that feed each field of ProposalCreate, for messages.
_FIELD_OPTION = {"group": "--group", "author": "--as", "title": "--title", "summary": "--summary", "body": "--body-file"}


@app.command()
@guarded
def propose(
    ctx: typer.Context,
    group: Annotated[str, typer.Option("--group", help="Working group key.")],
    actor: Annotated[str, typer.Option("--as", help="Handle of the author.")],
    title: Annotated[str, typer.Option("--title", help="Title of the proposed measure.")],
    summary: Annotated[str, typer.Option("--summary", help="Short summary.")] = "",
    body_file: Annotated[Path | None, typer.Option("--body-file", help="File with the full text (UTF-8).")] = None,
    at: Annotated[str | None, typer.Option("--at", help=AT_HELP)] = None,
) -> None:
    """Draft a new proposal in a working group (its text version 1); prints its id."""
    from pydantic import ValidationError

    from cli.text_commands import read_body
    from models import session_scope
    from models.tables import ProposalCreate

    body = read_body(body_file) if body_file is not None else b""
    try:
        data = ProposalCreate.model_validate({"group": group, "author": actor, "title": title, "summary": summary, "body": body})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "title"
        fail(f"{_FIELD_OPTION.get(field, '--' + field)}: {_reason(first['msg'])}", 2)
    when = recorded_at(at)
    rt = runtime(ctx)
    _check_group(rt, group)
    with session_scope(rt.engine) as session:
        proposal = rt.lifecycle.create_proposal(session=session, proposal_in=data, now=when)
    print(proposal.id)


@app.command()
@guarded
def act(
    ctx: typer.Context,
    proposal_id: Annotated[int, typer.Argument(help="Proposal id.")],
    action: Annotated[str, typer.Argument(help="Action to take, e.g. submit, recommend, endorse, approve.")],
    actor: Annotated[str, typer.Option("--as", help="Handle of the member taking the action.")],
    comment: Annotated[str, typer.Option("--comment", help="Comment (required to return, reject, object, refer back).")] = "",
    percent: Annotated[int | None, typer.Option("--percent", help="Progress in percent (report_progress).")] = None,
    expected_version: Annotated[
        int | None, typer.Option("--expected-version", help="Refuse with exit 5 if the proposal changed since this version.")
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help=AT_HELP)] = None,
) -> None:
    """Take an action on a proposal (now, or after the fact with --at)."""
    from models import session_scope

    when = recorded_at(at)
    rt = runtime(ctx)
    with session_scope(rt.engine) as session:
        events = rt.lifecycle.apply(
            session, proposal_id, action, actor, comment=comment, percent=percent, now=when,
            expected_version=expected_version,
        )
    moment = f" at {when:%Y-%m-%d %H:%M} UTC" if at is not None else ""
    for ev in events:
        out.line(f"proposal {proposal_id}: {ev.action} by {ev.actor}: {ev.from_state} → {ev.to_state}{moment}")


@app.command()
@guarded
def remind(
    ctx: typer.Context,
    proposal_id: Annotated[int, typer.Argument(help="Proposal id.")],
    actor: Annotated[str, typer.Option("--as", help="Handle of the group chair or presiding head sending it.")],
    expected_version: Annotated[
        int | None, typer.Option("--expected-version", help="Refuse with exit 5 if the proposal changed since this version.")
    ] = None,
) -> None:
    """Remind everyone else who must act on a proposal now, by mail (at most once a day per proposal)."""
    from models import session_scope

    rt = runtime(ctx)
    with session_scope(rt.engine) as session:
        event = rt.lifecycle.remind_now(session, proposal_id, actor, now=now_utc(), expected_version=expected_version)
    recipients = ", ".join(event.payload["recipients"])
    out.print(f"proposal {proposal_id}: reminder by {actor} to {recipients} (mailed with the next dispatch)", markup=False)


@app.command()
@guarded
def show(
    ctx: typer.Context,
    proposal_id: Annotated[int, typer.Argument(help="Proposal id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A proposal: its current text in full, state, deadline, what may happen next and who may do it, and its history."""
    from rich.table import Table

    from models import session_scope
    from models.queries import proposal_view

    rt = runtime(ctx)
    with session_scope(rt.engine) as session:
        view = proposal_view(session, rt.lifecycle, proposal_id, now_utc())
    if as_json:
        print_json(view)
        return
    out.print(f"[bold]#{view['id']} {plain(view['title'])}[/]", highlight=False)
    out.print(
        f"group {plain(view['group'])} · author {plain(view['author'])} · state [bold]{plain(view['state'])}[/] · "
        f"deadline {view['deadline'] or '—'}{' (overdue)' if view['overdue'] else ''} · version {view['version']} · "
        f"text version {view['text_version']}",
        highlight=False,
    )
    for part in (view["summary"], view["body"]):
        if part:
            out.print()
            out.print(part.rstrip("\n"), markup=False, highlight=False)
    out.print()
    nxt = Table("action", "who may take it", "comment", title="Next")
    for a in view["allowed"]:
        nxt.add_row(plain(a["action"]), plain(", ".join(a["actors"]) or "nobody"), "required" if a["comment_required"] else "")
    out.print(nxt)
    _print_history(view["history"])


def _print_history(history: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("#", "at (UTC)", "action", "from → to", "actor", "note", title="History")
    for e in history:
        table.add_row(*map(plain, (
            e["seq"], e["at"][:16].replace("T", " "), e["action"], f"{e['from_state'] or '·'} → {e['to_state']}",
            e["actor"], event_note(e["action"], e["comment"], e["payload"]),
        )))
    out.print(table)


@app.command()
@guarded
def history(
    ctx: typer.Context,
    proposal_id: Annotated[int, typer.Argument(help="Proposal id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The event log of a proposal."""
    from models import events_of, session_scope
    from models.queries import event_row, get_proposal

    rt = runtime(ctx)
    with session_scope(rt.engine) as session:
        get_proposal(session, proposal_id)
        rows = [event_row(e) for e in events_of(session, proposal_id)]
    if as_json:
        print_json(rows)
    else:
        _print_history(rows)


@app.command("list")
@guarded
def list_(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option("--state", help="Only proposals in this state.")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Only proposals of this working group.")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only open proposals past their deadline.")] = False,
    search: Annotated[
        str, typer.Option("--search", help="Only proposals whose title, summary or text has every word (any case).")
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Proposals, filtered."""
    from rich.table import Table

    from models import session_scope
    from models.queries import list_proposals

    rt = runtime(ctx)
    if state is not None and state not in rt.lifecycle.workflow.state_names:
        fail(f"--state: unknown state {state!r}; states: {', '.join(rt.lifecycle.workflow.state_names)}", 2)
    if group is not None:
        _check_group(rt, group)
    with session_scope(rt.engine) as session:
        rows = list_proposals(
            session, rt.lifecycle, now=now_utc(), state=state, group=group, overdue=overdue, text=search
        )
    if as_json:
        print_json(rows)
        return
    table = Table("id", "group", "state", "deadline", "author", "title", title=f"{len(rows)} proposals")
    for r in rows:
        deadline = (r["deadline"] or "—")[:10] + (" ⚠" if r["overdue"] else "")
        table.add_row(*map(plain, (r["id"], r["group"], r["state"], deadline, r["author"], r["title"])))
    out.print(table)
    if not rows and state is None and group is None and not overdue:
        _hint_demo_database(rt)


def _check_group(rt: Runtime, group: str) -> None:
    """A --group that names no working group of the forum: the lifecycle's bad input (exit 2 naming the groups there
    are, as ``--group``, through ``guarded``)."""
    from models.lifecycle import unknown_group

    keys = [g.key for g in rt.definition.working_groups]
    if group not in keys:
        raise unknown_group(group, keys)


def _hint_demo_database(rt: Runtime) -> None:
    """An empty database next to the demo's: say where the demo's proposals are."""
    from cli.demo import demo_database

    demo = demo_database(rt.settings)
    if demo.is_file() and rt.engine.url.database != str(demo):
        err.print(f"the demo's proposals are in {demo}: forumflow --db sqlite:///{demo} list", markup=False, highlight=False)


@app.command()
@guarded
def export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="json or csv.")] = "json",
    table: Annotated[str, typer.Option("--table", help="proposals, events, texts or all (csv: all needs --out DIR).")] = "all",
    out_path: Annotated[Path | None, typer.Option("--out", help="File (json) or directory (csv); default: stdout.")] = None,
) -> None:
    """Export proposals, events and text versions as JSON or CSV."""
    from models import session_scope
    from models.queries import all_events, list_proposals
    from models.texts import all_texts

    if fmt not in ("json", "csv"):
        fail(f"--format: {fmt!r} is not json or csv", 2)
    if table not in ("proposals", "events", "texts", "all"):
        fail(f"--table: {table!r} is not proposals, events, texts or all", 2)
    if fmt == "csv" and table == "all" and out_path is None:
        fail("--format csv --table all writes three files: give --out DIR, or --table proposals|events|texts", 2)
    if out_path is not None and fmt == "json" and out_path.is_dir():
        fail(f"--out {out_path} is a folder: --format json writes one file, name it", 2)
    if out_path is not None and fmt == "csv" and out_path.exists() and not out_path.is_dir():
        fail(f"--out {out_path} is a file: --format csv writes into a folder", 2)
    rt = runtime(ctx)
    with session_scope(rt.engine) as session:
        data = {
            "proposals": list_proposals(session, rt.lifecycle, now=now_utc()) if table in ("proposals", "all") else None,
            "events": all_events(session) if table in ("events", "all") else None,
            "texts": all_texts(session) if table in ("texts", "all") else None,
        }
    chosen = {k: v for k, v in data.items() if v is not None}
    if fmt == "json":
        text = json.dumps(chosen if table == "all" else chosen[table], ensure_ascii=False, indent=2, default=str) + "\n"
        if out_path is None:
            sys.stdout.write(text)
        else:
            _write_all(out_path, {out_path: text})
        return
    if out_path is None:
        for rows in chosen.values():
            sys.stdout.write(_csv(rows))
        return
    _write_all(out_path, {out_path / f"{name}.csv": _csv(rows) for name, rows in chosen.items()})
    for name, rows in chosen.items():
        err.print(f"wrote {out_path / f'{name}.csv'} ({len(rows)} rows)", markup=False)


def _write_all(out_path: Path, files: dict[Path, str]) -> None:
    """Write every file or none (missing folders are created): each goes to a temporary file, then all move into place."""
    written: list[tuple[Path, Path]] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.partial")
            written.append((temporary, path))
            temporary.write_text(text, encoding="utf-8")
        for temporary, path in written:
            temporary.replace(path)
    except OSError as exc:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)
        fail(f"--out {out_path}: {exc.strerror or exc}", 2)


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v for k, v in r.items()})
    return buf.getvalue()


@app.command()
@guarded
def demo(
    ctx: typer.Context,
    keep: Annotated[bool, typer.Option("--keep", help="Keep an existing demo database instead of starting fresh.")] = False,
    prefect: Annotated[
        bool, typer.Option("--prefect/--no-prefect", help="Run the review flow through Prefect (default) or call it directly.")
    ] = True,
) -> None:
    """Run the main job on the embedded defaults: a forum year in simulated time, mail into the local sink."""
    from cli.demo import run_demo

    settings = settings_of(ctx)
    run_demo(settings, definition_of(settings), out.console(), fresh=not keep, prefect=prefect)


def _register_extensions() -> None:
    """Commands that live in their own modules (mail, flows, texts, web); each imports its heavy parts lazily."""
    from cli import flow_commands, mail_commands, text_commands, token_commands, web_commands

    mail_commands.register(app)
    flow_commands.register(app)
    text_commands.register(app)
    web_commands.register(app)
    token_commands.register(app)


_register_extensions()


# The global options that take a value (see _root): what follows them is not the command's name.
_ROOT_VALUE_OPTIONS = ("--db", "--forum", "--data-dir")


def command_named(args: list[str]) -> str | None:
    """The command (or command group) that ``args`` invoke, or None when they name none (help, no arguments)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[i + 1] if i + 1 < len(args) else None
        if arg in _ROOT_VALUE_OPTIONS:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return None


def _name_of(command: Any) -> str | None:
    """The name a registered command is invoked by (typer's rule: the function's, lower case, - for _)."""
    if command.name:
        return str(command.name)
    return typer.main.get_command_name(command.callback.__name__) if command.callback is not None else None


def app_for(args: list[str]) -> typer.Typer:
    """The app that runs ``args``: the global options and the one command they name, or every command.

    Typer builds a click command for every registered command before it runs one; building the one named
    spares a short command (``act``) that work. Help, no command or an unknown name get the whole app,
    so listings and "No such command" suggestions are unchanged.
    """
    name = command_named(args)
    if name is None:
        return app
    commands = [c for c in app.registered_commands if _name_of(c) == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        return app
    one = _new_app()
    one.registered_callback = app.registered_callback
    one.registered_commands = commands
    one.registered_groups = groups
    return one


def main() -> None:
    """Console-script entry point."""
    app_for(sys.argv[1:])()
