"""Errors of the domain; each carries the CLI exit code that reports it."""

from __future__ import annotations


class ForumflowError(Exception):
    """Base of all expected errors; the message is one line meant for a person."""

    exit_code = 1


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
