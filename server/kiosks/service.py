"""Kiosks: creation with a one-time enrollment code, enrollment of the kiosk's key, revocation."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlmodel import Session, col, delete, select

from schemas.messages import EnrollRequest, EnrollResponse, b64url_decode, key_id
from server.errors import (
    BadPublicKey,
    EnrollmentCodeExpired,
    EnrollmentCodeInvalid,
    EnrollmentCodeUsed,
    KioskNotFound,
    KioskRevoked,
    PublicKeyInUse,
)
from server.inputs import clean_text
from server.keyring import Keyring, Purpose
from server.kiosks.models import EnrollmentCode, Kiosk
from server.venues.models import Venue
from server.venues.service import require_venue
from server.vocabulary import KioskStatus

# Crockford base32: no I, L, O or U, so a code read aloud or copied by hand survives.
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_LENGTH = 12  # 60 bits; codes are single-use and expire, so guessing one in time is hopeless
_CODE_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})


@dataclass(frozen=True)
class IssuedCode:
    """A kiosk and its fresh enrollment code; the code is shown once and stored only hashed."""

    kiosk: Kiosk
    code: str
    expires_at: datetime


def add_kiosk(
    session: Session, *, keyring: Keyring, name: str, venue_id: int, now: datetime, code_ttl: timedelta
) -> IssuedCode:
    """Create a kiosk at a venue, waiting for enrollment, and issue its first code.

    Raises:
        VenueNotFound: no such venue.
    """
    require_venue(session, venue_id)
    kiosk = Kiosk(
        id=f"kiosk-{secrets.token_hex(6)}",
        name=clean_text(name, field="名称", max_length=200),
        venue_id=venue_id,
        status=KioskStatus.PENDING,
        created_at=now,
    )
    session.add(kiosk)
    session.flush()
    return issue_enrollment_code(session, keyring=keyring, kiosk_id=kiosk.id, now=now, code_ttl=code_ttl)


def issue_enrollment_code(
    session: Session, *, keyring: Keyring, kiosk_id: str, now: datetime, code_ttl: timedelta
) -> IssuedCode:
    """A new code for a kiosk (first install or a replaced device); earlier unused codes stop working.

    Raises:
        KioskNotFound, KioskRevoked.
    """
    kiosk = require_kiosk(session, kiosk_id)
    if kiosk.status == KioskStatus.REVOKED:
        raise KioskRevoked()
    _discard_unused_codes(session, kiosk_id)
    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))
    expires_at = now + code_ttl
    session.add(
        EnrollmentCode(
            kiosk_id=kiosk_id,
            code_hash=_code_digest(keyring, code),
            created_at=now,
            expires_at=expires_at,
        )
    )
    session.flush()
    return IssuedCode(kiosk=kiosk, code=_format_code(code), expires_at=expires_at)


def enroll_kiosk(
    session: Session, *, keyring: Keyring, request: EnrollRequest, now: datetime
) -> EnrollResponse:
    """Register a kiosk's Ed25519 public key in exchange for a valid enrollment code.

    Using a code again with the same key returns the same answer, so an agent whose first
    response was lost can retry.

    Raises:
        BadPublicKey: not a raw 32-byte Ed25519 key in base64url.
        EnrollmentCodeInvalid: unknown (or superseded) code.
        EnrollmentCodeUsed: the code was already used, with another key.
        EnrollmentCodeExpired: the code is past its lifetime.
        KioskRevoked: the kiosk was revoked after the code was issued.
        PublicKeyInUse: another kiosk already enrolled this key.
    """
    raw_key = _parse_public_key(request.public_key)
    kid = key_id(raw_key)
    entry = session.exec(
        select(EnrollmentCode)
        .where(EnrollmentCode.code_hash == _code_digest(keyring, _normalise_code(request.code)))
        .with_for_update()
    ).first()
    if entry is None:
        raise EnrollmentCodeInvalid()
    kiosk = session.exec(select(Kiosk).where(Kiosk.id == entry.kiosk_id).with_for_update()).one()
    if entry.used_at is not None:
        if entry.used_by_kid == kid and kiosk.kid == kid and kiosk.status == KioskStatus.ACTIVE:
            return _enroll_response(session, kiosk, now)
        raise EnrollmentCodeUsed()
    if now >= entry.expires_at:
        raise EnrollmentCodeExpired()
    if kiosk.status == KioskStatus.REVOKED:
        raise KioskRevoked()
    holder = session.exec(select(Kiosk).where(Kiosk.kid == kid)).first()
    if holder is not None and holder.id != kiosk.id:
        raise PublicKeyInUse()

    entry.used_at = now
    entry.used_by_kid = kid
    kiosk.public_key = request.public_key
    kiosk.kid = kid
    kiosk.status = KioskStatus.ACTIVE
    kiosk.enrolled_at = now
    kiosk.agent_version = request.agent_version
    session.add_all([entry, kiosk])
    session.flush()
    _discard_unused_codes(session, kiosk.id)
    return _enroll_response(session, kiosk, now)


def revoke_kiosk(session: Session, *, kiosk_id: str, now: datetime) -> Kiosk:
    """Stop accepting taps from a kiosk (its taps are then rejected as ``revoked_kiosk``)."""
    kiosk = require_kiosk(session, kiosk_id)
    if kiosk.status != KioskStatus.REVOKED:
        kiosk.status = KioskStatus.REVOKED
        kiosk.revoked_at = now
        session.add(kiosk)
        _discard_unused_codes(session, kiosk_id)
        session.flush()
    return kiosk


def list_kiosks(session: Session) -> list[Kiosk]:
    return list(session.exec(select(Kiosk).order_by(col(Kiosk.created_at), col(Kiosk.id))).all())


def require_kiosk(session: Session, kiosk_id: str) -> Kiosk:
    kiosk = session.get(Kiosk, kiosk_id)
    if kiosk is None:
        raise KioskNotFound(f"终端 {kiosk_id} 不存在")
    return kiosk


def load_public_key(kiosk: Kiosk) -> Ed25519PublicKey:
    """The kiosk's verification key (the kiosk must be enrolled)."""
    if kiosk.public_key is None:
        raise ValueError(f"kiosk {kiosk.id} has no key")
    return Ed25519PublicKey.from_public_bytes(b64url_decode(kiosk.public_key))


def _parse_public_key(text: str) -> bytes:
    try:
        raw = b64url_decode(text)
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise BadPublicKey() from exc
    return raw


def _enroll_response(session: Session, kiosk: Kiosk, now: datetime) -> EnrollResponse:
    venue = session.get(Venue, kiosk.venue_id)
    assert venue is not None  # foreign key
    assert kiosk.kid is not None  # set on enrollment
    return EnrollResponse(
        kiosk_id=kiosk.id, kid=kiosk.kid, kiosk_name=kiosk.name, venue_name=venue.name, server_time=now
    )


def _discard_unused_codes(session: Session, kiosk_id: str) -> None:
    session.exec(
        delete(EnrollmentCode).where(
            col(EnrollmentCode.kiosk_id) == kiosk_id, col(EnrollmentCode.used_at).is_(None)
        )
    )


def _normalise_code(text: str) -> str:
    return "".join(text.split()).replace("-", "").upper().translate(_CODE_LOOKALIKES)


def _format_code(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def _code_digest(keyring: Keyring, code: str) -> str:
    return keyring.digest(Purpose.ENROLLMENT_CODE, code.encode("ascii", "replace"))
