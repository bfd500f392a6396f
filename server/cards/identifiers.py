"""Card identifiers: normalising what an operator types, and the keyed digests used for lookup.

The kiosk reports identifiers in the wire format of ``schemas.CardFacts`` (19 ASCII digits,
upper-case hex UID); an operator's input is normalised to the same form before digesting, so the
same card always yields the same digest.
"""

from __future__ import annotations

import re

from server.errors import InvalidCardIdentifier
from server.keyring import Keyring, Purpose

_CARD_NO = re.compile(r"^[0-9]{19}$")
_UID = re.compile(r"^[0-9A-F]{6,20}$")
_SEPARATORS = re.compile(r"[\s:\-]")


def normalise_card_no(text: str) -> str:
    """The 19-digit card number without spaces or dashes; raises InvalidCardIdentifier."""
    card_no = _SEPARATORS.sub("", text)
    if not _CARD_NO.match(card_no):
        raise InvalidCardIdentifier("卡号须为19位数字")
    return card_no


def normalise_uid(text: str) -> str:
    """The UID as upper-case hex without separators; raises InvalidCardIdentifier."""
    uid = _SEPARATORS.sub("", text).upper()
    if uid.startswith("0X"):
        uid = uid[2:]
    if not _UID.match(uid):
        raise InvalidCardIdentifier("UID须为6至20位十六进制字符")
    return uid


def card_no_digest(keyring: Keyring, card_no: str) -> str:
    return keyring.digest(Purpose.CARD_NUMBER, card_no.encode("ascii"))


def uid_digest(keyring: Keyring, uid: str) -> str:
    return keyring.digest(Purpose.CARD_UID, uid.encode("ascii"))
