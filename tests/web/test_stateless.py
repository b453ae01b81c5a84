"""Two web app processes on one PostgreSQL database: sign in on one, act on the other (nothing lives in a process)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from notifications.signin import SIGN_IN_PATH
from tests.conftest import postgres_schema
from web.security import SESSION_COOKIE

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
FORUMFLOW = str(Path(sys.executable).parent / "forumflow")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL schema of its own, as a forumflow database URL."""
    with postgres_schema() as (_, _, url):
        yield url

def _env(tmp_path: Path, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUMFLOW_")}
    return env | {"FORUMFLOW_DATA_DIR": str(tmp_path / "data"), "FORUMFLOW_BASE_URL": base_url, "COLUMNS": "200"}


def _cli(db: str, env: dict[str, str], *args: str) -> str:
    r = subprocess.run([FORUMFLOW, "--db", db, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


@pytest.fixture
def two_apps(database: str, tmp_path: Path) -> Iterator[tuple[str, str, str, dict[str, str]]]:
    """Two ``forumflow web`` processes on one database behind one public address (as behind a proxy)."""
    ports = [_free_port(), _free_port()]
    base = f"http://127.0.0.1:{ports[0]}"
    env = _env(tmp_path, base)
    _cli(database, env, "init")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, port in enumerate(ports):
            log = (tmp_path / f"web{i}.log").open("wb")
            procs.append(subprocess.Popen(
                [FORUMFLOW, "--db", database, "web", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            ))
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        deadline = time.monotonic() + 60
        for url, proc in zip(urls, procs, strict=True):
            while True:
                assert proc.poll() is None, f"web app on {url} exited: {(tmp_path / 'web0.log').read_text()}"
                try:
                    if httpx.get(f"{url}/sign-in", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"web app on {url} did not answer within 60 s"
                time.sleep(0.2)
        yield urls[0], urls[1], database, env
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def test_sign_in_on_one_process_and_endorse_on_the_other(two_apps: tuple[str, str, str, dict[str, str]]) -> None:
    a, b, db, env = two_apps
    _cli(db, env, "propose", "--group", "industry", "--as", "zhao.lei", "--title", "Joint agro-industrial park")
    _cli(db, env, "act", "1", "submit", "--as", "zhao.lei")
    _cli(db, env, "act", "1", "recommend", "--as", "kuznetsov")
    link = _cli(db, env, "web-link", "petrov").strip().splitlines()[-1]
    assert link.startswith(a + SIGN_IN_PATH)

    with httpx.Client(timeout=10) as browser:  # cookies are per host, not per port: one browser for both
        shown = browser.get(link)
        assert shown.status_code == 200 and "session" not in " ".join(browser.cookies.keys())
        token = dict(pair.split("=", 1) for pair in urlsplit(link).query.split("&"))["token"]
        (csrf,) = CSRF.findall(shown.text)
        signed = browser.post(
            f"{a}{SIGN_IN_PATH}", data={"token": token, "csrf_token": csrf, "next": "/"}, headers={"Origin": a},
        )
        assert signed.status_code == 303, signed.text

        page = browser.get(f"{b}/proposals/1")  # the other process knows the session from the database
        assert page.status_code == 200 and 'action="/proposals/1/actions/endorse"' in page.text
        form = page.text[page.text.index('action="/proposals/1/actions/endorse"'):]
        (csrf,) = CSRF.findall(form)[:1]
        version = re.search(r'name="expected_version" value="(\d+)"', form)
        assert version is not None
        done = browser.post(
            f"{b}/proposals/1/actions/endorse", data={"csrf_token": csrf, "expected_version": version.group(1), "comment": ""},
            headers={"Origin": b},
        )
        assert done.status_code == 303, done.text

        history = _cli(db, env, "history", "1", "--json")
        assert '"action": "endorse"' in history and '"actor": "petrov"' in history

        session_id = browser.cookies.get(SESSION_COOKIE)
        assert session_id and browser.get(f"{a}/").status_code == 200
        out = browser.post(f"{b}/sign-out", data={"csrf_token": csrf}, headers={"Origin": b})
        assert out.status_code == 303
    # Signed out on one process, signed out on both: the stored session is gone, the old cookie opens nothing.
    again = httpx.get(f"{a}/", cookies={SESSION_COOKIE: session_id}, timeout=10)
    assert again.status_code == 303 and again.headers["location"].startswith("/sign-in")
