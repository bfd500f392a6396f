"""活动: list, create and edit events; the sign-in sheet. The live check-in board is in
:mod:`server.web.pages.board`.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from server.attendance.derive import revise_event, schedule_event
from server.attendance.service import build_attendance_sheet
from server.caller import Caller
from server.errors import InvalidInput, InvalidRecurrence
from server.events.recurrence import (
    MAX_OCCURRENCES,
    MIN_OCCURRENCES,
    REPEAT_RULE_LABELS,
    RepeatRule,
    next_month_after,
)
from server.events.service import (
    event_kinds,
    month_span,
    require_visible_event,
    search_events,
    set_event_roles,
)
from server.inputs import MAX_ROW_ID, RowId
from server.labels import EVENT_KIND_LABELS
from server.meetings.printing import printable_sheet
from server.meetings.series import schedule_series
from server.orgs.service import organisation_names
from server.records.events import Event
from server.records.orgs import Member
from server.venues.service import usable_venues, venue_names
from server.vocabulary import EventKind
from server.web.deps import PageDep
from server.web.lookups import members_in_scope, organisations_in_scope, present_counts
from server.web.templating import redirect, render

router = APIRouter(prefix="/events")

MAX_ROLE_CHOICES = 500
"""Members offered as 主持人/记录人: a 基层党委's organiser sees every branch's members."""


@router.get("")
def event_list(
    request: Request,
    ctx: PageDep,
    when: str = "upcoming",
    month: Annotated[str, Query(max_length=20)] = "",
    kind: Annotated[str, Query(max_length=40)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    """The events of the caller's scope: upcoming or past, or those of one month; by kind and text."""
    session = ctx.session
    upcoming = when != "past"
    filters = {"month": month.strip(), "kind": kind.strip(), "q": q.strip()}
    problem = ""
    events: list[Event] = []
    try:
        span = month_span(filters["month"], ctx.tz) if filters["month"] else None
        wanted_kind = _event_kind(filters["kind"]) if filters["kind"] else None
        events = search_events(
            session, caller=ctx.caller, now=ctx.now, upcoming=upcoming, span=span, kind=wanted_kind, text=q
        )
    except InvalidInput as refused:
        problem = refused.message
    ids = [e.id for e in events if e.id is not None]
    return render(
        request,
        "events/list.html",
        {
            "nav": "events",
            "events": events,
            "upcoming": upcoming,
            "filters": filters,
            "filtered": any(filters.values()),
            "problem": problem,
            "present": present_counts(session, ids),
            "kinds": event_kinds(session, ids),
            "org_names": organisation_names(session, {e.org_id for e in events}),
            "venue_names": venue_names(session, {e.venue_id for e in events}),
            "kind_labels": EVENT_KIND_LABELS,
            "now": ctx.now,
        },
        status_code=400 if problem else 200,
    )


@router.get("/new")
def new_event_form(
    request: Request, ctx: PageDep, copy_from: Annotated[RowId | None, Query()] = None
) -> HTMLResponse:
    """The new-event form; ``copy_from``: filled in from that event, moved to its next month."""
    context = _form_context(ctx.session, ctx.caller, event=None)
    if copy_from is not None:
        original = require_visible_event(ctx.session, copy_from, caller=ctx.caller)
        context["prefill"] = _copied_fields(ctx.session, original, now=ctx.now, tz=ctx.tz)
        context["copied_from"] = original
    return render(request, "events/form.html", context)


