"""Kiosk authentication: is a signed message really from an active kiosk, and may it still be heard?

Taps, heartbeats and key rotations all arrive as a :class:`~schemas.messages.SignedEnvelope`
(``{kid, payload, sig}``) and pass the same checks in the same order; the first that fails
decides. A tap gets the code in its receipt; a heartbeat or a key rotation is refused with the
matching domain error (:func:`refusal`). The envelope itself already has its contract's shape
(``kid`` in its exact format, a payload of bounded size, a signature of the right length): a
heartbeat's is checked by FastAPI, each envelope of a tap batch by ``server.taps.service``.

1. ``kid`` names a kiosk key, current or rotated out (:func:`find_signing_key`) .. else ``unknown_kiosk``
2. the Ed25519 signature verifies over the exact payload bytes (:func:`signed_bytes`)
   ................ else ``bad_signature`` (``malformed`` when the payload is not even base64url);
   from here on the kiosk counts as seen, whatever the later checks say. Until here nothing is
   known about the sender, so nothing it sent may cost a row.
3. the bytes parse as the message's payload model, every field within its bounds (the caller's
   ``read``; for a tap :func:`read_tap_payload`) ........ else ``malformed``, naming the field
4. the payload names the key's kiosk (:func:`check_kiosk_match`) ..... else ``kiosk_mismatch``
5. the kiosk is not revoked (:func:`check_not_revoked`) ............. else ``revoked_kiosk``
6. the key may still sign this message:
   a tap (:func:`claim_seq`): (kiosk, seq) seen with the same bytes .. ``duplicate`` (the stored answer)
   (kiosk, seq) seen with other bytes ........................... ``seq_conflict``
   a rotated-out key, seq after its rotation .................... ``retired_key``
   a heartbeat (:func:`check_key_current`): a rotated-out key ... ``retired_key``
   a key rotation: decided by ``server.kiosks.service.rotate_kiosk_key`` once the new key is
   checked, because a rotation sent again after it happened is answered again, not refused
7. a tap is not from the future, beyond the allowed skew (:func:`check_clock`) .. else ``clock_skew``
   (its seq stays claimed: the kiosk spent it)

:func:`authenticate` runs steps 1–6 for any message; :func:`authenticate_tap` runs 1–7 for a tap.
The kiosk row is locked at step 1: one kiosk's messages are then decided one at a time on
PostgreSQL, which keeps the seq checks, ``last_seq`` and heartbeat ordering honest when requests
overlap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError
from sqlmodel import Session, col, or_, select

from schemas.messages import SignedEnvelope, TapPayload, b64url_decode
from server.errors import (
    BadSignature,
    DomainError,
    KeyRetired,
    KioskMismatch,
    KioskRevoked,
    MalformedMessage,
    UnknownKioskKey,
)
from server.records.kiosks import Kiosk, KioskKey
from server.records.taps import Tap
from server.vocabulary import KioskStatus, RejectionCode


class KioskPayload(Protocol):
    """What authentication reads of any signed kiosk message: the kiosk it says it comes from."""

    @property
    def kiosk_id(self) -> str: ...


P = TypeVar("P", bound=KioskPayload)


@dataclass(frozen=True)
class SigningKey:
    """A kiosk key found by its kid, with its kiosk (locked for the rest of the transaction)."""

    kiosk: Kiosk
    key: KioskKey


@dataclass(frozen=True)
class Signed(Generic[P]):
    """A message that passed authentication: its kiosk (locked), the key that signed it, the
    parsed payload and the exact bytes that were signed."""

    kiosk: Kiosk
    key: KioskKey
    payload: P
    raw: bytes


SignedTap = Signed[TapPayload]


@dataclass(frozen=True)
class Rejection(Generic[P]):
    """The first check that failed, with what was learnt before it: the kiosk from step 2 on, the
    payload from step 4 on, and for a tap refused at step 7 the seq it claimed at step 6. A
    ``malformed`` message names where its first problem is (``field``). ``verified`` is whether
    the signature had verified (step 2): before that, the message could be anyone's."""

    code: RejectionCode
    kiosk: Kiosk | None = None
    payload: P | None = None
    claimed_seq: int | None = None
    field: str | None = None
    verified: bool = False


@dataclass(frozen=True)
class Duplicate:
    """A tap whose exact bytes were decided before at this (kiosk, seq): ``earlier`` is that row."""

    earlier: Tap


