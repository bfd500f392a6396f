"""Kiosks: creation with a one-time enrollment code, enrollment of the kiosk's key, key rotation
and revocation. Finding the kiosk key behind a signature is :mod:`server.kiosks.authentication`.

Every key a kiosk was ever given stays in :class:`~server.records.kiosks.KioskKey`. A rotated-out
key still verifies the taps it signed before the rotation (seq up to the ``last_seq`` the kiosk
declared when rotating), so an outbox that was offline across the rotation still uploads.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlmodel import Session, col, delete, select

from schemas.messages import (
    EnrollRequest,
    EnrollResponse,
    KeyRotationPayload,
    KeyRotationRequest,
    KeyRotationResponse,
    b64url_decode,
    key_id,
)
from server.audit.service import record
from server.caller import Actor, Caller
from server.errors import (
    BadPublicKey,
    BadSignature,
    EnrollmentCodeInvalid,
    KeyRetired,
    KioskNotFound,
    KioskRevoked,
    PublicKeyInUse,
    VenueNotFound,
)
from server.inputs import clean_text
from server.keyring import Keyring, Purpose
from server.kiosks.authentication import Rejection, authenticate, refusal, verify_signature
from server.records.kiosks import EnrollmentCode, Kiosk, KioskKey
from server.records.venues import Venue
from server.venues.service import require_venue, venue_org_id
from server.vocabulary import KioskStatus

log = logging.getLogger(__name__)

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
    session: Session,
    *,
    keyring: Keyring,
    name: str,
    venue_id: int,
    now: datetime,
    code_ttl: timedelta,
    caller: Caller,
) -> IssuedCode:
    """Create a kiosk at a venue, waiting for enrollment, and issue its first code.

    Raises:
        VenueNotFound: no such venue, or outside the caller's scope.
    """
    venue = require_venue(session, venue_id)
    if not caller.sees_org(venue.org_id):
        raise VenueNotFound(f"场地 {venue_id} 不存在")
    kiosk = Kiosk(
        id=f"kiosk-{secrets.token_hex(6)}",
        name=clean_text(name, field="名称", max_length=200),
        venue_id=venue_id,
        status=KioskStatus.PENDING,
        created_at=now,
    )
    session.add(kiosk)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="kiosk.create",
        object_type="kiosk",
        object_id=kiosk.id,
        org_id=venue.org_id,
        at=now,
        detail={"name": kiosk.name, "venue_id": venue_id},
    )
    return issue_enrollment_code(
        session, keyring=keyring, kiosk_id=kiosk.id, now=now, code_ttl=code_ttl, caller=caller
    )


def issue_enrollment_code(
    session: Session, *, keyring: Keyring, kiosk_id: str, now: datetime, code_ttl: timedelta, caller: Caller
) -> IssuedCode:
    """A new code for a kiosk (first install or a replaced device); earlier unused codes stop working.

    Raises:
        KioskNotFound (also outside the caller's scope), KioskRevoked.
    """
    kiosk = require_visible_kiosk(session, kiosk_id, caller=caller)
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
    # The code itself is a credential: the audit says one was issued, never what it was.
    record(
        session,
        actor=caller.actor,
        action="kiosk.enrollment_code",
        object_type="kiosk",
        object_id=kiosk_id,
        org_id=venue_org_id(session, kiosk.venue_id),
        at=now,
        detail={"expires_at": expires_at.isoformat()},
    )
    return IssuedCode(kiosk=kiosk, code=_format_code(code), expires_at=expires_at)


def enroll_kiosk(
    session: Session, *, keyring: Keyring, request: EnrollRequest, now: datetime
) -> EnrollResponse:
    """Register a kiosk's Ed25519 public key in exchange for a valid enrollment code.

    Using a code again with the same key returns the same answer, so an agent whose first
    response was lost can retry.

    Raises:
        BadPublicKey: not a raw 32-byte Ed25519 key in base64url.
        EnrollmentCodeInvalid: the code is unknown (or superseded), was already used with another
            key, or is past its lifetime; the caller is told the same in every case, and
            :func:`record_enrollment_refusal` audits which it was.
        KioskRevoked: the kiosk was revoked after the code was issued.
        PublicKeyInUse: another kiosk already enrolled this key, or this kiosk retired it.
    """
    raw_key = _parse_public_key(request.public_key)
    kid = key_id(raw_key)
    entry = session.exec(
        select(EnrollmentCode)
        .where(EnrollmentCode.code_hash == _code_digest(keyring, _normalise_code(request.code)))
        .with_for_update()
    ).first()
    if entry is None:
        raise EnrollmentCodeInvalid(reason="unknown")
    kiosk = session.exec(select(Kiosk).where(Kiosk.id == entry.kiosk_id).with_for_update()).one()
    if entry.used_at is not None:
        if entry.used_by_kid == kid and kiosk.kid == kid and kiosk.status == KioskStatus.ACTIVE:
            return _enroll_response(session, kiosk, now)
        raise EnrollmentCodeInvalid(reason="used", kiosk_id=kiosk.id)
    if now >= entry.expires_at:
        raise EnrollmentCodeInvalid(reason="expired", kiosk_id=kiosk.id)
    if kiosk.status == KioskStatus.REVOKED:
        raise KioskRevoked()
    holder = session.get(KioskKey, kid)
    if holder is not None and (holder.kiosk_id != kiosk.id or holder.retired_at is not None):
        raise PublicKeyInUse()

    entry.used_at = now
    entry.used_by_kid = kid
    if kiosk.kid is not None and kiosk.kid != kid:
        # Re-enrollment with a new key (replaced hardware): the old key keeps verifying what it
        # signed up to the last seq the server has seen from it, and nothing after.
        _retire_key(session, kiosk.kid, last_seq=kiosk.last_seq or 0, now=now)
    if holder is None:
        session.add(KioskKey(kid=kid, kiosk_id=kiosk.id, public_key=request.public_key, valid_from=now))
    kiosk.public_key = request.public_key
    kiosk.kid = kid
    kiosk.status = KioskStatus.ACTIVE
    kiosk.enrolled_at = now
    kiosk.agent_version = request.agent_version
    session.add_all([entry, kiosk])
    session.flush()
    _discard_unused_codes(session, kiosk.id)
    record(
        session,
        actor=kiosk_actor(kiosk),
        action="kiosk.enroll",
        object_type="kiosk",
        object_id=kiosk.id,
        org_id=venue_org_id(session, kiosk.venue_id),
        at=now,
        detail={"kid": kid, "agent_version": request.agent_version},
    )
    return _enroll_response(session, kiosk, now)


def record_enrollment_refusal(
    session: Session, *, refused: EnrollmentCodeInvalid, source: str, now: datetime
) -> None:
    """Audit why an enrollment code was refused (the caller only heard "invalid").

    A used or expired code names its kiosk, so the entry goes on that kiosk's record. A code
    nobody issued names nothing and is only logged: a row per guess would let anyone grow the
    database (the per-source rate limit bounds the log lines).
    """
    if refused.kiosk_id is None:
        log.warning("enrollment refused: unknown code from %s", source)
        return
    kiosk = session.get(Kiosk, refused.kiosk_id)
    record(
        session,
        actor=Actor(f"source:{source[:64]}", "未认证的请求方"),
        action="kiosk.enroll_refused",
        object_type="kiosk",
        object_id=refused.kiosk_id,
        org_id=venue_org_id(session, kiosk.venue_id) if kiosk is not None else None,
        at=now,
        reason=refused.reason,
        detail={"reason": refused.reason, "source": source[:64]},
    )


def rotate_kiosk_key(session: Session, *, request: KeyRotationRequest, now: datetime) -> KeyRotationResponse:
    """Replace a kiosk's key with a new one, on a request signed by the old key and the new one.

    The old key is retired, not forgotten: taps it signed with seq up to the declared ``last_seq``
    (or the highest seq the server already has, if that is higher) still verify. Sending the same
    request again after the rotation happened returns the same answer, so a kiosk whose first
    response was lost can finish.

    Raises:
        UnknownKioskKey: the old key is not a kiosk key.
        BadSignature: either signature does not verify.
        MalformedMessage: the payload is not a KeyRotationPayload.
        KioskMismatch: the payload names another kiosk than the key's.
        KioskRevoked: the kiosk is revoked.
        KeyRetired: the old key was already rotated out (by another request).
        BadPublicKey: the new key is not an Ed25519 key, or is the old key.
        PublicKeyInUse: the new key belongs to (or belonged to) some kiosk already.
    """
    # Steps 1–5 of server.kiosks.authentication; its step 6, the old key's retirement, comes last
    # here, so that a rotation sent again after it happened is answered again.
    signed = authenticate(
        session, request.envelope, KeyRotationPayload.model_validate_json, now=now, refuse_retired_key=False
    )
    if isinstance(signed, Rejection):
        raise refusal(signed, revoked_message="终端已停用，不能轮换密钥")
    kiosk, old_key, payload = signed.kiosk, signed.key, signed.payload
    new_raw = _parse_public_key(payload.new_public_key)
    if not verify_signature(payload.new_public_key, signed.raw, request.new_key_sig):
        raise BadSignature("新密钥的签名无效")
    new_kid = key_id(new_raw)
    if new_kid == old_key.kid:
        raise BadPublicKey("新公钥须与当前公钥不同")
    if old_key.retired_at is not None:
        if kiosk.kid == new_kid and old_key.last_seq is not None and old_key.last_seq >= payload.last_seq:
            return KeyRotationResponse(
                kiosk_id=kiosk.id, kid=new_kid, previous_kid=old_key.kid, server_time=now
            )
        raise KeyRetired()
    if session.get(KioskKey, new_kid) is not None:
        raise PublicKeyInUse()

    last_seq = max(payload.last_seq, kiosk.last_seq or 0)
    _retire_key(session, old_key.kid, last_seq=last_seq, now=now)
    session.add(KioskKey(kid=new_kid, kiosk_id=kiosk.id, public_key=payload.new_public_key, valid_from=now))
    kiosk.kid = new_kid
    kiosk.public_key = payload.new_public_key
    session.add(kiosk)
    session.flush()
    record(
        session,
        actor=kiosk_actor(kiosk),
        action="kiosk.rotate_key",
        object_type="kiosk",
        object_id=kiosk.id,
        org_id=venue_org_id(session, kiosk.venue_id),
        at=now,
        detail={"previous_kid": old_key.kid, "kid": new_kid, "last_seq_old_key": last_seq},
    )
    return KeyRotationResponse(kiosk_id=kiosk.id, kid=new_kid, previous_kid=old_key.kid, server_time=now)


def kiosk_actor(kiosk: Kiosk) -> Actor:
    return Actor(f"kiosk:{kiosk.id}", kiosk.name)


def revoke_kiosk(
    session: Session,
    *,
    kiosk_id: str,
    now: datetime,
    caller: Caller,
    reason: str = "",
) -> Kiosk:
    """Stop accepting taps and heartbeats from a kiosk (its taps are then rejected as ``revoked_kiosk``).

    Raises:
        KioskNotFound: no such kiosk at a venue in the caller's scope.
    """
    kiosk = require_visible_kiosk(session, kiosk_id, caller=caller)
    if kiosk.status != KioskStatus.REVOKED:
        kiosk.status = KioskStatus.REVOKED
        kiosk.revoked_at = now
        session.add(kiosk)
        _discard_unused_codes(session, kiosk_id)
        session.flush()
        record(
            session,
            actor=caller.actor,
            action="kiosk.revoke",
            object_type="kiosk",
            object_id=kiosk.id,
            org_id=venue_org_id(session, kiosk.venue_id),
            at=now,
            reason=reason[:500],
        )
    return kiosk


def list_kiosks(session: Session) -> list[Kiosk]:
    return list(session.exec(select(Kiosk).order_by(col(Kiosk.created_at), col(Kiosk.id))).all())


def require_kiosk(session: Session, kiosk_id: str) -> Kiosk:
    kiosk = session.get(Kiosk, kiosk_id)
    if kiosk is None:
        raise KioskNotFound(f"终端 {kiosk_id} 不存在")
    return kiosk


def require_visible_kiosk(session: Session, kiosk_id: str, *, caller: Caller) -> Kiosk:
    """The kiosk, if its venue's organisation is in the caller's scope. Raises KioskNotFound
    (also outside it)."""
    kiosk = require_kiosk(session, kiosk_id)
    if not caller.sees_org(venue_org_id(session, kiosk.venue_id)):
        raise KioskNotFound(f"终端 {kiosk_id} 不存在")
    return kiosk


def _retire_key(session: Session, kid: str, *, last_seq: int, now: datetime) -> None:
    key = session.get(KioskKey, kid)
    if key is not None and key.retired_at is None:
        key.retired_at = now
        key.last_seq = last_seq
        session.add(key)
        session.flush()


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
        kiosk_id=kiosk.id,
        kid=kiosk.kid,
        kiosk_name=kiosk.name,
        venue_name=venue.name,
        server_time=now,
        first_seq=(kiosk.last_seq or 0) + 1,
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
