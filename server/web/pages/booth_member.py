"""留言亭 on the member's phone, under ``/web/m/``: opened by the one-time link a message-mode tap
answered with (``server.booth``), no password.

``/web/m/open/{token}`` opens the link once and sets a short session cookie (path ``/web/m``),
then ``/web/m/`` shows the member's page: choose a 党代表, write, optionally without the name
shown to the representative; the member's messages with their status and replies; a button that
ends the session. A used, expired or unknown link, and an ended session, get a Chinese page with
the refusal's code (never the secretaries' error page: a member has no dashboard to go back to).
Posts carry the session's own CSRF token.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.booth.self_service import ask_leave, my_self_service
from server.booth.service import (
    MAX_MESSAGE_CHARS,
    MAX_PHOTO_BYTES,
    MessageView,
    PhotoUpload,
    Visitor,
    booth_policy,
    end_visit,
    leave_message,
    member_message_photo,
    member_messages,
    open_link,
    representative_photo_for_member,
    representatives_for_member,
    resolve_visitor,
)
from server.deps import ClockDep, SessionDep, SettingsDep
from server.errors import BoothSessionEnded, CsrfFailed, DomainError, status_for
from server.inputs import RowId
from server.masking import mask_name
from server.records.booth import BoothPhoto
from server.records.orgs import Member, Organisation
from server.vocabulary import BoothTopic
from server.web.pages.booth import STATUS_LABELS, TOPIC_LABELS
from server.web.templating import cookies_secure, render

router = APIRouter(prefix="/m")

NOTICES = {
    "sent": "留言已提交，党代表回复后会显示在这里",
    "leave": "请假已提交，请等待党支部审批",
}

MEMBER_COOKIE = "ecard_member"
COOKIE_PATH = "/web/m"
MESSAGE_PATH = "/web/m/messages"
"""Where a message is posted, with its optional photo: the app lets this path send a larger body."""


def _refused(request: Request, error: DomainError) -> HTMLResponse:
    response = render(
        request,
        "booth/member_error.html",
        {"code": error.code, "message": error.message},
        status_code=status_for(error),
    )
    if isinstance(error, BoothSessionEnded):
        response.delete_cookie(MEMBER_COOKIE, path=COOKIE_PATH)
    return response


@router.get("/open/{token}")
def open_member_link(
    token: str, request: Request, session: SessionDep, clock: ClockDep, settings: SettingsDep
) -> Response:
    policy = booth_policy(settings, base_url=str(request.base_url))
    try:
        opened = open_link(session, token=token, now=clock(), policy=policy)
    except DomainError as error:
        return _refused(request, error)
    response = RedirectResponse("/web/m/", status_code=303)
    response.set_cookie(
        MEMBER_COOKIE,
        opened.session_token,
        path=COOKIE_PATH,
        max_age=int(policy.session_ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=cookies_secure(request),
    )
    return response


def _home(
    request: Request,
    session: SessionDep,
    visitor: Visitor,
    now_views: list[MessageView],
    now: datetime,
    *,
    notice: str = "",
    error: DomainError | None = None,
    draft: str = "",
    chosen: int | None = None,
    anonymous: bool = False,
    topic: BoothTopic = BoothTopic.PROBLEM,
    leave_error: DomainError | None = None,
    leave_event: int | None = None,
) -> HTMLResponse:
    member = session.get(Member, visitor.member_id)
    assert member is not None
    representatives = representatives_for_member(session, member)
    org_names = {
        r.org_id: (o.name if (o := session.get(Organisation, r.org_id)) is not None else "")
        for r in representatives
    }
    return render(
        request,
        "booth/member_home.html",
        {
            "visitor": visitor,
            "masked_name": mask_name(visitor.member_name),
            "representatives": representatives,
            "org_names": org_names,
            "messages": now_views,
            "status_labels": STATUS_LABELS,
            "notice": notice,
            "error": error,
            "draft": draft,
            "chosen": chosen
            if chosen is not None
            else (representatives[0].id if len(representatives) == 1 else None),
            "anonymous": anonymous,
            "topic": topic,
            "topic_labels": TOPIC_LABELS,
            "max_chars": MAX_MESSAGE_CHARS,
            "max_photo_mb": MAX_PHOTO_BYTES // (1024 * 1024),
            "mine": my_self_service(session, visitor=visitor, now=now, tz=request.app.state.settings.tz),
            "leave_error": leave_error,
            "leave_event": leave_event,
        },
        status_code=status_for(refusal) if (refusal := error or leave_error) is not None else 200,
    )


@router.get("/")
def member_home(request: Request, session: SessionDep, clock: ClockDep) -> HTMLResponse:
    now = clock()
    try:
        visitor = resolve_visitor(session, session_token=request.cookies.get(MEMBER_COOKIE), now=now)
    except DomainError as error:
        return _refused(request, error)
    shown = NOTICES.get(request.query_params.get("done", ""), "")
    views = member_messages(session, visitor=visitor, now=now)
    return _home(request, session, visitor, views, now, notice=shown)


def _check_csrf(visitor: Visitor, sent: str) -> None:
    if not secrets.compare_digest(sent.encode(errors="replace"), visitor.csrf_token.encode()):
        raise CsrfFailed("页面已过期，请刷新后重试")


@router.post("/messages")
def member_send(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    representative_id: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
    body: Annotated[str, Form(max_length=5000)] = "",
    anonymous: Annotated[str, Form(max_length=10)] = "",
    topic: Annotated[BoothTopic, Form()] = BoothTopic.OTHER,
    photo: UploadFile | None = None,
) -> Response:
    now = clock()
    try:
        visitor = resolve_visitor(session, session_token=request.cookies.get(MEMBER_COOKIE), now=now)
        _check_csrf(visitor, csrf_token)
    except DomainError as error:
        return _refused(request, error)
    hidden = anonymous == "1"
    try:
        if representative_id is None:
            raise DomainError("请选择一位党代表")
        leave_message(
            session,
            visitor=visitor,
            representative_id=representative_id,
            body=body,
            anonymous=hidden,
            topic=topic,
            now=now,
            policy=booth_policy(settings, base_url=str(request.base_url)),
            photo=_chosen_photo(photo),
        )
    except DomainError as error:
        views = member_messages(session, visitor=visitor, now=now)
        return _home(
            request,
            session,
            visitor,
            views,
            now,
            error=error,
            draft=body[: MAX_MESSAGE_CHARS * 2],
            chosen=representative_id,
            anonymous=hidden,
            topic=topic,
        )
    return RedirectResponse("/web/m/?done=sent", status_code=303)


def _chosen_photo(photo: UploadFile | None) -> PhotoUpload | None:
    # A form whose file input was left empty still sends the part, with no name and no bytes.
    if photo is None:
        return None
    data = photo.file.read(MAX_PHOTO_BYTES + 1)  # one byte more tells "too large" from "at the limit"
    if not photo.filename and not data:
        return None
    return PhotoUpload(file_name=photo.filename or "", data=data)


def _photo_response(
    request: Request, session: SessionDep, clock: ClockDep, find: Callable[[Visitor], BoothPhoto]
) -> Response:
    try:
        visitor = resolve_visitor(session, session_token=request.cookies.get(MEMBER_COOKIE), now=clock())
        photo = find(visitor)
    except DomainError as error:
        return _refused(request, error)
    return Response(
        content=photo.data, media_type=photo.media_type, headers={"Content-Disposition": "inline"}
    )


@router.get("/messages/{message_id}/photo")
def member_message_photo_page(
    message_id: RowId, request: Request, session: SessionDep, clock: ClockDep
) -> Response:
    """The photo of one of the member's own messages (404 for anyone else's)."""
    return _photo_response(
        request, session, clock, lambda v: member_message_photo(session, visitor=v, message_id=message_id)
    )


@router.get("/representatives/{representative_id}/photo")
def member_representative_photo(
    representative_id: RowId, request: Request, session: SessionDep, clock: ClockDep
) -> Response:
    """The photo of a representative the member may write to."""
    return _photo_response(
        request,
        session,
        clock,
        lambda v: representative_photo_for_member(session, visitor=v, representative_id=representative_id),
    )


@router.post("/end")
def member_end(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> HTMLResponse:
    now = clock()
    try:
        visitor = resolve_visitor(session, session_token=request.cookies.get(MEMBER_COOKIE), now=now)
        _check_csrf(visitor, csrf_token)
    except DomainError as error:
        return _refused(request, error)
    end_visit(session, visitor=visitor, now=now)
    response = render(request, "booth/member_ended.html", {})
    response.delete_cookie(MEMBER_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/leave")
def member_leave(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    event_id: Annotated[int, Form(ge=1, le=2**31 - 1)] = 1,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """请假 for one of the member's upcoming meetings (into the secretary's queue)."""
    now = clock()
    try:
        visitor = resolve_visitor(session, session_token=request.cookies.get(MEMBER_COOKIE), now=now)
        _check_csrf(visitor, csrf_token)
    except DomainError as error:
        return _refused(request, error)
    try:
        ask_leave(session, visitor=visitor, event_id=event_id, reason=reason, now=now)
    except DomainError as error:
        views = member_messages(session, visitor=visitor, now=now)
        return _home(request, session, visitor, views, now, leave_error=error, leave_event=event_id)
    return RedirectResponse("/web/m/?done=leave", status_code=303)