def authenticate(
    session: Session,
    envelope: SignedEnvelope,
    read: Callable[[bytes], P],
    *,
    now: datetime,
    refuse_retired_key: bool,
) -> Signed[P] | Rejection[P]:
    """Steps 1–6 of the module docstring for any kiosk message.

    *read* is step 3: it turns the signed bytes into the payload, raising ValueError (pydantic's
    ValidationError is one) for bytes that are not that message. *now* is when the message
    arrived: the kiosk is seen then. *refuse_retired_key* is step 6 for a message without a seq
    (a heartbeat); taps (:func:`authenticate_tap`) and key rotations judge a rotated-out key
    themselves.
    """
    found = find_signing_key(session, envelope.kid)
    if found is None:
        return Rejection(RejectionCode.UNKNOWN_KIOSK)
    kiosk, key = found.kiosk, found.key
    raw = signed_bytes(envelope, key)
    if isinstance(raw, RejectionCode):
        return Rejection(raw, kiosk=kiosk, field="payload" if raw == RejectionCode.MALFORMED else None)
    # A verified signature is the kiosk speaking, even when what it says is refused below.
    kiosk.last_seen_at = now
    session.add(kiosk)
    try:
        payload = read(raw)
    except ValueError as exc:
        field = problem_field(exc, prefix="payload")
        return Rejection(RejectionCode.MALFORMED, kiosk=kiosk, field=field, verified=True)
    refused = check_kiosk_match(kiosk, payload)
    if refused is None:
        refused = check_not_revoked(kiosk)
    if refused is None and refuse_retired_key:
        refused = check_key_current(key)
    if refused is not None:
        return Rejection(refused, kiosk=kiosk, payload=payload, verified=True)
    return Signed(kiosk=kiosk, key=key, payload=payload, raw=raw)


def authenticate_tap(
    session: Session, envelope: SignedEnvelope, *, digest: str, now: datetime, max_clock_skew: timedelta
) -> SignedTap | Duplicate | Rejection[TapPayload]:
    """Steps 1–7 for one tap of a batch.

    *digest* is the keyed digest of the envelope's payload (what recognises a tap sent again);
    *now* is when the batch arrived. A tap that passes has claimed its (kiosk, seq).
    """
    signed = authenticate(session, envelope, read_tap_payload, now=now, refuse_retired_key=False)
    if isinstance(signed, Rejection):
        return signed
    claimed = claim_seq(session, signed, digest=digest)
    if isinstance(claimed, Duplicate):
        return claimed
    if claimed is not None:
        return Rejection(claimed, kiosk=signed.kiosk, payload=signed.payload, verified=True)
    refused = check_clock(signed.payload, now=now, max_clock_skew=max_clock_skew)
    if refused is not None:
        seq = signed.payload.seq
        return Rejection(refused, kiosk=signed.kiosk, payload=signed.payload, claimed_seq=seq, verified=True)
    return signed


def find_signing_key(session: Session, kid: str) -> SigningKey | None:
    """Step 1: the kiosk key named *kid* (current or retired) and its kiosk, locked; or None."""
    key = session.get(KioskKey, kid)
    if key is None:
        return None
    kiosk = session.exec(select(Kiosk).where(Kiosk.id == key.kiosk_id).with_for_update()).one()
    return SigningKey(kiosk=kiosk, key=key)


def signed_bytes(envelope: SignedEnvelope, key: KioskKey) -> bytes | RejectionCode:
    """Step 2: the exact payload bytes, once *key*'s signature over them verifies."""
    try:
        raw = envelope.payload_bytes()
    except ValueError:
        return RejectionCode.MALFORMED
    if not verify_signature(key.public_key, raw, envelope.sig):
        return RejectionCode.BAD_SIGNATURE
    return raw


def read_tap_payload(raw: bytes) -> TapPayload:
    """Step 3 for a tap: a TapPayload, every field within its wire bounds (the seq at most
    ``MAX_SEQ``, so a replacement device's first seq still fits). Raises ValueError."""
    return TapPayload.model_validate_json(raw)


def problem_field(error: ValueError, *, prefix: str) -> str:
    """Where a message's first problem is, for a receipt or an error body: ``prefix`` and the
    location pydantic reports (``payload.occurred_at``); never the offending value.

    Keys a sender made up are cut to plain characters and a short length: they are echoed back.
    """
    parts = [prefix]
    if isinstance(error, ValidationError) and error.errors():
        for part in error.errors()[0]["loc"]:
            cleaned = "".join(c for c in str(part) if c.isascii() and (c.isalnum() or c == "_"))[:32]
            parts.append(cleaned or "?")
    return ".".join(parts)[:100]


