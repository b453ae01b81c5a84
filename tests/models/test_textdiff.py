"""Differences between text versions: pure functions, checked on examples and on random texts."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from models.textdiff import ChangedLine, ChangeSummary, summarise, unified, word_changes, words


@dataclass
class T:
    title: str
    summary: str = ""
    body: str = ""


def rebuilt(ops: list[dict[str, str]]) -> tuple[str, str]:
    old = "".join(op.get("text", op.get("old", "")) for op in ops)
    new = "".join(op.get("text", op.get("new", "")) for op in ops)
    return old, new


def test_unified_diff_names_versions_and_fields_and_leaves_out_unchanged_ones() -> None:
    old = T("Park", "", "Scope: terminal.\nSite: Chelyabinsk.\n")
    new = T("Park", "", "Scope: terminal.\nSite: Troitsk.\nBudget: 12 million.\n")
    diff = unified(old, new, old_label="v1", new_label="v2")
    assert diff.splitlines() == [
        "--- v1/body", "+++ v2/body", "@@ -1,2 +1,3 @@", " Scope: terminal.", "-Site: Chelyabinsk.", "+Site: Troitsk.",
        "+Budget: 12 million.",
    ]
    assert unified(old, old) == ""
    assert "--- a/title\n+++ b/title\n@@ -1 +1 @@\n-Park\n+Agro park\n" in unified(old, T("Agro park", "", old.body))


def test_word_changes_mark_the_changed_words_inside_a_line() -> None:
    ops = words("Budget: 10 million EUR.\nSite: Harbin.\n", "Budget: 12 million EUR.\nSite: Harbin.\n")
    assert ops == [
        {"op": "equal", "text": "Budget: "}, {"op": "replace", "old": "10", "new": "12"},
        {"op": "equal", "text": " million EUR.\nSite: Harbin.\n"},
    ]
    fields = word_changes(T("a", "s", "x"), T("a", "s", "x y"))
    assert [fields[f]["changed"] for f in ("title", "summary", "body")] == [False, False, True]
    assert fields["body"]["ops"] == [{"op": "equal", "text": "x"}, {"op": "insert", "new": " y"}]


def test_chinese_is_compared_character_by_character() -> None:
    ops = words("建设联合农工业园区", "建设联合物流园区")
    assert {"op": "replace", "old": "农工业", "new": "物流"} in ops
    assert rebuilt(ops) == ("建设联合农工业园区", "建设联合物流园区")


@given(st.text(alphabet="ab \n.农业", max_size=40), st.text(alphabet="ab \n.农业", max_size=40))
def test_word_ops_rebuild_both_texts(old: str, new: str) -> None:
    assert rebuilt(words(old, new)) == (old, new)


def test_summary_counts_lines_and_keeps_the_first_changed_ones() -> None:
    old = T("Park", "", "a\nb\nc\n")
    new = T("Agro park", "Short.", "a\nB\nc\n\n" + "x" * 300 + "\n")
    s = summarise(old, new, from_version=1, to_version=2, first=4, width=20)
    assert (s.added, s.removed, s.changed) == (5, 2, True)  # title 1/1, summary 1/0, body 3/1 (a blank line counts)
    assert s.first == [
        ChangedLine("title", "-", "Park"), ChangedLine("title", "+", "Agro park"), ChangedLine("summary", "+", "Short."),
        ChangedLine("body", "-", "b"),
    ]
    again = ChangeSummary.from_dict(s.as_dict())
    assert again == s
    long = summarise(T("t", "", "y"), T("t", "", "x" * 300), from_version=1, to_version=2, width=20)
    assert long.first[-1].text == "x" * 19 + "…"
    assert not summarise(old, old, from_version=1, to_version=1).changed
