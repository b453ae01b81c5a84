"""``edit``, ``text``, ``diff``, ``show`` and ``export`` of text versions, end to end on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.cli.conftest import Invoke

BODY = "Scope: a cold-chain terminal.\nSite: Chelyabinsk.\n"
BODY_V2 = "Scope: a cold-chain terminal.\nSite: Chelyabinsk.\nBudget: 12 million EUR over three years.\n"


@pytest.fixture
def ff(cli: Invoke, engine: Engine) -> Invoke:
    """``forumflow --db <the test database>``: the same commands on SQLite and on PostgreSQL (own schema)."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    db = url.render_as_string(hide_password=False)

    def invoke(*args: str) -> object:
        return cli("--db", db, *args)

    return invoke  # type: ignore[return-value]


def view(ff: Invoke, pid: str) -> dict:
    r = ff("show", pid, "--json")
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_edit_after_a_return_show_text_diff_and_export(ff: Invoke, tmp_path: Path) -> None:
    assert ff("init").code == 0
    r = ff("propose", "--group", "industry", "--as", "zhao.lei", "--title", "Joint agro park",
           "--body-file", write(tmp_path, "v1.md", BODY.encode()))
    assert r.code == 0, r.stderr
    pid = r.stdout.strip()
    shown = ff("show", pid)
    assert "text version 1" in shown.stdout and BODY.strip() in shown.stdout  # the whole text, not only --json
    assert ff("act", pid, "submit", "--as", "zhao.lei").code == 0
    assert ff("act", pid, "return", "--as", "kuznetsov", "--comment", "Add the budget").code == 0
    assert view(ff, pid)["text_version"] == 1

    v2 = write(tmp_path, "v2.md", BODY_V2.encode())
    r = ff("edit", pid, "--as", "zhao.lei", "--body-file", v2, "--title", "Joint agro park with budget")
    assert r.code == 0, r.stderr
    assert r.stdout.strip() == f"proposal {pid}: text version 2 by zhao.lei (title, body changed)"
    before = view(ff, pid)
    again = ff("edit", pid, "--as", "zhao.lei", "--body-file", v2)
    assert again.code == 0 and "unchanged; nothing written" in again.stdout
    assert view(ff, pid) == before

    refused = ff("edit", pid, "--as", "kuznetsov", "--title", "Mine now")
    assert refused.code == 3 and refused.stderr.count("\n") == 1 and "only the author (zhao.lei) may" in refused.stderr
    assert view(ff, pid) == before

    old = ff("text", pid, "--version", "1")
    assert old.code == 0 and old.stdout.startswith(f"#{pid} Joint agro park\ntext version 1 of 2 · by zhao.lei")
    assert old.stdout.endswith(BODY)
    assert ff("text", pid).stdout.endswith(BODY_V2)
    missing = ff("text", pid, "--version", "3")
    assert missing.code == 4 and "has no text version 3 (versions 1 to 2)" in missing.stderr
    for huge in ("99999999999999999999999", "9223372036854775808"):
        for args in (("text", pid, "--version", huge), ("diff", pid, "--from", huge), ("diff", pid, "--to", huge)):
            r = ff(*args)
            assert r.code == 4 and r.stderr == f"error: proposal {pid} has no text version {huge} (versions 1 to 2)\n", args

    diff = ff("diff", pid)
    assert diff.code == 0
    assert "--- v1/title\n+++ v2/title\n@@ -1 +1 @@\n-Joint agro park\n+Joint agro park with budget\n" in diff.stdout
    assert "--- v1/body\n+++ v2/body\n" in diff.stdout and "\n+Budget: 12 million EUR over three years.\n" in diff.stdout
    data = json.loads(ff("diff", pid, "--json").stdout)
    assert (data["from"], data["to"], data["changed"]) == (1, 2, ["title", "body"])
    assert data["fields"]["title"]["ops"] == [{"op": "equal", "text": "Joint agro park"}, {"op": "insert", "new": " with budget"}]
    assert {"op": "insert", "new": "Budget: 12 million EUR over three years.\n"} in data["fields"]["body"]["ops"]
    assert not data["fields"]["summary"]["changed"]
    same = ff("diff", pid, "--from", "2", "--to", "2")
    assert same.code == 0 and same.stdout == f"no changes between text versions 2 and 2 of proposal {pid}\n"

    assert ff("act", pid, "submit", "--as", "zhao.lei").code == 0
    submitted = view(ff, pid)
    assert submitted["history"][-1]["payload"]["text_version"] == 2 and submitted["text"]["version"] == 2
    frozen = ff("edit", pid, "--as", "zhao.lei", "--title", "Too late")
    assert frozen.code == 3 and "'edit' is not possible in state 'in_review'" in frozen.stderr

    exported = json.loads(ff("export").stdout)
    texts = [(t["proposal_id"], t["version"], t["body"]) for t in exported["texts"]]
    assert texts == [(int(pid), 1, BODY), (int(pid), 2, BODY_V2)]
    assert ff("export", "--format", "csv", "--out", str(tmp_path / "out")).code == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "texts.csv").read_text(encoding="utf-8"))))
    assert [(r["version"], r["title"], r["body"]) for r in rows] == [
        ("1", "Joint agro park", BODY), ("2", "Joint agro park with budget", BODY_V2),
    ]
    only = json.loads(ff("export", "--table", "texts").stdout)
    assert [t["version"] for t in only] == [1, 2]


