"""``forumflow serve``: a Prefect server on loopback (unless one is configured), then both flows as deployments.

Schedules never fire on Prefect's ephemeral server, so when ``PREFECT_API_URL`` is not set this starts
``prefect server start`` on 127.0.0.1 with its home (and its SQLite database) in the data dir, waits until
it answers, and serves the ``review/serve`` and ``dispatch/serve`` deployments on interval schedules from
the settings.

The scale-out path (``prefect.yaml``, process workers) names its deployments ``review/pool`` and
``dispatch/pool``. Serving next to those would run every flow twice, so ``serve`` refuses when a server
already has an active deployment of either flow on a work pool.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from config.settings import Settings
from models.errors import ForumflowError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 4200
FLOWS = ("review", "dispatch")
# Deployment names: ``forumflow serve`` and prefect.yaml (work pool) never take over each other's deployments.
SERVE_DEPLOYMENT = "serve"
POOL_DEPLOYMENT = "pool"
OFFLINE = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


class ServerError(ForumflowError):
    """The local Prefect server did not start."""

    exit_code = 1


class PoolDeploymentsActive(ForumflowError):
    """The Prefect server already runs forumflow's flows on a work pool: serving too would run them twice."""

    exit_code = 1


def prefect_home(settings: Settings) -> Path:
    """Where Prefect keeps its state for this installation: ``<data dir>/prefect``."""
    return (settings.data_dir / "prefect").resolve()


def prepare_environment(settings: Settings) -> None:
    """Offline Prefect with its home in the data dir; call before prefect is imported (explicit settings win)."""
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
    if "PREFECT_HOME" not in os.environ:
        home = prefect_home(settings)
        home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(home)


def export_settings(settings: Settings) -> None:
    """Put the database, forum file and data dir in force into the environment, where flow runs read them.

    Flow runs take no database URL as a parameter (it may hold a password, and parameters are shown in the
    Prefect UI); served flow runs execute in child processes, which inherit the environment.
    """
    os.environ["FORUMFLOW_DATABASE_URL"] = settings.db_url
    os.environ["FORUMFLOW_FORUM_FILE"] = str(Path(settings.forum_file).resolve())
    os.environ["FORUMFLOW_DATA_DIR"] = str(settings.data_dir.resolve())


def port_free(port: int, host: str = HOST) -> bool:
    """Whether nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((host, port)) != 0


def pick_port(preferred: int, host: str = HOST) -> int:
    """``preferred`` when it is free, else a free port chosen by the system (``0`` always picks one)."""
    if preferred and port_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalServer:
    """A ``prefect server start`` child process on loopback."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    _log: IO[bytes]

    @property
    def api_url(self) -> str:
        """The API URL for clients."""
        return f"http://{HOST}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """Where the Prefect UI is."""
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        log.info("Prefect server on port %s stopped", self.port)


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether the Prefect API at ``api_url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as resp:  # noqa: S310 - loopback http URL built here
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_server(settings: Settings, *, port: int = DEFAULT_PORT, timeout: float = 120.0) -> LocalServer:
    """Start ``prefect server start`` on loopback with its home in the data dir and wait until it is healthy."""
    prepare_environment(settings)
    home = Path(os.environ["PREFECT_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    port = pick_port(port)
    log_path = home / "server.log"
    out = log_path.open("ab")
    env = dict(os.environ, **OFFLINE, PREFECT_HOME=str(home))
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port), "--analytics-off"]
    log.info("starting Prefect server: %s (log: %s)", " ".join(cmd), log_path)
    # Its own session: Ctrl-C in the terminal reaches the runner only, which then pauses its deployments on the
    # still-running server before ``stop`` ends the server.
    process = subprocess.Popen(  # noqa: S603 - a fixed command line
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    server = LocalServer(process, port, log_path, out)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerError(f"the Prefect server exited with code {process.returncode}; see {log_path}")
            if healthy(server.api_url):
                log.info("Prefect server ready at %s", server.ui_url)
                return server
            time.sleep(0.5)
        raise ServerError(f"the Prefect server did not answer within {timeout:.0f} s; see {log_path}")
    except BaseException:  # also Ctrl-C while waiting: the server runs in its own session and would outlive us
        server.stop()
        raise


def active_pool_deployments() -> list[str]:
    """``flow/deployment`` names of forumflow's flows deployed to a work pool and not paused, on the configured server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOWS))))}
        if not flows:
            return []
        found = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOWS))))
    return sorted(f"{flows[d.flow_id]}/{d.name}" for d in found if d.work_pool_name and not d.paused and d.flow_id in flows)


def refuse_next_to_pool(api_url: str) -> None:
    """Raise ``PoolDeploymentsActive`` when the server at ``api_url`` already runs the flows on a work pool."""
    import httpx

    try:
        active = active_pool_deployments()
    except (httpx.HTTPError, OSError) as exc:
        raise ServerError(f"the Prefect server at {api_url} cannot be reached: {exc}") from None
    if active:
        raise PoolDeploymentsActive(
            f"the Prefect server at {api_url} already runs {', '.join(active)} on a work pool for its workers; serving "
            f"here too would run every flow twice: leave it to the workers, or delete those deployments first "
            f"(prefect deployment delete {active[0]})"
        )


def deployments(settings: Settings) -> list[Any]:
    """The ``review/serve`` and ``dispatch/serve`` deployments with interval schedules from the settings."""
    from prefect.deployments.runner import EntrypointType

    from flows.dispatch import dispatch
    from flows.review import review

    return [
        review.to_deployment(
            name=SERVE_DEPLOYMENT,
            interval=dt.timedelta(minutes=settings.review_interval_minutes),
            description="Reminders, escalations, silence procedure, term hand-over, progress reviews.",
            tags=["forumflow"],
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
        dispatch.to_deployment(
            name=SERVE_DEPLOYMENT,
            interval=dt.timedelta(minutes=settings.dispatch_interval_minutes),
            description="Plan deliveries for new events and send the pending ones.",
            tags=["forumflow"],
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    ]


def serve_flows(settings: Settings, *, port: int = DEFAULT_PORT, announce: Any = None, on_ready: Any = None) -> None:
    """Serve both deployments until interrupted; starts (and later stops) a local server when none is configured.

    ``on_ready`` is called once the Prefect server answers and may be served (e.g. to start the web app beside
    the flows), never when ``serve`` refuses. Returns after Ctrl-C or SIGTERM (Prefect's ``serve`` takes them,
    pauses its deployments and returns).
    """
    prepare_environment(settings)
    export_settings(settings)
    say = announce or (lambda line: None)
    server: LocalServer | None = None
    if not os.environ.get("PREFECT_API_URL"):
        server = start_server(settings, port=port)
        os.environ["PREFECT_API_URL"] = server.api_url
    api_url = os.environ["PREFECT_API_URL"]
    try:
        from prefect import serve
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            refuse_next_to_pool(api_url)
            if on_ready is not None:
                on_ready()
            ui = server.ui_url if server else api_url.removesuffix("/api")
            say(f"Prefect UI: {ui}  (review/serve every {settings.review_interval_minutes} min, "
                f"dispatch/serve every {settings.dispatch_interval_minutes} min; Ctrl-C stops)")
            serve(*deployments(settings), print_starting_message=False)
    finally:
        if server is not None:
            server.stop()
            say(f"local Prefect server on {HOST}:{server.port} stopped")
