"""Ledger rules: an organisation's founding date, a roster position for members, and the
six-month clock carried across moves.

* ``organisation.founded_at``: when the organisation was set up, for a branch entered after the
  fact (``ecard admin org add … --founded``); the cadence requires meetings from then on, and from
  the row's creation when it is not known.
* ``member.roster_position``: the member's place in their organisation's 花名册 (set by the
  roster import and by ``member add``, appended); ledgers list names in that order. Existing
  members are numbered in the order they were entered.
* ``member.joined_org_at`` now means when the member's organisational life in this system began:
  a move between organisations no longer overwrites it. Moves made before this revision did, so
  it is taken back to the start of the member's unbroken run of membership periods.

Revision ID: 0014_ledger_rules
Revises: 0013_evidence
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0014_ledger_rules"
down_revision: str | Sequence[str] | None = "0013_evidence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organisation") as batch_op:
        batch_op.add_column(sa.Column("founded_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("member") as batch_op:
        batch_op.add_column(sa.Column("roster_position", sa.Integer(), nullable=True))
    _restore_clock_starts()
    _number_rosters()


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35) in place: SQLite refuses to drop a copied table
    # that other tables reference, which a recreating batch would do.
    with op.batch_alter_table("member", recreate="never") as batch_op:
        batch_op.drop_column("roster_position")
    with op.batch_alter_table("organisation", recreate="never") as batch_op:
        batch_op.drop_column("founded_at")


def _number_rosters() -> None:
    """Existing members get roster positions in the order they were entered, per organisation (a
    roster import enters its rows in the file's order)."""
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, org_id FROM member ORDER BY org_id, id")).all()
    positions: dict[int, int] = {}
    params = []
    for member_id, org_id in rows:
        positions[org_id] = positions.get(org_id, 0) + 1
        params.append({"id": member_id, "position": positions[org_id]})
    if params:
        bind.execute(sa.text("UPDATE member SET roster_position = :position WHERE id = :id"), params)


def _restore_clock_starts() -> None:
    """``joined_org_at`` ← the start of the member's last unbroken run of periods (a period that
    starts when the previous one ended continues it), where a move had overwritten it."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT p.member_id, p.started_at, p.ended_at, m.joined_org_at FROM membership_period p"
            " JOIN member m ON m.id = p.member_id"
            " ORDER BY p.member_id, p.started_at IS NOT NULL, p.started_at, p.id"
        )
    ).all()
    runs: dict[int, tuple[Any, Any]] = {}  # member → (run start, joined_org_at)
    last_end: dict[int, Any] = {}
    for member_id, started_at, ended_at, joined in rows:
        continues = member_id in runs and started_at is not None and last_end.get(member_id) == started_at
        if not continues:
            runs[member_id] = (started_at, joined)
        last_end[member_id] = ended_at
    for member_id, (start, joined) in runs.items():
        if joined is not None and (start is None or start < joined):
            bind.execute(
                sa.text("UPDATE member SET joined_org_at = :start WHERE id = :id"),
                {"start": start, "id": member_id},
            )
