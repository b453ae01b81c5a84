"""``forumflow list --search``: the same text search as the web list (every word, any case, any script)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.cli.conftest import Invoke

CLOCK = dt.datetime(2026, 1, 10, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's wall clock, fixed."""
    monkeypatch.setattr("cli.main.now_utc", lambda: CLOCK)


def propose(cli: Invoke, title: str, *more: str) -> int:
    r = cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", title, *more, "--at", "2026-01-05")
    assert r.code == 0, r.stderr
    return int(r.stdout.strip())


def test_list_search(cli: Invoke) -> None:
    ru = propose(cli, "Развитие ТУРИЗМА", "--summary", "Новые маршруты")
    zh = propose(cli, "中俄农业合作")
    en = propose(cli, "Cold chain, 100% ready")

    def ids(*args: str) -> list[int]:
        r = cli("list", *args, "--json")
        assert r.code == 0, r.stderr
        return [p["id"] for p in json.loads(r.stdout)]

    assert ids("--search", "туризма МАРШРУТЫ") == [ru]
    assert ids("--search", "农业") == [zh]
    assert ids("--search", "COLD") == [en]
    assert ids("--search", "%") == [en]
    assert ids("--search", "cold 农业") == []
    assert ids("--search", "cold", "--state", "drafted", "--group", "industry") == [en]
    assert ids() == [ru, zh, en]
    r = cli("list", "--search", "x" * 201)
    assert r.code == 2 and r.stderr.strip() == "error: --search: at most 200 characters"