@pytest.mark.parametrize(
    ("args", "data", "message"),
    [
        (["--body-file"], b"caf\xe9 au lait", "error: --body-file: is not valid UTF-8 text (byte 3)"),
        (["--body-file"], b"a\x00b", "error: --body-file: must not contain a NUL character"),
        (["--body-file"], b"x" * 200_001, "error: --body-file: String should have at most 200000 characters"),
        (["--title", "   "], None, "error: --title: must not be empty"),
        ([], None, "error: nothing to edit: give a title, a summary or a body"),
    ],
)
def test_bad_text_is_one_line_exit_2_and_nothing_written(
    ff: Invoke, tmp_path: Path, args: list[str], data: bytes | None, message: str
) -> None:
    ff("init")
    pid = ff("propose", "--group", "industry", "--as", "zhao.lei", "--title", "Joint agro park").stdout.strip()
    before = view(ff, pid)
    if data is not None:
        args = [*args, write(tmp_path, "bad.md", data)]
    r = ff("edit", pid, "--as", "zhao.lei", *args)
    assert (r.code, r.stderr) == (2, message + "\n")
    assert view(ff, pid) == before
    if data is not None:  # proposing with the same body is refused the same way, and creates nothing
        p = ff("propose", "--group", "industry", "--as", "zhao.lei", "--title", "t", *args)
        assert (p.code, p.stderr) == (2, message + "\n")
        assert [row["id"] for row in json.loads(ff("list", "--json").stdout)] == [int(pid)]


def test_a_body_file_that_cannot_be_read_is_a_usage_error(ff: Invoke, tmp_path: Path) -> None:
    ff("init")
    pid = ff("propose", "--group", "industry", "--as", "zhao.lei", "--title", "Joint agro park").stdout.strip()
    r = ff("edit", pid, "--as", "zhao.lei", "--body-file", str(tmp_path / "missing.md"))
    assert r.code == 2 and r.stderr.startswith("error: --body-file ") and r.stderr.count("\n") == 1


def test_remind_by_hand_once_a_day(ff: Invoke) -> None:
    assert ff("init").code == 0
    pid = ff("propose", "--group", "industry", "--as", "zhao.lei", "--title", "Joint agro park").stdout.strip()
    assert ff("act", pid, "submit", "--as", "zhao.lei").code == 0
    nobody = ff("remind", pid, "--as", "kuznetsov")  # the chair is the one who must act
    assert nobody.code == 3 and f"nobody but kuznetsov must act on proposal {pid} now" in nobody.stderr
    assert ff("act", pid, "return", "--as", "kuznetsov", "--comment", "Add the budget").code == 0
    refused = ff("remind", pid, "--as", "zhao.lei")
    assert refused.code == 3 and refused.stderr.count("\n") == 1 and "may not send a reminder" in refused.stderr
    before = view(ff, pid)
    stale = ff("remind", pid, "--as", "kuznetsov", "--expected-version", str(before["version"] - 1))
    assert stale.code == 5 and view(ff, pid) == before
    sent = ff("remind", pid, "--as", "kuznetsov", "--expected-version", str(before["version"]))
    assert sent.code == 0, sent.stderr
    assert sent.stdout.strip() == f"proposal {pid}: reminder by kuznetsov to zhao.lei (mailed with the next dispatch)"
    last = view(ff, pid)["history"][-1]
    assert (last["action"], last["actor"], last["payload"]["recipients"]) == ("remind", "kuznetsov", ["zhao.lei"])
    again = ff("remind", pid, "--as", "kuznetsov")
    assert again.code == 3 and f"proposal {pid} was already reminded today by kuznetsov" in again.stderr
    assert ff("remind", "99999999999999999999", "--as", "kuznetsov").code == 4
