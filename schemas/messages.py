"""Messages that cross the kiosk/server boundary (version 1).

A tap travels as a :class:`SignedEnvelope`: ``payload`` is the base64url encoding of the exact
UTF-8 JSON bytes of a :class:`TapPayload`, and ``sig`` is an Ed25519 signature over those bytes
by the kiosk key named by ``kid``. The server verifies the bytes before it parses them, so the
payload is never re-serialised to be checked.
"""

from __future__ import annotations

import base64
import hashlib
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

MAX_BATCH_SIZE = 200
"""Most envelopes one upload may carry; the agent sends at most this many per request."""

HexUid = Annotated[str, StringConstraints(pattern=r"^[0-9A-F]{6,20}$")]
CardNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{19}$")]
CityCode = Annotated[str, StringConstraints(pattern=r"^[0-9A-F]{4}$")]
Base64Url = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]*$")]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class ReaderInfo(_Message):
    backend: ReaderBackend
    name: Annotated[str, StringConstraints(max_length=200)]


class TapPayload(_Message):
    """One card presentation, as signed by the kiosk."""

    schema_version: Literal[1] = 1
    kiosk_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    seq: int = Field(ge=1, description="Per-kiosk sequence: starts at 1, strictly increasing, never reused.")
    occurred_at: AwareDatetime = Field(description="Kiosk wall-clock time of the tap, with its UTC offset.")
    card: CardFacts
    mode: TapMode = TapMode.CHECKIN
    reader: ReaderInfo

    def to_bytes(self) -> bytes:
        """The canonical bytes the kiosk signs and sends."""
        return self.model_dump_json(exclude_none=False).encode()


class SignedEnvelope(_Message):
    kid: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="Key id of the kiosk key that made the signature."
    )
    payload: Base64Url = Field(description="base64url (no padding) of the TapPayload JSON bytes.")
    sig: Base64Url = Field(description="base64url (no padding) of the Ed25519 signature over those bytes.")

    def payload_bytes(self) -> bytes:
        return b64url_decode(self.payload)

    def signature_bytes(self) -> bytes:
        return b64url_decode(self.sig)


class TapBatch(_Message):
    schema_version: Literal[1] = 1
    envelopes: list[SignedEnvelope] = Field(min_length=1, max_length=MAX_BATCH_SIZE)


class TapStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class TapDisplay(_Message):
    """What the kiosk shows the member for this tap."""

    member_name: str | None = Field(default=None, description="Masked name, e.g. 张*明.")
    event_title: str | None = None
    message: str = Field(description="One line in Chinese for the kiosk screen.")


class TapReceipt(_Message):
    """The server's final word on one envelope of a batch."""

    index: int = Field(ge=0, description="Position of the envelope in the batch it came in.")
    seq: int | None = Field(default=None, description="The tap's seq, when the payload could be read.")
    status: TapStatus
    code: str | None = Field(default=None, description="Stable machine code when rejected.")
    display: TapDisplay


class BatchReceipt(_Message):
    schema_version: Literal[1] = 1
    server_time: AwareDatetime
    receipts: list[TapReceipt]


class EnrollRequest(_Message):
    schema_version: Literal[1] = 1
    code: Annotated[str, StringConstraints(min_length=6, max_length=64)]
    public_key: Base64Url = Field(description="base64url of the raw 32-byte Ed25519 public key.")
    agent_version: Annotated[str, StringConstraints(max_length=64)] = ""


class EnrollResponse(_Message):
    schema_version: Literal[1] = 1
    kiosk_id: str
    kid: str
    kiosk_name: str
    venue_name: str
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
