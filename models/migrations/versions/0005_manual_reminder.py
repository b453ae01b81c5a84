"""Reminders sent by hand from a proposal's page: the manual_reminder table, one row per proposal and UTC day.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from models.db import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create manual_reminder with its unique key (proposal_id, day)."""
    op.create_table(
        "manual_reminder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("member", sqlmodel.AutoString(length=40), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["proposal_id"], ["proposal.id"]),
        sa.ForeignKeyConstraint(["member"], ["member.handle"]),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("proposal_id", "day", name="uq_manual_reminder_day"),
    )


def downgrade() -> None:
    """Drop manual_reminder."""
    op.drop_table("manual_reminder")
