"""Ledgers: membership history, exemptions, committees, joint and multi-kind events, leave,
manual attendance.

Existing rows are carried over: every active member gets an open membership period in their
organisation (from ``joined_org_at``), every event gets its host organisation and its kind as
link rows, and every attendance row is a tap.

Revision ID: 0005_ledgers
Revises: 0004_web_users
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_ledgers"
down_revision: str | Sequence[str] | None = "0004_web_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TAP_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "membership_period",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["member.id"], name=op.f("fk_membership_period_member_id_member")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisation.id"], name=op.f("fk_membership_period_org_id_organisation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_membership_period")),
    )
    op.create_index(op.f("ix_membership_period_member_id"), "membership_period", ["member_id"])
    op.create_index("ix_membership_period_org_started", "membership_period", ["org_id", "started_at"])

    op.create_table(
        "member_exemption",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approved_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["member.id"], name=op.f("fk_member_exemption_member_id_member")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_exemption")),
    )
    op.create_index(op.f("ix_member_exemption_member_id"), "member_exemption", ["member_id"])

    op.create_table(
        "committee_seat",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["member.id"], name=op.f("fk_committee_seat_member_id_member")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisation.id"], name=op.f("fk_committee_seat_org_id_organisation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_committee_seat")),
    )
    op.create_index(op.f("ix_committee_seat_member_id"), "committee_seat", ["member_id"])
    op.create_index(op.f("ix_committee_seat_org_id"), "committee_seat", ["org_id"])

    op.create_table(
        "event_organisation",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["event.id"], name=op.f("fk_event_organisation_event_id_event")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisation.id"], name=op.f("fk_event_organisation_org_id_organisation")
        ),
        sa.PrimaryKeyConstraint("event_id", "org_id", name=op.f("pk_event_organisation")),
    )
    op.create_index("ix_event_organisation_org_event", "event_organisation", ["org_id", "event_id"])

    op.create_table(
        "event_kind",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], name=op.f("fk_event_kind_event_id_event")),
        sa.PrimaryKeyConstraint("event_id", "kind", name=op.f("pk_event_kind")),
    )

    op.create_table(
        "leave_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=False),
        sa.Column("decision_note", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"], name=op.f("fk_leave_request_event_id_event")),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], name=op.f("fk_leave_request_member_id_member")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leave_request")),
    )
    op.create_index(op.f("ix_leave_request_event_id"), "leave_request", ["event_id"])
    op.create_index(op.f("ix_leave_request_member_id"), "leave_request", ["member_id"])

    with op.batch_alter_table("event") as batch:
        batch.add_column(sa.Column("late_after", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("chair_member_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("recorder_member_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("topic", sa.String(length=500), nullable=False, server_default=""))
    op.execute("UPDATE event SET late_after = start_at")
    with op.batch_alter_table("event") as batch:
        batch.alter_column("late_after", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.alter_column("topic", existing_type=sa.String(length=500), server_default=None)
        batch.create_foreign_key(
            op.f("fk_event_chair_member_id_member"), "member", ["chair_member_id"], ["id"]
        )
        batch.create_foreign_key(
            op.f("fk_event_recorder_member_id_member"), "member", ["recorder_member_id"], ["id"]
        )
    op.create_index("ix_event_start_at", "event", ["start_at"])

    with op.batch_alter_table("attendance") as batch:
        batch.alter_column("first_tap_id", existing_type=_TAP_ID, nullable=True)
        batch.alter_column("last_tap_id", existing_type=_TAP_ID, nullable=True)
        batch.add_column(sa.Column("source", sa.String(length=32), nullable=False, server_default="tap"))
        batch.add_column(sa.Column("note", sa.String(length=500), nullable=False, server_default=""))
        batch.add_column(sa.Column("recorded_by", sa.String(length=100), nullable=False, server_default=""))
    with op.batch_alter_table("attendance") as batch:
        for column, length in (("source", 32), ("note", 500), ("recorded_by", 100)):
            batch.alter_column(column, existing_type=sa.String(length=length), server_default=None)
    op.create_index("ix_attendance_member_first_tap", "attendance", ["member_id", "first_tap_at"])

    op.execute(
        "INSERT INTO membership_period (member_id, org_id, category, started_at, ended_at) "
        "SELECT id, org_id, category, joined_org_at, NULL FROM member WHERE status = 'active'"
    )
    op.execute("INSERT INTO event_organisation (event_id, org_id) SELECT id, org_id FROM event")
    op.execute("INSERT INTO event_kind (event_id, kind) SELECT id, kind FROM event")


def downgrade() -> None:
    op.drop_index("ix_attendance_member_first_tap", table_name="attendance")
    # Manual entries have no tap; they cannot survive the older schema.
    op.execute("DELETE FROM attendance WHERE first_tap_id IS NULL OR last_tap_id IS NULL")
    with op.batch_alter_table("attendance") as batch:
        batch.drop_column("recorded_by")
        batch.drop_column("note")
        batch.drop_column("source")
        batch.alter_column("last_tap_id", existing_type=_TAP_ID, nullable=False)
        batch.alter_column("first_tap_id", existing_type=_TAP_ID, nullable=False)

    op.drop_index("ix_event_start_at", table_name="event")
    with op.batch_alter_table("event") as batch:
        batch.drop_constraint(op.f("fk_event_recorder_member_id_member"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_event_chair_member_id_member"), type_="foreignkey")
        batch.drop_column("topic")
        batch.drop_column("recorder_member_id")
        batch.drop_column("chair_member_id")
        batch.drop_column("late_after")

    op.drop_index(op.f("ix_leave_request_member_id"), table_name="leave_request")
    op.drop_index(op.f("ix_leave_request_event_id"), table_name="leave_request")
    op.drop_table("leave_request")
    op.drop_table("event_kind")
    op.drop_index("ix_event_organisation_org_event", table_name="event_organisation")
    op.drop_table("event_organisation")
    op.drop_index(op.f("ix_committee_seat_org_id"), table_name="committee_seat")
    op.drop_index(op.f("ix_committee_seat_member_id"), table_name="committee_seat")
    op.drop_table("committee_seat")
    op.drop_index(op.f("ix_member_exemption_member_id"), table_name="member_exemption")
    op.drop_table("member_exemption")
    op.drop_index("ix_membership_period_org_started", table_name="membership_period")
    op.drop_index(op.f("ix_membership_period_member_id"), table_name="membership_period")
    op.drop_table("membership_period")
