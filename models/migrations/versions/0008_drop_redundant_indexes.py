"""Two indexes every query could do without: each repeats the first column of a unique key on the same table.

``endorsement_decision(proposal_id)`` is the start of ``uq_decision_member(proposal_id, round, member)``, and
``proposal_text(proposal_id)`` of ``uq_proposal_text_version(proposal_id, version)``: SQLite and PostgreSQL look
rows up by ``proposal_id`` through the unique key's index as well. Every endorsement and every text version wrote
both; now one.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

_DROPPED = (
    ("ix_endorsement_decision_proposal_id", "endorsement_decision"),
    ("ix_proposal_text_proposal_id", "proposal_text"),
)


def upgrade() -> None:
    """Drop the two indexes."""
    for name, table in _DROPPED:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    """Make them again."""
    for name, table in _DROPPED:
        op.create_index(name, table, ["proposal_id"])
