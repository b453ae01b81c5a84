"""Every notification mail links to the proposal's page, from the base URL, in every language and both parts."""

from __future__ import annotations

import datetime as dt
import re
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy.engine import Engine

from config.settings import Settings
from models import Lifecycle, session_scope
from models.texts import proposal_create, text_edit
from notifications import dispatch_once
from tests.factories import AUTHOR, CHAIR, T0, make_proposal
from tests.notifications.helpers import SmtpServer, email_of, notice, set_preference

BASE_URL = "https://forum.example.org/app"
DAY = dt.timedelta(days=1)


class Links(HTMLParser):
    """The href of every <a> in an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def parts(msg: EmailMessage) -> tuple[str, str]:
    """The plain text and the HTML of a mail, decoded."""
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def links_of(msg: EmailMessage) -> tuple[list[str], list[str]]:
    """The links of the text part (every http(s) URL) and of the HTML part (every <a href>)."""
    text, html = parts(msg)
    parser = Links()
    parser.feed(html)
    return re.findall(r"https?://\S+", text), parser.hrefs


@pytest.fixture
def mail_settings(tmp_path: Path, smtp_server: SmtpServer) -> Settings:
    """Mail goes to the test server; the app is reached under a path of an https host."""
    return Settings(
        data_dir=tmp_path, base_url=BASE_URL + "/", smtp_host=smtp_server.host, smtp_port=smtp_server.port,
        mail_from="forumflow@example.org",
    )


def mails_to(engine: Engine, server: SmtpServer, handle: str) -> list[EmailMessage]:
    return [r.message for r in server.to(email_of(engine, handle))]


def test_event_mails_link_to_the_proposal_in_every_language(
    forum: Engine, lifecycle: Lifecycle, mail_settings: Settings, smtp_server: SmtpServer
) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    for action, actor, comment in [("return", CHAIR, "Add a budget"), ("submit", AUTHOR, ""), ("recommend", CHAIR, "")]:
        with session_scope(forum) as s:
            lifecycle.apply(s, pid, action, actor, comment=comment, now=T0)
    dispatch_once(forum, mail_settings, lifecycle, now=T0)
    languages = set()
    assert len(smtp_server.received) > 10
    for received in smtp_server.received:
        msg = received.message
        languages.add(msg["Content-Language"])
        text_links, html_links = links_of(msg)
        assert text_links == [f"{BASE_URL}/proposals/{pid}"], msg["Subject"]
        assert html_links == [f"{BASE_URL}/proposals/{pid}"], msg["Subject"]
    assert languages == {"en", "ru", "zh"}


def test_progress_due_links_to_the_report_page(
    forum: Engine, lifecycle: Lifecycle, mail_settings: Settings, smtp_server: SmtpServer
) -> None:
    pid = make_proposal(forum, lifecycle, state="implementing", now=T0 - 100 * DAY)
    dispatch_once(forum, mail_settings, lifecycle, now=T0)
    smtp_server.received.clear()
    notice(forum, lifecycle, pid, "progress_due", now=T0, recipients=[AUTHOR, CHAIR], due=(T0 + 7 * DAY).isoformat())
    dispatch_once(forum, mail_settings, lifecycle, now=T0)
    for handle in (AUTHOR, CHAIR):
        (msg,) = mails_to(forum, smtp_server, handle)
        text_links, html_links = links_of(msg)
        wanted = [f"{BASE_URL}/proposals/{pid}", f"{BASE_URL}/proposals/{pid}/actions/report_progress"]
        assert text_links == wanted and html_links == wanted


def test_reminder_links_to_the_proposal(
    forum: Engine, lifecycle: Lifecycle, mail_settings: Settings, smtp_server: SmtpServer
) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review", now=T0 - 25 * DAY)
    dispatch_once(forum, mail_settings, lifecycle, now=T0)
    smtp_server.received.clear()
    notice(forum, lifecycle, pid, "remind", now=T0, recipients=[CHAIR], offset_days=5,
           deadline=(T0 + 5 * DAY).isoformat())
    dispatch_once(forum, mail_settings, lifecycle, now=T0)
    (msg,) = mails_to(forum, smtp_server, CHAIR)
    assert links_of(msg) == ([f"{BASE_URL}/proposals/{pid}"], [f"{BASE_URL}/proposals/{pid}"])


def test_changed_text_mail_links_to_the_differences(
    forum: Engine, lifecycle: Lifecycle, mail_settings: Settings, smtp_server: SmtpServer
) -> None:
    with session_scope(forum) as s:
        data = proposal_create(group="industry", author=AUTHOR, title="Cold chain", body="Site: Chelyabinsk.\n")
        p = lifecycle.create_proposal(session=s, proposal_in=data, now=T0)
        assert p.id is not None
        pid = p.id
    steps = [("submit", AUTHOR, ""), ("recommend", CHAIR, ""), ("endorse", "seitkazieva", ""),
             ("endorse", "wang.jianguo", ""), ("object", "yousafzai", "Budget?"), ("return", CHAIR, "Add it")]
    for action, actor, comment in steps:
        with session_scope(forum) as s:
            lifecycle.apply(s, pid, action, actor, comment=comment, now=T0)
    with session_scope(forum) as s:
        lifecycle.edit(s, pid, AUTHOR, text_edit(body="Site: Chelyabinsk.\nBudget: 12 million EUR.\n"), now=T0)
        lifecycle.apply(s, pid, "submit", AUTHOR, now=T0)
    dispatch_once(forum, mail_settings, lifecycle, now=T0)
    smtp_server.received.clear()
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "recommend", CHAIR, now=T0 + DAY)
    dispatch_once(forum, mail_settings, lifecycle, now=T0 + DAY)

    for handle in ("seitkazieva", "wang.jianguo"):  # endorsed text 1: asked again, told what changed
        (msg,) = mails_to(forum, smtp_server, handle)
        text_links, html_links = links_of(msg)
        diff, page = text_links
        assert html_links == text_links  # the HTML's &amp; is read back as &
        assert page == f"{BASE_URL}/proposals/{pid}"
        parsed = urlsplit(diff)
        assert f"{parsed.scheme}://{parsed.netloc}{parsed.path}" == page
        assert parse_qs(parsed.query) == {"from": ["1"], "to": ["2"]}
        assert "&amp;" in parts(msg)[1] and "&amp;" not in parts(msg)[0]
    (msg,) = mails_to(forum, smtp_server, "patel")  # did not endorse before: the ordinary mail, one link
    assert links_of(msg) == ([f"{BASE_URL}/proposals/{pid}"], [f"{BASE_URL}/proposals/{pid}"])


def test_digest_items_link_to_their_proposals(
    forum: Engine, lifecycle: Lifecycle, mail_settings: Settings, smtp_server: SmtpServer
) -> None:
    set_preference(forum, CHAIR, "digest")
    first = make_proposal(forum, lifecycle, state="in_review", title="First")
    second = make_proposal(forum, lifecycle, state="in_review", title="Second")
    dispatch_once(forum, mail_settings, lifecycle, now=T0)
    assert mails_to(forum, smtp_server, CHAIR) == []
    dispatch_once(forum, mail_settings, lifecycle, now=T0 + DAY)
    (digest,) = mails_to(forum, smtp_server, CHAIR)
    text_links, html_links = links_of(digest)
    wanted = [f"{BASE_URL}/proposals/{first}", f"{BASE_URL}/proposals/{second}"]
    assert text_links == wanted and html_links == wanted


def test_default_base_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORUMFLOW_BASE_URL", raising=False)
    assert Settings(data_dir=tmp_path).base_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("FORUMFLOW_BASE_URL", "https://forum.example.org/")
    assert Settings(data_dir=tmp_path).base_url == "https://forum.example.org"
