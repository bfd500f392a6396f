"""A kiosk's evidence chain head is one index seek: tap_evidence (kiosk_id, tap_id) replaces the
index on kiosk_id alone (which it covers), so ingest's chain-head read no longer grows with the
kiosk's history.

Revision ID: 0023_evidence_chain_head_index
Revises: 0022_message_booth
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023_evidence_chain_head_index"
down_revision: str | Sequence[str] | None = "0022_message_booth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tap_evidence_kiosk_id_tap_id", "tap_evidence", ["kiosk_id", "tap_id"])
    op.drop_index("ix_tap_evidence_kiosk_id", table_name="tap_evidence")


def downgrade() -> None:
    op.create_index("ix_tap_evidence_kiosk_id", "tap_evidence", ["kiosk_id"])
    op.drop_index("ix_tap_evidence_kiosk_id_tap_id", table_name="tap_evidence")
