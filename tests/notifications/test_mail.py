"""The wire form of a mail, read back with the standard library's parser."""

from __future__ import annotations

import base64
import os
import re
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import InvalidInputError
from notifications.mail import Sender, _seven_bit, base64_lines, build_mail, display_name
from notifications.render import Rendered, header_text
from tests.factories import T0


def parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def mail(subject: str = "s", text: str = "t", html: str = "<p>h</p>", *, to_name: str = "T", ics: bytes | None = None) -> bytes:
    return build_mail(
        Rendered(subject, text, html, "ru", ics), sender=Sender.parse("Forum <forumflow@example.org>"), to_name=to_name,
        to_email="someone@example.org", message_id="<id.1@example.org>", date=T0, proposal_id=7,
    )


@pytest.mark.parametrize("bad", ["no-at-sign", "a@b@c.org", "x@nodot", "evil@example.org\r\nBcc: v@x.org", ""])
def test_a_bad_from_address_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        Sender.parse(bad)




@pytest.mark.parametrize(
    "subject",
    [
        "[sco-hrf] Ежедневная сводка за 2 марта 2021 г. (событий: 2)",
        "[sco-hrf] Напоминание: №12 «Совместный агропромышленный парк в Челябинской области» ждёт вашего решения",
        "[sco-hrf] 提醒：第12号提案《在车里雅宾斯克州建设联合农工业园区以及物流中心》须在2021年3月22日前处理",
        "[sco-hrf] №3 «Grain corridor 粮食走廊 и логистика» — a b c d e f g h i j k l m n o p q r s t u v w",
    ],
)
def test_long_non_ascii_headers_survive_folding(subject: str) -> None:
    sender = Sender.parse("Секретариат форума <forumflow@example.org>")
    rendered_mail = build_mail(
        Rendered(subject, "text", "<p>html</p>", "ru"), sender=sender, to_name="Айгерим Сейтказиева",
        to_email="a.seitkazieva@example.org", message_id="<x@example.org>", date=T0,
    )

    msg = message_from_bytes(rendered_mail, policy=policy.default)

    assert max(len(line) for line in rendered_mail.split(b"\r\n")) <= 78
    assert msg["Subject"] == subject  # every space survives the folds
    assert msg["To"].addresses[0].display_name == "Айгерим Сейтказиева"
    assert msg["To"].addresses[0].addr_spec == "a.seitkazieva@example.org"
    assert msg["From"].addresses[0].display_name == "Секретариат форума"


def test_an_overlong_non_ascii_name_is_cut_to_one_encoded_word() -> None:
    long_name = "Александра Константиновна Преображенская-Верещагина"

    raw = build_mail(
        Rendered("s", "t", "<p>h</p>", "ru"), sender=Sender.parse("forumflow@example.org"), to_name=long_name,
        to_email="a@example.org", message_id="<x@example.org>", date=T0,
    )
    shown = message_from_bytes(raw, policy=policy.default)["To"].addresses[0].display_name

    assert long_name.startswith(shown) and 15 <= len(shown) < len(long_name)
    assert len(shown.encode()) <= 45


@settings(max_examples=300, deadline=None)
@given(subject=st.text(max_size=250), name=st.text(max_size=60), text=st.text(max_size=300))
def test_any_text_survives_the_round_trip(subject: str, name: str, text: str) -> None:
    raw = mail(subject, text, f"<p>{text}</p>", to_name=name)
    msg = parse(raw)

    raw.decode("ascii")  # all 7-bit
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    assert msg["Subject"] == header_text(subject)
    assert msg["To"].addresses[0].display_name == display_name(name)
    assert msg["To"].addresses[0].addr_spec == "someone@example.org"
    assert msg["Message-ID"] == "<id.1@example.org>" and msg["Date"].datetime == T0
    body = msg.get_body(("plain",))
    assert body is not None
    if body["Content-Transfer-Encoding"] == "base64":
        assert body.get_content() == text
    else:  # 7bit: ASCII without control characters, line ends made CRLF on the wire
        assert text.isascii()
        assert body.get_content().replace("\r\n", "\n") == text.replace("\r\n", "\n").replace("\r", "\n")


def test_structure_and_encodings() -> None:
    ics = "BEGIN:VCALENDAR\r\nSUMMARY:П\r\nEND:VCALENDAR\r\n".encode()
    msg = parse(mail("plain subject", "Hello\nworld", "<p>Привет</p>", ics=ics))

    assert msg.get_content_type() == "multipart/mixed"
    alternative, ics = list(msg.iter_parts())
    text, html = list(alternative.iter_parts())
    assert (text.get_content_type(), text["Content-Transfer-Encoding"]) == ("text/plain", "7bit")
    assert (html.get_content_type(), html["Content-Transfer-Encoding"]) == ("text/html", "base64")
    assert html.get_content() == "<p>Привет</p>"
    assert ics.get_content_type() == "text/calendar" and ics.get_filename() == "deadline.ics"
    assert ics.get_param("method") == "PUBLISH" and "SUMMARY:П" in ics.get_content()
    assert msg["Auto-Submitted"] == "auto-generated" and msg["X-Forumflow-Proposal"] == "7"
    assert msg["From"].addresses[0].display_name == "Forum"


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_base64_bodies_are_cut_as_the_standard_library_cuts_them(data: bytes) -> None:
    expected = base64.encodebytes(data).replace(b"\n", b"\r\n").rstrip(b"\r\n")

    assert base64_lines(data) == expected


def test_boundaries_are_never_made_twice_not_even_by_a_forked_child() -> None:
    def boundaries(n: int) -> set[str]:
        return {str(parse(mail()).get_boundary()) for _ in range(n)}

    before = boundaries(200)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its boundaries go back through the pipe
        os.write(writer, "\n".join(boundaries(200)).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        child = set(pipe.read().split("\n"))
    os.waitpid(pid, 0)
    after = boundaries(200)

    assert len(before) == len(child) == len(after) == 200
    assert not (before & child) and not (child & after) and not (before & after)
    assert all(re.fullmatch(r"=_forumflow_[0-9a-f]{32}\.\d+", b) for b in before | child)


@settings(max_examples=500, deadline=None)
@given(text=st.text(st.sampled_from("ab \t\n\x00\x1f\x7f\x0b\x0c~é\u2028"), max_size=40), long=st.integers(0, 910))
def test_seven_bit_means_ascii_no_control_character_but_tab_and_no_line_over_900(text: str, long: int) -> None:
    lines = (text + "x" * long).replace("\r\n", "\n").replace("\r", "\n")
    expected = lines.isascii() and not any(
        len(line) > 900 or any((ord(c) < 32 and c != "\t") or c == "\x7f" for c in line) for line in lines.split("\n")
    )

    assert _seven_bit(lines) == expected
