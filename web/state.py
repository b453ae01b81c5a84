"""What every request of one app shares: the runtime, the clock, the templates and the app's own origin."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

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


@dataclass(frozen=True)
class WebState:
    """Shared by the pages and the API of one app."""

    runtime: Runtime
    settings: Settings
    clock: Clock
    templates: Templates

    @property
    def origin(self) -> str:
        """The app's own origin, from the base URL."""
        return origin_of(self.settings.base_url)

    @property
    def https(self) -> bool:
        """Whether people reach the app over https (cookies are then Secure)."""
        return self.settings.base_url.startswith("https://")
