"""Runtime settings, read from the environment (prefix ``FORUMFLOW_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_FORUM_FILE = Path(__file__).parent / "forums" / "sco_heads_of_regions.yaml"


# Where people reach the web app unless FORUMFLOW_BASE_URL says otherwise.
DEFAULT_BASE_URL = "http://127.0.0.1:8000"


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

    base_url: str = Field(
        default=DEFAULT_BASE_URL, description="Where people reach the web app; absolute links in mail start with it."
    )
    web_session_hours: float = Field(default=12, gt=0, description="How long a web sign-in lasts.")
    sign_in_link_minutes: float = Field(default=15, gt=0, description="How long a mailed sign-in link is valid.")
    sign_in_per_address: int = Field(default=5, ge=1, description="Sign-in mails per address and hour.")
    sign_in_per_client: int = Field(default=20, ge=1, description="Sign-in requests per client address and hour.")

    @field_validator("data_dir")
    @classmethod
    def _data_dir_is_a_folder(cls, value: Path) -> Path:
        # Created on first use: its nearest existing part must be a folder, or every command fails later.
        for part in (value, *value.parents):
            if part.exists():
                if not part.is_dir():
                    raise ValueError(f"{part} is a file, not a folder")
                break
        return value

    @property
    def db_url(self) -> str:
        """The database URL in force: the explicit one, or the SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'forumflow.db').resolve()}"

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        """An absolute http(s) URL without a query; kept without its trailing slash."""
        parsed = urlsplit(value.strip())
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query or parsed.fragment:
            raise ValueError("base_url must be an absolute http:// or https:// URL without query or fragment")
        return value.strip().rstrip("/")

    @property
    def maildir(self) -> Path:
        """Where the local mail sink stores what it receives."""
        return self.data_dir / "maildir"
