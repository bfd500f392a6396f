"""Party dues per member and month (党费), and member development records (发展党员).

Revision ID: 0021_dues_development
Revises: 0020_notify_outbox
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_dues_development"
down_revision: str | Sequence[str] | None = "0020_notify_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dues_month",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("member.id"), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("standard_fen", sa.Integer(), nullable=True),
        sa.Column("paid_fen", sa.Integer(), nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("member_id", "month"),
    )
    op.create_index("ix_dues_month_member_id", "dues_month", ["member_id"])
    op.create_table(
        "development_record",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("member.id"), nullable=True),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("applied_on", sa.Date(), nullable=False),
        sa.Column("talked_on", sa.Date(), nullable=True),
        sa.Column("activist_on", sa.Date(), nullable=True),
        sa.Column("candidate_on", sa.Date(), nullable=True),
        sa.Column("admitted_on", sa.Date(), nullable=True),
        sa.Column("full_on", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_development_record_org_id", "development_record", ["org_id"])
    op.create_index("ix_development_record_member_id", "development_record", ["member_id"])
    op.create_index("ix_development_record_stage", "development_record", ["stage"])


def downgrade() -> None:
    op.drop_index("ix_development_record_stage", table_name="development_record")
    op.drop_index("ix_development_record_member_id", table_name="development_record")
    op.drop_index("ix_development_record_org_id", table_name="development_record")
    op.drop_table("development_record")
    op.drop_index("ix_dues_month_member_id", table_name="dues_month")
    op.drop_table("dues_month")
