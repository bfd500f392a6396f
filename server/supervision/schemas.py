"""Reminder (督查督办) models of the API."""

from __future__ import annotations

from datetime import date, datetime, tzinfo

from pydantic import BaseModel, Field

from server.labels import (
    REMINDER_ACTION_LABELS,
    REMINDER_LEVEL_LABELS,
    REMINDER_STATE_LABELS,
    RULE_FAMILY_LABELS,
)
from server.records.supervision import Reminder, ReminderHistory
from server.supervision.overview import SupervisionOverview
from server.vocabulary import ReminderAction, ReminderLevel, ReminderState, RuleFamily


class ReminderOut(BaseModel):
    id: int
    rule: str
    family: RuleFamily
    family_label: str
    subject: str
    period: str
    org_id: int
    level: ReminderLevel
    level_label: str
    state: ReminderState
    state_label: str
    message: str
    due_on: date | None
    opened_at: datetime
    last_found_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    escalated_to: int | None
    escalated_at: datetime | None

    @classmethod
    def of(cls, row: Reminder, tz: tzinfo) -> ReminderOut:
        def local(moment: datetime | None) -> datetime | None:
            return moment.astimezone(tz) if moment is not None else None

        assert row.id is not None
        return cls(
            id=row.id,
            rule=row.rule,
            family=row.family,
            family_label=RULE_FAMILY_LABELS[row.family],
            subject=row.subject,
            period=row.period,
            org_id=row.org_id,
            level=row.level,
            level_label=REMINDER_LEVEL_LABELS[row.level],
            state=row.state,
            state_label=REMINDER_STATE_LABELS[row.state],
            message=row.message,
            due_on=row.due_on,
            opened_at=row.opened_at.astimezone(tz),
            last_found_at=row.last_found_at.astimezone(tz),
            acknowledged_at=local(row.acknowledged_at),
            resolved_at=local(row.resolved_at),
            escalated_to=row.escalated_to,
            escalated_at=local(row.escalated_at),
        )


class ReminderHistoryOut(BaseModel):
    at: datetime
    action: ReminderAction
    action_label: str
    actor: str
    note: str

    @classmethod
    def of(cls, row: ReminderHistory, tz: tzinfo) -> ReminderHistoryOut:
        return cls(
            at=row.at.astimezone(tz),
            action=row.action,
            action_label=REMINDER_ACTION_LABELS[row.action],
            actor=row.actor,
            note=row.note,
        )


class ReminderNote(BaseModel):
    note: str = Field(default="", max_length=500)


class SendDownNote(BaseModel):
    note: str = Field(min_length=1, max_length=500)


class FamilyComplianceOut(BaseModel):
    family: RuleFamily
    label: str
    branches: int
    in_breach: int
    share: float


class UnitRankOut(BaseModel):
    org_id: int
    name: str
    branches: int
    compliant: int
    share: float
    open_alerts: int


class BranchStandingOut(BaseModel):
    org_id: int
    name: str
    open_by_family: dict[RuleFamily, int]
    worst: ReminderLevel | None
    missed_by_month: list[int]


class SupervisionOverviewOut(BaseModel):
    org_id: int
    name: str
    year: int
    generated_at: datetime
    families: list[FamilyComplianceOut]
    ranking: list[UnitRankOut]
    branches: list[BranchStandingOut]

    @classmethod
    def of(cls, overview: SupervisionOverview) -> SupervisionOverviewOut:
        return cls(
            org_id=overview.org_id,
            name=overview.name,
            year=overview.year,
            generated_at=overview.generated_at,
            families=[
                FamilyComplianceOut(
                    family=f.family, label=f.label, branches=f.branches, in_breach=f.in_breach, share=f.share
                )
                for f in overview.families
            ],
            ranking=[
                UnitRankOut(
                    org_id=u.org_id,
                    name=u.name,
                    branches=u.branches,
                    compliant=u.compliant,
                    share=u.share,
                    open_alerts=u.open_alerts,
                )
                for u in overview.ranking
            ],
            branches=[
                BranchStandingOut(
                    org_id=b.org_id,
                    name=b.name,
                    open_by_family=dict(b.open_by_family),
                    worst=b.worst,
                    missed_by_month=b.missed_by_month,
                )
                for b in overview.branches
            ],
        )
