"""Differences between two versions of a proposal's text: pure functions, no database.

A text has three fields, title, summary and body. ``unified`` gives the classic line diff people read in a
terminal; ``word_changes`` the same changes as data, word by word inside changed lines (for pages that
mark insertions and deletions); ``summarise`` the few facts a mail carries (lines added and removed, the
first changed lines).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

FIELDS = ("title", "summary", "body")
# A word, a run of spaces, one punctuation mark, or one CJK character (Chinese has no spaces between words).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|\s+|[^\w\s]", re.UNICODE)


class Text(Protocol):
    """Anything with the three text fields (a ``ProposalText`` row, a ``Proposal``)."""

    title: str
    summary: str
    body: str


@dataclass(frozen=True)
class ChangedLine:
    """One added (``+``) or removed (``-``) line of a field."""

    field: str
    sign: str
    text: str


@dataclass(frozen=True)
class ChangeSummary:
    """What changed between two versions, in brief."""

    from_version: int
    to_version: int
    added: int
    removed: int
    first: list[ChangedLine] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the two versions differ at all."""
        return bool(self.added or self.removed)

    def as_dict(self) -> dict[str, Any]:
        """As plain data (for an event payload)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChangeSummary:
        """Back from ``as_dict``."""
        first = [ChangedLine(**line) for line in data.get("first", [])]
        return cls(int(data["from_version"]), int(data["to_version"]), int(data["added"]), int(data["removed"]), first)


def _lines(value: str) -> list[str]:
    return value.splitlines()


def unified(old: Text, new: Text, *, old_label: str = "a", new_label: str = "b", context: int = 3) -> str:
    """A unified diff of title, summary and body (fields that did not change are left out); '' if equal."""
    parts: list[str] = []
    for name in FIELDS:
        diff = difflib.unified_diff(
            _lines(getattr(old, name)), _lines(getattr(new, name)),
            fromfile=f"{old_label}/{name}", tofile=f"{new_label}/{name}", lineterm="", n=context,
        )
        parts.extend(diff)
    return "\n".join(parts) + "\n" if parts else ""


def _ops(old: Sequence[str], new: Sequence[str]) -> Sequence[tuple[str, int, int, int, int]]:
    return difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()


def _op(tag: str, old: str, new: str) -> dict[str, str]:
    if tag == "equal":
        return {"op": "equal", "text": old}
    if tag == "delete":
        return {"op": "delete", "old": old}
    if tag == "insert":
        return {"op": "insert", "new": new}
    return {"op": "replace", "old": old, "new": new}


def words(old: str, new: str) -> list[dict[str, str]]:
    """The changes from ``old`` to ``new`` as ops: lines first, then word by word inside replaced lines.

    Each op is ``{"op": "equal", "text"}``, ``{"op": "delete", "old"}``, ``{"op": "insert", "new"}`` or
    ``{"op": "replace", "old", "new"}``; joining the ``text``/``old`` parts gives ``old``, the ``text``/``new``
    parts ``new``. Neighbouring ops of the same kind are merged.
    """
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    out: list[dict[str, str]] = []
    for tag, i1, i2, j1, j2 in _ops(a, b):
        block_old, block_new = "".join(a[i1:i2]), "".join(b[j1:j2])
        if tag != "replace":
            out.append(_op(tag, block_old, block_new))
            continue
        ta, tb = _TOKEN.findall(block_old), _TOKEN.findall(block_new)
        for wtag, k1, k2, m1, m2 in _ops(ta, tb):
            out.append(_op(wtag, "".join(ta[k1:k2]), "".join(tb[m1:m2])))
    return _merged(out)


def _merged(ops: list[dict[str, str]]) -> list[dict[str, str]]:
    merged: list[dict[str, str]] = []
    for op in ops:
        if merged and merged[-1]["op"] == op["op"]:
            last = merged[-1]
            for key, value in op.items():
                if key != "op":
                    last[key] += value
        else:
            merged.append(dict(op))
    return merged


def word_changes(old: Text, new: Text) -> dict[str, dict[str, Any]]:
    """Per field: whether it changed and its word-by-word ops (see ``words``)."""
    out: dict[str, dict[str, Any]] = {}
    for name in FIELDS:
        before, after = getattr(old, name), getattr(new, name)
        out[name] = {"changed": before != after, "ops": words(before, after)}
    return out


def summarise(old: Text, new: Text, *, from_version: int, to_version: int, first: int = 5, width: int = 160) -> ChangeSummary:
    """Lines added and removed over the three fields, and the first ``first`` changed non-blank lines."""
    added = removed = 0
    lines: list[ChangedLine] = []
    for name in FIELDS:
        a, b = _lines(getattr(old, name)), _lines(getattr(new, name))
        for tag, i1, i2, j1, j2 in _ops(a, b):
            if tag == "equal":
                continue
            removed += i2 - i1
            added += j2 - j1
            for sign, changed in (("-", a[i1:i2]), ("+", b[j1:j2])):
                for line in changed:
                    text = " ".join(line.split())
                    if text and len(lines) < first:
                        lines.append(ChangedLine(name, sign, text if len(text) <= width else text[: width - 1] + "…"))
    return ChangeSummary(from_version, to_version, added, removed, lines)
