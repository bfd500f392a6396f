"""Kiosk endpoints: enrollment, signed heartbeats and key rotation (kiosk-signed), and health and
revocation (bearer token, scoped to the token's organisation subtree). 刷卡绑定 requests are in
``server.cards.routes``."""

from __future__ import annotations

from fastapi import APIRouter
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
from server.kiosks.health import kiosk_detail, list_kiosk_health, record_heartbeat
from server.kiosks.schemas import KioskDetail, KioskHealth, KioskStatusPublic
from server.kiosks.service import enroll_kiosk, revoke_kiosk, rotate_kiosk_key

router = APIRouter(prefix="/api/v1/kiosks", tags=["kiosks"])


class RevokeRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


@router.post("/enroll")
def enroll(
    request: EnrollRequest, session: SessionDep, keyring: KeyringDep, clock: ClockDep
) -> EnrollResponse:
    """Exchange a one-time enrollment code for a kiosk identity bound to the kiosk's public key."""
    return enroll_kiosk(session, keyring=keyring, request=request, now=clock())


@router.post("/heartbeat")
def heartbeat(
    envelope: SignedEnvelope, session: SessionDep, settings: SettingsDep, clock: ClockDep
) -> HeartbeatAck:
    """Store a kiosk's signed health report; the answer carries the server time and clock offset."""
    return record_heartbeat(
        session, envelope=envelope, received_at=clock(), max_clock_skew=settings.max_clock_skew
    )


@router.post("/rotate-key")
def rotate_key(request: KeyRotationRequest, session: SessionDep, clock: ClockDep) -> KeyRotationResponse:
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
