"""Notifications: targets (group robots, e-mail addresses), opt-outs, and the delivery outbox with
one row per attempt.

Revision ID: 0020_notify_outbox
Revises: 0019_supervision
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_notify_outbox"
down_revision: str | Sequence[str] | None = "0019_supervision"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notify_target",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), nullable=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("web_user.id"), nullable=True),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("recipient", "channel", name="uq_notify_target_recipient_channel"),
    )
    op.create_index("ix_notify_target_org_id", "notify_target", ["org_id"])
    op.create_index("ix_notify_target_user_id", "notify_target", ["user_id"])
    op.create_table(
        "notify_opt_out",
        sa.Column("recipient", sa.String(length=64), primary_key=True),
        sa.Column("channel", sa.String(length=32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.Integer(), sa.ForeignKey("notify_target.id"), nullable=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), nullable=True),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False, unique=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_delivery_recipient", "delivery", ["recipient"])
    op.create_index("ix_delivery_target_id", "delivery", ["target_id"])
    op.create_index("ix_delivery_org_id", "delivery", ["org_id"])
    op.create_index("ix_delivery_state_next_attempt", "delivery", ["state", "next_attempt_at"])
    op.create_table(
        "delivery_attempt",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("delivery_id", sa.Integer(), sa.ForeignKey("delivery.id"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=False),
    )
    op.create_index("ix_delivery_attempt_delivery_id", "delivery_attempt", ["delivery_id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_attempt_delivery_id", table_name="delivery_attempt")
    op.drop_table("delivery_attempt")
    for index in ("ix_delivery_state_next_attempt", "ix_delivery_org_id", "ix_delivery_target_id"):
        op.drop_index(index, table_name="delivery")
    op.drop_index("ix_delivery_recipient", table_name="delivery")
    op.drop_table("delivery")
    op.drop_table("notify_opt_out")
    op.drop_index("ix_notify_target_user_id", table_name="notify_target")
    op.drop_index("ix_notify_target_org_id", table_name="notify_target")
    op.drop_table("notify_target")
