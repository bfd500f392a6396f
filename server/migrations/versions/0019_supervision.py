"""督查督办: stored reminders with a life and a history, and the runs of scheduled jobs.

Revision ID: 0019_supervision
Revises: 0018_web_daily_work
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_supervision"
down_revision: str | Sequence[str] | None = "0018_web_daily_work"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reminder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=40), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clock_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=100), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_to", sa.Integer(), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisation.id"], name=op.f("fk_reminder_org_id_organisation")
        ),
        sa.ForeignKeyConstraint(
            ["escalated_to"], ["organisation.id"], name=op.f("fk_reminder_escalated_to_organisation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder")),
        sa.UniqueConstraint("rule", "subject", "period", name="uq_reminder_identity"),
    )
    op.create_index("ix_reminder_org_state", "reminder", ["org_id", "state"], unique=False)
    op.create_index("ix_reminder_escalated_to", "reminder", ["escalated_to"], unique=False)
    op.create_table(
        "reminder_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reminder_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["reminder_id"], ["reminder.id"], name=op.f("fk_reminder_history_reminder_id_reminder")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_history")),
    )
    op.create_index(
        op.f("ix_reminder_history_reminder_id"), "reminder_history", ["reminder_id"], unique=False
    )
    op.create_table(
        "job_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_run")),
    )
    op.create_index("ix_job_run_name_started", "job_run", ["name", "started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_job_run_name_started", table_name="job_run")
    op.drop_table("job_run")
    op.drop_index(op.f("ix_reminder_history_reminder_id"), table_name="reminder_history")
    op.drop_table("reminder_history")
    op.drop_index("ix_reminder_escalated_to", table_name="reminder")
    op.drop_index("ix_reminder_org_state", table_name="reminder")
    op.drop_table("reminder")
