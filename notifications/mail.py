"""Putting a rendered message in an envelope: the wire form of a mail, built from sanitised values only.

The MIME structure is fixed and small (text and HTML alternatives, optionally a calendar attachment),
so it is written directly rather than through ``email.message``: that costs a few milliseconds per
mail, more than rendering and sending together, and the folder of CPython 3.11 loses the space between
two encoded words at a fold. Every header is 7-bit: non-ASCII text goes out as RFC 2047 encoded words
that each hold whole characters and carry their own spaces; bodies are base64 unless plain ASCII.
The tests read every mail back with the standard library's parser.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import functools
import itertools
import os
import re
import uuid
from dataclasses import dataclass

from models.errors import InvalidInputError
from notifications.render import UNSAFE_HEADER_CHARS, Rendered, header_text

CRLF = "\r\n"
LINE = 78
# One encoded word is at most 75 characters (RFC 2047): "=?utf-8?b?" + base64 of 45 bytes + "?=".
WORD_BYTES = 45
_SPECIALS = set('()<>[]:;@\\,."')
# An address as it goes out, in headers and on SMTP command lines: no quoting, no space, nothing but these.
ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
# Base64 body lines: 76 characters (57 bytes) each, as ``base64.encodebytes`` cuts them.
_BASE64_LINE = re.compile(rb".{1,76}", re.DOTALL)
_EOL, _BLANK = b"\r\n", b"\r\n\r\n"


@dataclass(frozen=True)
class Sender:
    """The From address of every mail, checked once."""

    name: str
    addr_spec: str

    @classmethod
    def parse(cls, value: str, default_name: str = "") -> Sender:
        """Validate a configured From address (``name <addr>`` or a bare address)."""
        name, addr = email.utils.parseaddr(value)
        if UNSAFE_HEADER_CHARS.search(value) or not ADDRESS.fullmatch(addr) or "." not in addr.split("@")[1]:
            raise InvalidInputError(f"invalid mail From address {value!r}")
        return cls(display_name(name or default_name), addr)

    @property
    def domain(self) -> str:
        """The domain part, used for Message-IDs and the greeting."""
        return self.addr_spec.split("@")[1]


class _Unique:
    """Strings no other process and no other call of this one makes: a random token drawn per process, a count."""

    def __init__(self) -> None:
        self.draw()
        os.register_at_fork(after_in_child=self.draw)  # a forked child draws its own

    def draw(self) -> None:
        self.token = uuid.uuid4().hex
        self.count = itertools.count(1)

    def next(self) -> str:
        return f"{self.token}.{next(self.count)}"


_unique = _Unique()


def display_name(name: str) -> str:
    """A one-line display name; a non-ASCII one cut to what one encoded word holds."""
    name = header_text(name, 100)
    if name.isascii():
        return name
    while len(name.encode("utf-8")) > WORD_BYTES:
        name = name[:-1]
    return name.rstrip()


def _word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def encoded_words(text: str, first: int = WORD_BYTES) -> list[str]:
    """``text`` as encoded words of whole characters (the first holding ``first`` bytes); spaces travel inside."""
    data, words, room = text.encode("utf-8"), [], first
    while data:
        cut = min(room, len(data))
        while cut < len(data) and data[cut] & 0xC0 == 0x80:  # never split a character
            cut -= 1
        words.append("=?utf-8?b?" + base64.b64encode(data[:cut]).decode("ascii") + "?=")
        data, room = data[cut:], WORD_BYTES
    return words


def _fold(name: str, tokens: list[str], sep: str) -> str:
    """``name: tokens`` folded before a token wherever the line would pass 78 characters."""
    line, lines = f"{name}:", []
    for i, token in enumerate(tokens):
        piece = (" " if i == 0 else sep) + token
        if i and len(line) + len(piece) > LINE:
            lines.append(line)
            line = " " + token
        else:
            line += piece
    return CRLF.join([*lines, line])


@functools.lru_cache(maxsize=4096)  # the same subjects and names come back mail after mail
def unstructured(name: str, value: str) -> str:
    """A text header (Subject): plain words if ASCII, encoded words otherwise; folded."""
    value = header_text(value)
    if value.isascii():
        return _fold(name, value.split(" "), " ")
    # Encoded words are separated by folding white space only, which decoders drop between them.
    # The first word shares its line with the header name.
    first = (LINE - len(name) - 2 - len("=?utf-8?b??=")) // 4 * 3
    return _fold(name, encoded_words(value, min(first, WORD_BYTES)), "")


@functools.lru_cache(maxsize=4096)
def mailbox(name: str, display: str, addr_spec: str) -> str:
    """A From/To header: ``display <addr>``, the name quoted or encoded as needed (one encoded word at most)."""
    if not ADDRESS.fullmatch(addr_spec):
        raise ValueError(f"unsafe address {addr_spec!r}")
    display = display_name(display)
    if not display:
        return f"{name}: {addr_spec}"
    if not display.isascii():
        shown = _word(display)
    elif _SPECIALS & set(display):
        shown = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        shown = display
    return _fold(name, [shown, f"<{addr_spec}>"], " ")


def _simple(name: str, value: str) -> str:
    if UNSAFE_HEADER_CHARS.search(value):
        raise ValueError(f"header {name} holds a control character")
    return f"{name}: {value}"


@functools.lru_cache(maxsize=1024)
def _same(name: str, value: str) -> str:
    """``_simple`` for values that come back mail after mail."""
    return _simple(name, value)


def _part(content_type: str, text: str, extra: tuple[str, ...] = ()) -> bytes:
    """A leaf part: 7bit if it is short-lined ASCII text, base64 otherwise; CRLF line ends."""
    if text.isascii():
        lines = text.replace("\r\n", "\n").replace("\r", "\n")
        if _seven_bit(lines):
            return b"".join((_part_head(content_type, "7bit", extra), lines.replace("\n", CRLF).encode("ascii"), _EOL))
    # The text as it is: base64 carries its line ends.
    return b"".join((_part_head(content_type, "base64", extra), base64_lines(text.encode("utf-8")), _EOL))


@functools.lru_cache(maxsize=16)
def _part_head(content_type: str, cte: str, extra: tuple[str, ...]) -> bytes:
    head = [f'Content-Type: {content_type}; charset="utf-8"', f"Content-Transfer-Encoding: {cte}", *extra]
    return CRLF.join(head).encode("ascii") + _BLANK


def _seven_bit(lines: str) -> bool:
    """True for ASCII text with no control character but tab and LF, and no line over 900 characters."""
    if not lines.isascii():
        return False
    # Without tabs and LFs, an ASCII text is printable exactly when it holds no control character.
    return lines.replace("\n", "").replace("\t", "").isprintable() and max(map(len, lines.split("\n"))) <= 900


def base64_lines(data: bytes) -> bytes:
    """``data`` in base64, lines of 76 characters joined by CRLF (as ``base64.encodebytes`` cuts them)."""
    return _EOL.join(_BASE64_LINE.findall(binascii.b2a_base64(data, newline=False)))


@functools.lru_cache(maxsize=64)
def _date(moment: dt.datetime) -> str:
    return _simple("Date", email.utils.format_datetime(moment.astimezone(dt.UTC)))


def _multipart(subtype: str, parts: list[bytes]) -> tuple[str, bytes]:
    """A Content-Type header and a body joining ``parts``."""
    # Unguessable outside this process, so it cannot occur in our text even by design; base64 never holds "=_".
    boundary = f"=_forumflow_{_unique.next()}"
    line = f"--{boundary}\r\n".encode("ascii")
    body = b"".join([piece for part in parts for piece in (line, part)]) + f"--{boundary}--\r\n".encode("ascii")
    return _fold("Content-Type", [f"multipart/{subtype};", f'boundary="{boundary}"'], " "), body


def build_mail(
    rendered: Rendered,
    *,
    sender: Sender,
    to_name: str,
    to_email: str,
    message_id: str,
    date: dt.datetime,
    proposal_id: int | None = None,
) -> bytes:
    """The wire form of one mail: text and HTML alternatives, and the .ics attachment if any."""
    content_type, body = _multipart(
        "alternative", [_part("text/plain", rendered.text), _part("text/html", rendered.html)]
    )
    if rendered.ics is not None:
        ics = _part(
            'text/calendar; method=PUBLISH; name="deadline.ics"', rendered.ics.decode("utf-8"),
            ('Content-Disposition: attachment; filename="deadline.ics"',),
        )
        inner = content_type.encode("ascii") + _BLANK + body
        content_type, body = _multipart("mixed", [inner, ics])
    headers = [
        mailbox("From", sender.name, sender.addr_spec),
        mailbox("To", to_name, to_email),
        unstructured("Subject", rendered.subject),
        _date(date),
        _simple("Message-ID", message_id),
        _same("Auto-Submitted", "auto-generated"),
        _same("Content-Language", rendered.language),
        *([_same("X-Forumflow-Proposal", str(proposal_id))] if proposal_id is not None else []),
        "MIME-Version: 1.0",
        content_type,
    ]
    return CRLF.join(headers).encode("ascii") + _BLANK + body
