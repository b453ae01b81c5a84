"""The ``forumflow`` console script: import the command line without the cyclic garbage collector, then run it.

Importing the CLI (typer, SQLAlchemy, SQLModel, pydantic, the models) makes hundreds of thousands of objects,
and the collector keeps walking them while they are made although none is garbage yet: pausing it for the
imports spares a short command (``act``) about a tenth of its start-up. Afterwards the collector runs as
usual, with the imported modules' objects frozen (moved out of its sight: they live as long as the process).
"""

from __future__ import annotations

import gc


def main() -> None:
    """Console-script entry point: ``cli.main.main`` with its imports made while the collector pauses."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        from cli.main import main as run
    finally:
        if enabled:
            gc.enable()
    gc.freeze()
    run()
