"""The wire form of a mail, read back with the standard library's parser."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import InvalidInputError
from notifications.mail import Sender, build_mail, display_name
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
