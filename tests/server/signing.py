"""Kiosk-side test helpers: a real Ed25519 key, payloads and signed envelopes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from schemas.messages import (
    CardApplication,
    CardFacts,
    ReaderBackend,
    ReaderInfo,
    SignedEnvelope,
    TapMode,
    TapPayload,
    b64url_encode,
    key_id,
)


@dataclass
class KioskKeys:
    private: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def public_b64(self) -> str:
        return b64url_encode(self.public_raw)

    @property
    def kid(self) -> str:
        return key_id(self.public_raw)

    def sign_bytes(self, payload: bytes, *, kid: str | None = None) -> SignedEnvelope:
        return SignedEnvelope(
            kid=kid or self.kid, payload=b64url_encode(payload), sig=b64url_encode(self.private.sign(payload))
        )

    def seal(self, payload: TapPayload) -> SignedEnvelope:
        return self.sign_bytes(payload.to_bytes())


def card(card_no: str | None, uid: str) -> CardFacts:
    return CardFacts(
        uid=uid,
        application=CardApplication.TUNION if card_no else CardApplication.UID_ONLY,
        card_no=card_no,
        city_code="3930" if card_no else None,
    )


def tap_payload(
    *,
    kiosk_id: str,
    seq: int,
    at: datetime,
    card_facts: CardFacts,
    mode: TapMode = TapMode.CHECKIN,
) -> TapPayload:
    return TapPayload(
        kiosk_id=kiosk_id,
        seq=seq,
        occurred_at=at,
        card=card_facts,
        mode=mode,
        reader=ReaderInfo(backend=ReaderBackend.SCRIPTED, name="test reader"),
    )
