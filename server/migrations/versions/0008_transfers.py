"""组织关系转入: transfer requests, their introduction letters and the documents reviewers tick.

Revision ID: 0008_transfers
Revises: 0007_kiosk_health
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_transfers"
down_revision: str | Sequence[str] | None = "0007_kiosk_health"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "transfer_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("state_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("to_org_id", sa.Integer(), nullable=False),
        sa.Column("committee_id", sa.Integer(), nullable=False),
        sa.Column("placement_org_id", sa.Integer(), nullable=True),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("claimed_name", sa.String(length=100), nullable=True),
        sa.Column("card_no_hmac", sa.String(length=64), nullable=True),
        sa.Column("uid_hmac", sa.String(length=64), nullable=True),
        sa.Column("card_masked", sa.String(length=32), nullable=True),
        sa.Column("evidence_tap_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("probation_due_on", sa.Date(), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("pending_key", sa.String(length=80), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["committee_id"], ["organisation.id"], name=op.f("fk_transfer_request_committee_id_organisation")
        ),
        sa.ForeignKeyConstraint(
            ["evidence_tap_id"], ["tap.id"], name=op.f("fk_transfer_request_evidence_tap_id_tap")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["member.id"], name=op.f("fk_transfer_request_member_id_member")
        ),
        sa.ForeignKeyConstraint(
            ["placement_org_id"],
            ["organisation.id"],
            name=op.f("fk_transfer_request_placement_org_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["to_org_id"], ["organisation.id"], name=op.f("fk_transfer_request_to_org_id_organisation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_request")),
        sa.UniqueConstraint(
            "to_org_id", "pending_key", name=op.f("uq_transfer_request_to_org_id_pending_key")
        ),
    )
    for column in ("committee_id", "member_id", "placement_org_id", "state", "submitted_at", "to_org_id"):
        op.create_index(op.f(f"ix_transfer_request_{column}"), "transfer_request", [column], unique=False)

    op.create_table(
        "introduction_letter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("letter_no", sa.String(length=50), nullable=False),
        sa.Column("issuer_name", sa.String(length=200), nullable=False),
        sa.Column("issuer_kind", sa.String(length=32), nullable=False),
        sa.Column("from_org_name", sa.String(length=200), nullable=False),
        sa.Column("to_org_name", sa.String(length=200), nullable=False),
        sa.Column("member_category", sa.String(length=32), nullable=False),
        sa.Column("dues_paid_to", sa.String(length=7), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["transfer_request.id"],
            name=op.f("fk_introduction_letter_request_id_transfer_request"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_introduction_letter")),
    )
    op.create_index(
        op.f("ix_introduction_letter_request_id"), "introduction_letter", ["request_id"], unique=False
    )

    op.create_table(
        "transfer_document",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ticked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ticked_by", sa.String(length=100), nullable=False),
        sa.Column("ticked_by_name", sa.String(length=100), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["transfer_request.id"],
            name=op.f("fk_transfer_document_request_id_transfer_request"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_document")),
        sa.UniqueConstraint("request_id", "kind", name=op.f("uq_transfer_document_request_id_kind")),
    )
    op.create_index(
        op.f("ix_transfer_document_request_id"), "transfer_document", ["request_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_transfer_document_request_id"), table_name="transfer_document")
    op.drop_table("transfer_document")
    op.drop_index(op.f("ix_introduction_letter_request_id"), table_name="introduction_letter")
    op.drop_table("introduction_letter")
    for column in ("committee_id", "member_id", "placement_org_id", "state", "submitted_at", "to_org_id"):
        op.drop_index(op.f(f"ix_transfer_request_{column}"), table_name="transfer_request")
    op.drop_table("transfer_request")
