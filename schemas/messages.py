"""Messages that cross the kiosk/server boundary (version 1).

A tap travels as a :class:`SignedEnvelope`: ``payload`` is the base64url encoding of the exact
UTF-8 JSON bytes of a :class:`TapPayload`, and ``sig`` is an Ed25519 signature over those bytes
by the kiosk key named by ``kid``. The server verifies the bytes before it parses them, so the
payload is never re-serialised to be checked. Heartbeats (:class:`HeartbeatPayload`) and key
rotations (:class:`KeyRotationPayload`) travel in the same envelope form; each payload kind has
its own required fields and forbids others, so one kind never parses as another.

Every field is bounded, so that no value a kiosk (or anyone) sends can overflow a column or a
computation on the server: times lie in [2000, 2100) with a UTC offset within ±14:00, a seq is at
most :data:`MAX_SEQ` (so its successor still fits every column), counters fit their columns, text
carries no NUL or other control characters, ``kid`` has its exact format and a signed payload is
at most :data:`MAX_SIGNED_PAYLOAD_BYTES` bytes. A value outside its bounds makes the message
``malformed``; in a batch, only the envelope it is in.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, StringConstraints

MAX_BATCH_SIZE = 200
"""Most envelopes one upload may carry; the agent sends at most this many per request."""

MAX_SEQ = 2**53 - 1
"""The highest seq a kiosk may sign: the largest integer every JSON reader keeps exact. Its
successor (a replacement device's ``first_seq``) still fits every 64-bit column with room to spare."""

MAX_INT32 = 2**31 - 1
"""Counters stored in 32-bit columns (``outbox_pending``) stay at or below this."""

MAX_SIGNED_PAYLOAD_BYTES = 4096
"""Largest signed payload (a tap with a card answer is under 1 KiB)."""

_MAX_PAYLOAD_CHARS = -(-MAX_SIGNED_PAYLOAD_BYTES * 4 // 3)  # unpadded base64url of that many bytes
_SIGNATURE_CHARS = 86  # unpadded base64url of a 64-byte Ed25519 signature
_PUBLIC_KEY_CHARS = 43  # unpadded base64url of a 32-byte Ed25519 public key (64 chars allowed)

EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)
MAX_UTC_OFFSET = timedelta(hours=14)


def _within_time_window(value: datetime) -> datetime:
    # The local year is checked before anything converts to UTC: converting year 1 at +14:00, or
    # year 9999 at -14:00, overflows Python's datetime.
    offset = value.utcoffset()
    if offset is None or abs(offset) > MAX_UTC_OFFSET:
        raise ValueError("UTC offset must be within ±14:00")
    if not EARLIEST_TIME.year <= value.year < LATEST_TIME.year or not EARLIEST_TIME <= value < LATEST_TIME:
        raise ValueError("time must lie between 2000-01-01 and 2100-01-01 (UTC)")
    return value


WireTime = Annotated[AwareDatetime, AfterValidator(_within_time_window)]
"""A timestamp with its UTC offset, in [2000-01-01, 2100-01-01) UTC, offset within ±14:00."""

_NO_CONTROLS = r"^[^\x00-\x1f\x7f]*$"


def Text(max_length: int, *, min_length: int = 0) -> StringConstraints:
    """A string of at most *max_length* characters with no NUL or other control characters."""
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=_NO_CONTROLS)


KioskId = Annotated[str, Text(64, min_length=1)]
Kid = Annotated[str, StringConstraints(pattern=r"^ed25519:[0-9a-f]{16}$")]
"""A key id: ``ed25519:`` and the first 16 hex digits of the SHA-256 of the raw public key."""
Seq = Annotated[int, Field(ge=1, le=MAX_SEQ)]

HexUid = Annotated[str, StringConstraints(pattern=r"^[0-9A-F]{6,20}$")]
CardNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{19}$")]
CityCode = Annotated[str, StringConstraints(pattern=r"^[0-9A-F]{4}$")]
Base64Url = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]*$")]
# Bounded, not exact: a key of the wrong length is the server's ``bad_public_key``, a clearer answer.
PublicKeyB64 = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_-]*$", max_length=_PUBLIC_KEY_CHARS + 21)
]
SignatureB64 = Annotated[str, StringConstraints(pattern=rf"^[A-Za-z0-9_-]{{{_SIGNATURE_CHARS}}}$")]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignedPayload(_Message):
    """A message the kiosk signs and sends inside a :class:`SignedEnvelope`."""

    def to_bytes(self) -> bytes:
        """The canonical bytes the kiosk signs and sends."""
        return self.model_dump_json(exclude_none=False).encode()


