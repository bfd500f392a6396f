"""Transfers between organisations need both of them: where the member was when a request was
filed (their branch and its 基层党委, which must release them), when the receiving side may see who
it is, and the member's own confirmation by a tap.

Requests already in the table were filed under the old rules; they keep their state and count as
released when filed (``released_at = submitted_at``), so nothing already visible disappears.

Revision ID: 0010_transfer_release
Revises: 0009_card_downgrade
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_transfer_release"
# Written against 0008_transfers; chained after the other 0009 present when it was written, so the
# tree keeps one head (the lead re-chains the parallel 0009s into one line).
down_revision: str | Sequence[str] | None = "0009_card_downgrade"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TAP_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("transfer_request") as batch_op:
        batch_op.add_column(sa.Column("from_org_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("from_committee_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("member_confirmed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("member_confirm_tap_id", TAP_ID, nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_transfer_request_from_org_id_organisation"), "organisation", ["from_org_id"], ["id"]
        )
        batch_op.create_foreign_key(
            op.f("fk_transfer_request_from_committee_id_organisation"),
            "organisation",
            ["from_committee_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            op.f("fk_transfer_request_member_confirm_tap_id_tap"), "tap", ["member_confirm_tap_id"], ["id"]
        )
        batch_op.create_index(op.f("ix_transfer_request_from_org_id"), ["from_org_id"], unique=False)
        batch_op.create_index(
            op.f("ix_transfer_request_from_committee_id"), ["from_committee_id"], unique=False
        )
    op.execute("UPDATE transfer_request SET released_at = submitted_at")


def downgrade() -> None:
    with op.batch_alter_table("transfer_request") as batch_op:
        batch_op.drop_index(op.f("ix_transfer_request_from_committee_id"))
        batch_op.drop_index(op.f("ix_transfer_request_from_org_id"))
        batch_op.drop_constraint(op.f("fk_transfer_request_member_confirm_tap_id_tap"), type_="foreignkey")
        batch_op.drop_constraint(
            op.f("fk_transfer_request_from_committee_id_organisation"), type_="foreignkey"
        )
        batch_op.drop_constraint(op.f("fk_transfer_request_from_org_id_organisation"), type_="foreignkey")
        batch_op.drop_column("member_confirm_tap_id")
        batch_op.drop_column("member_confirmed_at")
        batch_op.drop_column("released_at")
        batch_op.drop_column("from_committee_id")
        batch_op.drop_column("from_org_id")
