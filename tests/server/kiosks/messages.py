"""Kiosk-signed heartbeats and key-rotation requests, and API tokens, for the kiosk tests."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from schemas.messages import (
    HeartbeatPayload,
    KeyRotationPayload,
    KeyRotationRequest,
    ReaderState,
    SignedEnvelope,
    TapMode,
    b64url_encode,
)
from server.auth.service import create_token
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.keyring import Keyring
from server.vocabulary import TokenRole
from tests.server.signing import KioskKeys

BOOT = "0123456789abcdef0123456789abcdef"


def heartbeat(
    keys: KioskKeys,
    *,
    kiosk_id: str,
    sent_at: datetime,
    counter: int = 1,
    boot_id: str = BOOT,
    interval_s: float = 60,
    round_trip_ms: int | None = None,
    pending: int = 0,
    oldest_pending_age_s: float | None = None,
    quarantined: int = 0,
    oldest_quarantined_seq: int | None = None,
    last_seq: int = 0,
    reader_state: ReaderState = ReaderState.READY,
    mode: TapMode = TapMode.CHECKIN,
) -> SignedEnvelope:
    payload = HeartbeatPayload(
        kiosk_id=kiosk_id,
        boot_id=boot_id,
        counter=counter,
        sent_at=sent_at,
        interval_s=interval_s,
        previous_round_trip_ms=round_trip_ms,
        mode=mode,
        outbox_pending=pending,
        oldest_pending_age_s=oldest_pending_age_s,
        outbox_quarantined=quarantined,
        oldest_quarantined_seq=oldest_quarantined_seq,
        last_seq=last_seq,
        agent_version="1.2.3",
        reader_state=reader_state,
        reader_name="pcsc:ACS ACR122U",
    )
    return keys.sign_bytes(payload.to_bytes())


def rotation(
    old: KioskKeys,
    new: KioskKeys,
    *,
    kiosk_id: str,
    last_seq: int,
    at: datetime,
    proof_by: KioskKeys | None = None,
) -> KeyRotationRequest:
    """A rotation request signed by *old*; the proof of possession by *proof_by* (default *new*)."""
    data = KeyRotationPayload(
        kiosk_id=kiosk_id, new_public_key=new.public_b64, last_seq=last_seq, requested_at=at
    ).to_bytes()
    prover = proof_by or new
    return KeyRotationRequest(
        envelope=old.sign_bytes(data), new_key_sig=b64url_encode(prover.private.sign(data))
    )


def bearer(
    engine: Engine, keyring: Keyring, *, role: TokenRole, org_id: int | None, now: datetime
) -> dict[str, str]:
    """Authorization headers for a fresh API token."""
    with unit_of_work(engine) as session:
        token = create_token(
            session, keyring=keyring, role=role, org_id=org_id, label="test", caller=CLI_CALLER, now=now
        )
    return {"Authorization": f"Bearer {token.token}"}
