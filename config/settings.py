"""Runtime settings, read from the environment (prefix ``FORUMFLOW_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_FORUM_FILE = Path(__file__).parent / "forums" / "sco_heads_of_regions.yaml"


class Settings(BaseSettings):
    """All knobs of a forumflow installation; every field can be set as FORUMFLOW_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="FORUMFLOW_", extra="ignore")

    data_dir: Path = Field(default=Path(".forumflow"), description="Where the SQLite file, mail and Prefect home live.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite file in data_dir.")
    forum_file: Path = Field(default=DEFAULT_FORUM_FILE, description="The forum definition (YAML).")

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=8025, ge=1, le=65535)
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = Field(default=10.0, gt=0)
    smtp_connections: int = Field(default=4, ge=1)
    mail_from: str = "forumflow@example.org"

    review_interval_minutes: int = Field(default=60, ge=1)
    dispatch_interval_minutes: int = Field(default=1, ge=1)

    @staticmethod
    def variable(field: str) -> str:
        """The environment variable that sets ``field``."""
        return f"FORUMFLOW_{field.upper()}"

    @property
    def db_url(self) -> str:
        """The database URL in force: the explicit one, or the SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'forumflow.db').resolve()}"

    @property
    def maildir(self) -> Path:
        """Where the local mail sink stores what it receives."""
        return self.data_dir / "maildir"
