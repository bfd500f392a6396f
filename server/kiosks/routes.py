"""Kiosk endpoints: enrollment, signed heartbeats and key rotation (kiosk-signed), and health and
revocation (bearer token, scoped to the token's organisation subtree). 刷卡绑定 requests are in
``server.cards.routes``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from schemas.messages import (
    EnrollRequest,
    EnrollResponse,
    HeartbeatAck,
    KeyRotationRequest,
    KeyRotationResponse,
    SignedEnvelope,
)
from server.deps import ClockDep, KeyringDep, RequestDep, SessionDep, SettingsDep
from server.errors import EnrollmentCodeInvalid, status_for
from server.kiosks.health import kiosk_detail, list_kiosk_health, record_heartbeat
from server.kiosks.schemas import KioskDetail, KioskHealth, KioskStatusPublic
from server.kiosks.service import enroll_kiosk, record_enrollment_refusal, revoke_kiosk, rotate_kiosk_key
from server.limits import EnrollLimit, HeartbeatsLimit, Limit, charge_limit, check_limit
from server.proxies import client_address

router = APIRouter(prefix="/api/v1/kiosks", tags=["kiosks"])


class RevokeRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


@router.post("/enroll", response_model=EnrollResponse)
def enroll(
    request: EnrollRequest,
    session: SessionDep,
    keyring: KeyringDep,
    clock: ClockDep,
    http_request: Request,
    _limit: EnrollLimit,
) -> EnrollResponse | Response:
    """Exchange a one-time enrollment code for a kiosk identity bound to the kiosk's public key."""
    now = clock()
    try:
        return enroll_kiosk(session, keyring=keyring, request=request, now=now)
    except EnrollmentCodeInvalid as refused:
        # Answered, not raised: the audit entry with the real reason must be committed.
        record_enrollment_refusal(session, refused=refused, source=client_address(http_request), now=now)
        body = {"error": refused.code, "detail": refused.message}
        return JSONResponse(body, status_code=status_for(refused))


@router.post("/heartbeat")
def heartbeat(
    envelope: SignedEnvelope,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    http_request: Request,
    _limit: HeartbeatsLimit,
) -> HeartbeatAck:
    """Store a kiosk's signed health report; the answer carries the server time and clock offset."""
    # The kiosk's own budget is spent only once its signature is checked: nobody can use it up
    # by sending heartbeats in its name.
    check_limit(http_request, Limit.HEARTBEATS_PER_KIOSK, envelope.kid)
    ack = record_heartbeat(
        session, envelope=envelope, received_at=clock(), max_clock_skew=settings.max_clock_skew
    )
    charge_limit(http_request, Limit.HEARTBEATS_PER_KIOSK, envelope.kid)
    return ack


@router.post("/rotate-key")
def rotate_key(
    request: KeyRotationRequest, session: SessionDep, clock: ClockDep, _limit: EnrollLimit
) -> KeyRotationResponse:
    """Replace a kiosk's key (signed by the old key and the new); old-key taps still verify."""
    return rotate_kiosk_key(session, request=request, now=clock())


@router.get("")
def list_kiosks(ctx: RequestDep) -> list[KioskHealth]:
    """Kiosks with their health (last seen, outbox, clock offset, seq gaps); problems first."""
    return list_kiosk_health(ctx.session, now=ctx.now, scope=ctx.caller.scope)


@router.get("/{kiosk_id}")
def show_kiosk(kiosk_id: str, ctx: RequestDep) -> KioskDetail:
    """One kiosk's health, missing seq ranges and key history."""
    return kiosk_detail(ctx.session, kiosk_id=kiosk_id, now=ctx.now, scope=ctx.caller.scope)


@router.post("/{kiosk_id}/revoke")
def revoke(kiosk_id: str, body: RevokeRequest, ctx: RequestDep) -> KioskStatusPublic:
    """Stop accepting taps and heartbeats from a kiosk."""
    kiosk = revoke_kiosk(ctx.session, kiosk_id=kiosk_id, reason=body.reason, now=ctx.now, caller=ctx.caller)
    return KioskStatusPublic(kiosk_id=kiosk.id, status=kiosk.status, revoked_at=kiosk.revoked_at)