def check_kiosk_match(kiosk: Kiosk, payload: KioskPayload) -> RejectionCode | None:
    """Step 4: a key signs only for its own kiosk."""
    return RejectionCode.KIOSK_MISMATCH if payload.kiosk_id != kiosk.id else None


def check_not_revoked(kiosk: Kiosk) -> RejectionCode | None:
    """Step 5."""
    return RejectionCode.REVOKED_KIOSK if kiosk.status == KioskStatus.REVOKED else None


def claim_seq(session: Session, tap: SignedTap, *, digest: str) -> Duplicate | RejectionCode | None:
    """Step 6 for a tap: take its (kiosk, seq), moving the kiosk's ``last_seq`` up; or say why not.

    A retired key still verifies the taps it signed up to the ``last_seq`` of its rotation, so an
    outbox that was offline across the rotation still uploads.
    """
    kiosk, seq = tap.kiosk, tap.payload.seq
    earlier = _earlier_answer(session, kiosk_id=kiosk.id, seq=seq, digest=digest)
    if earlier is not None:
        return Duplicate(earlier)
    if _seq_taken(session, kiosk_id=kiosk.id, seq=seq):
        return RejectionCode.SEQ_CONFLICT
    if tap.key.retired_at is not None and seq > (tap.key.last_seq or 0):
        # A rotated-out key signing a seq after the rotation: a stolen old key, not an old tap.
        return RejectionCode.RETIRED_KEY
    kiosk.last_seq = max(kiosk.last_seq or 0, seq)
    session.add(kiosk)
    return None


def check_key_current(key: KioskKey) -> RejectionCode | None:
    """Step 6 for a heartbeat: it has no seq to place before a rotation, so only the current key counts."""
    return RejectionCode.RETIRED_KEY if key.retired_at is not None else None


def check_clock(payload: TapPayload, *, now: datetime, max_clock_skew: timedelta) -> RejectionCode | None:
    """Step 7 for a tap."""
    return RejectionCode.CLOCK_SKEW if payload.occurred_at > now + max_clock_skew else None


def verify_signature(public_key: str, data: bytes, signature: str) -> bool:
    """Whether *signature* (base64url) is the Ed25519 signature of *data* by *public_key* (base64url)."""
    try:
        Ed25519PublicKey.from_public_bytes(b64url_decode(public_key)).verify(b64url_decode(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True


_ERRORS: dict[RejectionCode, type[DomainError]] = {
    RejectionCode.UNKNOWN_KIOSK: UnknownKioskKey,
    RejectionCode.BAD_SIGNATURE: BadSignature,
    RejectionCode.MALFORMED: MalformedMessage,
    RejectionCode.KIOSK_MISMATCH: KioskMismatch,
    RejectionCode.REVOKED_KIOSK: KioskRevoked,
    RejectionCode.RETIRED_KEY: KeyRetired,
}


def refusal(rejection: Rejection[P], *, revoked_message: str) -> DomainError:
    """The error a heartbeat or key rotation is refused with (a tap gets a receipt instead).

    *revoked_message* says what a revoked kiosk may no longer do.
    """
    if rejection.code == RejectionCode.MALFORMED:
        return MalformedMessage(field=rejection.field)
    error = _ERRORS[rejection.code]
    return error(revoked_message if rejection.code == RejectionCode.REVOKED_KIOSK else None)


def _earlier_answer(session: Session, *, kiosk_id: str, seq: int, digest: str) -> Tap | None:
    """The stored row for these exact bytes at this (kiosk, seq): the original, or an earlier conflict."""
    return session.exec(
        select(Tap)
        .where(
            Tap.kiosk_id == kiosk_id,
            Tap.seq == seq,
            Tap.payload_digest == digest,
            or_(col(Tap.claimed_seq).is_not(None), Tap.code == RejectionCode.SEQ_CONFLICT),
        )
        .order_by(col(Tap.id))
    ).first()


def _seq_taken(session: Session, *, kiosk_id: str, seq: int) -> bool:
    return (
        session.exec(select(Tap.id).where(Tap.kiosk_id == kiosk_id, Tap.claimed_seq == seq)).first()
        is not None
    )
