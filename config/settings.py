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
    smtp_port: int = 8025
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_ca_file: Path | None = Field(
        default=None, description="PEM file of CA certificates trusted for the SMTP server's TLS, besides the system's."
    )
    smtp_timeout: float = 10.0
    smtp_connections: int = 4
    mail_from: str = "forumflow@example.org"

    review_interval_minutes: int = 60
    dispatch_interval_minutes: int = 1

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
