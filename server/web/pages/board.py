"""签到看板: the live check-in board of an event (SSE), and 补签 for a member who forgot the card.

The board subscribes to the app's :class:`~server.live.TapFeed`. Each accepted tap of the event
(published by ingest after its commit) makes the stream re-read the sign-in sheet and send the
board as one SSE message, which htmx's SSE extension swaps in. A stream also sends the board when
it opens, a ``ping`` every :data:`PING_SECONDS` (``static/board.js`` shows the board as
disconnected when neither arrives for a while, even if no error reached the browser), and ends
after :data:`STREAM_SECONDS` with a ``bye`` (the browser reconnects at once, and the page knows
not to call that a lost connection), so a restarted server or a missed notice heals by itself.

补签 (``POST …/board/manual``): the recorder picks a member expected at the event who has not
tapped, gives a reason, and :func:`~server.attendance.service.record_manual_attendance` records
the presence (scoped to the caller, audited); the sign-in sheet marks it 补签.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.attendance.schemas import AttendanceSheet, SheetMember
from server.attendance.service import build_attendance_sheet, record_manual_attendance
from server.db import read_only, unit_of_work
from server.deps import TapFeedDep
from server.events.service import require_visible_event
from server.inputs import RowId
from server.labels import EVENT_KIND_LABELS
from server.live import AcceptedTap, announce_after_commit
from server.masking import mask_name
from server.web.deps import PageDep
from server.web.templating import redirect, render, templates

router = APIRouter(prefix="/events")

STREAM_SECONDS = 55.0
PING_SECONDS = 10.0
MANUAL_REASON_MAX = 200


@router.get("/{event_id}/board")
def live_board(event_id: RowId, request: Request, ctx: PageDep) -> HTMLResponse:
    sheet = build_attendance_sheet(ctx.session, event_id=event_id, caller=ctx.caller, tz=ctx.tz)
    return render(
        request,
        "events/board.html",
        {
            "nav": "events",
            "sheet": sheet,
            "latest": None,
            "kind_labels": EVENT_KIND_LABELS,
            "manual_choices": manual_choices(sheet),
            "ping_seconds": int(PING_SECONDS),
            "reason_max": MANUAL_REASON_MAX,
        },
    )


@router.get("/{event_id}/board/stream")
def live_board_stream(event_id: RowId, request: Request, ctx: PageDep, feed: TapFeedDep) -> StreamingResponse:
    """Server-sent events: ``event: board`` with the board's HTML, on open and after each tap;
    ``event: ping`` in between, so the page can tell a quiet room from a dead connection."""
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
                    yield _sse("ping", "live")
                    continue
                while not notices.empty():  # a burst of taps: one re-read shows them all
                    notice = notices.get_nowait()
                yield _sse("board", await run_in_threadpool(board_html, notice))
            yield _sse("bye", "reconnect")  # a planned end: the page reconnects without alarm

    return StreamingResponse(
        messages(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/{event_id}/board/manual")
def manual_checkin(
    event_id: RowId,
    request: Request,
    ctx: PageDep,
    feed: TapFeedDep,
    member_id: Annotated[RowId, Form()],
    reason: Annotated[str, Form(max_length=MANUAL_REASON_MAX)] = "",
) -> Response:
    """补签: record a member present without a tap, with the reason, at this moment (or at the
    start, when the board is looked at after the event)."""
    event = require_visible_event(ctx.session, event_id, caller=ctx.caller)
    arrived = ctx.now if event.checkin_opens_at <= ctx.now <= event.end_at else None
    attendance = record_manual_attendance(
        ctx.session,
        event_id=event_id,
        member_id=member_id,
        reason=reason,
        at=arrived,
        caller=ctx.caller,
        now=ctx.now,
    )
    sheet = build_attendance_sheet(ctx.session, event_id=event_id, caller=ctx.caller, tz=ctx.tz)
    name = next((p.name for p in sheet.present if p.member_id == member_id), "")
    # Other open boards (the projector) show it at once, like a tap, once this commits.
    notice = AcceptedTap(
        event_id=event_id,
        member_id=member_id,
        tap_id=0,  # no tap: a 补签
        member_name=mask_name(name),
        occurred_at=attendance.first_tap_at,
        repeat=False,
    )
    announce_after_commit(ctx.session, feed.publish, notice)
    return redirect(request, f"/web/events/{event_id}/board", toast=f"已为{name}补签")


def manual_choices(sheet: AttendanceSheet) -> list[SheetMember]:
    """Who may be given 补签 here: members expected at the event who have not tapped (those on
    approved leave too, in case they came after all)."""
    return sorted([*sheet.absent, *sheet.on_leave], key=lambda m: m.name)


def _render_fragment(request: Request, sheet: AttendanceSheet, latest: AcceptedTap | None) -> str:
    template = templates().get_template("events/_board.html")
    return template.render(request=request, sheet=sheet, latest=latest, kind_labels=EVENT_KIND_LABELS)


def _sse(event: str, data: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines())
    return f"event: {event}\n{lines}\n"
