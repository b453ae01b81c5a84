"""The validated definition kept in the data dir: used while the file and the loader are unchanged, never trusted blindly."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import config.definition as definition_module
from config import DEFAULT_FORUM_FILE, ForumDefinitionError, load_definition
from config.definition import DEFINITION_CACHE, ForumDefinition


@pytest.fixture
def forum_file(tmp_path: Path) -> Path:
    """A copy of the shipped definition that a test may edit."""
    path = tmp_path / "forum.yaml"
    path.write_bytes(DEFAULT_FORUM_FILE.read_bytes())
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def test_the_cached_definition_equals_the_parsed_one(forum_file: Path, data_dir: Path) -> None:
    parsed = load_definition(forum_file)
    first = load_definition(forum_file, cache_dir=data_dir)  # parses, keeps
    assert (data_dir / DEFINITION_CACHE).is_file()
    second = load_definition(forum_file, cache_dir=data_dir)  # from the cache
    assert first == parsed and second == parsed
    assert second.model_dump() == parsed.model_dump()
    assert second.member("petrov") == parsed.member("petrov") and second.region_name("RU-CHE") == parsed.region_name("RU-CHE")


def test_the_cache_is_used_without_parsing(forum_file: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_definition(forum_file, cache_dir=data_dir)

    def no_parse(*args: object) -> None:
        raise AssertionError("parsed although the cache holds this file")

    monkeypatch.setattr(definition_module, "parse_definition", no_parse)
    assert load_definition(forum_file, cache_dir=data_dir).forum.key


def test_an_edited_file_is_parsed_again(forum_file: Path, data_dir: Path) -> None:
    before = load_definition(forum_file, cache_dir=data_dir)
    stat = forum_file.stat()
    text = forum_file.read_text(encoding="utf-8")
    line = f"  name: {before.forum.name}\n"
    assert line in text
    forum_file.write_text(text.replace(line, line.replace("Forum", "FORUM"), 1), encoding="utf-8")
    os.utime(forum_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same times: the content decides
    assert forum_file.stat().st_size == stat.st_size
    assert load_definition(forum_file, cache_dir=data_dir).forum.name == before.forum.name.replace("Forum", "FORUM")


def test_an_edit_that_breaks_the_file_is_reported_not_hidden_by_the_cache(forum_file: Path, data_dir: Path) -> None:
    load_definition(forum_file, cache_dir=data_dir)
    forum_file.write_text(forum_file.read_text(encoding="utf-8").replace("member_states:", "member_state:", 1), encoding="utf-8")
    with pytest.raises(ForumDefinitionError, match="member_state"):
        load_definition(forum_file, cache_dir=data_dir)


def test_a_changed_loader_invalidates_the_cache(forum_file: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_definition(forum_file, cache_dir=data_dir)
    key = definition_module._cache_key(forum_file.read_bytes())
    assert (data_dir / DEFINITION_CACHE).read_bytes().startswith(key)
    monkeypatch.setattr("pydantic.VERSION", "0.0.0-other")
    assert definition_module._cache_key(forum_file.read_bytes()) != key
    assert definition_module._cached(data_dir, definition_module._cache_key(forum_file.read_bytes())) is None


def test_a_broken_cache_is_ignored_and_rewritten(forum_file: Path, data_dir: Path) -> None:
    expected = load_definition(forum_file, cache_dir=data_dir)
    cache = data_dir / DEFINITION_CACHE
    cache.write_bytes(cache.read_bytes()[:100])  # truncated
    assert load_definition(forum_file, cache_dir=data_dir) == expected
    assert definition_module._cached(data_dir, definition_module._cache_key(forum_file.read_bytes())) == expected


class _Planted:
    """A pickle that would run a command when loaded by a plain unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_runs_nothing(forum_file: Path, data_dir: Path, tmp_path: Path) -> None:
    expected = load_definition(forum_file)
    marker = tmp_path / "ran"
    key = definition_module._cache_key(forum_file.read_bytes())
    (data_dir / DEFINITION_CACHE).write_bytes(key + pickle.dumps(_Planted(marker)))
    assert load_definition(forum_file, cache_dir=data_dir) == expected
    assert not marker.exists()


def test_nothing_is_written_without_the_folder(forum_file: Path, tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    assert load_definition(forum_file, cache_dir=missing) == load_definition(forum_file)
    assert not missing.exists()


def test_a_cached_definition_loads_without_pyyaml(forum_file: Path, data_dir: Path) -> None:
    load_definition(forum_file, cache_dir=data_dir)
    code = (
        "import sys\n"
        "from config.definition import load_definition\n"
        "from pathlib import Path\n"
        f"d = load_definition(Path({str(forum_file)!r}), cache_dir=Path({str(data_dir)!r}))\n"
        "print(d.forum.key, 'yaml' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert r.stdout.split() == [load_definition(forum_file).forum.key, "False"]


def test_the_shipped_definition_loads_the_same_through_the_cache(data_dir: Path) -> None:
    assert isinstance(load_definition(DEFAULT_FORUM_FILE, cache_dir=data_dir), ForumDefinition)
    assert load_definition(DEFAULT_FORUM_FILE, cache_dir=data_dir) == load_definition(DEFAULT_FORUM_FILE)
