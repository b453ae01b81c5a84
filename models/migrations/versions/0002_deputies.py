"""Deputies: working_group.deputy_chair and presiding_term.deputy (nullable member handles).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the deputy columns, each a foreign key to member.handle."""
    with op.batch_alter_table("working_group") as batch:
        batch.add_column(sa.Column("deputy_chair", sa.String(), nullable=True))
        batch.create_foreign_key("fk_working_group_deputy_chair_member", "member", ["deputy_chair"], ["handle"])
    with op.batch_alter_table("presiding_term") as batch:
        batch.add_column(sa.Column("deputy", sa.String(), nullable=True))
        batch.create_foreign_key("fk_presiding_term_deputy_member", "member", ["deputy"], ["handle"])


def downgrade() -> None:
    """Drop the deputy columns."""
    with op.batch_alter_table("presiding_term") as batch:
        batch.drop_constraint("fk_presiding_term_deputy_member", type_="foreignkey")
        batch.drop_column("deputy")
    with op.batch_alter_table("working_group") as batch:
        batch.drop_constraint("fk_working_group_deputy_chair_member", type_="foreignkey")
        batch.drop_column("deputy_chair")
