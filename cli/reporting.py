"""The one way commands report an expected domain error: one line on stderr and the error's exit code.

A module of its own so that the command modules that ``cli.main`` imports while it is being imported itself
(``cli.text_commands``, ``cli.mail_commands``) can import it at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from models.errors import ForumflowError


@contextlib.contextmanager
def reported(ctx: typer.Context | None = None) -> Iterator[None]:
    """Expected errors of the block become one line on stderr and their exit code (``cli.main.fail_with``; with the
    command's ``ctx``, bad input about one of its options names the option)."""
    try:
        yield
    except ForumflowError as exc:
        from cli.main import fail_with

        fail_with(exc, ctx)
