"""留言亭: representatives (党代表), one-time member links with their sessions, messages, replies,
and the photos of messages and representatives.

Revision ID: 0022_message_booth
Revises: 0021_dues_development
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_message_booth"
down_revision: str | Sequence[str] | None = "0021_dues_development"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TAP_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "booth_photo",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("media_type", sa.String(length=50), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_at", _AT, nullable=False),
    )
    op.create_table(
        "booth_representative",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("constituency", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("web_user.id"), nullable=True, unique=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("photo_id", sa.Integer(), sa.ForeignKey("booth_photo.id"), nullable=True),
    )
    op.create_index("ix_booth_representative_org_id", "booth_representative", ["org_id"])
    op.create_table(
        "booth_link",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("member.id"), nullable=False),
        sa.Column("tap_id", _TAP_ID, sa.ForeignKey("tap.id"), nullable=False, unique=True),
        sa.Column("uid_hmac", sa.String(length=64), nullable=False),
        sa.Column("card_masked", sa.String(length=32), nullable=False),
        sa.Column("issued_at", _AT, nullable=False),
        sa.Column("expires_at", _AT, nullable=False),
        sa.Column("opened_at", _AT, nullable=True),
        sa.Column("session_hash", sa.String(length=64), nullable=True, unique=True),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("session_expires_at", _AT, nullable=True),
        sa.Column("ended_at", _AT, nullable=True),
    )
    op.create_index("ix_booth_link_member_id", "booth_link", ["member_id"])
    op.create_index("ix_booth_link_uid_hmac", "booth_link", ["uid_hmac"])
    op.create_index("ix_booth_link_issued_at", "booth_link", ["issued_at"])
    op.create_table(
        "booth_message",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("member_id", sa.Integer(), sa.ForeignKey("member.id"), nullable=False),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), nullable=False),
        sa.Column(
            "representative_id", sa.Integer(), sa.ForeignKey("booth_representative.id"), nullable=False
        ),
        sa.Column("link_id", sa.Integer(), sa.ForeignKey("booth_link.id"), nullable=False),
        sa.Column("uid_hmac", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=32), nullable=False),
        sa.Column("body", sa.String(length=1000), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("read_at", _AT, nullable=True),
        sa.Column("forwarded_org_id", sa.Integer(), sa.ForeignKey("organisation.id"), nullable=True),
        sa.Column("outcome", sa.String(length=500), nullable=False),
        sa.Column("closed_at", _AT, nullable=True),
        sa.Column("replied_at", _AT, nullable=True),
        sa.Column("reply_seen_at", _AT, nullable=True),
        sa.Column("photo_id", sa.Integer(), sa.ForeignKey("booth_photo.id"), nullable=True),
    )
    for column in (
        "member_id",
        "org_id",
        "representative_id",
        "link_id",
        "uid_hmac",
        "status",
        "created_at",
        "forwarded_org_id",
        "closed_at",
    ):
        op.create_index(f"ix_booth_message_{column}", "booth_message", [column])
    op.create_table(
        "booth_reply",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("booth_message.id"), nullable=False),
        sa.Column("body", sa.String(length=1000), nullable=False),
        sa.Column("author_name", sa.String(length=100), nullable=False),
        sa.Column("author_ref", sa.String(length=64), nullable=False),
        sa.Column("at", _AT, nullable=False),
    )
    op.create_index("ix_booth_reply_message_id", "booth_reply", ["message_id"])


def downgrade() -> None:
    op.drop_table("booth_reply")
    op.drop_table("booth_message")
    op.drop_table("booth_link")
    op.drop_table("booth_representative")
    op.drop_table("booth_photo")
