"""Verifiable evidence: each stored tap's signed bytes (sealed) on a per-kiosk hash chain, and
every ledger export with the verification code printed on it.

Taps stored before this revision have no evidence row; ``ecard admin audit verify`` counts them as
"before the chain" and each kiosk's chain starts at its first tap after the upgrade.

Revision ID: 0013_evidence
Revises: 0012_attendance_redecide
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_evidence"
down_revision: str | Sequence[str] | None = "0012_attendance_redecide"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TAP_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tap_evidence",
        sa.Column("tap_id", TAP_ID, sa.ForeignKey("tap.id"), primary_key=True),
        sa.Column("kiosk_id", sa.String(length=64), sa.ForeignKey("kiosk.id"), nullable=False),
        sa.Column("signature", sa.String(length=100), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("chain_hash", sa.String(length=64), nullable=False, unique=True),
    )
    op.create_index("ix_tap_evidence_kiosk_id", "tap_evidence", ["kiosk_id"])
    op.create_table(
        "ledger_export",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(length=32), nullable=False, unique=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("fmt", sa.String(length=8), nullable=False),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organisation.id"), nullable=True),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("content_digest", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("chain_heads", sa.Text(), nullable=False),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exported_by", sa.String(length=100), nullable=False),
        sa.Column("exported_by_name", sa.String(length=100), nullable=False, server_default=""),
    )
    op.create_index("ix_ledger_export_org_id", "ledger_export", ["org_id"])


def downgrade() -> None:
    op.drop_index("ix_ledger_export_org_id", table_name="ledger_export")
    op.drop_table("ledger_export")
    op.drop_index("ix_tap_evidence_kiosk_id", table_name="tap_evidence")
    op.drop_table("tap_evidence")
