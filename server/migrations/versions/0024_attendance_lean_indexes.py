"""The attendance indexes on event_id alone and on member_id alone go: the (event_id, member_id)
unique index and the (member_id, first_tap_at) index start with those columns and serve the same
reads. With statistics that know events of about fifty members, SQLite chose the event_id index
for a run's "these members at this event" and read every row of a 2,000-member flash event; and
every attendance row written updated two indexes more than it needed.

Revision ID: 0024_attendance_lean_indexes
Revises: 0023_evidence_chain_head_index
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0024_attendance_lean_indexes"
down_revision: str | Sequence[str] | None = "0023_evidence_chain_head_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_attendance_event_id", table_name="attendance")
    op.drop_index("ix_attendance_member_id", table_name="attendance")


def downgrade() -> None:
    op.create_index("ix_attendance_member_id", "attendance", ["member_id"])
    op.create_index("ix_attendance_event_id", "attendance", ["event_id"])
