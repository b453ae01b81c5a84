"""Proposal text versions: the proposal_text table and endorsement_decision.text_version.

Revision ID: 0003
Revises: 0002

Before this revision a proposal's text never changed (there was no way to edit it), so every existing
proposal gets its current text as version 1, and every decision concerns version 1. ``text_version`` used
to go up on a return without a new text: it is reset to 1, the number of texts that really exist.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from models.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create proposal_text, add endorsement_decision.text_version, and give every proposal its version 1."""
    op.create_table(
        "proposal_text",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.AutoString(length=300), nullable=False),
        sa.Column("summary", sqlmodel.AutoString(length=2000), nullable=False),
        sa.Column("body", sqlmodel.AutoString(), nullable=False),
        sa.Column("author", sqlmodel.AutoString(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["proposal_id"], ["proposal.id"]),
        sa.ForeignKeyConstraint(["author"], ["member.handle"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("proposal_id", "version", name="uq_proposal_text_version"),
    )
    op.create_index("ix_proposal_text_proposal_id", "proposal_text", ["proposal_id"])
    with op.batch_alter_table("endorsement_decision") as batch:
        batch.add_column(sa.Column("text_version", sa.Integer(), nullable=False, server_default="1"))
    op.execute(
        "INSERT INTO proposal_text (proposal_id, version, title, summary, body, author, at) "
        "SELECT id, 1, title, summary, body, author, created_at FROM proposal"
    )
    op.execute("UPDATE proposal SET text_version = 1")


def downgrade() -> None:
    """Drop the text versions (the proposals keep their current text)."""
    with op.batch_alter_table("endorsement_decision") as batch:
        batch.drop_column("text_version")
    op.drop_index("ix_proposal_text_proposal_id", table_name="proposal_text")
    op.drop_table("proposal_text")
