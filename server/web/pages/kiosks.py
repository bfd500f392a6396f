"""签到机: kiosk health (last seen, outbox, clock offset, seq gaps), enrollment codes with a QR
code, revocation, key rotation; and 刷卡绑定 on a member's page (wait for a tap in enrol mode).

Every handler calls the same services as ``/api/v1/kiosks`` and ``/api/v1/enrol-sessions``.
Managing kiosks (create, new code, revoke) is for administrators; everyone sees the kiosks of
venues in their subtree, and any user who may see a member may bind that member's card.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from schemas.messages import ReaderState, TapMode
from server.caller import Caller
from server.cards.schemas import EnrolSessionPublic
from server.cards.tap_binding import cancel_enrol_session, read_enrol_session, start_enrol_session
from server.deps import KeyringDep, RequestContext
from server.inputs import RowId
from server.kiosks.health import describe_duration, kiosk_detail, list_kiosk_health
from server.kiosks.schemas import KioskHealth
from server.kiosks.service import (
    IssuedCode,
    add_kiosk,
    issue_enrollment_code,
    revoke_kiosk,
)
from server.orgs.service import require_member
from server.records.kiosks import EnrolSessionState
from server.records.venues import Venue
from server.vocabulary import KioskStatus, UserRole
from server.web.deps import PageDep, ensure_role
from server.web.templating import redirect, render

router = APIRouter()

STATUS_LABELS: dict[KioskStatus, tuple[str, str]] = {
    KioskStatus.PENDING: ("待登记", "amber"),
    KioskStatus.ACTIVE: ("在用", "green"),
    KioskStatus.REVOKED: ("已停用", ""),
}
MODE_LABELS: dict[TapMode, str] = {
    TapMode.CHECKIN: "签到",
    TapMode.TRANSFER_IN: "转入登记",
    TapMode.ENROL: "绑卡",
    TapMode.MESSAGE: "留言",
}
READER_LABELS: dict[ReaderState, tuple[str, str]] = {
    ReaderState.STARTING: ("启动中", "amber"),
    ReaderState.READY: ("正常", "green"),
    ReaderState.UNAVAILABLE: ("不可用", "red"),
    ReaderState.DISCONNECTED: ("已断开", "red"),
    ReaderState.FAILED: ("故障", "red"),
}


@router.get("/kiosks")
def kiosk_list(request: Request, ctx: PageDep) -> HTMLResponse:
    caller = ctx.caller
    kiosks = list_kiosk_health(ctx.session, now=ctx.now, scope=caller.scope)
    return render(
        request,
        "kiosks/list.html",
        {
            **_labels(),
            "nav": "kiosks",
            "kiosks": kiosks,
            "troubled": sum(1 for k in kiosks if k.problems),
            "active": sum(1 for k in kiosks if k.status == KioskStatus.ACTIVE),
            "waiting": sum(k.outbox_pending or 0 for k in kiosks if k.status == KioskStatus.ACTIVE),
            "venues": _venues_in_scope(ctx.session, caller) if _manages_kiosks(caller) else [],
            "can_manage": _manages_kiosks(caller),
            "now": ctx.now,
        },
    )


@router.get("/kiosks/{kiosk_id}")
def kiosk_page(kiosk_id: str, request: Request, ctx: PageDep) -> HTMLResponse:
    detail = kiosk_detail(ctx.session, kiosk_id=kiosk_id, now=ctx.now, scope=ctx.caller.scope)
    return render(
        request,
        "kiosks/detail.html",
        {
            **_labels(),
            "nav": "kiosks",
            "detail": detail,
            "kiosk": detail.health,
            "can_manage": _manages_kiosks(ctx.caller),
            "now": ctx.now,
        },
    )


@router.post("/kiosks")
def create_kiosk(
    request: Request,
    ctx: PageDep,
    keyring: KeyringDep,
    name: Annotated[str, Form(max_length=200)],
    venue_id: Annotated[RowId, Form()],
) -> HTMLResponse:
    ensure_role(ctx.caller, UserRole.ADMIN)
    issued = add_kiosk(
        ctx.session,
        keyring=keyring,
        name=name,
        venue_id=venue_id,
        now=ctx.now,
        code_ttl=ctx.settings.enrollment_code_ttl,
        caller=ctx.caller,
    )
    return _code_page(request, issued, venue_name=_venue_name(ctx.session, venue_id), first=True)


@router.post("/kiosks/{kiosk_id}/code")
def new_code(kiosk_id: str, request: Request, ctx: PageDep, keyring: KeyringDep) -> HTMLResponse:
    ensure_role(ctx.caller, UserRole.ADMIN)
    issued = issue_enrollment_code(
        ctx.session,
        keyring=keyring,
        kiosk_id=kiosk_id,
        now=ctx.now,
        code_ttl=ctx.settings.enrollment_code_ttl,
        caller=ctx.caller,
    )
    venue_name = _venue_name(ctx.session, issued.kiosk.venue_id)
    return _code_page(request, issued, venue_name=venue_name, first=False)


@router.post("/kiosks/{kiosk_id}/revoke")
def revoke(
    kiosk_id: str,
    request: Request,
    ctx: PageDep,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    ensure_role(ctx.caller, UserRole.ADMIN)
    kiosk = revoke_kiosk(ctx.session, kiosk_id=kiosk_id, now=ctx.now, caller=ctx.caller, reason=reason)
    return redirect(request, f"/web/kiosks/{kiosk_id}", toast=f"已停用签到机「{kiosk.name}」，其刷卡将被拒绝")


@router.post("/members/{member_id}/enrol")
def start_enrol(
    member_id: RowId,
    request: Request,
    ctx: PageDep,
    kiosk_id: Annotated[str, Form(max_length=64)] = "",
) -> HTMLResponse:
    enrol = start_enrol_session(
        ctx.session,
        member_id=member_id,
        kiosk_id=kiosk_id or None,
        caller=ctx.caller,
        now=ctx.now,
        ttl=ctx.settings.enrol_session_ttl,
    )
    return _enrol_fragment(request, ctx, enrol)


@router.get("/enrol-sessions/{enrol_session_id}")
def poll_enrol(enrol_session_id: RowId, request: Request, ctx: PageDep) -> Response:
    enrol = read_enrol_session(ctx.session, enrol_session_id=enrol_session_id, now=ctx.now, caller=ctx.caller)
    if enrol.state == EnrolSessionState.BOUND:
        # Reload the member page: the new card shows in its table, the toast says which one.
        return redirect(request, f"/web/members/{enrol.member_id}", toast=f"已绑定卡 {enrol.card_masked}")
    return _enrol_fragment(request, ctx, enrol)


@router.post("/enrol-sessions/{enrol_session_id}/cancel")
def cancel_enrol(enrol_session_id: RowId, request: Request, ctx: PageDep) -> HTMLResponse:
    enrol = cancel_enrol_session(
        ctx.session,
        enrol_session_id=enrol_session_id,
        caller=ctx.caller,
        now=ctx.now,
    )
    return _enrol_fragment(request, ctx, enrol)


def _enrol_fragment(request: Request, ctx: RequestContext, enrol: EnrolSessionPublic) -> HTMLResponse:
    member = require_member(ctx.session, enrol.member_id)
    enrol_kiosks = [
        k
        for k in list_kiosk_health(ctx.session, now=ctx.now, scope=ctx.caller.scope)
        if k.status == KioskStatus.ACTIVE and k.mode == TapMode.ENROL
    ]
    remaining = max(0, int((enrol.expires_at - ctx.now).total_seconds()))
    return render(
        request,
        "kiosks/_enrol_wait.html",
        {
            "enrol": enrol,
            "member": member,
            "enrol_kiosks": enrol_kiosks,
            "remaining": f"{remaining // 60}:{remaining % 60:02d}",
            "pending": enrol.state == EnrolSessionState.PENDING,
        },
    )


def _venue_name(session: Session, venue_id: int) -> str:
    venue = session.get(Venue, venue_id)
    return venue.name if venue is not None else ""


def _code_page(request: Request, issued: IssuedCode, *, venue_name: str, first: bool) -> HTMLResponse:
    server_url = str(request.base_url).rstrip("/")
    command = (
        f"ecard agent enroll --server {server_url} --code {issued.code} --state-dir /var/lib/ecard-agent"
    )
    return render(
        request,
        "kiosks/code.html",
        {
            "nav": "kiosks",
            "kiosk": issued.kiosk,
            "venue_name": venue_name,
            "code": issued.code,
            "expires_at": issued.expires_at,
            "command": command,
            "qr": qr_data_uri(command),
            "first": first,
        },
    )


def qr_data_uri(text: str) -> str:
    """A QR code of *text* as an SVG data URI (the page's CSP allows ``img-src data:``)."""
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    svg: bytes = image.to_string()
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _manages_kiosks(caller: Caller) -> bool:
    return caller.has_role(UserRole.ADMIN)


def _venues_in_scope(session: Session, caller: Caller) -> list[Venue]:
    return list(
        session.exec(select(Venue).where(caller.scope.condition(Venue.org_id)).order_by(col(Venue.name)))
    )


def _labels() -> dict[str, object]:
    return {
        "status_labels": STATUS_LABELS,
        "mode_labels": MODE_LABELS,
        "reader_labels": READER_LABELS,
        "duration": describe_duration,
        "duration_s": duration_seconds,
        "offset_text": offset_text,
    }


def duration_seconds(seconds: float) -> str:
    return describe_duration(timedelta(seconds=seconds))


def offset_text(kiosk: KioskHealth) -> str:
    """'快3.2秒' / '慢1分钟' / '准确': which way the kiosk clock is off, for people."""
    if kiosk.clock_offset_ms is None:
        return "—"
    if abs(kiosk.clock_offset_ms) < 1000:
        return "准确"
    direction = "慢" if kiosk.clock_offset_ms > 0 else "快"
    seconds = abs(kiosk.clock_offset_ms) / 1000
    if seconds < 60:
        return f"{direction}{seconds:.1f}秒"
    return f"{direction}{describe_duration(timedelta(seconds=seconds))}"
