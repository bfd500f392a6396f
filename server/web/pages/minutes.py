"""会议记录: an event's agenda, minutes and resolutions, photos and scanned pages, and sign-off.

The attachment upload has a path of its own (:data:`MINUTES_UPLOAD_PATH`, the event in the form),
because the request size limit allows a larger body on exact paths only (``server.app``).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from server.events.service import event_kinds
from server.inputs import RowId
from server.labels import EVENT_KIND_LABELS
from server.meetings.attachments import KIND_BY_MEDIA_TYPE, MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS
from server.meetings.service import (
    MAX_AGENDA_LENGTH,
    MAX_MINUTES_LENGTH,
    MAX_RESOLUTIONS_LENGTH,
    SIGN_OFF_ROLES,
    add_attachment,
    read_attachment,
    read_minutes,
    remove_attachment,
    save_minutes,
    sign_off_minutes,
)
from server.orgs.service import organisation_names
from server.venues.service import venue_names
from server.web.deps import PageDep
from server.web.templating import redirect, render

router = APIRouter()

MINUTES_UPLOAD_PATH = "/web/minutes/attachments"


@router.get("/events/{event_id}/minutes")
def minutes_page(event_id: RowId, request: Request, ctx: PageDep) -> HTMLResponse:
    minutes = read_minutes(ctx.session, event_id=event_id, caller=ctx.caller)
    event = minutes.event
    return render(
        request,
        "events/minutes.html",
        {
            "nav": "events",
            "m": minutes,
            "ev": event,
            "kinds": event_kinds(ctx.session, [event_id]).get(event_id, [event.kind]),
            "kind_labels": EVENT_KIND_LABELS,
            "org_name": organisation_names(ctx.session, {event.org_id}).get(event.org_id, ""),
            "venue_name": venue_names(ctx.session, {event.venue_id}).get(event.venue_id, ""),
            "may_sign_off": ctx.caller.has_role(*SIGN_OFF_ROLES),
            "kinds_by_type": KIND_BY_MEDIA_TYPE,
            "limits": {
                "agenda": MAX_AGENDA_LENGTH,
                "minutes": MAX_MINUTES_LENGTH,
                "resolutions": MAX_RESOLUTIONS_LENGTH,
                "attachment_mb": MAX_ATTACHMENT_BYTES // (1024 * 1024),
                "attachment_bytes": MAX_ATTACHMENT_BYTES,
                "attachments": MAX_ATTACHMENTS,
            },
        },
    )


@router.post("/events/{event_id}/minutes")
def save_minutes_form(
    event_id: RowId,
    request: Request,
    ctx: PageDep,
    agenda: Annotated[str, Form(max_length=MAX_AGENDA_LENGTH * 2)] = "",
    minutes: Annotated[str, Form(max_length=MAX_MINUTES_LENGTH * 2)] = "",
    resolutions: Annotated[str, Form(max_length=MAX_RESOLUTIONS_LENGTH * 2)] = "",
) -> Response:
    save_minutes(
        ctx.session,
        event_id=event_id,
        agenda=agenda,
        minutes=minutes,
        resolutions=resolutions,
        now=ctx.now,
        caller=ctx.caller,
    )
    return redirect(request, f"/web/events/{event_id}/minutes", toast="会议记录已保存")


@router.post("/events/{event_id}/minutes/lock")
def sign_off_form(event_id: RowId, request: Request, ctx: PageDep) -> Response:
    sign_off_minutes(ctx.session, event_id=event_id, now=ctx.now, caller=ctx.caller)
    return redirect(request, f"/web/events/{event_id}/minutes", toast="会议记录已签发并锁定")


@router.post("/minutes/attachments")
def upload_attachment(
    request: Request,
    ctx: PageDep,
    event_id: Annotated[RowId, Form()],
    file: UploadFile,
) -> Response:
    data = file.file.read(MAX_ATTACHMENT_BYTES + 1)  # one byte more tells "too large" from "at the limit"
    attachment = add_attachment(
        ctx.session,
        event_id=event_id,
        file_name=file.filename or "",
        data=data,
        now=ctx.now,
        caller=ctx.caller,
    )
    return redirect(request, f"/web/events/{event_id}/minutes", toast=f"已上传附件：{attachment.file_name}")


@router.get("/events/{event_id}/minutes/attachments/{attachment_id}")
def download_attachment(event_id: RowId, attachment_id: RowId, ctx: PageDep) -> Response:
    attachment, data = read_attachment(
        ctx.session, event_id=event_id, attachment_id=attachment_id, caller=ctx.caller
    )
    # Images open in the page; a PDF is downloaded rather than run by the browser's viewer here.
    # (nosniff and no-store come with every answer of the web app.)
    disposition = "inline" if attachment.media_type.startswith("image/") else "attachment"
    return Response(
        content=data,
        media_type=attachment.media_type,
        headers={
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(attachment.file_name)}",
        },
    )


@router.post("/events/{event_id}/minutes/attachments/{attachment_id}/delete")
def delete_attachment(event_id: RowId, attachment_id: RowId, request: Request, ctx: PageDep) -> Response:
    remove_attachment(
        ctx.session, event_id=event_id, attachment_id=attachment_id, now=ctx.now, caller=ctx.caller
    )
    return redirect(request, f"/web/events/{event_id}/minutes", toast="附件已删除")
