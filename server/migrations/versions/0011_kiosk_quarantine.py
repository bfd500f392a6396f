"""One envelope, one verdict: the kiosk's quarantined taps in its heartbeat, and seqs within bounds.

``kiosk_heartbeat`` keeps what the kiosk reports about the taps it set aside because the server
kept refusing them (how many, and the oldest one's seq), so the kiosk health page can show them.

Seqs are bounded on the wire from now on (``schemas.messages.MAX_SEQ``, 2^53 − 1), so that a
replacement device's first seq (the last one + 1) always fits. A database that took a larger seq
before the bound existed is brought back within it: such taps give up their claim on the seq
(their rows stay), and the kiosk's and its keys' last seqs fall back to the highest in-bounds one.

Revision ID: 0011_kiosk_quarantine
Revises: 0010_transfer_release
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_kiosk_quarantine"
down_revision: str | Sequence[str] | None = "0010_transfer_release"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_SEQ = 2**53 - 1  # schemas.messages.MAX_SEQ when this migration was written


def upgrade() -> None:
    with op.batch_alter_table("kiosk_heartbeat") as batch_op:
        batch_op.add_column(sa.Column("outbox_quarantined", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("oldest_quarantined_seq", sa.BigInteger(), nullable=True))
    op.execute(f"UPDATE tap SET claimed_seq = NULL WHERE claimed_seq > {MAX_SEQ}")
    op.execute(
        f"UPDATE kiosk SET last_seq = (SELECT max(tap.claimed_seq) FROM tap WHERE tap.kiosk_id = kiosk.id)"
        f" WHERE last_seq > {MAX_SEQ}"
    )
    op.execute(f"UPDATE kiosk_key SET last_seq = {MAX_SEQ} WHERE last_seq > {MAX_SEQ}")
    op.execute(f"UPDATE kiosk_heartbeat SET last_seq = {MAX_SEQ} WHERE last_seq > {MAX_SEQ}")


def downgrade() -> None:
    with op.batch_alter_table("kiosk_heartbeat") as batch_op:
        batch_op.drop_column("oldest_quarantined_seq")
        batch_op.drop_column("outbox_quarantined")
