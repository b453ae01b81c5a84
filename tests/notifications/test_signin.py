"""Sign-in mails: rendered in the member's language, sent by the normal dispatch, wiped from the outbox after."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from config import ForumDefinition
from config.settings import Settings
from models import Lifecycle, session_scope
from models.outbox import Delivery, DeliveryKind, DeliveryStatus
from notifications.dispatch import send_pending
from notifications.signin import mail_sign_in_link
from tests.factories import T0
from tests.notifications.helpers import SmtpServer


def queue(engine: Engine, definition: ForumDefinition, settings: Settings, address: str, now: dt.datetime = T0) -> None:
    with session_scope(engine) as s:
        mail_sign_in_link(s, definition, settings, address, client="127.0.0.1", now=now)


def outbox(engine: Engine) -> list[Delivery]:
    with session_scope(engine) as s:
        return list(s.exec(select(Delivery).where(Delivery.kind == DeliveryKind.MESSAGE)))


@pytest.mark.parametrize(
    ("address", "lang", "subject", "words"),
    [
        ("p.deshmukh@example.org", "en", "Your sign-in link", "The link works once, until"),
        ("a.petrov@example.org", "ru", "Ссылка для входа", "Ссылка действует один раз, до"),
        ("wang.jianguo@example.org", "zh", "您的登录链接", "该链接只能使用一次"),
    ],
)
def test_sign_in_mail_in_the_members_language(
    forum: Engine, definition: ForumDefinition, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer,
    address: str, lang: str, subject: str, words: str,
) -> None:
    queue(forum, definition, settings, address)
    report = send_pending(forum, settings, lifecycle, now=T0)
    assert report.sent == 1
    [received] = smtp_server.to(address)
    mail = received.message
    assert mail["Content-Language"] == lang and str(mail["Subject"]) == f"[sco-hrf] {subject}"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert words in text and f"{settings.base_url}/sign-in/continue?token=" in text
    assert 'href="http://127.0.0.1:8000/sign-in/continue?token=' in html
    [row] = outbox(forum)
    assert row.status == DeliveryStatus.SENT and row.message is None


def test_a_link_that_could_not_go_out_in_time_is_given_up(
    forum: Engine, definition: ForumDefinition, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer,
) -> None:
    queue(forum, definition, settings, "a.petrov@example.org")
    smtp_server.stop()
    send_pending(forum, settings, lifecycle, now=T0)  # server down: stays pending, message kept for the retry
    [row] = outbox(forum)
    assert row.status == DeliveryStatus.PENDING and row.message is not None
    smtp_server.start()
    send_pending(forum, settings, lifecycle, now=T0 + dt.timedelta(minutes=16))  # the link has expired meanwhile
    [row] = outbox(forum)
    assert row.status == DeliveryStatus.FAILED and row.message is None and "expired" in row.last_error
    assert smtp_server.to("a.petrov@example.org") == []


def test_refused_recipient_leaves_no_message_behind(
    forum: Engine, definition: ForumDefinition, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer,
) -> None:
    smtp_server.handler.refuse.add("a.petrov@example.org")
    queue(forum, definition, settings, "a.petrov@example.org")
    send_pending(forum, settings, lifecycle, now=T0)
    [row] = outbox(forum)
    assert row.status == DeliveryStatus.DEAD and row.message is None


def test_unknown_address_queues_nothing(forum: Engine, definition: ForumDefinition, settings: Settings) -> None:
    queue(forum, definition, settings, "nobody@example.org")
    assert outbox(forum) == []