@router.post("")
def create_event(
    request: Request,
    ctx: PageDep,
    title: Annotated[str, Form(max_length=200)],
    org_id: Annotated[RowId, Form()],
    venue_id: Annotated[RowId, Form()],
    kind: Annotated[EventKind, Form()],
    start_at: Annotated[str, Form(max_length=40)],
    end_at: Annotated[str, Form(max_length=40)],
    checkin_opens_at: Annotated[str, Form(max_length=40)] = "",
    checkin_closes_at: Annotated[str, Form(max_length=40)] = "",
    topic: Annotated[str, Form(max_length=500)] = "",
    also_counts_as: Annotated[list[EventKind] | None, Form()] = None,
    chair_member_id: Annotated[str, Form(max_length=20)] = "",
    recorder_member_id: Annotated[str, Form(max_length=20)] = "",
    repeat: Annotated[str, Form(max_length=40)] = "",
    repeat_count: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    tz = ctx.tz
    starts, ends = _parse_local(start_at, "开始时间", tz), _parse_local(end_at, "结束时间", tz)
    opens = _parse_local(checkin_opens_at, "签到开始", tz) if checkin_opens_at else None
    closes = _parse_local(checkin_closes_at, "签到截止", tz) if checkin_closes_at else None
    extra = [k for k in also_counts_as or [] if k != kind]
    chair = _member_choice(chair_member_id, "主持人")
    recorder = _member_choice(recorder_member_id, "记录人")
    # The same details make one event or a monthly series of them.
    details: dict[str, Any] = {
        "title": title,
        "org_id": org_id,
        "venue_id": venue_id,
        "kind": kind,
        "start_at": starts,
        "end_at": ends,
        "checkin_opens_at": opens,
        "checkin_closes_at": closes,
        "also_counts_as": extra,
        "chair_member_id": chair,
        "recorder_member_id": recorder,
        "topic": topic,
        "now": ctx.now,
        "caller": ctx.caller,
    }
    if repeat:
        series = schedule_series(
            ctx.session, **details, rule=_repeat_rule(repeat), count=_occurrences(repeat_count), tz=tz
        )
        first, last = series[0].start_at.astimezone(tz), series[-1].start_at.astimezone(tz)
        return redirect(
            request,
            "/web/events",
            toast=f"已创建{len(series)}次活动：{series[0].title}（{first.year}年{first.month}月至"
            f"{last.year}年{last.month}月）",
        )
    event = schedule_event(ctx.session, **details)
    return redirect(request, f"/web/events/{event.id}", toast=f"已创建活动：{event.title}")


@router.get("/{event_id}")
def event_detail(event_id: RowId, request: Request, ctx: PageDep) -> HTMLResponse:
    sheet = build_attendance_sheet(ctx.session, event_id=event_id, caller=ctx.caller, tz=ctx.tz)
    return render(
        request,
        "events/detail.html",
        {"nav": "events", "sheet": sheet, "kind_labels": EVENT_KIND_LABELS},
    )


@router.get("/{event_id}/edit")
def edit_event_form(event_id: RowId, request: Request, ctx: PageDep) -> HTMLResponse:
    event = require_visible_event(ctx.session, event_id, caller=ctx.caller)
    return render(request, "events/form.html", _form_context(ctx.session, ctx.caller, event=event))


@router.post("/{event_id}")
def update_event(
    event_id: RowId,
    request: Request,
    ctx: PageDep,
    title: Annotated[str, Form(max_length=200)],
    topic: Annotated[str, Form(max_length=500)] = "",
    also_counts_as: Annotated[list[EventKind] | None, Form()] = None,
    chair_member_id: Annotated[str | None, Form(max_length=20)] = None,
    recorder_member_id: Annotated[str | None, Form(max_length=20)] = None,
) -> Response:
    event = require_visible_event(ctx.session, event_id, caller=ctx.caller)
    revise_event(
        ctx.session,
        event_id=event_id,
        title=title,
        topic=topic,
        also_counts_as=[k for k in also_counts_as or [] if k != event.kind],
        now=ctx.now,
        caller=ctx.caller,
    )
    if chair_member_id is not None or recorder_member_id is not None:  # a form without them keeps them
        set_event_roles(
            ctx.session,
            event_id=event_id,
            chair_member_id=(
                _member_choice(chair_member_id, "主持人")
                if chair_member_id is not None
                else event.chair_member_id
            ),
            recorder_member_id=(
                _member_choice(recorder_member_id, "记录人")
                if recorder_member_id is not None
                else event.recorder_member_id
            ),
            now=ctx.now,
            caller=ctx.caller,
        )
    return redirect(request, f"/web/events/{event_id}", toast="活动信息已保存")


@router.get("/{event_id}/print")
def print_sheet(event_id: RowId, request: Request, ctx: PageDep) -> HTMLResponse:
    """The 签到表 to print (A4): every member with a time or a signature line, and a paper sheet
    for members without a card."""
    printable = printable_sheet(ctx.session, event_id=event_id, caller=ctx.caller, tz=ctx.tz)
    return render(
        request,
        "events/print.html",
        {"nav": "events", "p": printable, "sheet": printable.sheet, "kind_labels": EVENT_KIND_LABELS},
    )


def _form_context(session: Session, caller: Caller, *, event: Event | None) -> dict[str, object]:
    extra: list[EventKind] = []
    if event is not None and event.id is not None:
        extra = [k for k in event_kinds(session, [event.id]).get(event.id, []) if k != event.kind]
    organisations = organisations_in_scope(session, caller)
    members = members_in_scope(session, caller, limit=MAX_ROLE_CHOICES)
    org_names = {org.id: org.name for org in organisations}
    member_groups: dict[str, list[Member]] = {}
    for member in members:
        member_groups.setdefault(org_names.get(member.org_id, ""), []).append(member)
    prefill: dict[str, object] = {}
    if event is not None:
        prefill = {"chair_member_id": event.chair_member_id, "recorder_member_id": event.recorder_member_id}
    return {
        "nav": "events",
        "event": event,
        "organisations": organisations,
        "venues": usable_venues(session, caller=caller),
        "kind_labels": EVENT_KIND_LABELS,
        "extra_kinds": extra,
        "venue_name": venue_names(session, {event.venue_id}).get(event.venue_id, "") if event else "",
        "member_groups": member_groups,
        "repeat_labels": REPEAT_RULE_LABELS,
        "max_occurrences": MAX_OCCURRENCES,
        "min_occurrences": MIN_OCCURRENCES,
        "prefill": prefill,
    }


def _copied_fields(session: Session, original: Event, *, now: datetime, tz: tzinfo) -> dict[str, object]:
    """The form's values for a copy of ``original``: everything but the date, which moves on by
    whole months to the first one after now (a monthly meeting's next occurrence)."""
    start = next_month_after(original.start_at, now, tz)
    shift = start - original.start_at
    assert original.id is not None
    extra = [k for k in event_kinds(session, [original.id]).get(original.id, []) if k != original.kind]

    def local(value: datetime) -> str:
        return (value + shift).astimezone(tz).strftime("%Y-%m-%dT%H:%M")

    return {
        "title": original.title,
        "org_id": original.org_id,
        "venue_id": original.venue_id,
        "kind": original.kind,
        "extra_kinds": extra,
        "topic": original.topic,
        "chair_member_id": original.chair_member_id,
        "recorder_member_id": original.recorder_member_id,
        "start_at": local(original.start_at),
        "end_at": local(original.end_at),
        "checkin_opens_at": local(original.checkin_opens_at),
        "checkin_closes_at": local(original.checkin_closes_at),
    }


def _member_choice(value: str, field: str) -> int | None:
    """A member picked from a list (「不指定」 is empty)."""
    text = value.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_ROW_ID:
        raise InvalidInput(f"{field}选择不正确")
    return int(text)


def _occurrences(value: str) -> int:
    """How many events a series has (blank: the most a series may have)."""
    text = value.strip()
    if not text:
        return MAX_OCCURRENCES
    if not (text.isascii() and text.isdigit()):
        raise InvalidRecurrence(f"重复次数须为{MIN_OCCURRENCES}到{MAX_OCCURRENCES}之间的整数")
    return int(text)


def _event_kind(value: str) -> EventKind:
    try:
        return EventKind(value)
    except ValueError as exc:
        raise InvalidInput("活动类型不正确，请从列表中选择") from exc


def _repeat_rule(value: str) -> RepeatRule:
    try:
        return RepeatRule(value)
    except ValueError as exc:
        raise InvalidRecurrence("重复方式不正确，请从列表中选择") from exc


def _parse_local(text: str, field: str, tz: tzinfo) -> datetime:
    """A ``datetime-local`` input value (no offset) in the server's display timezone."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidInput(f"{field}格式不正确") from exc
    return value.replace(tzinfo=tz) if value.tzinfo is None else value
