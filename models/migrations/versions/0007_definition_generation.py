"""The generation of the forum definition (rosters are cached until it changes); ``updated_at`` is the newest event's time.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the definition_generation table of models.roster; align proposal.updated_at with the newest event."""
    table = op.create_table(
        "definition_generation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
    )
    # A forum already loaded counts as generation 1.
    if op.get_bind().execute(sa.text("SELECT count(*) FROM member")).scalar():
        op.bulk_insert(table, [{"id": 1, "generation": 1, "token": uuid.uuid4().hex}])
    # Actions check their time against updated_at: it must be the proposal's newest event time.
    op.execute(
        "UPDATE proposal SET updated_at = (SELECT max(event.at) FROM event WHERE event.proposal_id = proposal.id) "
        "WHERE EXISTS (SELECT 1 FROM event WHERE event.proposal_id = proposal.id)"
    )


def downgrade() -> None:
    """Drop what upgrade made."""
    op.drop_table("definition_generation")
