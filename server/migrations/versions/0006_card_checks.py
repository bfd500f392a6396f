"""Card checks: the level each tap passed, consumed issuer challenges, bindings known to answer them.

Revision ID: 0006_card_checks
Revises: 0005_ledgers
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_card_checks"
down_revision: str | Sequence[str] | None = "0005_ledgers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tap") as batch_op:
        batch_op.add_column(sa.Column("card_check", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("card_check_note", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("auth_challenge", sa.String(length=32), nullable=True))
    op.create_index(op.f("ix_tap_auth_challenge"), "tap", ["auth_challenge"], unique=True)
    with op.batch_alter_table("card_binding") as batch_op:
        batch_op.add_column(sa.Column("issuer_mac_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("card_binding") as batch_op:
        batch_op.drop_column("issuer_mac_since")
    op.drop_index(op.f("ix_tap_auth_challenge"), table_name="tap")
    with op.batch_alter_table("tap") as batch_op:
        batch_op.drop_column("auth_challenge")
        batch_op.drop_column("card_check_note")
        batch_op.drop_column("card_check")