class CardApplication(StrEnum):
    """Which card application the reader read the card facts from."""

    TUNION = "tunion"  # China T-Union (交通联合), AID A000000632010105
    UID_ONLY = "uid_only"  # no readable application: the anti-collision UID alone


class ReaderBackend(StrEnum):
    PCSC = "pcsc"
    NFC = "nfc"
    SERIAL = "serial"
    SCRIPTED = "scripted"


class TapMode(StrEnum):
    CHECKIN = "checkin"
    TRANSFER_IN = "transfer_in"
    # Bind this card to the member a secretary is enrolling on the web; never counts as attendance.
    ENROL = "enrol"
    # Open the 留言亭 on the member's phone: the receipt carries a one-time link; never attendance.
    MESSAGE = "message"


class CardAuthAlgorithm(StrEnum):
    """How the card computes its answer to the challenge (the issuer knows the key behind it)."""

    SM4_CMAC = "sm4-cmac"  # 16-byte SM4-CMAC under the card's key, diversified from the issuer's


CARD_AUTH_NONCE_BYTES = 16
CARD_AUTH_CHALLENGE_BYTES = 16
_CARD_AUTH_CONTEXT = b"ecard/card-auth/v1"


class CardAuth(_Message):
    """The kiosk's challenge to the card's issuer key, and what the card answered.

    The kiosk draws a fresh random ``nonce`` per presentation and sends the card
    :func:`card_auth_challenge` (kiosk id, nonce) in an INTERNAL AUTHENTICATE command; the card
    answers with a MAC under its own key, which only the issuer can check. The kiosk holds no
    card key. The challenge itself is not sent: the server recomputes it from the signed
    payload, so an answer is bound to the kiosk that asked for it.
    """

    algorithm: CardAuthAlgorithm = CardAuthAlgorithm.SM4_CMAC
    key_id: int = Field(ge=0, le=255, description="Key the kiosk asked for (P2 of INTERNAL AUTHENTICATE).")
    nonce: Annotated[str, StringConstraints(pattern=r"^[0-9A-F]{32}$")] = Field(
        description="The kiosk's 16 random bytes for this presentation, upper-case hex."
    )
    status: Annotated[str, StringConstraints(pattern=r"^[0-9A-F]{4}$")] = Field(
        description="The card's status word, upper-case hex: 9000 when it answered, e.g. 6D00 when it cannot."
    )
    response: Annotated[str, StringConstraints(pattern=r"^(?:[0-9A-F]{2}){1,64}$")] | None = Field(
        default=None, description="The card's answer (upper-case hex); null when it gave none."
    )


def card_auth_challenge(kiosk_id: str, nonce: bytes) -> bytes:
    """The 16-byte challenge a kiosk puts to a card: SM3(context ‖ len16 ‖ kiosk id ‖ nonce)[:16].

    Why derived, and not just random: an answer is only good for the kiosk that asked. Someone
    who copies a (nonce, answer) pair out of kiosk A's outbox cannot present it as a tap of
    kiosk B: the server derives B's challenge from the same nonce and the card's MAC no longer
    fits. Freshness comes from the kiosk's random nonce, which a clone cannot predict, and from
    the server accepting each challenge once; a pair replayed as a new tap of the same kiosk is
    refused as already used. (The seq would make the challenge unique without server state,
    but it is only allocated when the tap is committed, after the card has left the reader.)
    """
    from cryptography.hazmat.primitives import hashes

    kiosk = kiosk_id.encode()
    digest = hashes.Hash(hashes.SM3())
    digest.update(_CARD_AUTH_CONTEXT + len(kiosk).to_bytes(2, "big") + kiosk + nonce)
    return digest.finalize()[:CARD_AUTH_CHALLENGE_BYTES]


class CardFacts(_Message):
    """What the kiosk read from the card. Raw identifiers: never logged or stored unhashed."""

    uid: HexUid = Field(description="Anti-collision UID (or PUPI), upper-case hex.")
    application: CardApplication
    card_no: CardNumber | None = Field(
        default=None, description="19-digit T-Union card number (EF15 bytes 10..19, first nibble dropped)."
    )
    city_code: CityCode | None = Field(
        default=None, description="GB/T 13497 city code from EF15 bytes 2..3 (Xiamen: 3930)."
    )
    auth: CardAuth | None = Field(
        default=None,
        description="The card's answer to the kiosk's challenge; null when the kiosk did not ask "
        "(a UID-only reader, a card without the T-Union application).",
    )


