"""What a flow run needs (settings, engine, lifecycle), built once per process and database URL."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from config.definition import load_definition
from config.settings import Settings
from models.db import create_schema, make_engine
from models.lifecycle import Lifecycle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowContext:
    """Settings, an engine with the schema in place, and the lifecycle of the configured forum."""

    settings: Settings
    engine: Engine
    lifecycle: Lifecycle


def flow_context(db_url: str | None = None) -> FlowContext:
    """The context for ``db_url`` (default: the settings' database, from the environment); one per process and URL."""
    settings = Settings(database_url=db_url) if db_url else Settings()
    return _context(settings.db_url, str(settings.forum_file), str(settings.data_dir))


@functools.lru_cache(maxsize=8)
def _context(db_url: str, forum_file: str, data_dir: str) -> FlowContext:
    settings = Settings(database_url=db_url, forum_file=Path(forum_file), data_dir=Path(data_dir))
    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(db_url)
    create_schema(engine)
    lifecycle = Lifecycle(load_definition(forum_file))
    log.debug("flow context for %s", engine.url.render_as_string(hide_password=True))
    return FlowContext(settings, engine, lifecycle)


def is_sqlite(ctx: FlowContext) -> bool:
    """SQLite allows one writer at a time: batches then run one after another."""
    return ctx.engine.dialect.name == "sqlite"
