"""Processes the distributed test starts: each in a process group of its own, stopped by group id, always."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass
class Launched:
    """A started command: its process (the leader of its own group) and where its output goes."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text(errors="replace")


class Processes:
    """Starts commands in new sessions and stops every group it started, by id, even when a test fails."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Launched] = []
        self.extra_pids: set[int] = set()

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> Launched:
        """Start ``argv`` in the background; its output goes to ``<folder>/<name>.log``."""
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                list(argv), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        launched = Launched(name, list(argv), process, log)
        self.started.append(launched)
        return launched

    def finish(self, launched: Launched, timeout: float) -> str:
        """Wait for a started command; its output, or an AssertionError naming it when it fails or overruns."""
        try:
            code = launched.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._stop(launched)
            raise AssertionError(f"{launched.name} did not finish within {timeout:.0f} s:\n{launched.output()[-3000:]}") from None
        text = launched.output()
        assert code == 0, f"{' '.join(launched.argv)} exited with {code}:\n{text[-3000:]}"
        return text

    def run(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float = 90) -> str:
        """Run a command to its end (bounded); its output."""
        return self.finish(self.start(name, argv, env=env, cwd=cwd), timeout)

    def _stop(self, launched: Launched) -> None:
        """SIGTERM to the group, then SIGKILL to what is left of it (children included)."""
        pgid = launched.process.pid
        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and _group_alive(pgid):
                if launched.process.poll() is None:
                    try:
                        launched.process.wait(timeout=0.2)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.2)
            if not _group_alive(pgid):
                break
        if launched.process.poll() is None:
            launched.process.kill()
            launched.process.wait(timeout=10)

    def stop_all(self) -> None:
        """Stop everything started, newest first, and the flow-run processes the test learnt of."""
        for launched in reversed(self.started):
            self._stop(launched)
        for pid in self.extra_pids:
            if _is_flow_run(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader keeps the group "alive" until reaped; count only processes that still run.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _is_flow_run(pid: int) -> bool:
    """Whether ``pid`` is (still) a Prefect flow-run process, so a reused pid is never killed."""
    try:
        return b"prefect" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, every: float = 1.0) -> T:
    """Poll ``predicate`` until it returns something truthy; an AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def api(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """POST (or GET without a body) to the Prefect API; JSON back."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as resp:
        return json.loads(resp.read())


def healthy(base: str) -> bool:
    """Whether the Prefect API answers."""
    try:
        return bool(api(base, "/health"))
    except (urllib.error.URLError, OSError, ValueError):
        return False


def readme_block(heading: str) -> list[str]:
    """The commands of the first ``sh`` block under ``heading`` in the README, comments stripped."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, f"no sh block under {heading!r}"
    lines = [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]
