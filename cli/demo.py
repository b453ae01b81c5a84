"""``forumflow demo``: a forum year in simulated time on the embedded defaults.

A fresh SQLite database and Maildir in the data dir, the local mail sink, the shipped SCO forum, and a
story: proposals from several working groups, one returned and revised, one objected to and revised again (its
earlier endorsers are asked to endorse the new text), endorsements by consensus
and by silence, approvals by RU-CHE, the presiding-term hand-over to UZ-SA, progress reports, and the
reminders and escalations the review flow produces on its own. The clock moves hour by hour; whenever
review work is due the ``review`` flow runs through Prefect at that simulated hour, and the outbox is
dispatched into the mail sink after every step.
"""

from __future__ import annotations

import datetime as dt
import mailbox
import os
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from cli.console import plain
from cli.events import event_note
from config.definition import ForumDefinition
from config.settings import Settings
from models import Lifecycle, create_schema, events_of, make_engine, session_scope, sync_definition
from models.review import due_ids, next_due, sweep
from models.tables import Event, Proposal, ProposalCreate
from models.texts import text_edit

if TYPE_CHECKING:
    from flows.serve import RunServer

START = dt.datetime(2022, 9, 1, 9, 15, tzinfo=dt.UTC)
END = dt.datetime(2023, 8, 31, 18, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
# The demo ends with a sign-in link for this chair (industry: seeds is implementing, so there is something to do).
WEB_CHAIR = "kuznetsov"
WEB_LINK_HOURS = 24
ONE_HEAD_PER_STATE = ["wang.jianguo", "deshmukh", "seitkazieva", "toktogulov", "khan.ayesha", "petrov", "rakhimov", "karimov"]

Reviewer = Callable[[dt.datetime], dict[str, int]]
Dispatcher = Callable[[dt.datetime], int]


@dataclass
class Story:
    """Acts at simulated times; between acts the clock moves hour by hour and the review runs when due."""

    engine: Engine
    lifecycle: Lifecycle
    review: Reviewer
    dispatch: Dispatcher
    now: dt.datetime = START
    ids: dict[str, int] = field(default_factory=dict)
    review_runs: int = 0
    review_events: Counter[str] = field(default_factory=Counter)
    mails: int = 0

    def _review(self, at: dt.datetime) -> None:
        counts = self.review(at)
        self.review_runs += 1
        self.review_events.update({k: v for k, v in counts.items() if k not in ("proposals", "skipped")})
        self.mails += self.dispatch(at)

    def wait_until(self, when: dt.datetime) -> None:
        """Move the clock to ``when``, running the review at every full hour on the way when it has work due.

        The story does nothing while it waits, so only the review writes: ``next_due`` says when the review next
        finds work, and the hours before it, which would find none, are passed over.
        """
        hour = self.now.replace(minute=0, second=0, microsecond=0) + HOUR
        with Session(self.engine) as session:  # each question in a read of its own: the review writes in between
            while hour <= when:
                due = next_due(session, self.lifecycle, hour)
                session.rollback()
                if due is None or due > when:
                    break
                hour = max(hour, _full_hour_from(due))
                if hour > when:
                    break
                if due_ids(session, self.lifecycle, hour):
                    session.rollback()
                    self._review(hour)
                session.rollback()
                hour += HOUR
        self.now = max(self.now, when)

    def wait(self, **delta: float) -> None:
        """Move the clock forward by a timedelta."""
        self.wait_until(self.now + dt.timedelta(**delta))

    def deadline(self, key: str) -> dt.datetime:
        """The current deadline of a proposal."""
        with session_scope(self.engine) as s:
            p = s.get(Proposal, self.ids[key])
            assert p is not None and p.deadline is not None
            return p.deadline

    def propose(self, key: str, group: str, author: str, title: str, summary: str = "") -> None:
        """Draft a proposal and remember its id under ``key``."""
        with session_scope(self.engine) as s:
            data = ProposalCreate(group=group, author=author, title=title, summary=summary)
            p = self.lifecycle.create_proposal(session=s, proposal_in=data, now=self.now)
            assert p.id is not None
            self.ids[key] = p.id
        self.mails += self.dispatch(self.now)

    def act(self, key: str, action: str, actor: str, comment: str = "", percent: int | None = None) -> None:
        """Apply an action at the current simulated time, then dispatch what it caused."""
        with session_scope(self.engine) as s:
            self.lifecycle.apply(s, self.ids[key], action, actor, comment=comment, percent=percent, now=self.now)
        self.mails += self.dispatch(self.now)

    def edit(self, key: str, author: str, *, body: str) -> None:
        """The author writes a new text version of a draft."""
        with session_scope(self.engine) as s:
            self.lifecycle.edit(s, self.ids[key], author, text_edit(body=body), now=self.now)
        self.mails += self.dispatch(self.now)

    def endorse_by(self, key: str, heads: list[str], hours: float = 5) -> None:
        """Several heads of region endorse, some hours apart."""
        for head in heads:
            self.wait(hours=hours)
            self.act(key, "endorse", head)


TRADE_BODY = """Customs data fields for parcels under 200 EUR:
- sender, receiver
- HS code (6 digits), declared value, weight

Pilot crossing: Khorgos (KZ-CN), six months.
"""


def play(st: Story) -> None:
    """The demo story, from September 2022 (RU-CHE presiding) to August 2023 (UZ-SA presiding)."""
    st.propose("agro", "industry", "zhao.lei", "Joint agro-industrial park on the Chelyabinsk–Harbin corridor",
               "Shared cold-chain logistics and seed testing for member regions.")
    st.propose("trade", "trade", "chen.jing", "Single window for cross-border e-commerce between border regions",
               "Harmonised customs data for parcels under 200 EUR.")
    st.propose("science", "science", "iyer.kavya", "Regional innovation vouchers for joint research teams",
               "Small grants for teams from at least three member states.")
    st.propose("museum", "education", "sultanova", "Travelling exhibition of Silk Road manuscripts")
    st.propose("visa", "tourism", "umarov", "Group e-visa for heritage tours")
    st.propose("seeds", "industry", "nurlanova", "Network of seed-testing laboratories",
               "Mutual recognition of seed certificates between laboratories of the member regions.")
    for key, author in (("agro", "zhao.lei"), ("trade", "chen.jing"), ("science", "iyer.kavya"),
                        ("museum", "sultanova"), ("visa", "umarov"), ("seeds", "nurlanova")):
        st.wait(hours=2)
        st.act(key, "submit", author)

    # Trade is returned for more detail, revised and resubmitted; tourism is withdrawn; education rejects its item.
    st.wait(days=5)
    st.act("trade", "return", "tursunov", comment="Please add the customs data fields and a pilot crossing.")
    st.wait(days=4)
    st.edit("trade", "chen.jing", body=TRADE_BODY)
    st.act("trade", "submit", "chen.jing")
    st.act("visa", "withdraw", "umarov", comment="Covered by the national e-visa reform.")
    st.wait(days=2)
    st.act("museum", "reject", "mehta.arjun", comment="Outside the group's mandate; refer to the cultural ministries.")

    # Agro: recommended, endorsed by consensus of all eight member states, approved by Chelyabinsk.
    st.wait(days=3)
    st.act("agro", "recommend", "kuznetsov")
    st.endorse_by("agro", ONE_HEAD_PER_STATE)
    st.wait(days=3)
    st.act("agro", "approve", "petrov")

    # Science: its chair lets the review slip past the deadline; the review flow escalates, then it moves.
    st.wait_until(st.deadline("science") + dt.timedelta(days=2))
    st.act("science", "recommend", "liu.yang")
    st.endorse_by("science", ["li.ming", "sokolova", "nurlanov", "deshmukh"], hours=30)

    # Trade: recommended; a head objects; returned, revised and recommended again (the three heads who endorsed
    # the first text are asked to endorse the new one); consensus.
    st.wait(days=1)
    st.act("trade", "recommend", "tursunov")
    st.endorse_by("trade", ONE_HEAD_PER_STATE[:3])
    st.wait(days=2)
    st.act("trade", "object", "yousafzai", comment="The data fields must follow the WCO data model.")
    st.wait(days=2)
    st.act("trade", "return", "tursunov", comment="Please align the data fields with the WCO data model.")
    st.wait(days=3)
    st.edit("trade", "chen.jing", body=TRADE_BODY.replace("- sender, receiver", "- WCO data model 3.x: consignor, consignee"))
    st.act("trade", "submit", "chen.jing")
    st.wait(days=1)
    st.act("trade", "recommend", "tursunov", comment="Aligned with the WCO data model.")
    st.endorse_by("trade", ONE_HEAD_PER_STATE, hours=20)

    # Science's round closes by silence at its deadline (the review flow does it); seeds is escalated twice.
    st.wait_until(st.deadline("science") + dt.timedelta(hours=2))
    st.wait(days=1)
    st.act("science", "approve", "petrov")
    st.wait_until(st.deadline("seeds") + dt.timedelta(days=9))
    st.act("seeds", "recommend", "kuznetsov", comment="Recommended after the secretariat's reminder.")
    st.endorse_by("seeds", ["petrov", "wang.jianguo"], hours=48)

    # Trade awaits approval across the new year: the review hands it over from RU-CHE to UZ-SA.
    st.wait_until(dt.datetime(2023, 1, 3, 10, 15, tzinfo=dt.UTC))
    st.act("trade", "approve", "karimov")
    st.wait_until(st.deadline("seeds") + dt.timedelta(days=1))
    st.act("seeds", "approve", "karimov")

    # Implementation: progress reports; agro misses a report and is chased by the review flow.
    st.wait(days=10)
    st.act("agro", "report_progress", "zhao.lei", comment="Site selected in the Chelyabinsk free economic zone.", percent=30)
    st.act("trade", "report_progress", "tursunov", comment="Pilot at Khorgos prepared.", percent=20)
    st.act("science", "report_progress", "iyer.kavya", comment="First call for vouchers published.", percent=25)
    st.wait(days=100)
    st.act("agro", "report_progress", "zhao.lei", comment="Cold-chain terminal built.", percent=80)
    st.act("trade", "report_progress", "tursunov", comment="Pilot running at Khorgos.", percent=60)
    st.wait(days=40)
    st.act("agro", "report_progress", "zhao.lei", comment="Terminal in operation; first shipments to Harbin.", percent=100)
    st.act("agro", "complete", "kuznetsov")
    st.wait_until(END)


def _full_hour_from(at: dt.datetime) -> dt.datetime:
    """``at`` if it is a full hour, else the next full hour."""
    floor = at.replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + HOUR


def _fresh(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _prefect_reviewer(settings: Settings, server: RunServer) -> Reviewer:
    """Run the review flow through Prefect, on ``server`` (entered by the caller with ``flow_runs``)."""
    from flows.review import review

    def run(at: dt.datetime) -> dict[str, int]:
        server.ready()  # a temporary server started beside the story's first steps
        return review(now=at, db_url=settings.db_url)

    return run


def prefect_ui_hint(environ: Mapping[str, str] | None = None, *, api_url: str | None = None) -> str:
    """How to see the runs in the Prefect UI: a running server's (``api_url``, or the configured one), or a server
    on the demo's Prefect home and a free port."""
    from flows.serve import DEFAULT_PORT, HOST, pick_port

    env = os.environ if environ is None else environ
    if api := api_url or env.get("PREFECT_API_URL"):
        return f"open {api.removesuffix('/').removesuffix('/api')}/runs"
    port = pick_port(DEFAULT_PORT)
    command = [str(Path(sys.executable).parent / "prefect"), "server", "start"]
    if port != DEFAULT_PORT:
        command += ["--port", str(port)]
    return f"PREFECT_HOME={shlex.quote(env['PREFECT_HOME'])} {shlex.join(command)}  → open http://{HOST}:{port}/runs"


def demo_database(settings: Settings) -> Path:
    """Where the demo keeps its database: ``<data dir>/demo.db``."""
    return settings.data_dir.resolve() / "demo.db"


def web_hint(engine: Engine, definition: ForumDefinition, settings: Settings, path: Path, *, now: dt.datetime) -> str:
    """How to browse the demo's data in the web app: the command, and a one-time sign-in link for a chair.

    The story's clock lies in the past; the link is valid for ``WEB_LINK_HOURS`` from ``now``, the wall clock.
    """
    from models.auth import grant_sign_in
    from models.tables import Member
    from notifications.signin import sign_in_url

    group = next(g for g in definition.working_groups if g.chair == WEB_CHAIR)
    with session_scope(engine) as s:
        chair = s.get(Member, WEB_CHAIR)
        assert chair is not None
        grant = grant_sign_in(s, chair, now=now, valid=dt.timedelta(hours=WEB_LINK_HOURS))
        name = chair.name
    return (
        f"Browse it in the web app: forumflow --db sqlite:///{path} web   then open, within {WEB_LINK_HOURS} hours, this "
        f"one-time sign-in link for {name} (chair of {group.name}): {sign_in_url(settings.base_url, grant.token)}"
    )


def run_demo(settings: Settings, definition: ForumDefinition, console: Console, *, fresh: bool = True,
             prefect: bool = True, clock: Callable[[], dt.datetime] | None = None) -> Path:
    """Play the demo in ``<data dir>/demo.db`` with mail in ``<data dir>/demo-maildir``; print the story; return the db path.

    With ``prefect``, the review runs through Prefect: on the server of a running ``forumflow serve`` of the data
    dir, else ``PREFECT_API_URL``'s, else a temporary one (see ``flows.serve.flow_runs``), one flow run whenever
    review work is due. ``clock`` (default: the wall clock) dates the web sign-in link printed at the end.
    """
    began = time.perf_counter()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    path = demo_database(settings)
    maildir = data_dir / "demo-maildir"
    if fresh:
        _fresh(path)
        shutil.rmtree(maildir, ignore_errors=True)
    demo_settings = settings.model_copy(update={"database_url": f"sqlite:///{path}", "data_dir": data_dir})
    with ExitStack() as stack:
        server: RunServer | None = None
        if prefect:
            # First, so that a temporary Prefect server starts while the demo database is made. Flow runs log to
            # Prefect (the UI shows them); the terminal keeps the story.
            from flows.serve import flow_runs

            os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
            console.print("Starting Prefect (the review flow runs through it) …")
            server = stack.enter_context(flow_runs(demo_settings))
            if server.origin == "serve":
                console.print(f"Prefect: the server of forumflow serve, {server.api_url}", markup=False)
        engine = make_engine(demo_settings.db_url)
        stack.callback(engine.dispose)
        create_schema(engine)
        lifecycle = Lifecycle(definition)
        with session_scope(engine) as s:
            sync_definition(s, definition)
        story, messages = _play_with_mail(engine, lifecycle, demo_settings, maildir, server)
    _print_story(console, engine, definition, story)
    _print_mail(console, messages, maildir)
    console.print(f"Explore it: forumflow --db sqlite:///{path} list", markup=False)
    from cli.main import now_utc

    console.print(web_hint(engine, definition, demo_settings, path, now=(clock or now_utc)()), markup=False, soft_wrap=True)
    if server is not None:
        shown = server.api_url if server.origin in ("serve", "environment") else None
        console.print(f"Prefect runs ({story.review_runs} review runs): {prefect_ui_hint(api_url=shown)}", markup=False)
    console.print(f"Done in {time.perf_counter() - began:.0f} s.", markup=False)
    engine.dispose()
    return path


def _play_with_mail(
    engine: Engine, lifecycle: Lifecycle, settings: Settings, maildir: Path, server: RunServer | None
) -> tuple[Story, list[mailbox.MaildirMessage]]:
    """Play the story with the local mail sink taking every mail; the review runs through Prefect on ``server``."""
    import notifications
    from notifications.sink import MailSink

    with MailSink(maildir, port=0) as sink:
        local_smtp = {
            "smtp_host": sink.host, "smtp_port": sink.port, "smtp_tls": "none", "smtp_username": None, "smtp_password": None,
        }
        mail_settings = settings.model_copy(update=local_smtp)

        def dispatch(at: dt.datetime) -> int:
            return notifications.dispatch_once(engine, mail_settings, lifecycle, now=at).send.sent

        if server is not None:
            reviewer = _prefect_reviewer(settings, server)
        else:
            def reviewer(at: dt.datetime) -> dict[str, int]:
                return sweep(engine, lifecycle, at).as_dict()

        story = Story(engine, lifecycle, reviewer, dispatch)
        play(story)
        return story, list(mailbox.Maildir(maildir, create=False))


def _print_story(console: Console, engine: Engine, definition: ForumDefinition, story: Story) -> None:
    console.print(f"[bold]{plain(definition.forum.name)}[/] — {START:%Y-%m-%d} to {END:%Y-%m-%d} in simulated time")
    with session_scope(engine) as s:
        summary = Table("id", "group", "state", "events", "reminders", "escalations", "title", title="Summary")
        for pid in story.ids.values():
            p = s.get(Proposal, pid)
            assert p is not None
            events = events_of(s, pid)
            table = Table("when (UTC)", "action", "from → to", "actor", "note", title=plain(f"#{pid} {p.title} [{p.group}]"))
            for e in events:
                table.add_row(*map(plain, (f"{e.at:%Y-%m-%d %H:%M}", e.action, f"{e.from_state or '·'} → {e.to_state}", e.actor,
                                           event_note(e.action, e.comment, e.payload))))
            console.print(table)
            kinds = Counter(e.action for e in events)
            summary.add_row(*map(plain, (pid, p.group, p.state, len(events), kinds["remind"] + kinds["progress_due"],
                                         kinds["escalate"], p.title)))
        console.print(summary)
        total = s.exec(select(func.count()).select_from(Event)).one()
    by_kind = ", ".join(f"{k} {v}" for k, v in sorted(story.review_events.items()) if v)
    console.print(f"{total} events; the review flow ran {story.review_runs} times and wrote: {by_kind or 'nothing'}",
                  markup=False)


def _print_mail(console: Console, messages: list[mailbox.MaildirMessage], maildir: Path) -> None:
    languages = Counter(str(m.get("Content-Language", "?")) for m in messages)
    by_language = ", ".join(f"{k} {v}" for k, v in sorted(languages.items()))
    console.print(
        f"{len(messages)} mails delivered to the local mail sink ({by_language}): "
        f"{maildir}/new — open with any Maildir reader, e.g. mutt -f {maildir}", markup=False,
    )
