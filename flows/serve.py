"""``forumflow serve``: a Prefect server on loopback (unless one is configured), then both flows as deployments.

Schedules never fire on Prefect's ephemeral server, so when ``PREFECT_API_URL`` is not set this starts
``prefect server start`` on 127.0.0.1 with its home (and its SQLite database) in the data dir, waits until
it answers, and serves the ``review/serve`` and ``dispatch/serve`` deployments on interval schedules from
the settings.

The scale-out path (``prefect.yaml``, process workers) names its deployments ``review/pool`` and
``dispatch/pool``. Serving next to those would run every flow twice, so ``serve`` refuses when a server
already has an active deployment of either flow on a work pool.

While it serves, ``serve`` records the API URL it uses in ``<data dir>/prefect-api.json`` (with its process
id; removed when it stops). One-off flow runs of the same data dir (``review``, ``dispatch --flow``,
``demo``: ``flow_runs``) find that server there, else use ``PREFECT_API_URL``, else start a temporary
server of their own.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
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


# Services a temporary server for one-off flow runs goes without (PREFECT_SERVER_SERVICES_<NAME>_ENABLED=false).
LEAN_SERVER_OFF = ("TRIGGERS", "FOREMAN", "CANCELLATION_CLEANUP", "PAUSE_EXPIRATIONS")
# Services of a temporary server that keep what they record until it stops (they write it all then): on SQLite
# their writes, each between two API requests, made the server refuse a request now and then ("database is
# locked": 503), which Prefect's client retries after two seconds.
LEAN_SERVER_HELD = ("EVENT_PERSISTER", "TASK_RUN_RECORDER")
LEAN_HOLD = (("BATCH_SIZE", "100000"), ("FLUSH_INTERVAL", "86400"))


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
    ready: bool = False

    @property
    def api_url(self) -> str:
        """The API URL for clients."""
        return f"http://{HOST}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """Where the Prefect UI is."""
        return f"http://{HOST}:{self.port}"

    def wait_ready(self, timeout: float = 120.0) -> LocalServer:
        """Wait until the server answers (ServerError when it exits or stays silent); stops it on any failure."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServerError(f"the Prefect server exited with code {self.process.returncode}; see {self.log_path}")
                if healthy(self.api_url):
                    log.info("Prefect server ready at %s", self.ui_url)
                    self.ready = True
                    return self
                time.sleep(0.2)
            raise ServerError(f"the Prefect server did not answer within {timeout:.0f} s; see {self.log_path}")
        except BaseException:  # also Ctrl-C while waiting: the server runs in its own session and would outlive us
            self.stop()
            raise

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


