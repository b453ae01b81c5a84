"""The loader refuses definitions with dead ends, steps nobody could take, the system as a member, and YAML bombs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import DEFAULT_FORUM_FILE, ForumDefinitionError, load_definition
from config.definition import MAX_YAML_NODES

Raw = dict[str, Any]


@pytest.fixture
def raw() -> Raw:
    """The shipped definition as plain data, to break one thing at a time."""
    return yaml.safe_load(DEFAULT_FORUM_FILE.read_text(encoding="utf-8"))


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "forum.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def refused(tmp_path: Path, data: Any) -> str:
    file = write(tmp_path, data)
    with pytest.raises(ForumDefinitionError) as info:
        load_definition(file)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{file}: ")
    return message.removeprefix(f"{file}: ")


def action(raw: Raw, name: str) -> dict[str, Any]:
    return next(a for a in raw["workflow"]["actions"] if a["name"] == name)


def add_state(raw: Raw, name: str, **extra: Any) -> None:
    raw["workflow"]["states"].append({"name": name, **extra})


def add_action(raw: Raw, name: str, source: str, dest: str, roles: list[str] | None = None) -> None:
    raw["workflow"]["actions"].append({"name": name, "source": source, "dest": dest, "roles": roles or ["group_chair"]})


def unreachable(raw: Raw) -> None:
    add_state(raw, "archived", final=True)


def dead_end(raw: Raw) -> None:
    add_state(raw, "on_hold")
    add_action(raw, "hold", "implementing", "on_hold")


def only_a_self_loop(raw: Raw) -> None:
    add_state(raw, "parked")
    add_action(raw, "park", "implementing", "parked")
    add_action(raw, "note", "parked", "parked")


def closed_loop(raw: Raw) -> None:
    add_state(raw, "paused")
    add_state(raw, "frozen")
    add_action(raw, "pause", "implementing", "paused")
    add_action(raw, "freeze", "paused", "frozen")
    add_action(raw, "thaw", "frozen", "paused")


def no_deputy_chair(raw: Raw) -> None:
    del raw["working_groups"][2]["deputy_chair"]


def head_in_a_group_without_term_deputy(raw: Raw) -> None:
    raw["working_groups"][0]["members"].append("karimov")  # head of UZ-SA, presiding 2023-2025
    del raw["presiding_terms"][1]["deputy"]


def secretariat_step_without_secretariat(raw: Raw) -> None:
    action(raw, "reject")["roles"] = ["secretariat"]
    raw["members"] = [m for m in raw["members"] if m["handle"] != "secretariat"]


def system_member(raw: Raw) -> None:
    raw["members"][-1]["handle"] = "system"


def system_with_people(raw: Raw) -> None:
    action(raw, "silence")["roles"] = ["system", "secretariat"]


def system_outside_the_round(raw: Raw) -> None:
    action(raw, "complete")["roles"] = ["system"]


def deputy_chair_outside_the_group(raw: Raw) -> None:
    raw["working_groups"][0]["deputy_chair"] = "tursunov"


def deputy_chair_is_the_chair(raw: Raw) -> None:
    raw["working_groups"][0]["deputy_chair"] = raw["working_groups"][0]["chair"]


def term_deputy_unknown(raw: Raw) -> None:
    raw["presiding_terms"][0]["deputy"] = "ghost"


def term_deputy_is_the_head(raw: Raw) -> None:
    raw["presiding_terms"][0]["deputy"] = "petrov"


CASES: list[tuple[Callable[[Raw], None], str, str]] = [
    (unreachable, "workflow.states[8]", "state 'archived' cannot be reached from 'drafted'"),
    (dead_end, "workflow.states[8]", "state 'on_hold' is not final and no action leads out of it"),
    (only_a_self_loop, "workflow.states[8]", "state 'parked' is not final and no action leads out of it"),
    (closed_loop, "workflow.states[8]", "no final state can be reached from 'paused', 'frozen': a loop with no exit"),
    (no_deputy_chair, "working_groups[2]",
     "nobody could recommend a proposal written by the chair 'liu.yang': name a deputy_chair"),
    (head_in_a_group_without_term_deputy, "presiding_terms[1]",
     "nobody could approve a proposal written by 'karimov', head of the presiding region UZ-SA and member of working "
     "group industry: name a deputy for the term"),
    (secretariat_step_without_secretariat, "workflow.actions[3].roles", "nobody could reject a proposal written by"),
    (system_member, "members[36].handle", "'system' is reserved for the scheduled review"),
    (system_with_people, "workflow.actions[7].roles", "an action of the system cannot be taken by anyone else too"),
    (system_outside_the_round, "workflow.actions[11].roles", "the system takes only the round's 'consensus' and 'silence'"),
    (deputy_chair_outside_the_group, "working_groups[0].deputy_chair", "deputy chair 'tursunov' is not a member of the group"),
    (deputy_chair_is_the_chair, "working_groups[0].deputy_chair", "must be another member than the chair"),
    (term_deputy_unknown, "presiding_terms[0].deputy", "unknown member 'ghost'"),
    (term_deputy_is_the_head, "presiding_terms[0].deputy", "deputy 'petrov' is a head of RU-CHE already"),
]


@pytest.mark.parametrize(("change", "key", "reason"), CASES, ids=[c[0].__name__ for c in CASES])
def test_the_loader_refuses_with_key_and_reason(tmp_path: Path, raw: Raw, change: Callable[[Raw], None], key: str,
                                                reason: str) -> None:
    change(raw)
    message = refused(tmp_path, raw)
    assert message.startswith(f"{key}: "), message
    assert reason in message, message


def test_a_head_in_a_group_is_fine_when_the_term_has_a_deputy(tmp_path: Path, raw: Raw) -> None:
    raw["working_groups"][0]["members"].append("karimov")
    defn = load_definition(write(tmp_path, raw))
    assert defn.presiding_terms[1].deputy == "nematov"


def billion_laughs(depth: int = 9, width: int = 9) -> str:
    """A few KB of YAML anchors whose full expansion is width**depth strings."""
    lines = ["lols:", "  l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, depth):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("field", ["notify", "language"])
def test_an_alias_bomb_in_a_fixed_choice_field_is_refused_at_once(tmp_path: Path, field: str) -> None:
    shipped = DEFAULT_FORUM_FILE.read_text(encoding="utf-8")
    first_head = "roles: [head_of_region]}"
    text = billion_laughs() + shipped.replace(first_head, f"roles: [head_of_region], {field}: *l8}}", 1)
    assert 8_000 < len(text.encode()) < 14_000
    path = tmp_path / "bomb.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(ForumDefinitionError) as info:
        load_definition(path)
    assert time.monotonic() - started < 5
    assert str(info.value) == f"{path}: invalid YAML: aliases expand the document beyond {MAX_YAML_NODES} nodes"


def test_a_big_value_in_a_fixed_choice_field_is_not_spelled_out(tmp_path: Path, raw: Raw) -> None:
    # 9**5 strings, below the expansion limit: the field refuses it and names it in a few characters.
    value: Any = ["lol"] * 9
    for _ in range(4):
        value = [value] * 9
    raw["members"][0]["notify"] = value
    message = refused(tmp_path, raw)
    assert message.startswith("members[0].notify: [[[...], ") and "is not allowed" in message
    assert len(message) < 300, message


def test_an_alias_inside_itself_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    loop = tmp_path / "loop.yaml"
    loop.write_text("forum: &f {key: x, name: *f}\n", encoding="utf-8")
    with pytest.raises(ForumDefinitionError, match="an alias refers to a node that contains it"):
        load_definition(loop)
    deep = tmp_path / "deep.yaml"
    deep.write_text("forum: " + "[" * 5_000 + "]" * 5_000 + "\n", encoding="utf-8")
    with pytest.raises(ForumDefinitionError, match="nested too deeply"):
        load_definition(deep)


def test_ordinary_anchors_still_work(tmp_path: Path) -> None:
    shipped = DEFAULT_FORUM_FILE.read_text(encoding="utf-8")
    text = shipped.replace("members: [kuznetsov, zhao.lei, nurlanova, sharma.anil]",
                           "members: &industry [kuznetsov, zhao.lei, nurlanova, sharma.anil]", 1)
    text = text.replace("members: [nazarova, kuznetsov, zhao.lei, umarov]", "members: *industry", 1)
    text = text.replace("chair: nazarova\n    deputy_chair: umarov", "chair: kuznetsov\n    deputy_chair: nurlanova", 1)
    path = tmp_path / "anchors.yaml"
    path.write_text(text, encoding="utf-8")
    defn = load_definition(path)
    assert defn.working_groups[4].members == defn.working_groups[0].members
