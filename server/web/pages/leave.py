"""请假: record a member's leave request for an upcoming event, and decide it (批准 / 不批准).

Everything is the leave service's: who may ask (invited, not exempt, before the start), scope
(a request is visible when its event is) and the audit entries. An approved request shows as
请假 on the event's 签到表 and in the ledgers (``server.attendance.rolls``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from server.inputs import RowId
from server.labels import CATEGORY_LABELS, LEAVE_LABELS
from server.leave.service import (
    decide_leave,
    leave_requests_in_scope,
    members_who_may_ask,
    request_leave,
    require_visible_leave,
    withdraw_leave,
)
from server.orgs.service import organisation_names
from server.vocabulary import LeaveStatus
from server.web.deps import PageDep
from server.web.lookups import events_in_scope
from server.web.templating import redirect, render

router = APIRouter(prefix="/leave")

LEAVE_BADGES = {
    LeaveStatus.PENDING: "amber",
    LeaveStatus.APPROVED: "green",
    LeaveStatus.REJECTED: "red",
    LeaveStatus.WITHDRAWN: "",
}
DECIDED_SHOWN = 30


@router.get("")
def leave_list(request: Request, ctx: PageDep) -> HTMLResponse:
    return render(
        request,
        "leave/list.html",
        {
            "nav": "leave",
            "pending": leave_requests_in_scope(ctx.session, caller=ctx.caller, pending=True),
            "decided": leave_requests_in_scope(
                ctx.session, caller=ctx.caller, pending=False, limit=DECIDED_SHOWN
            ),
            "status_labels": LEAVE_LABELS,
            "status_badges": LEAVE_BADGES,
        },
    )


@router.get("/new")
def new_leave_form(request: Request, ctx: PageDep, event_id: RowId | None = None) -> HTMLResponse:
    # Leave is asked before the start: only events that have not started are offered.
    events = [
        event
        for event in events_in_scope(ctx.session, ctx.caller, now=ctx.now, upcoming=True)
        if event.start_at > ctx.now
    ]
    chosen = next((event for event in events if event.id == event_id), None)
    members = (
        members_who_may_ask(ctx.session, event_id=chosen.id, caller=ctx.caller, now=ctx.now)
        if chosen is not None and chosen.id is not None
        else []
    )
    return render(
        request,
        "leave/form.html",
        {
            "nav": "leave",
            "events": events,
            "chosen": chosen,
            "members": members,
            "org_names": organisation_names(ctx.session, {m.org_id for m in members}),
            "category_labels": CATEGORY_LABELS,
        },
    )


@router.post("")
def create_leave(
    request: Request,
    ctx: PageDep,
    event_id: Annotated[RowId, Form()],
    member_id: Annotated[RowId, Form()],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    leave = request_leave(
        ctx.session, event_id=event_id, member_id=member_id, reason=reason, caller=ctx.caller, now=ctx.now
    )
    assert leave.id is not None
    listing = require_visible_leave(ctx.session, leave.id, caller=ctx.caller)
    return redirect(request, f"/web/leave/{leave.id}", toast=f"已登记{listing.member_name}的请假，待审批")


@router.get("/{leave_id}")
def leave_detail(leave_id: RowId, request: Request, ctx: PageDep) -> HTMLResponse:
    listing = require_visible_leave(ctx.session, leave_id, caller=ctx.caller)
    return render(
        request,
        "leave/detail.html",
        {
            "nav": "leave",
            "item": listing,
            "started": ctx.now >= listing.event.start_at,
            "status_labels": LEAVE_LABELS,
            "status_badges": LEAVE_BADGES,
        },
    )


@router.post("/{leave_id}/decision")
def decide(
    leave_id: RowId,
    request: Request,
    ctx: PageDep,
    approve: Annotated[bool, Form()],
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    listing = require_visible_leave(ctx.session, leave_id, caller=ctx.caller)
    decide_leave(ctx.session, leave_id=leave_id, approve=approve, note=note, caller=ctx.caller, now=ctx.now)
    name = listing.member_name
    toast = f"已批准{name}的请假" if approve else f"已告知：{name}的请假未获批准"
    return redirect(request, f"/web/leave/{leave_id}", toast=toast)


@router.post("/{leave_id}/withdraw")
def withdraw(leave_id: RowId, request: Request, ctx: PageDep) -> Response:
    listing = require_visible_leave(ctx.session, leave_id, caller=ctx.caller)
    withdraw_leave(ctx.session, leave_id=leave_id, caller=ctx.caller, now=ctx.now)
    return redirect(request, f"/web/leave/{leave_id}", toast=f"已撤回{listing.member_name}的请假")
