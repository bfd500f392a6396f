"""Keyed digests derived from the server secret, one sub-key per purpose.

Card numbers (19 digits, mostly a fixed prefix) and UIDs are small search spaces, so a plain hash
would be reversible by enumeration; an HMAC under the server secret is not. Each purpose gets its
own derived key so a digest from one table can never be replayed as a match in another (a tap
payload digest is not a token hash, a UID digest is not a card-number digest).
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum


class Purpose(StrEnum):
    CARD_NUMBER = "card-number"
    CARD_UID = "card-uid"
    TAP_PAYLOAD = "tap-payload"
    API_TOKEN = "api-token"
    ENROLLMENT_CODE = "enrollment-code"
    LEDGER_EXPORT = "ledger-export"


class Keyring:
    """Computes keyed digests; holds the secret so nothing else needs to."""

    def __init__(self, secret: bytes) -> None:
        self._subkeys = {
            purpose: hmac.digest(secret, b"ecard/v1/" + purpose.value.encode(), hashlib.sha256)
            for purpose in Purpose
        }

    def digest(self, purpose: Purpose, data: bytes) -> str:
        """Hex HMAC-SHA256 of ``data`` under the purpose's sub-key (64 characters)."""
        return hmac.new(self._subkeys[purpose], data, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "Keyring(<secret>)"
