"""Card-application logic shared by every ISO-DEP backend (PC/SC and nfcpy).

It speaks APDUs through a ``transmit`` function and knows the China T-Union application:
SELECT by AID, card facts from FCI tag 9F0C or, failing that, READ BINARY of EF15 (SFI 0x15).
A card without the application is identified by its UID alone. See docs/card-protocols.md §1.

Given a :class:`CardChallenger`, a T-Union card is also asked to prove it holds its issuer key:
INTERNAL AUTHENTICATE with a challenge derived from the kiosk id and a fresh random nonce
(:func:`schemas.card_auth_challenge`). The kiosk only relays the answer; the server has the
issuer check it. Kiosks never hold card keys.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from reader_agent.readers.base import CardTimeout
from schemas import CardApplication, CardAuth, CardFacts, card_auth_challenge
from schemas.messages import CARD_AUTH_NONCE_BYTES

Transmit = Callable[[bytes], bytes]
"""Send one C-APDU, return the R-APDU including SW1 SW2. Backends raise ReaderError subclasses."""

TUNION_AID = bytes.fromhex("A000000632010105")
SELECT_TUNION = bytes.fromhex("00A4040008") + TUNION_AID + b"\x00"
READ_EF15 = bytes.fromhex("00B0950000")
GET_UID = bytes.fromhex("FFCA000000")
EF15_LENGTH = 30

SW_OK = b"\x90\x00"

INTERNAL_AUTHENTICATE = 0x88
DEFAULT_AUTH_KEY_ID = 0x01
MAX_AUTH_RESPONSE = 64  # the wire contract's limit; a longer answer is no MAC we know


@dataclass(frozen=True, slots=True)
class CardChallenger:
    """What a kiosk needs to challenge cards: its id and randomness. It holds no card key."""

    kiosk_id: str
    key_id: int = DEFAULT_AUTH_KEY_ID
    random_bytes: Callable[[int], bytes] = secrets.token_bytes


@runtime_checkable
class ChallengesCards(Protocol):
    """A reader that can put a kiosk's challenge to the cards it reads (pcsc and nfc can)."""

    def use_card_challenges(self, challenger: CardChallenger | None) -> None:
        """Challenge every T-Union card read from now on (None: stop challenging)."""
        ...


@dataclass(frozen=True, slots=True)
class TUnionData:
    card_no: str
    city_code: str


class ApduError(Exception):
    """An R-APDU with a status word other than 90 00."""

    def __init__(self, sw: bytes) -> None:
        super().__init__(f"SW {sw.hex().upper()}")
        self.sw = sw


def _transmit_checked(transmit: Transmit, apdu: bytes) -> bytes:
    response = transmit(apdu)
    if len(response) < 2:
        # Not a card's answer: the card left mid-command (vpcd, for one, then returns nothing).
        # Reporting it as "no application" would turn a T-Union card into a UID-only card.
        raise CardTimeout("the card stopped answering")
    return response


def exchange(transmit: Transmit, apdu: bytes) -> bytes:
    """Send *apdu*; return the response data. Retries once on ``6C XX`` (wrong Le).

    Raises:
        ApduError: the card answered with a status other than 90 00.
        CardTimeout: the response had no status word at all (the card is gone).
    """
    response = _transmit_checked(transmit, apdu)
    if response[-2] == 0x6C and len(apdu) >= 5:
        response = _transmit_checked(transmit, apdu[:-1] + response[-1:])
    if response[-2:] != SW_OK:
        raise ApduError(response[-2:])
    return response[:-2]


def parse_tlv(data: bytes) -> dict[int, bytes]:
    """Flatten BER-TLV into tag -> value, descending into constructed tags. Tolerates junk at the end."""
    found: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag in (0x00, 0xFF):  # padding between objects
            continue
        constructed = bool(tag & 0x20)
        if tag & 0x1F == 0x1F:
            while i < len(data):
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
        if i >= len(data):
            break
        length = data[i]
        i += 1
        if length & 0x80:
            n = length & 0x7F
            if n == 0 or n > 3 or i + n > len(data):
                break
            length = int.from_bytes(data[i : i + n], "big")
            i += n
        value = data[i : i + length]
        if len(value) < length:
            break
        i += length
        found.setdefault(tag, value)
        if constructed:
            for inner_tag, inner_value in parse_tlv(value).items():
                found.setdefault(inner_tag, inner_value)
    return found


def parse_ef15(ef15: bytes) -> TUnionData:
    """Card number and city code from the 30-byte public application data file."""
    if len(ef15) < 20:
        raise ValueError(f"EF15 too short: {len(ef15)} bytes")
    digits = ef15[10:20].hex().upper()
    card_no = digits[1:]
    if not card_no.isdigit():
        raise ValueError("card number is not BCD")
    return TUnionData(card_no=card_no, city_code=ef15[2:4].hex().upper())


def read_tunion(transmit: Transmit) -> TUnionData | None:
    """Select the T-Union application and read its card facts; ``None`` if the card has none.

    Errors of the transport (the card vanished, the reader died) propagate unchanged.
    """
    try:
        fci = exchange(transmit, SELECT_TUNION)
    except ApduError:
        return None
    image = parse_tlv(fci).get(0x9F0C)
    if image is not None and len(image) >= 20:
        try:
            return parse_ef15(image)
        except ValueError:
            pass
    try:
        return parse_ef15(exchange(transmit, READ_EF15))
    except (ApduError, ValueError):
        return None


def authenticate(transmit: Transmit, challenger: CardChallenger) -> CardAuth:
    """Challenge the selected T-Union application; a refusal is reported, not raised.

    A card that answers with an error status (``6D 00``: it has no such command) is recorded as
    such: the server decides what a missing answer means for this card's binding.

    Raises:
        CardTimeout: the card stopped answering (no status word); the presentation is spent.
    """
    nonce = challenger.random_bytes(CARD_AUTH_NONCE_BYTES)
    challenge = card_auth_challenge(challenger.kiosk_id, nonce)
    apdu = bytes([0x00, INTERNAL_AUTHENTICATE, 0x00, challenger.key_id, len(challenge)]) + challenge + b"\x00"
    nonce_hex = nonce.hex().upper()
    try:
        answer = exchange(transmit, apdu)
    except ApduError as exc:
        return CardAuth(key_id=challenger.key_id, nonce=nonce_hex, status=exc.sw.hex().upper())
    usable = 1 <= len(answer) <= MAX_AUTH_RESPONSE
    return CardAuth(
        key_id=challenger.key_id,
        nonce=nonce_hex,
        status=SW_OK.hex().upper(),
        response=answer.hex().upper() if usable else None,
    )


def card_facts(uid: bytes, transmit: Transmit | None, challenger: CardChallenger | None = None) -> CardFacts:
    """The facts a kiosk reports for a card: T-Union data when present, else the UID alone.

    With a *challenger*, a T-Union card is also asked for its answer to a fresh challenge.
    """
    tunion = read_tunion(transmit) if transmit is not None else None
    if tunion is None:
        return CardFacts(uid=uid.hex().upper(), application=CardApplication.UID_ONLY)
    assert transmit is not None
    auth = authenticate(transmit, challenger) if challenger is not None else None
    return CardFacts(
        uid=uid.hex().upper(),
        application=CardApplication.TUNION,
        card_no=tunion.card_no,
        city_code=tunion.city_code,
        auth=auth,
    )
