"""The forum definition loader: the shipped forum, and one bad file per rule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pycountry
import pytest
import yaml

from config import DEFAULT_FORUM_FILE, ForumDefinitionError, load_definition
from config.definition import ForumDefinition


@pytest.fixture
def raw() -> dict[str, Any]:
    """The shipped definition as plain data, to break one thing at a time."""
    return yaml.safe_load(DEFAULT_FORUM_FILE.read_text(encoding="utf-8"))


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "forum.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_shipped_forum_is_the_sco_heads_of_regions_forum(definition: ForumDefinition) -> None:
    assert definition.member_states == ["CN", "IN", "KZ", "KG", "PK", "RU", "TJ", "UZ"]
    for state in definition.member_states:
        regions = [r for r in definition.regions if r.startswith(state + "-")]
        assert len(regions) >= 2, state
        for code in regions:
            assert pycountry.subdivisions.get(code=code) is not None
    assert definition.region_name("RU-CHE") == pycountry.subdivisions.get(code="RU-CHE").name
    first = definition.presiding_terms[0]
    assert (first.region, first.start, first.end) == ("RU-CHE", dt.date(2020, 10, 29), dt.date(2022, 12, 31))
    assert definition.presiding_terms[1].start == dt.date(2023, 1, 1)
    assert {g.key for g in definition.working_groups} == {"industry", "trade", "science", "education", "tourism"}
    for group in definition.working_groups:  # every group named in every language members read
        assert set(group.names) == {"ru", "zh"}, group.key
        assert group.name_in("en") == group.name and group.name_in("ru") == group.names["ru"]
    assert definition.working_groups[1].name_in("zh") == "贸易与投资"
    assert {m.language for m in definition.members} == {"en", "ru", "zh"}
    assert all(m.email.endswith("@example.org") for m in definition.members)


def test_presiding_term_by_date(definition: ForumDefinition) -> None:
    assert definition.presiding_term(dt.date(2022, 12, 31)).region == "RU-CHE"  # type: ignore[union-attr]
    assert definition.presiding_term(dt.date(2023, 1, 1)).region == "UZ-SA"  # type: ignore[union-attr]
    assert definition.presiding_term(dt.date(2019, 1, 1)) is None


def _set(data: dict[str, Any], path: list[Any], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


BAD: list[tuple[str, list[Any], Any, str, str]] = [
    ("unknown region", ["regions", 0], "RU-XXX", "regions[0]", "unknown ISO 3166-2 region code 'RU-XXX'"),
    ("region outside member states", ["regions", 0], "DE-BY", "regions[0]", "not in a member state"),
    ("unknown country", ["member_states", 0], "XX", "member_states[0]", "unknown ISO 3166-1"),
    ("chair not a member", ["working_groups", 0, "chair"], "petrov", "working_groups[0].chair", "not a member of the group"),
    ("chair unknown", ["working_groups", 0, "chair"], "nobody", "working_groups[0].chair", "unknown member 'nobody'"),
    ("group member unknown", ["working_groups", 1, "members", 1], "ghost", "working_groups[1].members[1]", "unknown member"),
    ("duplicate handle", ["members", 1, "handle"], "wang.jianguo", "members[1].handle", "duplicate handle 'wang.jianguo'"),
    ("bad email", ["members", 0, "email"], "not-an-address", "members[0].email", "invalid e-mail address"),
    ("header injection in email", ["members", 0, "email"], "a@example.org\r\nBcc: x@evil.test", "members[0].email", "invalid"),
    ("bad language", ["members", 0, "language"], "de", "members[0].language", "'de' is not allowed"),
    ("bad time zone", ["members", 0, "timezone"], "Mars/Olympus", "members[0].timezone", "unknown time zone"),
    ("member region unknown", ["members", 0, "region"], "RU-MOW", "members[0].region", "not a participating region"),
    ("action unknown source", ["workflow", "actions", 0, "source"], "limbo", "workflow.actions[0].source[0]",
     "names unknown state 'limbo'"),
    ("action unknown dest", ["workflow", "actions", 0, "dest"], "limbo", "workflow.actions[0].dest", "unknown state 'limbo'"),
    ("unknown role", ["workflow", "actions", 0, "roles"], ["king"], "workflow.actions[0].roles[0]", "'king' is not allowed"),
    ("initial unknown", ["workflow", "initial"], "nowhere", "workflow.initial", "unknown state"),
    ("overlapping terms", ["presiding_terms", 1, "start"], "2022-06-01", "presiding_terms[1]", "overlaps the term of RU-CHE"),
    ("term backwards", ["presiding_terms", 0, "end"], "2019-01-01", "presiding_terms[0]", "ends before it starts"),
    ("bad date", ["presiding_terms", 0, "start"], "soon", "presiding_terms[0].start", "date"),
    ("reminder longer than SLA", ["workflow", "states", 1, "reminders"], [40], "workflow.states[1].reminders",
     "shorter than the SLA"),
    ("unknown key", ["forum", "colour"], "blue", "forum.colour", "unknown key"),
    ("group name in an unknown language", ["working_groups", 0, "names"], {"de": "Industrie"}, "working_groups[0].names.de",
     "'de' is not allowed"),
    ("group name in English twice", ["working_groups", 0, "names"], {"en": "Industry"}, "working_groups[0].names",
     "the English name is `name`"),
    ("forum name in English twice", ["forum", "names"], {"en": "Forum"}, "forum.names", "the English name is `name`"),
    ("forum name in an unknown language", ["forum", "names"], {"fr": "Forum"}, "forum.names.fr", "'fr' is not allowed"),
    ("empty group name", ["working_groups", 0, "names", "ru"], "", "working_groups[0].names.ru", "at least 1 character"),
    ("endorsement names unknown action", ["workflow", "endorsement", "endorse"], "vote", "workflow.endorsement.endorse",
     "unknown action 'vote'"),
]


@pytest.mark.parametrize(("case", "path", "value", "key", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_definition_names_file_key_and_reason(
    tmp_path: Path, raw: dict[str, Any], case: str, path: list[Any], value: Any, key: str, reason: str
) -> None:
    _set(raw, path, value)
    file = write(tmp_path, raw)
    with pytest.raises(ForumDefinitionError) as info:
        load_definition(file)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{file}: {key}: "), message
    assert reason in message, message


def test_missing_key(tmp_path: Path, raw: dict[str, Any]) -> None:
    del raw["workflow"]["initial"]
    with pytest.raises(ForumDefinitionError, match=r"workflow\.initial: required key is missing"):
        load_definition(write(tmp_path, raw))


def test_presiding_region_without_head(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["members"] = [m for m in raw["members"] if m["handle"] != "petrov"]
    with pytest.raises(ForumDefinitionError, match=r"presiding_terms\[0\]\.region: presiding region 'RU-CHE' has no head"):
        load_definition(write(tmp_path, raw))


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("forum: {key: x\n  name: [", encoding="utf-8")
    with pytest.raises(ForumDefinitionError, match=r"bad\.yaml: line \d+: invalid YAML"):
        load_definition(bad)
    with pytest.raises(ForumDefinitionError, match="file not found"):
        load_definition(tmp_path / "absent.yaml")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n", encoding="utf-8")
    with pytest.raises(ForumDefinitionError, match="mapping at the top level"):
        load_definition(scalar)


def test_another_forum_is_another_file(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["forum"] = {"key": "mini", "name": "Mini Forum"}
    raw["working_groups"] = raw["working_groups"][:1]
    defn = load_definition(write(tmp_path, raw))
    assert defn.forum.name == "Mini Forum"
    assert [g.key for g in defn.working_groups] == ["industry"]
