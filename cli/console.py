"""The CLI's consoles: user text printed literally, and a wide page when the output is not a terminal.

rich reads ``[word]`` in printed strings as markup and drops it, so every string that comes from users or
the forum definition goes through ``plain`` (or is printed with ``markup=False``). Piped to a file, rich
would wrap at 80 columns (or at the width of whatever terminal stderr is on) and cut table cells short;
there the consoles use ``PIPED_WIDTH`` unless ``COLUMNS`` says otherwise.

rich costs a command tens of milliseconds to import, so this module imports it only when a console is
first used (``LazyConsole``) or text is escaped (``plain``): a command that prints plain lines (``act``,
``propose``, every error) never loads it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# Wide enough for the widest table (the demo's timelines, the outbox) without cutting a word.
PIPED_WIDTH = 200


def _console_class() -> type[Console]:
    """``CliConsole``: a rich console that, writing to a file or a pipe, lays out on ``PIPED_WIDTH`` columns."""
    global _CLI_CONSOLE
    if _CLI_CONSOLE is None:
        from rich.console import Console, ConsoleDimensions

        class CliConsole(Console):
            """A rich console that, writing to a file or a pipe, lays out on ``PIPED_WIDTH`` columns."""

            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                if kwargs.get("width") is None:
                    # rich fixes the width from COLUMNS when the console is made; made on first use, it would miss
                    # a COLUMNS set later in the process: the size is read from the environment each time instead.
                    self._width = None

            @property
            def size(self) -> ConsoleDimensions:
                """The terminal's size, or ``PIPED_WIDTH`` columns when not writing to a terminal (``COLUMNS`` wins)."""
                dims = super().size
                if self._width is None and "COLUMNS" not in self._environ and not self.is_terminal:
                    return ConsoleDimensions(max(dims.width, PIPED_WIDTH), dims.height)
                return dims

            @size.setter
            def size(self, new_size: tuple[int, int]) -> None:
                self._width, self._height = new_size

        _CLI_CONSOLE = CliConsole
    return _CLI_CONSOLE


_CLI_CONSOLE: type[Console] | None = None


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that never wraps a line on its own (tables still fit the width)."""
    return _console_class()(stderr=stderr, soft_wrap=True)


class LazyConsole:
    """A console made on first use: ``print`` and every other attribute go to a ``make_console`` console.

    ``line`` writes one line of plain text as it is (no markup, no emoji codes, no colours) without rich.
    """

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def console(self) -> Console:
        """The rich console (made now if it was not yet)."""
        if self._console is None:
            self._console = make_console(stderr=self._stderr)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console(), name)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """``rich.console.Console.print``."""
        self.console().print(*objects, **kwargs)

    def line(self, text: str) -> None:
        """Write ``text`` and a newline literally to stdout (or stderr), as they are at the moment of the call."""
        stream = sys.stderr if self._stderr else sys.stdout
        stream.write(text + "\n")


def plain(value: Any) -> str:
    """``value`` as text that rich prints literally (``[industry]`` stays ``[industry]``)."""
    from rich.markup import escape

    return escape("" if value is None else str(value))
