"""活动: list, create and edit events; the sign-in sheet; the live check-in board (SSE).

The live board subscribes to the app's :class:`~server.live.TapFeed`. Each accepted tap of the
event (published by ingest after its commit) makes the stream re-read the sign-in sheet and send
the board as one SSE message, which htmx's SSE extension swaps in. A stream also sends the board
when it opens, and ends after :data:`STREAM_SECONDS` (the browser reconnects at once), so a
restarted server or a missed notice heals by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, tzinfo
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from server.attendance.derive import revise_event, schedule_event
from server.attendance.schemas import AttendanceSheet
from server.attendance.service import build_attendance_sheet
from server.caller import Caller
from server.db import read_only, unit_of_work
from server.deps import TapFeedDep
from server.errors import InvalidInput
from server.events.service import event_kinds, require_visible_event
from server.inputs import RowId
from server.labels import EVENT_KIND_LABELS
from server.live import AcceptedTap
from server.orgs.service import organisation_names
from server.records.events import Event
from server.venues.service import usable_venues, venue_names
from server.vocabulary import EventKind
from server.web.deps import PageDep
from server.web.lookups import events_in_scope, organisations_in_scope, present_counts
from server.web.templating import redirect, render, templates

router = APIRouter(prefix="/events")

STREAM_SECONDS = 55.0
PING_SECONDS = 15.0


@router.get("")
def event_list(request: Request, ctx: PageDep, when: str = "upcoming") -> HTMLResponse:
    session = ctx.session
    upcoming = when != "past"
    events = events_in_scope(session, ctx.caller, now=ctx.now, upcoming=upcoming)
    ids = [e.id for e in events if e.id is not None]
    return render(
        request,
        "events/list.html",
        {
            "nav": "events",
            "events": events,
            "upcoming": upcoming,
            "present": present_counts(session, ids),
            "kinds": event_kinds(session, ids),
            "org_names": organisation_names(session, {e.org_id for e in events}),
            "venue_names": venue_names(session, {e.venue_id for e in events}),
            "kind_labels": EVENT_KIND_LABELS,
            "now": ctx.now,
        },
    )


@router.get("/new")
def new_event_form(request: Request, ctx: PageDep) -> HTMLResponse:
    return render(request, "events/form.html", _form_context(ctx.session, ctx.caller, event=None))


@router.post("")
def create_event(
    request: Request,
    ctx: PageDep,
    title: Annotated[str, Form(max_length=200)],
    org_id: Annotated[RowId, Form()],
    venue_id: Annotated[RowId, Form()],
    kind: Annotated[EventKind, Form()],
    start_at: Annotated[str, Form()],
    end_at: Annotated[str, Form()],
    checkin_opens_at: Annotated[str, Form()] = "",
    checkin_closes_at: Annotated[str, Form()] = "",
    topic: Annotated[str, Form(max_length=500)] = "",
    also_counts_as: Annotated[list[EventKind] | None, Form()] = None,
) -> Response:
    tz = ctx.tz
    event = schedule_event(
        ctx.session,
        title=title,
        org_id=org_id,
        venue_id=venue_id,
        kind=kind,
        start_at=_parse_local(start_at, "开始时间", tz),
        end_at=_parse_local(end_at, "结束时间", tz),
        checkin_opens_at=_parse_local(checkin_opens_at, "签到开始", tz) if checkin_opens_at else None,
        checkin_closes_at=_parse_local(checkin_closes_at, "签到截止", tz) if checkin_closes_at else None,
        also_counts_as=[k for k in also_counts_as or [] if k != kind],
        topic=topic,
        now=ctx.now,
        caller=ctx.caller,
    )
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
    return redirect(request, f"/web/events/{event_id}", toast="活动信息已保存")


@router.get("/{event_id}/board")
def live_board(event_id: RowId, request: Request, ctx: PageDep) -> HTMLResponse:
    sheet = build_attendance_sheet(ctx.session, event_id=event_id, caller=ctx.caller, tz=ctx.tz)
    return render(
        request,
        "events/board.html",
        {"nav": "events", "sheet": sheet, "latest": None, "kind_labels": EVENT_KIND_LABELS},
    )


@router.get("/{event_id}/board/stream")
def live_board_stream(event_id: RowId, request: Request, ctx: PageDep, feed: TapFeedDep) -> StreamingResponse:
    """Server-sent events: ``event: board`` with the board's HTML, on open and after each tap."""
    require_visible_event(ctx.session, event_id, caller=ctx.caller)  # checked once; re-read as this caller
    engine: Engine = request.app.state.engine
    caller, tz = ctx.caller, ctx.tz

    def board_html(latest: AcceptedTap | None) -> str:
        with unit_of_work(read_only(engine)) as fresh:  # never waits for, nor holds up, uploads
            sheet = build_attendance_sheet(fresh, event_id=event_id, caller=caller, tz=tz)
        return _render_fragment(request, sheet, latest)

    async def messages() -> AsyncIterator[str]:
        async with feed.subscribe(event_id) as notices:
            yield "retry: 1000\n\n"
            yield _sse("board", await run_in_threadpool(board_html, None))
            loop = asyncio.get_running_loop()
            ends_at = loop.time() + STREAM_SECONDS
            while (left := ends_at - loop.time()) > 0:
                try:
                    notice = await asyncio.wait_for(notices.get(), timeout=min(PING_SECONDS, left))
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                while not notices.empty():  # a burst of taps: one re-read shows them all
                    notice = notices.get_nowait()
                yield _sse("board", await run_in_threadpool(board_html, notice))

    return StreamingResponse(
        messages(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _render_fragment(request: Request, sheet: AttendanceSheet, latest: AcceptedTap | None) -> str:
    template = templates().get_template("events/_board.html")
    return template.render(request=request, sheet=sheet, latest=latest, kind_labels=EVENT_KIND_LABELS)


def _sse(event: str, data: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines())
    return f"event: {event}\n{lines}\n"


def _form_context(session: Session, caller: Caller, *, event: Event | None) -> dict[str, object]:
    extra: list[EventKind] = []
    if event is not None and event.id is not None:
        extra = [k for k in event_kinds(session, [event.id]).get(event.id, []) if k != event.kind]
    return {
        "nav": "events",
        "event": event,
        "organisations": organisations_in_scope(session, caller),
        "venues": usable_venues(session, caller=caller),
        "kind_labels": EVENT_KIND_LABELS,
        "extra_kinds": extra,
        "venue_name": venue_names(session, {event.venue_id}).get(event.venue_id, "") if event else "",
    }


def _parse_local(text: str, field: str, tz: tzinfo) -> datetime:
    """A ``datetime-local`` input value (no offset) in the server's display timezone."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidInput(f"{field}格式不正确") from exc
    return value.replace(tzinfo=tz) if value.tzinfo is None else value
