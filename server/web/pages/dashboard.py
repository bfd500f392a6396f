"""仪表盘: what needs the secretary's attention today, from the same services as the API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from server.deps import ClockDep, SessionDep, SettingsDep
from server.kiosks.health import list_kiosk_health
from server.ledgers.labels import EVENT_KIND_LABELS
from server.ledgers.periods import period_containing
from server.reminders.models import CadenceReminder, InactivityReminder
from server.reminders.service import build_reminders
from server.transfers.access import Reviewer
from server.transfers.calendar import transfer_policy
from server.transfers.queue import count_pending
from server.users.service import WebUser
from server.vocabulary import Cadence, KioskStatus, ReminderLevel, UserRole
from server.web.deps import CurrentUser
from server.web.lookups import count_events_between, events_in_scope, present_counts
from server.web.pages.ledgers import cadence_policy
from server.web.templating import render

router = APIRouter()

UPCOMING_SHOWN = 6
REMINDERS_SHOWN = 8
_LEVEL_ORDER = {ReminderLevel.ALERT: 0, ReminderLevel.WARNING: 1, ReminderLevel.NOTICE: 2}


def reviewer_for(viewer: WebUser) -> Reviewer:
    """The transfer-queue reviewer a web user acts as: committee-level actions for organisers and
    administrators (domain §6.7), branch-level for secretaries."""
    return Reviewer(
        actor=viewer.actor,
        org_id=viewer.org_id,
        may_approve=viewer.role in (UserRole.ORGANISER, UserRole.ADMIN),
    )


@router.get("/")
def dashboard(
    request: Request, session: SessionDep, clock: ClockDep, settings: SettingsDep, viewer: CurrentUser
) -> HTMLResponse:
    now = clock()
    month = period_containing(now, Cadence.MONTHLY, settings.tz)
    events = events_in_scope(session, viewer, now=now, upcoming=True, limit=UPCOMING_SHOWN)
    pending, overdue = count_pending(
        session, reviewer=reviewer_for(viewer), policy=transfer_policy(settings), now=now
    )
    reminders: list[CadenceReminder | InactivityReminder] = []
    if viewer.org_id is not None:  # an administrator over everything has no single subtree to check
        report = build_reminders(
            session,
            org_id=viewer.org_id,
            viewer=viewer,
            now=now,
            tz=settings.tz,
            policy=cadence_policy(settings),
        )
        reminders = sorted([*report.inactivity, *report.cadence], key=lambda r: _LEVEL_ORDER[r.level])
    kiosks = [
        health
        for health in list_kiosk_health(session, now=now, org_ids=viewer.org_ids)
        if health.status != KioskStatus.REVOKED
    ]
    return render(
        request,
        "dashboard.html",
        {
            "nav": "dashboard",
            "now": now,
            "events": events,
            "present": present_counts(session, [e.id for e in events if e.id is not None]),
            "kind_labels": EVENT_KIND_LABELS,
            "pending_transfers": pending,
            "overdue_transfers": overdue,
            "kiosks": kiosks,
            "troubled_kiosks": [k for k in kiosks if k.problems],
            "month": month,
            "events_this_month": count_events_between(session, viewer, start=month.start, end=month.end),
            "reminders": reminders[:REMINDERS_SHOWN],
            "more_reminders": max(0, len(reminders) - REMINDERS_SHOWN),
        },
    )
