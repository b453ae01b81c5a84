"""The schema's Alembic revisions (``versions/``) and the configuration that runs them without an alembic.ini."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Connection

LOCATION = Path(__file__).resolve().parent
# Where the revision files are (tests point it at a copy with an extra revision; then clear script_directory's cache).
VERSIONS_DIR = LOCATION / "versions"


def target_metadata() -> MetaData:
    """The models' metadata, with every table module imported so that all tables are registered."""
    from sqlmodel import SQLModel

    import models.auth
    import models.outbox
    import models.review
    import models.tables
    import models.tokens  # noqa: F401

    return SQLModel.metadata


def alembic_config(connection: Connection | None = None, *, url: str | None = None) -> Config:
    """An Alembic configuration for the shipped revisions, running on ``connection`` (or on ``url``)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(LOCATION))
    cfg.set_main_option("path_separator", "os")  # split version_locations on os.pathsep, so paths may hold spaces
    cfg.set_main_option("version_locations", str(VERSIONS_DIR))
    # Revision files are named <id>_<slug>.py, e.g. 0002_add_deputies.py.
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def script_directory() -> ScriptDirectory:
    """The shipped revisions (read once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision of the shipped migrations (there is exactly one head)."""
    head = script_directory().get_current_head()
    if head is None:
        raise RuntimeError("no migration revisions are shipped")
    return head


_REVISION = re.compile(r"^revision\s*(?::[^=\n]*)?=\s*[\"']([^\"'\n]+)[\"']", re.MULTILINE)
_DOWN = re.compile(r"^down_revision\s*(?::[^=\n]*)?=\s*(?:[\"']([^\"'\n]+)[\"']|(None))\s*$", re.MULTILINE)


def quick_head() -> str | None:
    """The newest revision read from the revision files with a regular expression, without importing Alembic.

    None when the files do not make one plain chain (a merge, a branch, an unusual file): then only
    ``head_revision`` knows. Used to recognise a current database cheaply; tests check it agrees with Alembic.
    """
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in VERSIONS_DIR.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        rev = _REVISION.findall(source)
        if not rev:
            continue
        down = _DOWN.findall(source)
        if len(rev) != 1 or len(down) != 1 or rev[0] in revisions:
            return None
        revisions.add(rev[0])
        if down[0][0]:
            downs.add(down[0][0])
    heads = revisions - downs
    return next(iter(heads)) if len(heads) == 1 and downs <= revisions else None


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render forumflow's column types as plain SQLAlchemy types, so revisions never import the models."""
    from sqlmodel.sql.sqltypes import AutoString

    from models.db import UTCDateTime

    if type_ != "type":
        return False
    if isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False
