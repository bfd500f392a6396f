"""Meeting records (会议记录) of events, with their attachments (photos and scanned pages).

The attachment bytes sit in their own table, so listing a record's attachments reads no file.

Revision ID: 0017_meeting_records
Revises: 0016_form_tokens
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_meeting_records"
down_revision: str | Sequence[str] | None = "0016_form_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "meeting_record",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.Integer(), sa.ForeignKey("event.id"), nullable=False, unique=True),
        sa.Column("agenda", sa.Text(), nullable=False),
        sa.Column("minutes", sa.Text(), nullable=False),
        sa.Column("resolutions", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_by_name", sa.String(length=100), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_by", sa.String(length=100), nullable=False),
        sa.Column("locked_by_name", sa.String(length=100), nullable=False),
    )
    op.create_table(
        "meeting_attachment",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("record_id", sa.Integer(), sa.ForeignKey("meeting_record.id"), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("media_type", sa.String(length=50), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uploaded_by", sa.String(length=100), nullable=False),
        sa.Column("uploaded_by_name", sa.String(length=100), nullable=False),
    )
    op.create_index("ix_meeting_attachment_record_id", "meeting_attachment", ["record_id"])
    op.create_table(
        "meeting_attachment_content",
        sa.Column("attachment_id", sa.Integer(), sa.ForeignKey("meeting_attachment.id"), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("meeting_attachment_content")
    op.drop_index("ix_meeting_attachment_record_id", table_name="meeting_attachment")
    op.drop_table("meeting_attachment")
    op.drop_table("meeting_record")
