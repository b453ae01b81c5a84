"""The local mail sink: aiosmtpd on loopback, storing into a Maildir that a mail client can open."""

from __future__ import annotations

import mailbox
import smtplib
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from config.settings import Settings
from models import Lifecycle
from notifications import dispatch_once
from notifications.sink import MailSink, SinkError, free_port, run_sink
from tests.factories import T0, make_proposal
from tests.notifications.helpers import email_of


def _send(port: int, to: str, subject: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.org", to, subject
    msg.set_content("body")
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.send_message(msg)


def test_the_sink_stores_every_message_in_a_maildir(tmp_path: Path) -> None:
    maildir = tmp_path / "maildir"
    with MailSink(maildir, port=0) as sink:
        _send(sink.port, "b@example.org", "first")
        _send(sink.port, "c@example.org", "second")
        stored = sink.messages()

    assert not sink.running
    assert sorted(m["Subject"] for m in stored) == ["first", "second"]
    assert {m["Delivered-To"] for m in stored} == {"b@example.org", "c@example.org"}
    assert all(m["Return-Path"] == "<a@example.org>" for m in stored)
    assert len(list(mailbox.Maildir(maildir, create=False))) == 2  # a plain Maildir, readable by anyone


def test_the_sink_listens_on_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="loopback"):
        MailSink(tmp_path, host="0.0.0.0")


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with MailSink(tmp_path / "a", port=0) as first, pytest.raises(SinkError, match=f"127.0.0.1:{first.port}"):
        MailSink(tmp_path / "b", port=first.port).start()


def test_run_sink_serves_until_stopped(tmp_path: Path) -> None:
    port, stop = free_port(), threading.Event()
    thread = threading.Thread(target=run_sink, args=(tmp_path / "maildir", "127.0.0.1", port), kwargs={"stop": stop})
    thread.start()
    try:
        for _ in range(100):  # until it listens
            try:
                _send(port, "d@example.org", "hello")
                break
            except OSError:
                time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)

    assert not thread.is_alive()
    assert [m["Subject"] for m in mailbox.Maildir(tmp_path / "maildir", create=False)] == ["hello"]
    with pytest.raises(OSError):
        _send(port, "d@example.org", "after the stop")


def test_forumflow_mail_lands_in_the_maildir_in_three_languages(db: Engine, lifecycle: Lifecycle, tmp_path: Path) -> None:
    make_proposal(db, lifecycle, state="reviewed")
    with MailSink(tmp_path / "maildir", port=0) as sink:
        settings = Settings(data_dir=tmp_path, smtp_port=sink.port, smtp_timeout=5)
        report = dispatch_once(db, settings, lifecycle, now=T0)
        stored = [message_from_bytes(m.as_bytes(), policy=policy.default) for m in sink.messages()]

    assert report.send.sent == len(stored) == 20
    languages = {str(m["Content-Language"]) for m in stored}
    assert languages == {"en", "ru", "zh"}
    by_address = {str(m["Delivered-To"]): m for m in stored}
    assert by_address[email_of(db, "petrov")]["Subject"].endswith("открыт раунд одобрения")
    assert by_address[email_of(db, "li.ming")]["Subject"].endswith("进入认可程序")
    assert by_address[email_of(db, "deshmukh")]["Subject"].endswith("is open for endorsement")
