"""Web sign-in: sign-in tokens, web sessions, rate-limit counters; the outbox keeps a rendered message until it is sent.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def _utc(name: str, *, nullable: bool = False, primary_key: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, primary_key=primary_key)


def upgrade() -> None:
    """Create the three tables of models.auth and add delivery.message."""
    op.create_table(
        "sign_in_token",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("member", sa.String(length=40), sa.ForeignKey("member.handle"), nullable=False),
        _utc("created_at"),
        _utc("expires_at"),
        _utc("used_at", nullable=True),
    )
    op.create_index("ix_sign_in_token_member", "sign_in_token", ["member"])
    op.create_index("ix_sign_in_token_expires_at", "sign_in_token", ["expires_at"])
    op.create_table(
        "web_session",
        sa.Column("id_hash", sa.String(length=64), primary_key=True),
        sa.Column("member", sa.String(length=40), sa.ForeignKey("member.handle"), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        _utc("created_at"),
        _utc("expires_at"),
        _utc("ended_at", nullable=True),
    )
    op.create_index("ix_web_session_member", "web_session", ["member"])
    op.create_index("ix_web_session_expires_at", "web_session", ["expires_at"])
    op.create_table(
        "rate_counter",
        sa.Column("key", sa.String(length=100), primary_key=True),
        _utc("window_start", primary_key=True),
        sa.Column("hits", sa.Integer(), nullable=False),
    )
    op.create_index("ix_rate_counter_window", "rate_counter", ["window_start"])
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("message", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop what upgrade made."""
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("message")
    op.drop_table("rate_counter")
    op.drop_table("web_session")
    op.drop_table("sign_in_token")
