"""留言亭 inbox: the messages members left for a 党代表, read, replied to, forwarded, closed.

A user with the role ``representative`` sees the messages addressed to their representative
record; a secretary, organiser or admin sees the messages forwarded to an organisation in their
scope. Who may see what, and the audit entries, are ``server.booth``'s; an anonymous message
shows 「匿名党员」 here.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from server.booth.service import (
    MAX_OUTCOME_CHARS,
    MAX_REPLY_CHARS,
    close_message,
    forward_message,
    forward_options,
    inbox,
    message_photo,
    read_message,
    reply_to_message,
    yearly_summary,
)
from server.inputs import RowId
from server.ledgers.periods import period_containing
from server.vocabulary import BoothMessageStatus, BoothTopic, Cadence
from server.web.deps import CurrentUser, PageDep
from server.web.templating import redirect, render

router = APIRouter(prefix="/booth")

STATUS_LABELS: dict[BoothMessageStatus, str] = {
    BoothMessageStatus.NEW: "待阅",
    BoothMessageStatus.READ: "已阅",
    BoothMessageStatus.ANSWERED: "已回复",
    BoothMessageStatus.FORWARDED: "已转交办理",
    BoothMessageStatus.CLOSED: "已办结",
}
TOPIC_LABELS: dict[BoothTopic, str] = {
    BoothTopic.PROBLEM: "反映问题",
    BoothTopic.SUGGESTION: "意见建议",
    BoothTopic.HELP: "困难求助",
    BoothTopic.OTHER: "其他",
}
STATUS_BADGES: dict[BoothMessageStatus, str] = {
    BoothMessageStatus.NEW: "red",
    BoothMessageStatus.READ: "amber",
    BoothMessageStatus.ANSWERED: "blue",
    BoothMessageStatus.FORWARDED: "amber",
    BoothMessageStatus.CLOSED: "green",
}


@router.get("")
def booth_inbox(request: Request, ctx: PageDep, user: CurrentUser) -> HTMLResponse:
    messages = inbox(ctx.session, caller=ctx.caller, user_id=user.user_id)
    year = period_containing(ctx.now, Cadence.YEARLY, ctx.tz)
    summary = yearly_summary(
        ctx.session, caller=ctx.caller, user_id=user.user_id, start=year.start, end=year.end
    )
    return render(
        request,
        "booth/inbox.html",
        {
            "nav": "booth",
            "messages": messages,
            "open_count": sum(1 for m in messages if m.status != BoothMessageStatus.CLOSED),
            "status_labels": STATUS_LABELS,
            "status_badges": STATUS_BADGES,
            "topic_labels": TOPIC_LABELS,
            "representative": user.role.value == "representative",
            "year": year.year,
            "summary": summary,
        },
    )


@router.get("/{message_id}")
def booth_message(message_id: RowId, request: Request, ctx: PageDep, user: CurrentUser) -> HTMLResponse:
    message = read_message(
        ctx.session, message_id=message_id, caller=ctx.caller, user_id=user.user_id, now=ctx.now
    )
    return render(
        request,
        "booth/detail.html",
        {
            "nav": "booth",
            "m": message,
            "status_labels": STATUS_LABELS,
            "topic_labels": TOPIC_LABELS,
            "status_badges": STATUS_BADGES,
            "organisations": forward_options(ctx.session, caller=ctx.caller, user_id=user.user_id),
            "max_reply": MAX_REPLY_CHARS,
            "max_outcome": MAX_OUTCOME_CHARS,
        },
    )


@router.get("/{message_id}/photo")
def booth_message_photo(message_id: RowId, ctx: PageDep, user: CurrentUser) -> Response:
    """The message's photo, to a user who may see the message (404 to anyone else)."""
    photo = message_photo(ctx.session, message_id=message_id, caller=ctx.caller, user_id=user.user_id)
    return Response(
        content=photo.data, media_type=photo.media_type, headers={"Content-Disposition": "inline"}
    )


@router.post("/{message_id}/reply")
def booth_reply(
    message_id: RowId,
    request: Request,
    ctx: PageDep,
    user: CurrentUser,
    body: Annotated[str, Form(max_length=5000)],
) -> Response:
    reply_to_message(
        ctx.session, message_id=message_id, body=body, caller=ctx.caller, user_id=user.user_id, now=ctx.now
    )
    return redirect(request, f"/web/booth/{message_id}", toast="回复已发送，党员下次打开留言页即可看到")


@router.post("/{message_id}/forward")
def booth_forward(
    message_id: RowId, request: Request, ctx: PageDep, user: CurrentUser, org_id: Annotated[RowId, Form()]
) -> Response:
    forward_message(
        ctx.session,
        message_id=message_id,
        org_id=org_id,
        caller=ctx.caller,
        user_id=user.user_id,
        now=ctx.now,
    )
    return redirect(request, f"/web/booth/{message_id}", toast="已转交")


@router.post("/{message_id}/close")
def booth_close(
    message_id: RowId,
    request: Request,
    ctx: PageDep,
    user: CurrentUser,
    outcome: Annotated[str, Form(max_length=1000)],
) -> Response:
    close_message(
        ctx.session,
        message_id=message_id,
        outcome=outcome,
        caller=ctx.caller,
        user_id=user.user_id,
        now=ctx.now,
    )
    return redirect(request, f"/web/booth/{message_id}", toast="已办结")
