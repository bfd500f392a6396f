"""签到机: kiosk health (last seen, outbox, clock offset, seq gaps), enrollment codes with a QR
code, revocation, key rotation; and 刷卡绑定 on a member's page (wait for a tap in enrol mode).

Every handler calls the same services as ``/api/v1/kiosks`` and ``/api/v1/enrol-sessions``.
Managing kiosks (create, new code, revoke) is for administrators; everyone sees the kiosks of
venues in their subtree, and any user who may see a member may bind that member's card.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from schemas.messages import ReaderState, TapMode
from server.deps import ClockDep, KeyringDep, SessionDep, SettingsDep
from server.errors import KioskNotFound, VenueNotFound
from server.kiosks.enrol import cancel_enrol_session, read_enrol_session, start_enrol_session
from server.kiosks.health import describe_duration, kiosk_detail, list_kiosk_health
from server.kiosks.models import EnrolSessionPublic, EnrolSessionState, KioskHealth
from server.kiosks.service import (
    IssuedCode,
    add_kiosk,
    issue_enrollment_code,
    kiosk_org_id,
    require_kiosk,
    revoke_kiosk,
)
from server.orgs.service import require_member
from server.users.service import WebUser
from server.venues.models import Venue
from server.venues.service import require_venue
from server.vocabulary import KioskStatus, UserRole
from server.web.deps import CurrentUser, ensure_role, ensure_visible
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
}
READER_LABELS: dict[ReaderState, tuple[str, str]] = {
    ReaderState.STARTING: ("启动中", "amber"),
    ReaderState.READY: ("正常", "green"),
    ReaderState.UNAVAILABLE: ("不可用", "red"),
    ReaderState.DISCONNECTED: ("已断开", "red"),
    ReaderState.FAILED: ("故障", "red"),
}


@router.get("/kiosks")
def kiosk_list(request: Request, session: SessionDep, clock: ClockDep, viewer: CurrentUser) -> HTMLResponse:
    now = clock()
    kiosks = list_kiosk_health(session, now=now, org_ids=viewer.org_ids)
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
            "venues": _venues_in_scope(session, viewer) if _manages_kiosks(viewer) else [],
            "can_manage": _manages_kiosks(viewer),
            "now": now,
        },
    )


@router.get("/kiosks/{kiosk_id}")
def kiosk_page(
    kiosk_id: str, request: Request, session: SessionDep, clock: ClockDep, viewer: CurrentUser
) -> HTMLResponse:
    detail = kiosk_detail(session, kiosk_id=kiosk_id, now=clock(), org_ids=viewer.org_ids)
    return render(
        request,
        "kiosks/detail.html",
        {
            **_labels(),
            "nav": "kiosks",
            "detail": detail,
            "kiosk": detail.health,
            "can_manage": _manages_kiosks(viewer),
            "now": clock(),
        },
    )


@router.post("/kiosks")
def create_kiosk(
    request: Request,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    clock: ClockDep,
    viewer: CurrentUser,
    name: Annotated[str, Form(max_length=200)],
    venue_id: Annotated[int, Form()],
) -> HTMLResponse:
    ensure_role(viewer, UserRole.ADMIN)
    venue = require_venue(session, venue_id)
    ensure_visible(viewer, venue.org_id, VenueNotFound(f"场地 {venue_id} 不存在"))
    issued = add_kiosk(
        session,
        keyring=keyring,
        name=name,
        venue_id=venue_id,
        now=clock(),
        code_ttl=settings.enrollment_code_ttl,
        actor=viewer.actor,
    )
    return _code_page(request, issued, venue_name=venue.name, first=True)


@router.post("/kiosks/{kiosk_id}/code")
def new_code(
    kiosk_id: str,
    request: Request,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    clock: ClockDep,
    viewer: CurrentUser,
) -> HTMLResponse:
    ensure_role(viewer, UserRole.ADMIN)
    kiosk = require_kiosk(session, kiosk_id)
    ensure_visible(viewer, kiosk_org_id(session, kiosk), KioskNotFound(f"终端 {kiosk_id} 不存在"))
    issued = issue_enrollment_code(
        session,
        keyring=keyring,
        kiosk_id=kiosk_id,
        now=clock(),
        code_ttl=settings.enrollment_code_ttl,
        actor=viewer.actor,
    )
    venue = session.get(Venue, kiosk.venue_id)
    return _code_page(request, issued, venue_name=venue.name if venue else "", first=False)


@router.post("/kiosks/{kiosk_id}/revoke")
def revoke(
    kiosk_id: str,
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    viewer: CurrentUser,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    ensure_role(viewer, UserRole.ADMIN)
    kiosk = revoke_kiosk(
        session, kiosk_id=kiosk_id, now=clock(), actor=viewer.actor, org_ids=viewer.org_ids, reason=reason
    )
    return redirect(request, f"/web/kiosks/{kiosk_id}", toast=f"已停用签到机「{kiosk.name}」，其刷卡将被拒绝")


@router.post("/members/{member_id}/enrol")
def start_enrol(
    member_id: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    viewer: CurrentUser,
    kiosk_id: Annotated[str, Form(max_length=64)] = "",
) -> HTMLResponse:
    enrol = start_enrol_session(
        session,
        member_id=member_id,
        kiosk_id=kiosk_id or None,
        actor=viewer.actor,
        now=clock(),
        ttl=settings.enrol_session_ttl,
        org_ids=viewer.org_ids,
    )
    return _enrol_fragment(request, session, viewer, enrol, now=clock())


@router.get("/enrol-sessions/{enrol_session_id}")
def poll_enrol(
    enrol_session_id: int, request: Request, session: SessionDep, clock: ClockDep, viewer: CurrentUser
) -> Response:
    enrol = read_enrol_session(
        session, enrol_session_id=enrol_session_id, now=clock(), org_ids=viewer.org_ids
    )
    if enrol.state == EnrolSessionState.BOUND:
        # Reload the member page: the new card shows in its table, the toast says which one.
        return redirect(request, f"/web/members/{enrol.member_id}", toast=f"已绑定卡 {enrol.card_masked}")
    return _enrol_fragment(request, session, viewer, enrol, now=clock())


@router.post("/enrol-sessions/{enrol_session_id}/cancel")
def cancel_enrol(
    enrol_session_id: int, request: Request, session: SessionDep, clock: ClockDep, viewer: CurrentUser
) -> HTMLResponse:
    enrol = cancel_enrol_session(
        session, enrol_session_id=enrol_session_id, actor=viewer.actor, now=clock(), org_ids=viewer.org_ids
    )
    return _enrol_fragment(request, session, viewer, enrol, now=clock())


def _enrol_fragment(
    request: Request, session: Session, viewer: WebUser, enrol: EnrolSessionPublic, *, now: datetime
) -> HTMLResponse:
    member = require_member(session, enrol.member_id)
    enrol_kiosks = [
        k
        for k in list_kiosk_health(session, now=now, org_ids=viewer.org_ids)
        if k.status == KioskStatus.ACTIVE and k.mode == TapMode.ENROL
    ]
    remaining = max(0, int((enrol.expires_at - now).total_seconds()))
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


def _manages_kiosks(viewer: WebUser) -> bool:
    return viewer.has_role(UserRole.ADMIN)


def _venues_in_scope(session: Session, viewer: WebUser) -> list[Venue]:
    query = select(Venue).order_by(col(Venue.name))
    if viewer.org_ids is not None:
        query = query.where(col(Venue.org_id).in_(viewer.org_ids))
    return list(session.exec(query).all())


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
