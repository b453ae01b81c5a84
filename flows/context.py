"""What a flow run needs: the shared runtime (settings, definition, lifecycle, engine), one per process and database."""

from __future__ import annotations

from config.settings import Settings
from models.runtime import Runtime, runtime_for

# Flow code names its context FlowContext; it is the runtime every interface builds.
FlowContext = Runtime


def flow_context(db_url: str | None = None) -> Runtime:
    """The runtime for ``db_url`` (default: the settings' database, from the environment); one per process and URL."""
    settings = Settings(database_url=db_url) if db_url else Settings()
    return runtime_for(settings)


def is_sqlite(ctx: Runtime) -> bool:
    """SQLite allows one writer at a time: batches then run one after another."""
    return ctx.engine.dialect.name == "sqlite"
