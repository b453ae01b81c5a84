"""The `notifications` mapping of a forum definition: known events, known targets, one clear line otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from config import DEFAULT_FORUM_FILE, ForumDefinitionError, load_definition


def load_with(tmp_path: Path, notifications: Any) -> Any:
    data = yaml.safe_load(DEFAULT_FORUM_FILE.read_text(encoding="utf-8"))
    data["notifications"] = notifications
    path = tmp_path / "forum.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_definition(path)


def test_a_valid_mapping_loads(tmp_path: Path) -> None:
    rules = {"submit": ["group_chair", "@secretariat"], "remind": ["recipients", "secretariat"], "approve": []}

    defn = load_with(tmp_path, rules)

    assert defn.notifications == rules


@pytest.mark.parametrize(
    ("rules", "key", "reason"),
    [
        ({"submitt": ["author"]}, "notifications.submitt", "unknown event 'submitt'"),
        ({"submit": ["authors"]}, "notifications.submit[0]", "unknown target 'authors'"),
        ({"submit": ["author", "@nobody"]}, "notifications.submit[1]", "unknown member 'nobody'"),
        ({"submit": ["recipients"]}, "notifications.submit[0]", "'recipients' applies only to notices"),
        ({"approve": ["author", "author"]}, "notifications.approve", "duplicate target 'author'"),
    ],
)
def test_a_bad_mapping_fails_with_one_line(tmp_path: Path, rules: dict[str, list[str]], key: str, reason: str) -> None:
    with pytest.raises(ForumDefinitionError) as err:
        load_with(tmp_path, rules)

    assert err.value.key == key and reason in err.value.reason
    assert "\n" not in str(err.value)
