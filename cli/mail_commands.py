"""Mail commands: ``mail-sink``, ``outbox`` (and ``outbox retry``) and ``dispatch``.

``cli.main`` imports this module while it is being imported itself, so everything from it is imported
inside the command functions.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.reporting import reported

if TYPE_CHECKING:
    from config.settings import Settings

# models.outbox.DeliveryStatus's values (a test keeps them equal): importing the outbox's table here would cost
# every command, ``act`` included, its start-up time.
STATUSES = ["pending", "sent", "failed", "dead"]
RETRY_STATUSES = ["failed", "dead"]

outbox_app = typer.Typer(
    help="List deliveries and their status; `outbox retry` queues failed or dead ones again.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def mail_sink(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Loopback address (default: FORUMFLOW_SMTP_HOST).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port (default: FORUMFLOW_SMTP_PORT).")
    ] = None,
) -> None:
    """Run the local SMTP mail sink in the foreground; every message lands in the Maildir. Ctrl-C stops."""
    from cli.main import err, out, settings_of
    from notifications.sink import run_sink

    settings = settings_of(ctx)
    host = host or settings.smtp_host
    port = settings.smtp_port if port is None else port
    maildir = settings.maildir.resolve()
    err.print(f"mail sink on {host}:{port}, storing into {maildir}; Ctrl-C stops", markup=False, highlight=False)

    def received(recipient: str, subject: str) -> None:
        out.print(f"mail to {recipient}: {subject}", markup=False, highlight=False)
        out.file.flush()

    with reported():
        run_sink(maildir, host, port, on_message=received)


@outbox_app.callback()
def outbox(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help=f"Only this status ({', '.join(STATUSES)}).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List deliveries (one mail per event and recipient, and daily digests), their status and last error."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table
    from sqlmodel import col, select

    from cli.console import plain
    from cli.main import fail, out, print_json, runtime
    from models.db import session_scope
    from models.outbox import Delivery
    from models.tables import Event

    if status is not None and status not in STATUSES:
        fail(f"unknown status {status!r}; statuses: {', '.join(STATUSES)}", 2)
    rt = runtime(ctx)
    with reported(), session_scope(rt.engine) as session:
        query = select(Delivery, Event).outerjoin(Event, col(Event.id) == col(Delivery.event_id))
        if status is not None:
            query = query.where(col(Delivery.status) == status)
        rows = [_row(d, e) for d, e in session.exec(query.order_by(col(Delivery.id).desc()).limit(limit))]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"Outbox ({len(rows)} shown)")
    for column in ("id", "proposal", "event", "recipient", "kind", "status", "tries", "due / sent (UTC)"):
        table.add_column(column, overflow="fold")
    table.add_column("last error", overflow="fold", min_width=24)  # the column that needs the room
    for r in rows:
        when = r["next_attempt_at"] if r["status"] == "pending" else r["sent_at"] or ""
        table.add_row(*map(plain, (
            r["id"], r["proposal"] or "", r["action"] or "", r["recipient"], r["kind"], r["status"],
            r["attempts"], when[:16].replace("T", " "), r["last_error"],
        )))
    out.print(table)


def _row(d: Any, e: Any) -> dict[str, Any]:
    return {
        "id": d.id,
        "proposal": e.proposal_id if e is not None else None,
        "event_id": d.event_id,
        "action": e.action if e is not None else None,
        "recipient": d.recipient,
        "email": d.email,
        "kind": d.kind,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at.isoformat(timespec="seconds"),
        "sent_at": d.sent_at.isoformat(timespec="seconds") if d.sent_at else None,
        "message_id": d.message_id,
        "digest_id": d.digest_id,
        "last_error": d.last_error,
    }


@outbox_app.command("retry")
def outbox_retry(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Queue every delivery with this status (failed or dead; default failed)."),
    ] = None,
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="Only this delivery (repeat for more); it must be failed or dead.")
    ] = None,
) -> None:
    """Put failed or dead deliveries back in the queue: pending, attempts reset, due now."""
    from cli.main import fail, now_utc, out, runtime
    from models.db import session_scope
    from notifications import retry_deliveries

    if status is not None and status not in RETRY_STATUSES:
        fail(f"cannot retry {status!r} deliveries; --status is one of: {', '.join(RETRY_STATUSES)}", 2)
    rt = runtime(ctx)
    with reported(), session_scope(rt.engine) as session:
        queued = retry_deliveries(session, now=now_utc(), status=status, ids=ids or ())
    if queued:
        out.print(f"queued {queued} {'delivery' if queued == 1 else 'deliveries'} again", markup=False, highlight=False)
    else:
        out.print(f"nothing to retry: no {status or 'failed'} deliveries", markup=False, highlight=False)


def dispatch(
    ctx: typer.Context,
    now: Annotated[str | None, typer.Option("--now", help="The moment to dispatch at (ISO 8601; default: now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    flow: Annotated[
        bool,
        typer.Option(
            "--flow/--direct",
            help="Run it as the Prefect dispatch flow (visible in Prefect's run history; on the server of a running "
            "`forumflow serve` of this data dir, else PREFECT_API_URL's, else a temporary one) or directly (default).",
        ),
    ] = False,
) -> None:
    """Plan deliveries for new events and send what is due now."""
    from dataclasses import asdict

    from cli.main import parse_when, print_json, runtime
    from models.clock import check_run_time
    from notifications import dispatch_once

    when = parse_when(now)
    rt = runtime(ctx)
    if flow:
        with reported():
            check_run_time(rt.engine, when, run="dispatch")  # refused before Prefect starts (it takes seconds)
        _dispatch_flow(rt.settings, when, as_json)
        return
    with reported():
        report = dispatch_once(rt.engine, rt.settings, rt.lifecycle, now=when)
    s = report.send
    if as_json:
        print_json({"planned": report.planned, **asdict(s)})
    else:
        _print_counts({"planned": report.planned, **asdict(s)})
    if s.errors:  # after the counts, in both forms: the mail waits, and the exit code says why
        from cli.main import fail

        fail(f"mail server {rt.settings.smtp_host}:{rt.settings.smtp_port} unreachable: {s.errors[0]}", 1)


def _print_counts(counts: dict[str, Any]) -> None:
    """One line with what a dispatch planned and sent."""
    from cli.main import out

    waiting = f" ({counts['unreachable']} waiting for the server)" if counts.get("unreachable") else ""
    out.print(
        f"planned {counts['planned']}; sent {counts['sent']} of {counts['attempted']}; to retry {counts['retrying']}{waiting}; "
        f"failed {counts['failed']}; dead {counts['dead']}; digests {counts['digests']}",
        markup=False, highlight=False,
    )


def _dispatch_flow(settings: Settings, when: dt.datetime, as_json: bool) -> None:
    """Run the ``dispatch`` flow once through Prefect and print its counts."""
    from cli.main import err, fail, print_json
    from flows.serve import flow_runs

    with reported(), flow_runs(settings, announce=err.line) as server:
        from flows.dispatch import dispatch as dispatch_flow

        server.ready()
        counts = dispatch_flow(now=when)
    if as_json:
        print_json(counts)
    else:
        _print_counts(counts)
    if counts["attempted"] and not counts["sent"] and counts["retrying"]:
        fail(f"mail server {settings.smtp_host}:{settings.smtp_port} unreachable: all deliveries left for retry", 1)


def register(app: typer.Typer) -> None:
    """Add the mail commands to ``app``."""
    app.command("mail-sink")(mail_sink)
    app.add_typer(outbox_app, name="outbox")
    app.command("dispatch")(dispatch)
