"""Form submissions remembered by their idempotency token (``server.records.form_tokens``).

A repeated submit of the same web form (a double click, a resend after a slow answer) finds its
token here and answers like the first one instead of doing the work again.

Revision ID: 0016_form_tokens
Revises: 0015_ingest_indexes
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_form_tokens"
down_revision: str | Sequence[str] | None = "0015_ingest_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "form_submission",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("redirect_to", sa.String(length=2000), nullable=True),
        sa.Column("toast", sa.String(length=500), nullable=True),
        sa.Column("toast_level", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["web_user.id"], name=op.f("fk_form_submission_user_id_web_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_form_submission")),
        sa.UniqueConstraint("user_id", "token", name=op.f("uq_form_submission_user_id_token")),
    )
    op.create_index(op.f("ix_form_submission_created_at"), "form_submission", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_form_submission_created_at"), table_name="form_submission")
    op.drop_table("form_submission")