def launch_server(settings: Settings, *, port: int = DEFAULT_PORT, lean: bool = False) -> LocalServer:
    """Start ``prefect server start`` on loopback with its home in the data dir; returns at once (see ``wait_ready``).

    ``lean``: for one-off flow runs, without the UI, the scheduler (it would plan runs of ``serve``'s deployments
    on the shared home, with nobody to run them), late-run marking, the services in ``LEAN_SERVER_OFF`` (automations,
    work pools, cancellations, pauses: nothing a run of a few seconds that its caller waits for uses) and the
    registration of Prefect's block types (not memoised then, so that a full server on the same home still
    registers them). The services that record task runs and events from the runs' events hold them until the
    server stops (``LEAN_SERVER_HELD``).
    """
    prepare_environment(settings)
    home = Path(os.environ["PREFECT_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    port = pick_port(port)
    log_path = home / "server.log"
    out = log_path.open("ab")
    env = dict(os.environ, **OFFLINE, PREFECT_HOME=str(home))
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port), "--analytics-off"]
    if lean:
        cmd += ["--no-ui", "--no-scheduler", "--no-late-runs"]
        env |= {"PREFECT_API_BLOCKS_REGISTER_ON_START": "false", "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false"}
        env |= {f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in LEAN_SERVER_OFF}
        env |= {f"PREFECT_SERVER_SERVICES_{name}_{knob}": value for name in LEAN_SERVER_HELD for knob, value in LEAN_HOLD}
    log.info("starting Prefect server: %s (log: %s)", " ".join(cmd), log_path)
    # Its own session: Ctrl-C in the terminal reaches the runner only, which then pauses its deployments on the
    # still-running server before ``stop`` ends the server.
    process = subprocess.Popen(  # noqa: S603 - a fixed command line
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    return LocalServer(process, port, log_path, out)


def start_server(settings: Settings, *, port: int = DEFAULT_PORT, timeout: float = 120.0) -> LocalServer:
    """Start ``prefect server start`` on loopback with its home in the data dir and wait until it is healthy."""
    return launch_server(settings, port=port).wait_ready(timeout)


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
    record: Path | None = None
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
            record = record_server(settings, api_url)  # review, dispatch --flow and demo of this data dir run here
            say(f"Prefect UI: {ui}  (review/serve every {settings.review_interval_minutes} min, "
                f"dispatch/serve every {settings.dispatch_interval_minutes} min; Ctrl-C stops)")
            serve(*deployments(settings), print_starting_message=False)
    finally:
        if record is not None:
            forget_server(record)
        if server is not None:
            server.stop()
            say(f"local Prefect server on {HOST}:{server.port} stopped")


# ---------------------------------------------------------------------------- the server that one-off flow runs use
SERVER_RECORD = "prefect-api.json"


def server_record(settings: Settings) -> Path:
    """Where ``serve`` records the API URL of the Prefect server it uses: ``<data dir>/prefect-api.json``."""
    return settings.data_dir.resolve() / SERVER_RECORD


def record_server(settings: Settings, api_url: str) -> Path | None:
    """Record ``api_url`` and this process's id in the data dir (atomically); None when the folder cannot take it."""
    path = server_record(settings)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(json.dumps({"pid": os.getpid(), "url": api_url}), encoding="utf-8")
        partial.replace(path)
    except OSError as exc:
        log.warning("cannot record the Prefect server in %s: %s", path, exc)
        partial.unlink(missing_ok=True)
        return None
    return path


def _read_record(path: Path) -> tuple[int, str] | None:
    """(pid, url) from a record, or None when there is none or it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pid, url = data["pid"], data["url"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(url, str):
        return None
    if not url.startswith(("http://", "https://")):
        return None
    return pid, url


def forget_server(path: Path) -> None:
    """Remove the record at ``path`` if this process wrote it (another ``serve`` may have replaced it since)."""
    if (found := _read_record(path)) is not None and found[0] == os.getpid():
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def recorded_server(settings: Settings, *, timeout: float = 1.0) -> str | None:
    """The API URL of the Prefect server a running ``serve`` of this data dir uses, or None.

    A record is stale when its process is gone (it is then removed) or its server does not answer its health
    check within ``timeout`` seconds; a stale record is ignored.
    """
    path = server_record(settings)
    found = _read_record(path)
    if found is None:
        return None
    pid, url = found
    if not _alive(pid):
        log.info("ignoring %s: process %s is gone", path, pid)
        with suppress(OSError):
            if _read_record(path) == found:
                path.unlink()
        return None
    if not healthy(url, timeout=timeout):
        log.info("ignoring %s: %s does not answer", path, url)
        return None
    return url


def _flush_to_server() -> None:
    """Wait until the runs' events (task run states) and logs have reached the server, before it may stop.

    Prefect sends them from background workers, which would otherwise drain at interpreter exit (warning
    "Still processing items") or, with a temporary server already stopped, lose them.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    try:
        EventsWorker.instance().wait_until_empty()
        APILogWorker.drain_all(timeout=5)  # sends the queued logs, then stops their worker (the next log starts one)
    except Exception as exc:  # a worker that cannot even start: nothing of it to wait for
        log.debug("cannot flush Prefect's events or logs: %s", exc)


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` from the environment, or from Prefect's settings in force when prefect is already imported."""
    if url := os.environ.get("PREFECT_API_URL"):
        return url
    if "prefect" in sys.modules:  # e.g. under a test harness, which sets the URL in Prefect's settings context
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value() or None
    return None


@dataclass
class RunServer:
    """The Prefect server that one-off flow runs go to, and where it came from.

    ``origin``: ``serve`` (recorded by a running ``forumflow serve``), ``environment`` (``PREFECT_API_URL``),
    ``settings`` (Prefect's profile or a test harness) or ``temporary`` (started for this command).
    """

    api_url: str
    origin: str
    server: LocalServer | None = None
    _client: ExitStack | None = None

    def ready(self) -> RunServer:
        """Wait until a temporary server answers (at once for the others); call before the first flow run.

        Then opens the API client that the runs share (opening it asks the server for its version).
        """
        if self.server is not None and not self.server.ready:
            self.server.wait_ready()
        if self._client is None:
            from prefect.context import SyncClientContext

            self._client = ExitStack()
            self._client.enter_context(SyncClientContext.get_or_create())
        return self

    def close(self) -> None:
        """Close the shared client (if opened) after sending the runs' events and logs."""
        if self._client is not None:
            _flush_to_server()
            self._client.close()
            self._client = None


@contextmanager
def flow_runs(settings: Settings, *, announce: Callable[[str], None] | None = None) -> Iterator[RunServer]:
    """Run one-off flows in this process against a Prefect server (call ``ready()`` before the first run).

    The server is the one a running ``forumflow serve`` of this data dir recorded, else ``PREFECT_API_URL``
    (the environment, or Prefect's profile), else a temporary one started here (lean, its home in the data
    dir) and stopped on leaving, which ``announce`` is told. The temporary server starts while Prefect is
    imported (and whatever the caller does before ``ready``).

    Inside, flow runs share one API client and send no heartbeats: the caller waits for each run, which lasts
    seconds, while Prefect's first heartbeat after the start would come minutes later; without them the end of
    a run no longer waits up to a second for the heartbeat thread. On leaving, the runs' events and logs are
    sent before the server may stop.
    """
    prepare_environment(settings)
    export_settings(settings)
    recorded = recorded_server(settings)
    env_url = os.environ.get("PREFECT_API_URL")
    server = launch_server(settings, port=0, lean=True) if not (recorded or env_url) else None
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        if recorded:
            target = RunServer(recorded, "serve")
        elif env_url:
            target = RunServer(env_url, "environment")
        elif configured := PREFECT_API_URL.value():  # Prefect's profile, or a test harness's settings
            assert server is not None
            server.stop()
            server = None
            target = RunServer(configured, "settings")
        else:
            assert server is not None
            target = RunServer(server.api_url, "temporary", server)
            if announce is not None:
                announce(
                    "no Prefect server is running for this data dir (forumflow serve) and PREFECT_API_URL is not set: "
                    f"starting a temporary one on {HOST}:{server.port} for this command"
                )
        with temporary_settings(updates={PREFECT_API_URL: target.api_url, "flows.heartbeat_frequency": None}):
            try:
                yield target
            finally:
                target.close()
    finally:
        if server is not None:
            server.stop()
