"""Stored reminders (督查督办), their history, and the runs of scheduled jobs."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.vocabulary import ReminderAction, ReminderLevel, ReminderState, RuleFamily


class Reminder(SQLModel, table=True):
    """One thing a supervision rule found, kept from the day it was found until it clears.

    ``(rule, subject, period)`` is its identity (unique): the daily sweep updates the reminder it
    finds again, resolves one whose condition is gone, and reopens a resolved one that comes back.
    ``escalated_to`` names the superior organisation whose 督办 queue holds it (None: not escalated);
    ``clock_from`` is when the working-day clock for escalation started (opened, or sent down).
    """

    __tablename__ = "reminder"
    __table_args__ = (
        UniqueConstraint("rule", "subject", "period", name="uq_reminder_identity"),
        Index("ix_reminder_org_state", "org_id", "state"),
        Index("ix_reminder_escalated_to", "escalated_to"),
    )

    id: int | None = Field(default=None, primary_key=True)
    rule: str = Field(max_length=64)
    family: RuleFamily = Field(sa_type=string_enum(RuleFamily))
    subject: str = Field(max_length=40)
    period: str = Field(max_length=16)
    org_id: int = Field(foreign_key="organisation.id")
    level: ReminderLevel = Field(sa_type=string_enum(ReminderLevel))
    state: ReminderState = Field(sa_type=string_enum(ReminderState))
    message: str = Field(max_length=500)
    due_on: date | None = Field(default=None)
    opened_at: datetime = Field(sa_type=UtcDateTime)
    last_found_at: datetime = Field(sa_type=UtcDateTime)
    clock_from: datetime = Field(sa_type=UtcDateTime)
    acknowledged_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    acknowledged_by: str = Field(default="", max_length=100)
    resolved_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    escalated_to: int | None = Field(default=None, foreign_key="organisation.id")
    escalated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class ReminderHistory(SQLModel, table=True):
    """What happened to a reminder, in order: found, changed, acknowledged, escalated, sent down…"""

    __tablename__ = "reminder_history"

    id: int | None = Field(default=None, primary_key=True)
    reminder_id: int = Field(foreign_key="reminder.id", index=True)
    at: datetime = Field(sa_type=UtcDateTime)
    action: ReminderAction = Field(sa_type=string_enum(ReminderAction))
    actor: str = Field(max_length=100)  # "system" for the sweep, else the caller's reference
    note: str = Field(default="", max_length=500)


class JobRun(SQLModel, table=True):
    """One run of a scheduled job (``ecard admin jobs list`` shows the latest of each)."""

    __tablename__ = "job_run"
    __table_args__ = (Index("ix_job_run_name_started", "name", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    started_at: datetime = Field(sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    ok: bool = Field(default=True)
    trigger: str = Field(max_length=16)  # "schedule" or "manual"
    summary: str = Field(default="", max_length=500)
