"""Asking the card issuer whether a card's answer to a kiosk challenge is genuine.

Real T-Union card keys live in the issuer's secure module (docs/card-protocols.md §6.3): neither kiosks
nor this server can check an answer themselves, so the check sits behind :class:`IssuerVerifier`.
Production talks to the card company's service with :class:`HttpIssuerVerifier`;
``firmware_sim.issuer`` serves the same HTTP API for tests and demos (this module never imports it).

Error contract: a verifier answers True/False about the card, or raises
:class:`IssuerUnavailable` when it could not get an answer (timeout, refused connection, 5xx, an
answer it cannot read). "Unavailable" is never reported as "invalid": a member must not be
turned away as a clone because the issuer's network is down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from schemas.messages import CardAuthAlgorithm

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

VERIFY_PATH = "/v1/internal-auth/verify"


class IssuerUnavailable(Exception):
    """The issuer gave no usable answer; nothing is known about the card."""


@dataclass(frozen=True, slots=True)
class IssuerMacCheck:
    """One card answer for the issuer to judge. ``card_no`` is sensitive: never log it whole."""

    card_no: str
    key_id: int
    algorithm: CardAuthAlgorithm
    challenge: bytes
    response: bytes

    def __repr__(self) -> str:
        return f"IssuerMacCheck(card_no=****{self.card_no[-4:]}, key_id={self.key_id})"


class IssuerVerifier(Protocol):
    """The card issuer's judgement of INTERNAL AUTHENTICATE answers."""

    def verify(self, check: IssuerMacCheck) -> bool:
        """Whether *check.response* is card *check.card_no*'s answer to *check.challenge*.

        Returns:
            True for the card's own answer; False for any other (a wrong key, an unknown card,
            a key id or algorithm the card does not have).

        Raises:
            IssuerUnavailable: no answer could be had; the caller must not treat it as False.
        """
        ...


class HttpIssuerVerifier:
    """An :class:`IssuerVerifier` over the issuer's HTTP API (see ``firmware_sim.issuer``).

    ``POST {base_url}/v1/internal-auth/verify`` with the card number, key id, algorithm,
    challenge and response (hex); the issuer answers 200 ``{"valid": bool}``. Anything else,
    including 4xx, is :class:`IssuerUnavailable`: a request the issuer refuses is our problem to
    fix, not evidence against the card.
    """

    def __init__(self, base_url: str, *, timeout: float, client: httpx.Client | None = None) -> None:
        import httpx

        self._base_url = base_url.rstrip("/")
        self._client = client or httpx.Client(timeout=httpx.Timeout(timeout))
        self._owns_client = client is None

    def __repr__(self) -> str:
        return f"HttpIssuerVerifier({self._base_url!r})"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def verify(self, check: IssuerMacCheck) -> bool:
        import httpx

        body = {
            "card_no": check.card_no,
            "key_id": check.key_id,
            "algorithm": check.algorithm.value,
            "challenge": check.challenge.hex().upper(),
            "response": check.response.hex().upper(),
        }
        try:
            response = self._client.post(self._base_url + VERIFY_PATH, json=body)
        except httpx.TimeoutException as exc:
            raise IssuerUnavailable(f"the issuer at {self._base_url} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise IssuerUnavailable(f"cannot reach the issuer at {self._base_url}: {exc}") from exc
        if response.status_code != 200:
            raise IssuerUnavailable(f"the issuer at {self._base_url} answered HTTP {response.status_code}")
        try:
            valid = response.json()["valid"]
        except (ValueError, KeyError, TypeError) as exc:
            raise IssuerUnavailable(f"the issuer at {self._base_url} sent an unreadable answer") from exc
        if not isinstance(valid, bool):
            raise IssuerUnavailable(f"the issuer at {self._base_url} sent an unreadable answer")
        return valid


class OutageMemo:
    """Wraps a verifier for one batch: after one :class:`IssuerUnavailable`, stop asking.

    A batch may hold 200 taps; with the issuer down, waiting out its timeout 200 times would
    outlast the kiosk's upload timeout and the whole batch would be sent again, and again.
    """

    def __init__(self, verifier: IssuerVerifier) -> None:
        self._verifier = verifier
        self._outage: IssuerUnavailable | None = None

    def verify(self, check: IssuerMacCheck) -> bool:
        if self._outage is not None:
            raise IssuerUnavailable(f"still unavailable in this batch: {self._outage}")
        try:
            return self._verifier.verify(check)
        except IssuerUnavailable as exc:
            log.warning("card issuer unavailable: %s", exc)
            self._outage = exc
            raise
