"""Attendance derived from the taps: what a tap counts as may be decided again.

A check-in tap that matched nothing when it arrived (``no_event``, or ``unknown_card`` within the
retention period) is decided again when something that could match it appears: an earlier tap of
the same card, an event created afterwards, the card's binding. ``tap.event_id``/``tap.member_id``
say what a check-in tap counts as now; ``tap.redecision`` says who decided it after ingest
(``system``, or ``assigned`` by a secretary) and ``tap.redecided_at`` when. The receipt fields
(outcome, code, display) stay what the kiosk was told.

``attendance.manual_at`` keeps the arrival a recorder entered by hand, so that a row can be
recomputed from its taps and that entry.

Revision ID: 0012_attendance_redecide
Revises: 0011_kiosk_quarantine
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_attendance_redecide"
down_revision: str | Sequence[str] | None = "0011_kiosk_quarantine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _assigned(end: str) -> str:
    row = f"FROM attendance a WHERE a.{end} = tap.id"
    return (
        "UPDATE tap SET redecision = 'assigned', redecided_at = tap.received_at,"
        f" event_id = (SELECT a.event_id {row}), member_id = (SELECT a.member_id {row})"
        f" WHERE tap.code = 'no_event' AND EXISTS (SELECT 1 {row})"
    )


BACKFILL = (
    "UPDATE attendance SET manual_at = first_tap_at WHERE source = 'manual'",
    # A tap a secretary assigned now says so itself, like any tap that counts. A ``no_event`` tap
    # only ever entered attendance that way, so every one a row points at was assigned.
    _assigned("first_tap_id"),
    _assigned("last_tap_id"),
)


def upgrade() -> None:
    with op.batch_alter_table("tap") as batch_op:
        batch_op.add_column(sa.Column("redecision", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("redecided_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_tap_kiosk_occurred", ["kiosk_id", "occurred_at"])
    with op.batch_alter_table("attendance") as batch_op:
        batch_op.add_column(sa.Column("manual_at", sa.DateTime(timezone=True), nullable=True))
    for statement in BACKFILL:
        op.execute(statement)


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35) in place: SQLite refuses to drop a copied table
    # that other tables reference (tap_evidence references tap), which a recreating batch would do.
    op.drop_index("ix_tap_kiosk_occurred", table_name="tap")
    with op.batch_alter_table("attendance", recreate="never") as batch_op:
        batch_op.drop_column("manual_at")
    with op.batch_alter_table("tap", recreate="never") as batch_op:
        batch_op.drop_column("redecided_at")
        batch_op.drop_column("redecision")
