"""Flow commands: ``review``, ``serve`` and ``simulate``.

Prefect is imported inside the commands only: the CLI's action path (``act``, ``show``, ...) never loads it.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import typer

from cli.reporting import reported
from models.clock import utc
from models.errors import InvalidInputError

if TYPE_CHECKING:
    from models.runtime import Runtime
    from web.server import BackgroundWebServer


def register(app: typer.Typer) -> None:
    """Add the flow commands to the ``forumflow`` app."""
    app.command("review")(review)
    app.command("serve")(serve)
    app.command("simulate")(simulate)


def review(
    ctx: typer.Context,
    now: Annotated[str | None, typer.Option("--now", help="Review as of this ISO time (default: now).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Proposals per task.")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    flow: Annotated[
        bool,
        typer.Option(
            "--flow/--direct",
            help="Run it as the Prefect review flow (default; on the server of a running `forumflow serve` of this data "
            "dir, else PREFECT_API_URL's, else a temporary one) or directly, without Prefect (the same sweep).",
        ),
    ] = True,
) -> None:
    """Run the review once: reminders, escalations, silence procedure, term hand-over, progress reviews."""
    from cli.main import err, out, parse_when, print_json, runtime
    from models.review import check_review_time

    when = parse_when(now)
    rt = runtime(ctx)
    with reported(ctx):
        check_review_time(rt.engine, when)  # refused before Prefect starts (it takes seconds)
        if flow:
            from flows.serve import flow_runs

            with flow_runs(rt.settings, announce=err.line) as server:
                from flows.review import review as review_flow

                server.ready()
                counts = review_flow(now=when, batch_size=batch_size)
        else:
            from models.review import sweep

            counts = sweep(rt.engine, rt.lifecycle, when, batch_size=batch_size).as_dict()
    if as_json:
        print_json({"now": when.isoformat(), **counts})
        return
    out.print(
        f"review at {when:%Y-%m-%d %H:%M} UTC: {counts['proposals']} proposals due; {counts['reminders']} reminders, "
        f"{counts['escalations']} escalations, {counts['closed']} rounds closed by silence, {counts['handovers']} hand-overs, "
        f"{counts['progress_due']} progress requests",
        highlight=False,
    )


def serve(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", help="Port of the local Prefect server (0: any free port).")] = 4200,
    web: Annotated[bool, typer.Option("--web/--no-web", help="Also run the web app (on 127.0.0.1).")] = True,
    web_port: Annotated[int, typer.Option("--web-port", min=0, max=65535, help="Port of the web app (0: any free port).")] = 8000,
) -> None:
    """Serve the review and dispatch flows on their schedules, and the web app beside them (one command for a small forum).

    Starts a local Prefect server unless PREFECT_API_URL is set; Ctrl-C stops everything.
    """
    from cli.main import out, runtime

    rt = runtime(ctx)
    from flows.serve import serve_flows

    def say(line: str) -> None:
        out.print(line, markup=False, highlight=False)
        out.file.flush()

    site: list[BackgroundWebServer] = []

    def start_web() -> None:  # once the Prefect server answers and serve may go on: a refusal starts nothing
        if web:
            site.append(_start_web(rt, web_port))

    try:
        with reported(ctx):
            serve_flows(rt.settings, port=port, announce=say, on_ready=start_web)
    except KeyboardInterrupt:  # before serving began (e.g. while the local server starts)
        pass
    finally:
        for running in site:
            running.stop()
            say("web app stopped")
    say("forumflow serve stopped")


def _start_web(rt: Runtime, port: int) -> BackgroundWebServer:
    """The web app in a thread of this process on 127.0.0.1:``port``; mail links of the flows point at it too."""
    import os

    from cli.main import out
    from web.server import BackgroundWebServer

    with reported():
        site = BackgroundWebServer(rt, host="127.0.0.1", port=port).start()
    # Flow runs (child processes) read their settings from the environment: the same base URL for their mail.
    os.environ["FORUMFLOW_BASE_URL"] = site.settings.base_url
    out.print(f"web app: {site.url}  (links in mail start with {site.settings.base_url})", markup=False, highlight=False)
    return site


def simulate(
    ctx: typer.Context,
    proposals: Annotated[int, typer.Option("--proposals", min=1, help="Proposals drafted during the simulation.")] = 200,
    days: Annotated[int, typer.Option("--days", min=1, help="Simulated days.")] = 365,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same run).")] = 1,
    start: Annotated[str | None, typer.Option("--start", help="First simulated day (default 2022-07-01).")] = None,
    mail: Annotated[bool, typer.Option("--mail/--no-mail", help="Also send every mail into a local mail sink.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Simulate forum activity hour by hour, the review and dispatch after each hour; check the invariants.

    Dispatch runs after every simulated hour: it plans deliveries (the outbox is checked) and, with --mail,
    sends them into a local SMTP sink (slower: every mail is rendered; the Maildir is checked too).
    """
    from rich.table import Table

    from cli.main import definition_of, fail, out, print_json, settings_of
    from flows.simulate import DEFAULT_START, SimulationConfig, result_json, run_simulation, summary_rows

    settings = settings_of(ctx)
    begin = DEFAULT_START
    if start is not None:
        try:
            begin = dt.datetime.combine(dt.date.fromisoformat(start), dt.time(), tzinfo=dt.UTC)
        except ValueError:
            fail(f"--start: {start!r} is not a date (YYYY-MM-DD)", 2)
    try:  # the whole simulated span lies in the engine's calendar, or nothing starts
        utc(begin), utc(begin + dt.timedelta(days=days))
    except (InvalidInputError, OverflowError):
        fail(f"--start {begin:%Y-%m-%d} --days {days}: the simulated span must lie within the years 1970 to 2999", 2)
    config = SimulationConfig(proposals=proposals, days=days, seed=seed, start=begin)
    with reported(ctx):
        result, folder = run_simulation(settings, definition_of(settings), config, mail=mail)
    if as_json:
        print_json(result_json(result) | {"folder": str(folder)})
    else:
        figures = Table("", "", title="Simulation", show_header=False)
        for label, value in summary_rows(result):
            figures.add_row(label, value)
        out.print(figures)
        checks = Table("invariant", "cases", "result", title="Invariants")
        for check in result.checks:
            verdict = "[green]ok[/]" if check.ok else f"[red]FAILED ({len(check.failures)})[/]"
            checks.add_row(check.name, str(check.checked), verdict)
        out.print(checks)
        for check in result.checks:
            for failure in check.failures[:5]:
                out.print(f"  {check.name}: {failure}", markup=False, highlight=False)
        for refusal in result.refused[:5]:
            out.print(f"  refused: {refusal}", markup=False, highlight=False)
        out.print(f"database and mail: {folder}", markup=False, highlight=False)
    if not result.ok:
        raise typer.Exit(code=1)
