"""Errors of the domain; each carries the CLI exit code that reports it, and may say itself in any language.

``str(error)`` is the one-line English message of the command line (it may name the command's flags and handles).
``error.said``, where the raiser gives one, is the same refusal for any other reader: an English template marked
for the translation catalogs (``N_``) and its values, some of them terms of the forum (an action, a state, a
person, a working group, a region, a moment) that each reader shows in its own way: the web in the reader's
language with people's names, the API in English with the definition's keys (``PLAIN``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal, Protocol

TermKind = Literal["action", "state", "person", "group", "region", "when"]


def N_(message: str) -> str:
    """Mark ``message`` for the catalog without translating it here (it is translated where it is shown)."""
    return message


@dataclass(frozen=True)
class Term:
    """A value that a reader shows in its own way: an action's or state's name, a handle, a group's key, ..."""

    kind: TermKind
    value: Any


class Reader(Protocol):
    """Who shows a ``Said``: their catalog and how they show each kind of term."""

    def gettext(self, message: str) -> str:
        """``message`` in the reader's language."""
        ...

    def term(self, kind: TermKind, value: Any) -> str:
        """How the reader shows a term."""
        ...


@dataclass(frozen=True, init=False)
class Said:
    """A message for a person: an English template (``%(name)s`` placeholders) and its values."""

    template: str
    values: tuple[tuple[str, Any], ...]

    def __init__(self, template: str, **values: Any) -> None:
        object.__setattr__(self, "template", template)
        object.__setattr__(self, "values", tuple(values.items()))

    def render(self, reader: Reader) -> str:
        """The message as ``reader`` reads it."""
        text = reader.gettext(self.template)
        if not self.values:
            return text
        return text % {name: _shown(value, reader) for name, value in self.values}


def _shown(value: Any, reader: Reader) -> str:
    if isinstance(value, Said):
        return value.render(reader)
    if isinstance(value, Term):
        return reader.term(value.kind, value.value)
    return str(value)


def either(first: Said, *more: Said) -> Said:
    """``first or second or ...``, as one message."""
    joined = first
    for part in more:
        joined = Said(N_("%(first)s or %(second)s"), first=joined, second=part)
    return joined


class _Plain:
    """English, with the definition's keys and handles as they are (the API's reader)."""

    def gettext(self, message: str) -> str:
        return message

    def term(self, kind: TermKind, value: Any) -> str:
        if kind == "when" and isinstance(value, dt.datetime):  # aware: times are read back in UTC (models.db)
            return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
        return str(value)


PLAIN: Reader = _Plain()


class ForumflowError(Exception):
    """Base of all expected errors; the message is one line meant for a person (``said``: for any reader)."""

    exit_code = 1

    def __init__(self, message: str, said: Said | None = None) -> None:
        super().__init__(message)
        self.said = said

    def for_reader(self, reader: Reader) -> str:
        """The message as ``reader`` reads it (the English message where the raiser gave no ``said``)."""
        return self.said.render(reader) if self.said is not None else str(self)


class InvalidInputError(ForumflowError):
    """The request itself is malformed (missing comment, bad percent, bad title, ...)."""

    exit_code = 2


class NotAllowedError(ForumflowError):
    """The actor may not take this action, or the action is not possible in this state."""

    exit_code = 3


class NotPossibleError(NotAllowedError):
    """The action is not possible in the proposal's current state (whoever asks)."""


class NotFoundError(ForumflowError):
    """No such proposal, member or working group."""

    exit_code = 4


class ConflictError(ForumflowError):
    """Someone else changed the proposal since it was read."""

    exit_code = 5
