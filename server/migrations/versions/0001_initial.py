"""Initial tables: organisation tree, members, card bindings, venues, kiosks, events, taps,
attendance and API tokens.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "organisation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["organisation.id"], name=op.f("fk_organisation_parent_id_organisation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisation")),
    )
    op.create_index(op.f("ix_organisation_parent_id"), "organisation", ["parent_id"], unique=False)

    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisation.id"], name=op.f("fk_api_token_org_id_organisation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    op.create_table(
        "member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("joined_org_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"], name=op.f("fk_member_org_id_organisation")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member")),
    )
    op.create_index(op.f("ix_member_org_id"), "member", ["org_id"], unique=False)

    op.create_table(
        "venue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"], name=op.f("fk_venue_org_id_organisation")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_venue")),
    )
    op.create_index(op.f("ix_venue_org_id"), "venue", ["org_id"], unique=False)

    op.create_table(
        "card_binding",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("card_no_hmac", sa.String(length=64), nullable=True),
        sa.Column("uid_hmac", sa.String(length=64), nullable=True),
        sa.Column("card_no_masked", sa.String(length=32), nullable=True),
        sa.Column("uid_masked", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "card_no_hmac IS NOT NULL OR uid_hmac IS NOT NULL", name=op.f("ck_card_binding_has_identifier")
        ),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], name=op.f("fk_card_binding_member_id_member")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_binding")),
    )
    op.create_index(op.f("ix_card_binding_card_no_hmac"), "card_binding", ["card_no_hmac"], unique=False)
    op.create_index(op.f("ix_card_binding_member_id"), "card_binding", ["member_id"], unique=False)
    op.create_index(op.f("ix_card_binding_uid_hmac"), "card_binding", ["uid_hmac"], unique=False)

    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("venue_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checkin_opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checkin_closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisation.id"], name=op.f("fk_event_org_id_organisation")),
        sa.ForeignKeyConstraint(["venue_id"], ["venue.id"], name=op.f("fk_event_venue_id_venue")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
    )
    op.create_index(op.f("ix_event_org_id"), "event", ["org_id"], unique=False)
    op.create_index(
        "ix_event_venue_window", "event", ["venue_id", "checkin_opens_at", "checkin_closes_at"], unique=False
    )

    op.create_table(
        "kiosk",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("venue_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=True),
        sa.Column("kid", sa.String(length=64), nullable=True),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["venue_id"], ["venue.id"], name=op.f("fk_kiosk_venue_id_venue")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kiosk")),
        sa.UniqueConstraint("kid", name=op.f("uq_kiosk_kid")),
    )
    op.create_index(op.f("ix_kiosk_venue_id"), "kiosk", ["venue_id"], unique=False)

    op.create_table(
        "enrollment_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kiosk_id", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by_kid", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["kiosk_id"], ["kiosk.id"], name=op.f("fk_enrollment_code_kiosk_id_kiosk")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_code")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_enrollment_code_code_hash")),
    )
    op.create_index(op.f("ix_enrollment_code_kiosk_id"), "enrollment_code", ["kiosk_id"], unique=False)

    op.create_table(
        "tap",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("kiosk_id", sa.String(length=64), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("claimed_seq", sa.BigInteger(), nullable=True),
        sa.Column("payload_digest", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mode", sa.String(length=32), nullable=True),
        sa.Column("card_no_hmac", sa.String(length=64), nullable=True),
        sa.Column("uid_hmac", sa.String(length=64), nullable=True),
        sa.Column("reader_backend", sa.String(length=32), nullable=True),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.Column("display_member_name", sa.String(length=100), nullable=True),
        sa.Column("display_event_title", sa.String(length=200), nullable=True),
        sa.Column("display_message", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], name=op.f("fk_tap_event_id_event")),
        sa.ForeignKeyConstraint(["kiosk_id"], ["kiosk.id"], name=op.f("fk_tap_kiosk_id_kiosk")),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], name=op.f("fk_tap_member_id_member")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tap")),
        sa.UniqueConstraint("kiosk_id", "claimed_seq", name=op.f("uq_tap_kiosk_id_claimed_seq")),
    )
    op.create_index(op.f("ix_tap_event_id"), "tap", ["event_id"], unique=False)
    op.create_index(op.f("ix_tap_kiosk_id"), "tap", ["kiosk_id"], unique=False)
    op.create_index(op.f("ix_tap_member_id"), "tap", ["member_id"], unique=False)
    op.create_index(op.f("ix_tap_payload_digest"), "tap", ["payload_digest"], unique=False)

    op.create_table(
        "attendance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("first_tap_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_tap_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tap_count", sa.Integer(), nullable=False),
        sa.Column("first_tap_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("last_tap_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], name=op.f("fk_attendance_event_id_event")),
        sa.ForeignKeyConstraint(["first_tap_id"], ["tap.id"], name=op.f("fk_attendance_first_tap_id_tap")),
        sa.ForeignKeyConstraint(["last_tap_id"], ["tap.id"], name=op.f("fk_attendance_last_tap_id_tap")),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], name=op.f("fk_attendance_member_id_member")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attendance")),
        sa.UniqueConstraint("event_id", "member_id", name=op.f("uq_attendance_event_id_member_id")),
    )
    op.create_index(op.f("ix_attendance_event_id"), "attendance", ["event_id"], unique=False)
    op.create_index(op.f("ix_attendance_member_id"), "attendance", ["member_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_attendance_member_id"), table_name="attendance")
    op.drop_index(op.f("ix_attendance_event_id"), table_name="attendance")

    op.drop_table("attendance")
    op.drop_index(op.f("ix_tap_payload_digest"), table_name="tap")
    op.drop_index(op.f("ix_tap_member_id"), table_name="tap")
    op.drop_index(op.f("ix_tap_kiosk_id"), table_name="tap")
    op.drop_index(op.f("ix_tap_event_id"), table_name="tap")

    op.drop_table("tap")
    op.drop_index(op.f("ix_enrollment_code_kiosk_id"), table_name="enrollment_code")

    op.drop_table("enrollment_code")
    op.drop_index(op.f("ix_kiosk_venue_id"), table_name="kiosk")

    op.drop_table("kiosk")
    op.drop_index("ix_event_venue_window", table_name="event")
    op.drop_index(op.f("ix_event_org_id"), table_name="event")

    op.drop_table("event")
    op.drop_index(op.f("ix_card_binding_uid_hmac"), table_name="card_binding")
    op.drop_index(op.f("ix_card_binding_member_id"), table_name="card_binding")
    op.drop_index(op.f("ix_card_binding_card_no_hmac"), table_name="card_binding")

    op.drop_table("card_binding")
    op.drop_index(op.f("ix_venue_org_id"), table_name="venue")

    op.drop_table("venue")
    op.drop_index(op.f("ix_member_org_id"), table_name="member")

    op.drop_table("member")
    op.drop_table("api_token")
    op.drop_index(op.f("ix_organisation_parent_id"), table_name="organisation")

    op.drop_table("organisation")
