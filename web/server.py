"""Running the web app with uvicorn: in the foreground (``forumflow web``) or in a background thread of this
process (``forumflow serve`` beside the flows, the browser tests, the benchmark).

The listening socket is bound first, so the port is known (``0`` picks a free one) before the app is built
with a base URL that points at it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn

from config.settings import Settings
from models.errors import ForumflowError
from models.runtime import Runtime

log = logging.getLogger(__name__)

ANY_ADDRESS = ("0.0.0.0", "::")  # noqa: S104 - compared with the host asked for, not bound here


class WebServerError(ForumflowError):
    """The web app cannot listen where it was asked to (port taken, address not local), or did not start."""

    exit_code = 1


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``0``: a free port the system picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise WebServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def url_of(host: str, port: int) -> str:
    """``http://host:port`` (IPv6 addresses in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def settings_for(settings: Settings, host: str, port: int) -> Settings:
    """Without ``FORUMFLOW_BASE_URL``, links in mail point at where the app listens (unless on every address)."""
    if "base_url" in settings.model_fields_set or host in ANY_ADDRESS:
        return settings
    return settings.model_copy(update={"base_url": url_of(host, port)})


class BackgroundWebServer:
    """The web app for ``runtime`` served by uvicorn in a daemon thread, on a socket bound beforehand."""

    def __init__(self, runtime: Runtime, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        from web.app import create_app

        self.sock = listen(host, port)
        self.host, self.port = host, int(self.sock.getsockname()[1])
        self.settings = settings_for(runtime.settings, host, self.port)
        app = create_app(self.settings, runtime=runtime)
        config = uvicorn.Config(app, proxy_headers=True, log_level=log_level)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="forumflow-web",
                                       daemon=True)

    @property
    def url(self) -> str:
        """Where the app answers."""
        return url_of(self.host, self.port)

    def start(self, timeout: float = 20.0) -> BackgroundWebServer:
        """Start serving and wait until uvicorn is ready."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise WebServerError(f"the web app did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        log.info("web app at %s (links in mail start with %s)", self.url, self.settings.base_url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to finish the requests in flight and stop; close the socket."""
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.sock.close()
        log.info("web app at %s stopped", self.url)

    def __enter__(self) -> BackgroundWebServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
