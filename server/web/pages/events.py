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

from server.attendance.models import AttendanceSheet
from server.attendance.service import build_attendance_sheet
from server.audit.service import record
from server.db import unit_of_work
from server.deps import ClockDep, SessionDep, SettingsDep, TapFeedDep
from server.errors import EventNotFound, InvalidInput, OrganisationNotFound, VenueNotFound
from server.events.models import Event
from server.events.service import (
    add_event,
    event_kinds,
    event_organisations,
    require_event,
    update_event_details,
)
from server.ledgers.labels import EVENT_KIND_LABELS
from server.live import AcceptedTap
from server.users.service import WebUser
from server.venues.models import Venue
from server.vocabulary import EventKind
from server.web.deps import CurrentUser, ensure_visible
from server.web.lookups import (
    events_in_scope,
    organisation_names,
    organisations_in_scope,
    present_counts,
    venues_for,
)
from server.web.templating import redirect, render, templates

router = APIRouter(prefix="/events")

STREAM_SECONDS = 55.0
PING_SECONDS = 15.0


@router.get("")
def event_list(
    request: Request, session: SessionDep, clock: ClockDep, viewer: CurrentUser, when: str = "upcoming"
) -> HTMLResponse:
    upcoming = when != "past"
    events = events_in_scope(session, viewer, now=clock(), upcoming=upcoming)
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
            "venue_names": _venue_names(session, {e.venue_id for e in events}),
            "kind_labels": EVENT_KIND_LABELS,
            "now": clock(),
        },
    )


@router.get("/new")
def new_event_form(request: Request, session: SessionDep, viewer: CurrentUser) -> HTMLResponse:
    return render(request, "events/form.html", _form_context(session, viewer, event=None))


@router.post("")
def create_event(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    viewer: CurrentUser,
    title: Annotated[str, Form(max_length=200)],
    org_id: Annotated[int, Form()],
    venue_id: Annotated[int, Form()],
    kind: Annotated[EventKind, Form()],
    start_at: Annotated[str, Form()],
    end_at: Annotated[str, Form()],
    checkin_opens_at: Annotated[str, Form()] = "",
    checkin_closes_at: Annotated[str, Form()] = "",
    topic: Annotated[str, Form(max_length=500)] = "",
    also_counts_as: Annotated[list[EventKind] | None, Form()] = None,
) -> Response:
    ensure_visible(viewer, org_id, OrganisationNotFound(f"党组织 {org_id} 不存在"))
    if venue_id not in {v.id for v in venues_for(session, viewer)}:
        raise VenueNotFound(f"场地 {venue_id} 不存在")
    tz = settings.tz
    now = clock()
    event = add_event(
        session,
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
        now=now,
    )
    assert event.id is not None
    record(
        session,
        actor=viewer.actor,
        action="event.create",
        object_type="event",
        object_id=event.id,
        org_id=event.org_id,
        at=now,
        detail={"title": event.title, "kind": event.kind.value},
    )
    return redirect(request, f"/web/events/{event.id}", toast=f"已创建活动：{event.title}")


@router.get("/{event_id}")
def event_detail(
    event_id: int, request: Request, session: SessionDep, settings: SettingsDep, viewer: CurrentUser
) -> HTMLResponse:
    sheet = build_attendance_sheet(session, event_id=event_id, viewer=viewer, tz=settings.tz)
    return render(
        request,
        "events/detail.html",
        {"nav": "events", "sheet": sheet, "kind_labels": EVENT_KIND_LABELS},
    )


@router.get("/{event_id}/edit")
def edit_event_form(
    event_id: int, request: Request, session: SessionDep, viewer: CurrentUser
) -> HTMLResponse:
    event = _visible_event(session, viewer, event_id)
    return render(request, "events/form.html", _form_context(session, viewer, event=event))


@router.post("/{event_id}")
def update_event(
    event_id: int,
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    viewer: CurrentUser,
    title: Annotated[str, Form(max_length=200)],
    topic: Annotated[str, Form(max_length=500)] = "",
    also_counts_as: Annotated[list[EventKind] | None, Form()] = None,
) -> Response:
    event = _visible_event(session, viewer, event_id)
    update_event_details(
        session,
        event_id=event_id,
        title=title,
        topic=topic,
        also_counts_as=[k for k in also_counts_as or [] if k != event.kind],
    )
    record(
        session,
        actor=viewer.actor,
        action="event.update",
        object_type="event",
        object_id=event_id,
        org_id=event.org_id,
        at=clock(),
        detail={"title": event.title},
    )
    return redirect(request, f"/web/events/{event_id}", toast="活动信息已保存")


@router.get("/{event_id}/board")
def live_board(
    event_id: int, request: Request, session: SessionDep, settings: SettingsDep, viewer: CurrentUser
) -> HTMLResponse:
    sheet = build_attendance_sheet(session, event_id=event_id, viewer=viewer, tz=settings.tz)
    return render(
        request,
        "events/board.html",
        {"nav": "events", "sheet": sheet, "latest": None, "kind_labels": EVENT_KIND_LABELS},
    )


@router.get("/{event_id}/board/stream")
def live_board_stream(
    event_id: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    feed: TapFeedDep,
    viewer: CurrentUser,
) -> StreamingResponse:
    """Server-sent events: ``event: board`` with the board's HTML, on open and after each tap."""
    _visible_event(session, viewer, event_id)  # checked once; the stream re-reads as this viewer
    engine: Engine = request.app.state.engine
    tz = settings.tz

    def board_html(latest: AcceptedTap | None) -> str:
        with unit_of_work(engine) as fresh:
            sheet = build_attendance_sheet(fresh, event_id=event_id, viewer=viewer, tz=tz)
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


def _visible_event(session: Session, viewer: WebUser, event_id: int) -> Event:
    """The event, if one of its holding organisations is in the viewer's subtree; else 404."""
    event = require_event(session, event_id)
    holders = event_organisations(session, [event_id]).get(event_id) or [event.org_id]
    if not any(viewer.sees_org(org_id) for org_id in holders):
        raise EventNotFound(f"活动 {event_id} 不存在")
    return event


def _render_fragment(request: Request, sheet: AttendanceSheet, latest: AcceptedTap | None) -> str:
    template = templates().get_template("events/_board.html")
    return template.render(request=request, sheet=sheet, latest=latest, kind_labels=EVENT_KIND_LABELS)


def _sse(event: str, data: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines())
    return f"event: {event}\n{lines}\n"


def _form_context(session: Session, viewer: WebUser, *, event: Event | None) -> dict[str, object]:
    extra: list[EventKind] = []
    if event is not None and event.id is not None:
        extra = [k for k in event_kinds(session, [event.id]).get(event.id, []) if k != event.kind]
    return {
        "nav": "events",
        "event": event,
        "organisations": organisations_in_scope(session, viewer),
        "venues": venues_for(session, viewer),
        "kind_labels": EVENT_KIND_LABELS,
        "extra_kinds": extra,
        "venue_name": _venue_names(session, {event.venue_id}).get(event.venue_id, "") if event else "",
    }


def _venue_names(session: Session, venue_ids: set[int]) -> dict[int, str]:
    names: dict[int, str] = {}
    for venue_id in venue_ids:
        venue = session.get(Venue, venue_id)
        if venue is not None:
            names[venue_id] = venue.name
    return names


def _parse_local(text: str, field: str, tz: tzinfo) -> datetime:
    """A ``datetime-local`` input value (no offset) in the server's display timezone."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidInput(f"{field}格式不正确") from exc
    return value.replace(tzinfo=tz) if value.tzinfo is None else value
