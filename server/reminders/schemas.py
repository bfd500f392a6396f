"""Reminder report models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from server.attendance.schemas import NamedRef
from server.vocabulary import Cadence, EventKind, MemberCategory, ReminderLevel


class CadenceReminder(BaseModel):
    """A required meeting not held: its period is about to end (``cadence_due_soon``) or ended
    (``cadence_missed``)."""

    code: str
    level: ReminderLevel
    level_label: str
    organisation: NamedRef
    kind: EventKind
    kind_label: str
    cadence: Cadence
    period_key: str
    period_label: str
    period_end: datetime
    message: str


class InactivityReminder(BaseModel):
    """党章 第九条: a member without organisational life for 3 (notice), 5 (warning) or 6 (alert)
    months. ``excused`` names a current exemption (a good reason; the clock still runs)."""

    code: str
    level: ReminderLevel
    level_label: str
    member_id: int
    name: str
    category: MemberCategory
    organisation: NamedRef
    last_org_life_at: datetime | None
    clock_started_at: datetime  # the last presence, or joining when there was none
    months: int
    excused: str | None
    message: str


class ReminderCounts(BaseModel):
    notice: int
    warning: int
    alert: int


class ReminderReport(BaseModel):
    organisation: NamedRef
    generated_at: datetime
    cadence: list[CadenceReminder]
    inactivity: list[InactivityReminder]
    counts: ReminderCounts