class ReaderInfo(_Message):
    backend: ReaderBackend
    name: Annotated[str, Text(200)]


class TapPayload(SignedPayload):
    """One card presentation, as signed by the kiosk."""

    schema_version: Literal[1] = 1
    kiosk_id: KioskId
    seq: Seq = Field(description="Per-kiosk sequence: starts at 1, strictly increasing, never reused.")
    occurred_at: WireTime = Field(description="Kiosk wall-clock time of the tap, with its UTC offset.")
    card: CardFacts
    mode: TapMode = TapMode.CHECKIN
    reader: ReaderInfo


class SignedEnvelope(_Message):
    kid: Kid = Field(description="Key id of the kiosk key that made the signature.")
    payload: Annotated[Base64Url, StringConstraints(max_length=_MAX_PAYLOAD_CHARS)] = Field(
        description="base64url (no padding) of the signed payload's JSON bytes (a TapPayload in a batch), "
        f"at most {MAX_SIGNED_PAYLOAD_BYTES} bytes."
    )
    sig: SignatureB64 = Field(description="base64url (no padding) of the Ed25519 signature over those bytes.")

    def payload_bytes(self) -> bytes:
        return b64url_decode(self.payload)

    def signature_bytes(self) -> bytes:
        return b64url_decode(self.sig)


class TapBatch(_Message):
    """What a kiosk uploads: its oldest pending taps, in seq order."""

    schema_version: Literal[1] = 1
    envelopes: list[SignedEnvelope] = Field(min_length=1, max_length=MAX_BATCH_SIZE)


class UncheckedTapBatch(_Message):
    """A :class:`TapBatch` as the server first reads it: the batch's own shape is checked, each
    envelope is not yet. The server checks every envelope on its own, so one envelope that breaks
    the contract gets its own ``malformed`` receipt (naming the field) and its neighbours are
    decided as usual; only a body that is not a batch at all is refused whole."""

    schema_version: Literal[1] = 1
    envelopes: list[JsonValue] = Field(min_length=1, max_length=MAX_BATCH_SIZE)


class TapStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class TapDisplay(_Message):
    """What the kiosk shows the member for this tap."""

    member_name: str | None = Field(default=None, max_length=100, description="Masked name, e.g. 张*明.")
    event_title: str | None = Field(default=None, max_length=200)
    message: str = Field(max_length=200, description="One line in Chinese for the kiosk screen.")
    link: str | None = Field(
        default=None,
        max_length=300,
        pattern=r"^https?://[!-~]+$",
        description="Message mode: a one-time link for the member's phone, shown as a QR code.",
    )


class TapReceipt(_Message):
    """The server's final word on one envelope of a batch."""

    index: int = Field(
        ge=0, lt=MAX_BATCH_SIZE, description="Position of the envelope in the batch it came in."
    )
    seq: int | None = Field(
        default=None, ge=1, le=MAX_SEQ, description="The tap's seq, when the payload could be read."
    )
    status: TapStatus
    code: str | None = Field(default=None, max_length=32, description="Stable machine code when rejected.")
    field: str | None = Field(
        default=None,
        max_length=100,
        description="For a malformed envelope: where its first problem is, e.g. `kid`, `payload` (too "
        "long, not base64url) or `payload.occurred_at` (inside the signed payload). Null otherwise.",
    )
    display: TapDisplay


class BatchReceipt(_Message):
    schema_version: Literal[1] = 1
    server_time: AwareDatetime
    receipts: list[TapReceipt] = Field(max_length=MAX_BATCH_SIZE)


class EnrollRequest(_Message):
    schema_version: Literal[1] = 1
    code: Annotated[str, Text(64, min_length=6)]
    public_key: PublicKeyB64 = Field(description="base64url of the raw 32-byte Ed25519 public key.")
    agent_version: Annotated[str, Text(64)] = ""


class EnrollResponse(_Message):
    schema_version: Literal[1] = 1
    kiosk_id: str = Field(max_length=64)
    kid: str = Field(max_length=64)
    kiosk_name: str = Field(max_length=200)
    venue_name: str = Field(max_length=200)
    server_time: AwareDatetime
    first_seq: int = Field(
        default=1,
        ge=1,
        le=MAX_SEQ + 1,
        description="The seq of this device's first tap: a replacement device enrolled for an existing "
        "kiosk continues after the last seq the server received, so its taps never collide.",
    )


