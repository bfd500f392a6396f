"""The card reader interface every backend implements.

Error hierarchy (every backend raises only these, always ``from`` the library's exception)::

    ReaderError
    ├── ReaderUnavailable    no such device, no permission, pcscd not running
    ├── ReaderDisconnected   lost mid-session: unplugged, port closed, pcscd restarted
    └── CardReadError        a card was present but could not be read
        ├── CardTimeout      the card stopped answering (removed mid-APDU, too slow)
        └── UnsupportedCard  the card answered, but nothing we can identify it by

The agent loop treats ``ReaderUnavailable``/``ReaderDisconnected`` as "close and reopen with
backoff" and ``CardReadError`` as "tell the member to tap again"; nothing else escapes a backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from schemas import CardFacts, ReaderBackend


class ReaderError(Exception):
    """Base of every error a reader backend raises."""

    code = "reader_error"


class ReaderUnavailable(ReaderError):
    code = "reader_unavailable"


class ReaderDisconnected(ReaderError):
    code = "reader_disconnected"


class CardReadError(ReaderError):
    code = "card_read_error"


class CardTimeout(CardReadError):
    code = "card_timeout"


class UnsupportedCard(CardReadError):
    code = "unsupported_card"


@dataclass(frozen=True, slots=True)
class CardRead:
    """One presentation of a card, as read by a backend (not yet numbered or signed)."""

    card: CardFacts
    backend: ReaderBackend
    reader_name: str


class Reader(Protocol):
    """A card reader, pull style.

    ``poll`` returns each presentation of a card exactly once: a card left lying on the reader
    is not reported again until it has been removed and presented anew.
    """

    @property
    def name(self) -> str:
        """Human-readable reader name (shown in logs and carried in every tap)."""
        ...

    def poll(self, timeout: float) -> CardRead | None:
        """Wait up to *timeout* seconds for a new card presentation.

        Returns:
            The card read, or ``None`` when no new card arrived in time.

        Raises:
            ReaderUnavailable, ReaderDisconnected: the reader is gone; close it and open anew.
            CardReadError: a card was presented but could not be read; the presentation is spent.
        """
        ...

    def close(self) -> None:
        """Release the device. Idempotent."""
        ...
