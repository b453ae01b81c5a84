"""What every request of one app shares: the runtime, the clock, the templates and the app's own origin."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
from sqlalchemy.engine import Engine

from config.settings import Settings
from models.runtime import Runtime
from web.templating import Templates

Clock = Callable[[], dt.datetime]


def wall_clock() -> dt.datetime:
    """The real time, in UTC (the web app's only reading of the wall clock; tests pass a clock of their own)."""
    return dt.datetime.now(dt.UTC)


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an absolute URL, as browsers send it in ``Origin``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


# Requests holding a database session at once when the pool does not say how many connections it keeps.
DEFAULT_ADMISSION = 5


def pool_slots(engine: Engine) -> int:
    """How many connections the engine's pool keeps open (QueuePool's size), else ``DEFAULT_ADMISSION``."""
    size = getattr(engine.pool, "size", None)
    slots = size() if callable(size) else DEFAULT_ADMISSION
    return max(1, int(slots))


@dataclass(frozen=True)
class WebState:
    """Shared by the pages and the API of one app.

    ``admission`` bounds the requests that hold a database session at once to the connections the pool keeps:
    beyond them the pool would open and close a connection per request (or make threads wait for one).
    """

    runtime: Runtime
    settings: Settings
    clock: Clock
    templates: Templates
    admission: anyio.Semaphore = field(default_factory=lambda: anyio.Semaphore(DEFAULT_ADMISSION, fast_acquire=True))

    @property
    def origin(self) -> str:
        """The app's own origin, from the base URL."""
        return origin_of(self.settings.base_url)

    @property
    def https(self) -> bool:
        """Whether people reach the app over https (cookies are then Secure)."""
        return self.settings.base_url.startswith("https://")
