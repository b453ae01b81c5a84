"""forumflow token create/list/revoke: a token printed once that works against the API until revoked."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from config.settings import Settings
from tests.cli.conftest import Invoke
from web.app import create_app


def test_create_list_revoke(cli: Invoke, tmp_path: Path) -> None:
    r = cli("token", "create", "--as", "kuznetsov", "--name", "weekly [bold]report")
    assert r.code == 0, r.stderr
    raw = r.stdout.strip()
    assert raw.startswith("ffp_") and "\n" not in raw and "shown only now" in r.stderr
    api = TestClient(create_app(Settings(data_dir=tmp_path / "data")))
    me = api.get("/api/v1/me/actions", headers={"Authorization": f"Bearer {raw}"})
    assert me.status_code == 200 and me.json()["member"] == "kuznetsov"
    listed = cli("token", "list", "--as", "kuznetsov", "--json")
    rows = json.loads(listed.stdout)
    assert [(t["id"], t["name"]) for t in rows] == [(1, "weekly [bold]report")] and rows[0]["last_used_at"] is not None
    assert raw not in listed.stdout
    table = cli("token", "list", "--as", "kuznetsov")
    assert "weekly [bold]report" in table.stdout  # user text is not rich markup
    assert cli("token", "revoke", "1").code == 0
    assert api.get("/api/v1/me/actions", headers={"Authorization": f"Bearer {raw}"}).status_code == 401
    assert cli("token", "list", "--as", "kuznetsov").stdout.strip() == "kuznetsov has no API tokens"


def test_bad_input(cli: Invoke) -> None:
    for args, code, message in [
        (("token", "create", "--as", "nobody"), 4, "error: member 'nobody' not found"),
        (("token", "create", "--as", "kuznetsov", "--name", " "), 2, "error: --name: must not be empty"),
        (("token", "create", "--as", "kuznetsov", "--name", "x" * 101), 2, "error: --name: at most 100 characters"),
        (("token", "revoke", "7"), 4, "error: API token 7 not found"),
        (("token", "revoke", "99999999999999999999"), 4, "error: API token 99999999999999999999 not found"),
        (("token", "list", "--as", "nobody"), 4, "error: member 'nobody' not found"),
    ]:
        r = cli(*args)
        assert (r.code, r.stderr.strip(), r.stdout) == (code, message, ""), args
    assert cli("token", "revoke", "x").code == 2
    assert cli("token", "create").code == 2  # --as is required


def test_revoking_twice(cli: Invoke) -> None:
    assert cli("token", "create", "--as", "petrov").code == 0
    assert cli("token", "revoke", "1").stdout.strip() == "API token 1 (cli) of petrov revoked"
    r = cli("token", "revoke", "1")
    assert r.code == 4 and r.stderr.strip() == "error: API token 1 not found"
