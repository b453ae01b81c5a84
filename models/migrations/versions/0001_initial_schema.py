"""Initial schema: the tables of models.tables, models.outbox and models.review as create_all made them.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Enums are plain strings; datetimes are ``DateTime(timezone=True)`` (models.db.UTCDateTime stores aware UTC on
PostgreSQL and naive UTC on SQLite); constraints without a name in the models keep the database's default name.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _utc(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create every table of the first schema."""
    op.create_table(
        "region",
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index("ix_region_country", "region", ["country"])

    op.create_table(
        "member",
        sa.Column("handle", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("timezone", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=True),
        sa.Column("roles", sa.String(), nullable=False),
        sa.Column("notify", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["region"], ["region.code"]),
        sa.PrimaryKeyConstraint("handle"),
    )
    op.create_table(
        "presiding_term",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("end", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["region"], ["region.code"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "working_group",
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("chair", sa.String(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["chair"], ["member.handle"]),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "group_membership",
        sa.Column("group_key", sa.String(), nullable=False),
        sa.Column("member", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["group_key"], ["working_group.key"]),
        sa.ForeignKeyConstraint(["member"], ["member.handle"]),
        sa.PrimaryKeyConstraint("group_key", "member"),
    )

    op.create_table(
        "proposal",
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("summary", sa.String(length=2000), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group", sa.String(), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("state", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text_version", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        _utc("state_entered_at"),
        _utc("deadline", nullable=True),
        sa.Column("presiding_region", sa.String(length=8), nullable=True),
        _utc("last_progress_at", nullable=True),
        sa.Column("percent", sa.Integer(), nullable=False),
        _utc("created_at"),
        _utc("updated_at"),
        sa.ForeignKeyConstraint(["author"], ["member.handle"]),
        sa.ForeignKeyConstraint(["group"], ["working_group.key"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_proposal_deadline", "proposal", ["deadline"])
    op.create_index("ix_proposal_group", "proposal", ["group"])
    op.create_index("ix_proposal_state", "proposal", ["state"])
    # Defined in models.review: the sweep's selection of due proposals.
    op.create_index("ix_proposal_state_deadline", "proposal", ["state", "deadline"])
    op.create_index("ix_proposal_state_progress", "proposal", ["state", "last_progress_at"])

    op.create_table(
        "endorsement_decision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("member", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        _utc("at"),
        sa.ForeignKeyConstraint(["member"], ["member.handle"]),
        sa.ForeignKeyConstraint(["proposal_id"], ["proposal.id"]),
        sa.ForeignKeyConstraint(["region"], ["region.code"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("proposal_id", "round", "member", name="uq_decision_member"),
    )
    op.create_index("ix_endorsement_decision_proposal_id", "endorsement_decision", ["proposal_id"])

    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("from_state", sa.String(length=40), nullable=False),
        sa.Column("to_state", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=40), nullable=False),
        _utc("at"),
        sa.Column("comment", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["proposal_id"], ["proposal.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("proposal_id", "seq", name="uq_event_proposal_seq"),
    )
    op.create_index("ix_event_at", "event", ["at"])
    op.create_index("ix_event_proposal_action", "event", ["proposal_id", "action"])

    op.create_table(
        "progress_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        _utc("at"),
        sa.ForeignKeyConstraint(["actor"], ["member.handle"]),
        sa.ForeignKeyConstraint(["proposal_id"], ["proposal.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_progress_report_proposal_id", "progress_report", ["proposal_id"])

    # models.review
    op.create_table(
        "review_cursor",
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        _utc("anchor"),
        _utc("next_at", nullable=True),
        sa.ForeignKeyConstraint(["proposal_id"], ["proposal.id"]),
        sa.PrimaryKeyConstraint("proposal_id"),
    )
    op.create_table(
        "review_mark",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        _utc("anchor"),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        _utc("at"),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"]),
        sa.ForeignKeyConstraint(["proposal_id"], ["proposal.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("proposal_id", "anchor", "kind", "step", name="uq_review_mark"),
    )

    # models.outbox
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _utc("next_attempt_at"),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=True),
        _utc("created_at"),
        _utc("sent_at", nullable=True),
        sa.Column("digest_id", sa.Integer(), nullable=True),
        sa.Column("digest_day", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["digest_id"], ["delivery.id"]),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"]),
        sa.ForeignKeyConstraint(["recipient"], ["member.handle"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "recipient", name="uq_delivery_event_recipient"),
        sa.UniqueConstraint("message_id"),
        sa.UniqueConstraint("recipient", "digest_day", name="uq_delivery_digest_day"),
    )
    op.create_index("ix_delivery_digest_id", "delivery", ["digest_id"])
    op.create_index("ix_delivery_due", "delivery", ["kind", "status", "next_attempt_at"])
    op.create_table(
        "planned_event",
        sa.Column("event_id", sa.Integer(), nullable=False),
        _utc("planned_at"),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"]),
        sa.PrimaryKeyConstraint("event_id"),
    )


def downgrade() -> None:
    """Drop every table (and with them their indexes)."""
    for table in (
        "planned_event", "delivery", "review_mark", "review_cursor", "progress_report", "event",
        "endorsement_decision", "proposal", "group_membership", "working_group", "presiding_term", "member", "region",
    ):
        op.drop_table(table)
