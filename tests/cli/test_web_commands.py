"""forumflow web-link: a one-time link that signs the member in through the web app."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from config.settings import Settings
from tests.cli.conftest import Invoke
from web.app import create_app


def test_web_link_signs_in_once(cli: Invoke, tmp_path: Path) -> None:
    r = cli("web-link", "kuznetsov")
    assert r.code == 0, r.stderr
    link = r.stdout.strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:8000/sign-in/continue\?token=[\w-]{43}", link)
    app = create_app(Settings(data_dir=tmp_path / "data"))
    client = TestClient(app, base_url="http://127.0.0.1:8000", follow_redirects=False)
    page = client.get(link)
    assert page.status_code == 200 and "Николай Кузнецов" in page.text
    form = {
        "token": link.split("token=")[1],
        "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1),  # type: ignore[union-attr]
    }
    assert client.post("/sign-in/continue", data=form).status_code == 303
    assert client.get("/").status_code == 200
    assert TestClient(app, follow_redirects=False).get(link).status_code == 410  # used


def test_web_link_uses_the_base_url(cli: Invoke, monkeypatch: object) -> None:
    monkeypatch.setenv("FORUMFLOW_BASE_URL", "https://forum.example.org/")  # type: ignore[attr-defined]
    r = cli("web-link", "petrov", "--minutes", "60")
    assert r.code == 0 and r.stdout.startswith("https://forum.example.org/sign-in/continue?token=")
    r = cli("web-link", "petrov", "--port", "9000")  # the base URL, when set, wins over where the app listens
    assert r.code == 0 and r.stdout.startswith("https://forum.example.org/sign-in/continue?token=")


def test_web_link_points_where_forumflow_web_listens(cli: Invoke) -> None:
    r = cli("web-link", "petrov", "--port", "9000", "--host", "127.0.0.2")
    assert r.code == 0 and r.stdout.startswith("http://127.0.0.2:9000/sign-in/continue?token=")
    r = cli("web-link", "petrov", "--port", "70000")
    assert r.code == 2 and "Invalid value for '--port'" in r.stderr


def test_web_link_for_an_unknown_member(cli: Invoke) -> None:
    r = cli("web-link", "nobody")
    assert r.code == 4 and r.stderr.strip() == "error: member 'nobody' not found" and r.stdout == ""
