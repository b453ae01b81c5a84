"""Settings come from FORUMFLOW_* variables with safe embedded defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import DEFAULT_FORUM_FILE, Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("FORUMFLOW_DATABASE_URL", "FORUMFLOW_DATA_DIR", "FORUMFLOW_FORUM_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.forum_file == DEFAULT_FORUM_FILE
    assert s.db_url == f"sqlite:///{tmp_path / '.forumflow' / 'forumflow.db'}"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FORUMFLOW_DATABASE_URL", "postgresql://127.0.0.1/test")
    monkeypatch.setenv("FORUMFLOW_SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("FORUMFLOW_DATA_DIR", str(tmp_path))
    s = Settings()
    assert s.db_url == "postgresql://127.0.0.1/test"
    assert s.data_dir == tmp_path
    assert "s3cret" not in repr(s)
    assert s.smtp_password is not None and s.smtp_password.get_secret_value() == "s3cret"
