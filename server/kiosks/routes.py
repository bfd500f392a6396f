"""Kiosk endpoints: enrollment, signed heartbeats and key rotation (kiosk-signed), and health,
revocation and 刷卡绑定 requests (bearer token, scoped to the token's organisation subtree)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from schemas.messages import (
    EnrollRequest,
    EnrollResponse,
    HeartbeatAck,
    KeyRotationRequest,
    KeyRotationResponse,
    SignedEnvelope,
)
from server.deps import ClockDep, KeyringDep, PrincipalDep, SessionDep, SettingsDep
from server.kiosks.enrol import cancel_enrol_session, read_enrol_session, start_enrol_session
from server.kiosks.health import kiosk_detail, list_kiosk_health, record_heartbeat
from server.kiosks.models import EnrolSessionPublic, KioskDetail, KioskHealth, KioskStatusPublic
from server.kiosks.service import enroll_kiosk, revoke_kiosk, rotate_kiosk_key
from server.ledgers.http import token_actor
from server.orgs.service import organisation_subtree_ids

router = APIRouter(prefix="/api/v1/kiosks", tags=["kiosks"])
enrol_router = APIRouter(prefix="/api/v1", tags=["kiosks"])


def visible_org_ids(session: SessionDep, principal: PrincipalDep) -> set[int] | None:
    """The organisations the caller may see (None: all of them)."""
    return None if principal.org_id is None else organisation_subtree_ids(session, principal.org_id)


VisibleOrgsDep = Annotated[set[int] | None, Depends(visible_org_ids)]


class RevokeRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


class EnrolSessionCreate(BaseModel):
    kiosk_id: str | None = Field(default=None, description="Only a tap at this kiosk binds the card.")


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
def list_kiosks(session: SessionDep, org_ids: VisibleOrgsDep, clock: ClockDep) -> list[KioskHealth]:
    """Kiosks with their health (last seen, outbox, clock offset, seq gaps); problems first."""
    return list_kiosk_health(session, now=clock(), org_ids=org_ids)


@router.get("/{kiosk_id}")
def show_kiosk(kiosk_id: str, session: SessionDep, org_ids: VisibleOrgsDep, clock: ClockDep) -> KioskDetail:
    """One kiosk's health, missing seq ranges and key history."""
    return kiosk_detail(session, kiosk_id=kiosk_id, now=clock(), org_ids=org_ids)


@router.post("/{kiosk_id}/revoke")
def revoke(
    kiosk_id: str,
    body: RevokeRequest,
    session: SessionDep,
    principal: PrincipalDep,
    org_ids: VisibleOrgsDep,
    clock: ClockDep,
) -> KioskStatusPublic:
    """Stop accepting taps and heartbeats from a kiosk."""
    kiosk = revoke_kiosk(
        session,
        kiosk_id=kiosk_id,
        reason=body.reason,
        actor=token_actor(principal),
        now=clock(),
        org_ids=org_ids,
    )
    return KioskStatusPublic(kiosk_id=kiosk.id, status=kiosk.status, revoked_at=kiosk.revoked_at)


@enrol_router.post("/members/{member_id}/enrol-sessions")
def start_enrol(
    member_id: int,
    body: EnrolSessionCreate,
    session: SessionDep,
    principal: PrincipalDep,
    org_ids: VisibleOrgsDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> EnrolSessionPublic:
    """Start waiting for the member's card at a kiosk in enrol mode (刷卡绑定)."""
    return start_enrol_session(
        session,
        member_id=member_id,
        kiosk_id=body.kiosk_id,
        actor=token_actor(principal),
        now=clock(),
        ttl=settings.enrol_session_ttl,
        org_ids=org_ids,
    )


@enrol_router.get("/enrol-sessions/{enrol_session_id}")
def show_enrol(
    enrol_session_id: int, session: SessionDep, org_ids: VisibleOrgsDep, clock: ClockDep
) -> EnrolSessionPublic:
    """A 刷卡绑定 request: still waiting, bound (with the masked card), cancelled or expired."""
    return read_enrol_session(session, enrol_session_id=enrol_session_id, now=clock(), org_ids=org_ids)


@enrol_router.post("/enrol-sessions/{enrol_session_id}/cancel")
def cancel_enrol(
    enrol_session_id: int,
    session: SessionDep,
    principal: PrincipalDep,
    org_ids: VisibleOrgsDep,
    clock: ClockDep,
) -> EnrolSessionPublic:
    """Stop waiting for a card."""
    return cancel_enrol_session(
        session,
        enrol_session_id=enrol_session_id,
        actor=token_actor(principal),
        now=clock(),
        org_ids=org_ids,
    )
