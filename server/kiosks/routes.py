"""Kiosk enrollment endpoint."""

from __future__ import annotations

from fastapi import APIRouter

from schemas.messages import EnrollRequest, EnrollResponse
from server.deps import ClockDep, KeyringDep, SessionDep
from server.kiosks.service import enroll_kiosk

router = APIRouter(prefix="/api/v1/kiosks", tags=["kiosks"])


@router.post("/enroll")
def enroll(
    request: EnrollRequest, session: SessionDep, keyring: KeyringDep, clock: ClockDep
) -> EnrollResponse:
    """Exchange a one-time enrollment code for a kiosk identity bound to the kiosk's public key."""
    return enroll_kiosk(session, keyring=keyring, request=request, now=clock())
