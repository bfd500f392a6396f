"""No downgrade of a card: the level each binding has been verified at, and the venues whose
serial kiosks may still check such cards by UID alone.

Existing bindings get the level their evidence shows: ``issuer-mac`` when the card is known to
answer the issuer's challenge, ``card-number`` when it was bound with its number, else ``uid``.
From now on a UID-only read of a card bound with its number is refused (``card_downgrade``),
unless it comes from a serial kiosk at a venue that accepts UID-only reads.

Revision ID: 0009_card_downgrade
Revises: 0008_transfers
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_card_downgrade"
down_revision: str | Sequence[str] | None = "0008_transfers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ALTER TABLE in place, never a copy of the table: venues and bindings are referenced by other
    # rows, and SQLite's foreign keys would not let a copy replace them.
    with op.batch_alter_table("card_binding", recreate="never") as batch_op:
        batch_op.add_column(
            sa.Column("verified_level", sa.String(length=32), nullable=False, server_default="uid")
        )
    op.execute(
        "UPDATE card_binding SET verified_level = CASE"
        " WHEN issuer_mac_since IS NOT NULL THEN 'issuer-mac'"
        " WHEN card_no_hmac IS NOT NULL THEN 'card-number'"
        " ELSE 'uid' END"
    )
    with op.batch_alter_table("venue", recreate="never") as batch_op:
        batch_op.add_column(
            sa.Column("accept_uid_only_reads", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35) in place, for the same reason.
    with op.batch_alter_table("venue", recreate="never") as batch_op:
        batch_op.drop_column("accept_uid_only_reads")
    with op.batch_alter_table("card_binding", recreate="never") as batch_op:
        batch_op.drop_column("verified_level")
