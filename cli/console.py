"""The CLI's consoles: user text printed literally, and a wide page when the output is not a terminal.

rich reads ``[word]`` in printed strings as markup and drops it, so every string that comes from users or
the forum definition goes through ``plain`` (or is printed with ``markup=False``). Piped to a file, rich
would wrap at 80 columns (or at the width of whatever terminal stderr is on) and cut table cells short;
there the consoles use ``PIPED_WIDTH`` unless ``COLUMNS`` says otherwise.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.markup import escape

# Wide enough for the widest table (the demo's timelines, the outbox) without cutting a word.
PIPED_WIDTH = 200


class CliConsole(Console):
    """A rich console that, writing to a file or a pipe, lays out on ``PIPED_WIDTH`` columns."""

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


def make_console(*, stderr: bool = False) -> CliConsole:
    """A console for stdout (or stderr) that never wraps a line on its own (tables still fit the width)."""
    return CliConsole(stderr=stderr, soft_wrap=True)


def plain(value: Any) -> str:
    """``value`` as text that rich prints literally (``[industry]`` stays ``[industry]``)."""
    return escape("" if value is None else str(value))
