"""仪表盘: what needs the secretary's attention today, from the same services as the API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from server.kiosks.health import list_kiosk_health
from server.labels import EVENT_KIND_LABELS
from server.ledgers.periods import period_containing
from server.reminders.schemas import CadenceReminder, InactivityReminder
from server.reminders.service import build_reminders
from server.transfers.calendar import transfer_policy
from server.transfers.queue import count_outgoing_waiting, count_pending
from server.vocabulary import Cadence, KioskStatus, ReminderLevel, UserRole
from server.web.deps import PageDep
from server.web.lookups import count_events_between, events_in_scope, present_counts
from server.web.pages.ledgers import cadence_policy
from server.web.templating import render

router = APIRouter()

UPCOMING_SHOWN = 6
REMINDERS_SHOWN = 8
_LEVEL_ORDER = {ReminderLevel.ALERT: 0, ReminderLevel.WARNING: 1, ReminderLevel.NOTICE: 2}


@router.get("/")
def dashboard(request: Request, ctx: PageDep) -> Response:
    session, caller, now = ctx.session, ctx.caller, ctx.now
    if caller.has_role(UserRole.REPRESENTATIVE):  # a 党代表's only page is their 留言亭 inbox
        return RedirectResponse("/web/booth", status_code=303)
    month = period_containing(now, Cadence.MONTHLY, ctx.tz)
    events = events_in_scope(session, caller, now=now, upcoming=True, limit=UPCOMING_SHOWN)
    pending, overdue = count_pending(session, caller=caller, policy=transfer_policy(ctx.settings), now=now)
    reminders: list[CadenceReminder | InactivityReminder] = []
    if caller.org_id is not None:  # an administrator over everything has no single subtree to check
        report = build_reminders(
            session,
            org_id=caller.org_id,
            caller=caller,
            now=now,
            tz=ctx.tz,
            policy=cadence_policy(ctx.settings),
        )
        reminders = sorted([*report.inactivity, *report.cadence], key=lambda r: _LEVEL_ORDER[r.level])
    kiosks = [
        health
        for health in list_kiosk_health(session, now=now, scope=caller.scope)
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
            "outgoing_transfers": count_outgoing_waiting(session, caller=caller),
            "kiosks": kiosks,
            "troubled_kiosks": [k for k in kiosks if k.problems],
            "month": month,
            "events_this_month": count_events_between(session, caller, start=month.start, end=month.end),
            "reminders": reminders[:REMINDERS_SHOWN],
            "more_reminders": max(0, len(reminders) - REMINDERS_SHOWN),
        },
    )
