"""Ingest by the batch: the seq checks read the unique (kiosk, claimed_seq) index.

``ix_tap_kiosk_id`` duplicated the leading column of two other indexes (the unique
``uq_tap_kiosk_id_claimed_seq`` and ``ix_tap_kiosk_occurred``), and PostgreSQL planned the seq
check of every tap on it, reading every earlier tap of the kiosk. Without it, that check reads
the unique index (tests/server/taps/test_ingest_plans.py), and each stored tap updates one index
fewer.

Revision ID: 0015_ingest_indexes
Revises: 0014_ledger_rules
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015_ingest_indexes"
down_revision: str | Sequence[str] | None = "0014_ledger_rules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_tap_kiosk_id", table_name="tap")


def downgrade() -> None:
    op.create_index("ix_tap_kiosk_id", "tap", ["kiosk_id"])
