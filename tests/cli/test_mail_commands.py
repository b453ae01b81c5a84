"""``forumflow dispatch``, ``outbox`` and ``mail-sink`` end to end, with the real mail sink."""

from __future__ import annotations

import json
import mailbox
import os
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from notifications.sink import MailSink, free_port
from tests.cli.conftest import Invoke
from tests.notifications.helpers import SmtpServer


def _submitted(cli: Invoke) -> str:
    assert cli("init").code == 0
    r = cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", "Joint agro park")
    assert r.code == 0, r.stderr
    pid = r.stdout.strip()
    assert cli("act", pid, "submit", "--as", "zhao.lei").code == 0
    return pid


def test_dispatch_sends_through_the_sink_and_outbox_shows_it(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = _submitted(cli)
    with MailSink(tmp_path / "maildir", port=0) as sink:
        monkeypatch.setenv("FORUMFLOW_SMTP_PORT", str(sink.port))
        sent = cli("dispatch")
        again = cli("dispatch", "--json")
        stored = sink.messages()

    assert sent.code == 0, sent.stderr
    assert "planned 3; sent 3 of 3; to retry 0; failed 0; dead 0; digests 0" in sent.stdout
    assert again.code == 0
    assert json.loads(again.stdout) == {
        "planned": 0, "attempted": 0, "sent": 0, "retrying": 0, "failed": 0, "dead": 0, "digests": 0, "unreachable": 0,
        "errors": [],
    }
    group = ["a.sharma@example.org", "n.kuznetsov@example.org", "s.nurlanova@example.org"]
    assert sorted(str(m["Delivered-To"]) for m in stored) == group
    rows = json.loads(cli("outbox", "--json").stdout)
    assert len(rows) == 3
    assert {(r["proposal"], r["action"], r["status"], r["attempts"]) for r in rows} == {(int(pid), "submit", "sent", 1)}
    table = cli("outbox")
    assert table.code == 0 and "kuznetsov" in table.stdout and "sent" in table.stdout
    assert json.loads(cli("outbox", "--status", "dead", "--json").stdout) == []


@pytest.mark.parametrize("as_json", [False, True])
def test_dispatch_with_the_server_down_fails_in_one_line_and_keeps_the_mail(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    _submitted(cli)
    monkeypatch.setenv("FORUMFLOW_SMTP_PORT", str(free_port()))

    r = cli("dispatch", *(["--json"] if as_json else []))
    again = cli("dispatch", *(["--json"] if as_json else []))  # at once: the mail that never left is tried again

    for run in (r, again):
        assert run.code == 1
        assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: mail server") and "unreachable" in run.stderr
    if as_json:
        counts = json.loads(r.stdout)
        assert (counts["attempted"], counts["sent"], counts["unreachable"]) == (3, 0, 3) and counts["errors"]
        assert json.loads(again.stdout)["unreachable"] == 3
    else:
        assert "sent 0 of 3; to retry 3 (3 waiting for the server)" in r.stdout
    pending = json.loads(cli("outbox", "--status", "pending", "--json").stdout)
    assert len(pending) == 3 and {p["attempts"] for p in pending} == {0}  # an outage uses up no attempt
    assert all("Connection refused" in p["last_error"] for p in pending)
    table = cli("outbox")
    assert table.stdout.count("Connection refused") == 3  # the table shows each delivery's last error


def test_outbox_retry_queues_dead_and_failed_mail_again(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    _submitted(cli)
    server = SmtpServer()
    server.handler.refuse.add("n.kuznetsov@example.org")
    server.start()
    try:
        monkeypatch.setenv("FORUMFLOW_SMTP_PORT", str(server.port))
        assert cli("dispatch").code == 0
        (dead,) = json.loads(cli("outbox", "--status", "dead", "--json").stdout)
        nothing = cli("outbox", "retry")
        queued = cli("outbox", "retry", "--status", "dead")
        pending = json.loads(cli("outbox", "--status", "pending", "--json").stdout)
        server.handler.refuse.clear()
        sent = cli("dispatch")
        sent_again = cli("outbox", "retry", "--id", str(dead["id"]))
        unknown = cli("outbox", "retry", "--id", "999", "--id", str(dead["id"]))
        huge = cli("outbox", "retry", "--id", "99999999999999999999")
        bad_status = cli("outbox", "retry", "--status", "pending")
    finally:
        server.stop()

    assert "550" in dead["last_error"] and dead["recipient"] == "kuznetsov"
    assert nothing.code == 0 and nothing.stdout.strip() == "nothing to retry: no failed deliveries"
    assert queued.code == 0 and queued.stdout.strip() == "queued 1 delivery again"
    assert [(p["id"], p["attempts"]) for p in pending] == [(dead["id"], 0)]
    assert sent.code == 0 and "sent 1 of 1" in sent.stdout
    assert len(server.to("n.kuznetsov@example.org")) == 1
    refusal = f"error: delivery {dead['id']} is sent; only failed or dead deliveries can be retried\n"
    assert (sent_again.code, sent_again.stderr) == (3, refusal)
    assert (unknown.code, unknown.stderr) == (4, "error: no delivery with id 999\n")
    assert (huge.code, huge.stderr.count("\n")) == (4, 1)
    assert bad_status.code == 2 and bad_status.stderr.count("\n") == 1 and "'pending'" in bad_status.stderr
    assert {r["status"] for r in json.loads(cli("outbox", "--json").stdout)} == {"sent"}


def test_outbox_refuses_an_unknown_status(cli: Invoke) -> None:
    r = cli("outbox", "--status", "lost")

    assert r.code == 2 and "unknown status 'lost'" in r.stderr and r.stderr.count("\n") == 1


def test_mail_sink_runs_in_the_foreground_until_interrupted(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, FORUMFLOW_DATA_DIR=str(tmp_path / "data"), FORUMFLOW_SMTP_PORT=str(port), PYTHONIOENCODING="utf-8")
    subject = "through the CLI sink [industry]: Напоминание"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cli.main import main; main()", "mail-sink"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@example.org", "b@example.org", subject
        msg.set_content("hello")
        for _ in range(200):
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
                    smtp.send_message(msg)
                break
            except OSError:
                time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)

    assert proc.returncode == 0, err
    assert f"127.0.0.1:{port}" in err and "maildir" in err
    stored = list(mailbox.Maildir(tmp_path / "data" / "maildir", create=False))
    assert len(stored) == 1
    assert out == f"mail to b@example.org: {subject}\n"  # one line per mail, subject decoded and printed literally


def test_the_mail_commands_do_not_import_prefect(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from cli.main import app\n"
        "for args in (['init'], ['outbox'], ['dispatch']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('prefect' in sys.modules)\n"
    )
    env = dict(os.environ, FORUMFLOW_DATA_DIR=str(tmp_path / "data"), FORUMFLOW_SMTP_PORT=str(free_port()))
    env.pop("FORUMFLOW_DATABASE_URL", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)

    assert r.stdout.strip().splitlines()[-1] == "False", r.stderr


def test_the_status_options_name_every_delivery_status() -> None:
    from cli.mail_commands import RETRY_STATUSES, STATUSES
    from models.outbox import DeliveryStatus

    assert STATUSES == [s.value for s in DeliveryStatus]
    assert RETRY_STATUSES == [DeliveryStatus.FAILED.value, DeliveryStatus.DEAD.value]


@pytest.mark.parametrize("port", ["70000", "0", "-1"])
def test_mail_sink_refuses_a_port_that_cannot_be(cli: Invoke, port: str) -> None:
    r = cli("mail-sink", "--port", port)
    assert r.code == 2 and "Invalid value for '--port'" in r.stderr and "Traceback" not in r.stderr