class ReaderState(StrEnum):
    """The kiosk's reader as its agent last saw it."""

    STARTING = "starting"  # no reader opened yet since the agent started
    READY = "ready"  # open and polling for cards
    UNAVAILABLE = "unavailable"  # cannot be opened (no device, no permission, pcscd down)
    DISCONNECTED = "disconnected"  # was open, then lost; the agent keeps reopening it
    FAILED = "failed"  # any other reader error


BootId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class HeartbeatPayload(SignedPayload):
    """A kiosk's periodic health report, signed by the kiosk key and sent in a SignedEnvelope.

    ``boot_id`` and ``counter`` order the heartbeats of one agent run, so a replayed old
    heartbeat cannot make a dead kiosk look alive.
    """

    schema_version: Literal[1] = 1
    kind: Literal["heartbeat"] = "heartbeat"
    kiosk_id: KioskId
    boot_id: BootId = Field(description="Random per agent start (32 lower-case hex digits).")
    counter: int = Field(ge=1, le=MAX_SEQ, description="1 for the first heartbeat of a boot, then +1.")
    sent_at: WireTime = Field(description="Kiosk wall-clock time when the heartbeat was sent.")
    interval_s: float = Field(
        gt=0, le=86400, allow_inf_nan=False, description="How often this kiosk sends heartbeats."
    )
    previous_round_trip_ms: int | None = Field(
        default=None,
        ge=0,
        le=600_000,
        description="Round trip of this boot's previous heartbeat; narrows the clock offset estimate.",
    )
    mode: TapMode
    outbox_pending: int = Field(ge=0, le=MAX_INT32, description="Signed taps waiting for upload.")
    oldest_pending_age_s: float | None = Field(
        default=None,
        ge=0,
        le=200 * 365 * 86400,
        allow_inf_nan=False,
        description="Age of the oldest waiting tap, by the kiosk clock.",
    )
    outbox_quarantined: int = Field(
        default=0,
        ge=0,
        le=MAX_INT32,
        description="Signed taps the server kept refusing, set aside on the kiosk (kept, never "
        "deleted) so that they no longer hold up the taps behind them.",
    )
    oldest_quarantined_seq: int | None = Field(
        default=None, ge=1, le=MAX_SEQ, description="The seq of the oldest quarantined tap (null: none)."
    )
    last_seq: int = Field(ge=0, le=MAX_SEQ, description="Last seq the kiosk allocated (0: none yet).")
    agent_version: Annotated[str, Text(64)] = ""
    reader_state: ReaderState
    reader_name: Annotated[str, Text(200)] = ""


class HeartbeatAck(_Message):
    schema_version: Literal[1] = 1
    server_time: AwareDatetime = Field(description="When the server received the heartbeat.")
    clock_offset_ms: int = Field(
        ge=-MAX_SEQ, le=MAX_SEQ, description="The server's estimate of server clock minus kiosk clock."
    )


class KeyRotationPayload(SignedPayload):
    """A kiosk asking to replace its key; signed by the key being replaced."""

    schema_version: Literal[1] = 1
    kind: Literal["key_rotation"] = "key_rotation"
    kiosk_id: KioskId
    new_public_key: PublicKeyB64 = Field(description="base64url of the new raw 32-byte Ed25519 public key.")
    last_seq: int = Field(
        ge=0,
        le=MAX_SEQ,
        description="Last seq signed with the old key; old-key taps above it are refused afterwards.",
    )
    requested_at: WireTime


class KeyRotationRequest(_Message):
    schema_version: Literal[1] = 1
    envelope: SignedEnvelope = Field(description="The KeyRotationPayload, signed by the current key.")
    new_key_sig: SignatureB64 = Field(
        description="The new key's signature over the same payload bytes (proof it holds that key)."
    )


class KeyRotationResponse(_Message):
    schema_version: Literal[1] = 1
    kiosk_id: str = Field(max_length=64)
    kid: str = Field(max_length=64, description="Key id of the new key: taps are signed with it from now on.")
    previous_kid: str = Field(max_length=64)
    server_time: AwareDatetime


_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url; raises ValueError on anything else."""
    if not _B64URL.match(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public_key_raw: bytes) -> str:
    """The kid of an Ed25519 public key: a short, stable fingerprint of its raw bytes."""
    return "ed25519:" + hashlib.sha256(public_key_raw).hexdigest()[:16]
