"""Kiosk key history, latest heartbeats and 刷卡绑定 (enrol-by-tap) requests.

Every enrolled kiosk's current key is copied into the key history, so taps keep verifying by kid.

Revision ID: 0007_kiosk_health
Revises: 0006_card_checks
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_kiosk_health"
down_revision: str | Sequence[str] | None = "0006_card_checks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kiosk_key",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("kiosk_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["kiosk_id"], ["kiosk.id"], name=op.f("fk_kiosk_key_kiosk_id_kiosk")),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_kiosk_key")),
    )
    op.create_index(op.f("ix_kiosk_key_kiosk_id"), "kiosk_key", ["kiosk_id"], unique=False)
    op.execute(
        "INSERT INTO kiosk_key (kid, kiosk_id, public_key, valid_from)"
        " SELECT kid, id, public_key, COALESCE(enrolled_at, created_at) FROM kiosk"
        " WHERE kid IS NOT NULL AND public_key IS NOT NULL"
    )

    op.create_table(
        "kiosk_heartbeat",
        sa.Column("kiosk_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("boot_id", sa.String(length=32), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=False),
        sa.Column("clock_offset_ms", sa.BigInteger(), nullable=False),
        sa.Column("offset_uncertainty_ms", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(length=32), nullable=False),
        sa.Column("outbox_pending", sa.Integer(), nullable=False),
        sa.Column("oldest_pending_age_s", sa.Float(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=False),
        sa.Column("reader_state", sa.String(length=32), nullable=False),
        sa.Column("reader_name", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["kiosk_id"], ["kiosk.id"], name=op.f("fk_kiosk_heartbeat_kiosk_id_kiosk")),
        sa.PrimaryKeyConstraint("kiosk_id", name=op.f("pk_kiosk_heartbeat")),
    )

    op.create_table(
        "enrol_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("kiosk_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("started_by", sa.String(length=100), nullable=False),
        sa.Column("started_by_name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("binding_id", sa.Integer(), nullable=True),
        sa.Column("bound_kiosk_id", sa.String(length=64), nullable=True),
        sa.Column("card_masked", sa.String(length=32), nullable=True),
        sa.Column("last_problem", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["binding_id"], ["card_binding.id"], name=op.f("fk_enrol_session_binding_id_card_binding")
        ),
        sa.ForeignKeyConstraint(["kiosk_id"], ["kiosk.id"], name=op.f("fk_enrol_session_kiosk_id_kiosk")),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], name=op.f("fk_enrol_session_member_id_member")),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisation.id"], name=op.f("fk_enrol_session_org_id_organisation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrol_session")),
    )
    op.create_index(op.f("ix_enrol_session_member_id"), "enrol_session", ["member_id"], unique=False)
    op.create_index(op.f("ix_enrol_session_org_id"), "enrol_session", ["org_id"], unique=False)
    op.create_index(op.f("ix_enrol_session_status"), "enrol_session", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_enrol_session_status"), table_name="enrol_session")
    op.drop_index(op.f("ix_enrol_session_org_id"), table_name="enrol_session")
    op.drop_index(op.f("ix_enrol_session_member_id"), table_name="enrol_session")
    op.drop_table("enrol_session")
    op.drop_table("kiosk_heartbeat")
    op.drop_index(op.f("ix_kiosk_key_kiosk_id"), table_name="kiosk_key")
    op.drop_table("kiosk_key")
