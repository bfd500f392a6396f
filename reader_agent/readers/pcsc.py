"""PC/SC contactless readers through pcscd, using pyscard's low-level ``smartcard.scard`` API.

Spec: ``pcsc`` (the first reader pcscd lists) or ``pcsc:<reader-name substring>``, matched
case-insensitively, e.g. ``pcsc:PICC`` or ``pcsc:Virtual PCD 00 01``. Pick a reader by name,
never by index: pcscd numbers readers in plug-in order.

==============================  ============================================================
Reads                           UID of any ISO 14443 card (``FF CA 00 00 00``); for cards with
                                the China T-Union application (互联互通 易通卡), card number
                                and city code (SELECT AID, FCI tag 9F0C, else EF15); once
                                the agent calls ``use_card_challenges``, the card's answer to
                                a kiosk challenge (INTERNAL AUTHENTICATE, one more APDU)
Card technologies               whatever the reader presents as a PC/SC card: ISO 14443-4
                                CPU cards (T=1); MIFARE Classic-like cards UID only
Reports removal                 yes, internally: pcscd's reader state (and its event counter)
                                tells one presentation from the next, so a card left on the
                                reader is reported once and a fast re-tap is not missed
Detects reader loss             yes: pcscd stopped or reader unplugged -> ReaderDisconnected
Card on the reader at open      counts as one presentation (read on the first poll)
Latency                         pcscd polls readers without card-event interrupts (vpcd among
                                them) every 0.4 s, so a tap is seen 0-0.4 s after the card
                                lands; the read itself is 2 APDUs (GET DATA, SELECT), ~2 ms
                                on vpcd, more over a real RF link
==============================  ============================================================

Known quirks (docs/card-protocols.md §2.3, §3):

* ACR122U: the kernel's ``pn533_usb`` claims it first (blacklist the module); the free CCID
  driver lists it as problematic. pcscd names it like "ACS ACR122U PICC Interface 00 00".
* ACR1252U: two slots, PICC (contactless) and SAM; the SAM slot may be listed first, so use
  ``pcsc:PICC``.
* vsmartcard-vpcd (the CI simulator): insert = TCP connect, remove = close; pcscd notices either
  within one 0.4 s poll.
* A card is connected in shared mode inside a transaction and left powered (``LEAVE_CARD``), so
  other PC/SC applications on the kiosk keep working.

A :class:`PcscReader` is not thread-safe: pcsc-lite serialises calls on one context, so a
second thread's call would wait behind a blocked ``poll``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, NoReturn

from pydantic import ValidationError
from smartcard import scard

from reader_agent.cardapp import GET_UID, ApduError, CardChallenger, card_facts, exchange
from reader_agent.readers.base import (
    CardRead,
    CardReadError,
    CardTimeout,
    ReaderDisconnected,
    ReaderError,
    ReaderUnavailable,
    UnsupportedCard,
)
from schemas import CardFacts, ReaderBackend
from schemas.masking import mask_uid

log = logging.getLogger(__name__)

# pcscd is gone (stopped, restarted: the context is dead) or the reader was unplugged.
_READER_GONE = frozenset(
    {
        scard.SCARD_E_NO_SERVICE,
        scard.SCARD_E_SERVICE_STOPPED,
        scard.SCARD_E_INVALID_HANDLE,
        scard.SCARD_E_UNKNOWN_READER,
        scard.SCARD_E_READER_UNAVAILABLE,
        scard.SCARD_E_NO_READERS_AVAILABLE,
        scard.SCARD_F_COMM_ERROR,
        scard.SCARD_F_INTERNAL_ERROR,
        scard.SCARD_F_UNKNOWN_ERROR,
    }
)
# The card left (or stopped answering) between "present" and the end of the read.
_CARD_GONE = frozenset(
    {
        scard.SCARD_W_REMOVED_CARD,
        scard.SCARD_E_NO_SMARTCARD,
        scard.SCARD_W_RESET_CARD,
        scard.SCARD_W_UNPOWERED_CARD,
        scard.SCARD_W_UNRESPONSIVE_CARD,
        scard.SCARD_E_NOT_TRANSACTED,
        scard.SCARD_E_COMM_DATA_LOST,
        scard.SCARD_E_TIMEOUT,
        scard.SCARD_F_WAITED_TOO_LONG,
    }
)
_CARD_UNSUPPORTED = frozenset(
    {
        scard.SCARD_E_PROTO_MISMATCH,
        scard.SCARD_W_UNSUPPORTED_CARD,
        scard.SCARD_E_CARD_UNSUPPORTED,
        scard.SCARD_E_INVALID_ATR,
    }
)

_STATE_CHANGED: int = scard.SCARD_STATE_CHANGED
_STATE_READER_GONE: int = scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE
_STATE_PRESENT: int = scard.SCARD_STATE_PRESENT
_MAX_WAIT_MS = 0x7FFFFFFE  # below INFINITE


def _unsigned(hresult: Any) -> int:
    """pyscard returns hresults as Python ints that may be negative on some platforms."""
    return int(hresult) & 0xFFFFFFFF


def _describe(hresult: int) -> str:
    try:
        text = str(scard.SCardGetErrorMessage(hresult))
    except (scard.error, SystemError, TypeError):
        text = "unknown error"
    return f"{text} (0x{hresult:08X})"


def _raise(hresult: int, doing: str, default: type[ReaderError]) -> NoReturn:
    """Raise the base.py error for a failed PC/SC call; *default* covers codes not listed above."""
    error: type[ReaderError]
    if hresult in _READER_GONE:
        error = ReaderDisconnected
    elif hresult in _CARD_GONE:
        error = CardTimeout
    elif hresult in _CARD_UNSUPPORTED:
        error = UnsupportedCard
    else:
        error = default
    raise error(f"{doing}: {_describe(hresult)}")


class PcscReader:
    """One PC/SC reader slot. Open it with :func:`open_reader`."""

    def __init__(self, context: int, reader_name: str) -> None:
        self._context: int | None = context
        self._name = reader_name
        # What we last learned from pcscd, fed back so GetStatusChange blocks until it changes.
        self._known_state: int = scard.SCARD_STATE_UNAWARE
        # Event counter of the presentation already reported (or spent by a failed read);
        # None while the reader is empty.
        self._spent_presentation: int | None = None
        self._challenger: CardChallenger | None = None

    @property
    def name(self) -> str:
        return self._name

    def use_card_challenges(self, challenger: CardChallenger | None) -> None:
        """Challenge every T-Union card read from now on (see ``reader_agent.cardapp``)."""
        self._challenger = challenger

    def poll(self, timeout: float) -> CardRead | None:
        """Wait up to *timeout* seconds for a new card and read it while it is on the reader.

        A card already lying on the reader when it was opened counts as a new presentation.
        See :class:`reader_agent.readers.base.Reader` for the contract.
        """
        context = self._open_context()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            remaining = deadline - time.monotonic()
            state = self._wait_for_change(context, remaining)
            if state is not None and self._is_new_presentation(state):
                return self._read_card(context)
            if remaining <= 0:
                return None

    def close(self) -> None:
        context, self._context = self._context, None
        if context is None:
            return
        try:
            hresult = _unsigned(scard.SCardReleaseContext(context))
        except (scard.error, SystemError) as exc:
            log.debug("releasing the PC/SC context failed: %s", exc)
            return
        if hresult != scard.SCARD_S_SUCCESS:
            # Normal after pcscd went away: its side of the context is already gone.
            log.debug("releasing the PC/SC context: %s", _describe(hresult))

    def _open_context(self) -> int:
        if self._context is None:
            raise ReaderUnavailable(f"PC/SC reader {self._name!r} is closed")
        return self._context

    def _wait_for_change(self, context: int, seconds: float) -> int | None:
        """The reader's new state, or None when nothing changed within *seconds*."""
        wait_ms = min(_MAX_WAIT_MS, max(0, round(seconds * 1000)))
        try:
            hresult, states = scard.SCardGetStatusChange(context, wait_ms, [(self._name, self._known_state)])
        except (scard.error, SystemError) as exc:
            raise ReaderDisconnected(f"waiting for a card on {self._name!r}: {exc}") from exc
        hresult = _unsigned(hresult)
        if hresult in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
            return None
        if hresult != scard.SCARD_S_SUCCESS:
            _raise(hresult, f"waiting for a card on {self._name!r}", ReaderDisconnected)
        state = int(states[0][1])
        if state & _STATE_READER_GONE:
            raise ReaderDisconnected(f"PC/SC reader {self._name!r} is no longer available")
        self._known_state = state & ~_STATE_CHANGED
        return self._known_state

    def _is_new_presentation(self, state: int) -> bool:
        if not state & _STATE_PRESENT:
            self._spent_presentation = None
            return False
        # pcsc-lite counts insertions and removals in the upper 16 bits of the state, so a card
        # taken away and put back between two polls is still a new presentation. Where pcscd keeps
        # no counter it stays 0, and the empty -> present transition alone marks a new card.
        presentation = state >> 16
        if presentation == self._spent_presentation:
            return False
        self._spent_presentation = presentation
        return True

    def _read_card(self, context: int) -> CardRead:
        """Read the card on the reader; the presentation is spent whatever the outcome."""
        started = time.monotonic()
        hcard, protocol = self._connect(context)
        try:
            self._call(scard.SCardBeginTransaction, hcard, doing="locking the card")
            try:
                facts = self._read_facts(hcard, protocol)
            finally:
                self._release(scard.SCardEndTransaction, hcard)
        finally:
            self._release(scard.SCardDisconnect, hcard)
        log.debug(
            "read card %s (%s) on %r in %.0f ms",
            mask_uid(facts.uid),
            facts.application,
            self._name,
            (time.monotonic() - started) * 1000,
        )
        return CardRead(card=facts, backend=ReaderBackend.PCSC, reader_name=self._name)

    def _connect(self, context: int) -> tuple[int, int]:
        try:
            hresult, hcard, protocol = scard.SCardConnect(
                context, self._name, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T1
            )
        except (scard.error, SystemError) as exc:
            raise CardReadError(f"connecting to the card on {self._name!r}: {exc}") from exc
        hresult = _unsigned(hresult)
        if hresult != scard.SCARD_S_SUCCESS:
            _raise(hresult, f"connecting to the card on {self._name!r}", CardReadError)
        return int(hcard), int(protocol)

    def _read_facts(self, hcard: int, protocol: int) -> CardFacts:
        def transmit(apdu: bytes) -> bytes:
            try:
                hresult, response = scard.SCardTransmit(hcard, protocol, list(apdu))
            except (scard.error, SystemError) as exc:
                raise CardReadError(f"exchanging an APDU with the card: {exc}") from exc
            hresult = _unsigned(hresult)
            if hresult != scard.SCARD_S_SUCCESS:
                _raise(hresult, "exchanging an APDU with the card", CardReadError)
            if len(response) < 2:
                # vpcd (and some readers) report a card lost mid-APDU as success with no data.
                raise CardTimeout("the card stopped answering (no status word)")
            return bytes(response)

        try:
            uid = exchange(transmit, GET_UID)
        except ApduError as exc:
            raise UnsupportedCard(f"reader {self._name!r} returned no UID ({exc})") from exc
        try:
            return card_facts(uid, transmit, self._challenger)
        except ValidationError as exc:
            problems = exc.error_count()
            raise UnsupportedCard(f"the card's identifiers are malformed ({problems} problems)") from exc

    def _call(self, function: Any, hcard: int, *, doing: str) -> None:
        try:
            hresult = _unsigned(function(hcard))
        except (scard.error, SystemError) as exc:
            raise CardReadError(f"{doing}: {exc}") from exc
        if hresult != scard.SCARD_S_SUCCESS:
            _raise(hresult, doing, CardReadError)

    def _release(self, function: Any, hcard: int) -> None:
        """End a transaction or connection; failures only mean the card or pcscd left already."""
        try:
            hresult = _unsigned(function(hcard, scard.SCARD_LEAVE_CARD))
        except (scard.error, SystemError) as exc:
            log.debug("releasing the card handle: %s", exc)
            return
        if hresult != scard.SCARD_S_SUCCESS:
            log.debug("releasing the card handle: %s", _describe(hresult))


def open_reader(target: str) -> PcscReader:
    """Open the first PC/SC reader whose name contains *target* ("" = the first reader).

    Raises:
        ReaderUnavailable: pcscd is not running, no reader is connected, or none matches.
    """
    try:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    except (scard.error, SystemError) as exc:
        raise ReaderUnavailable(f"cannot reach pcscd: {exc}") from exc
    hresult = _unsigned(hresult)
    if hresult != scard.SCARD_S_SUCCESS:
        raise ReaderUnavailable(f"cannot reach pcscd (is it running?): {_describe(hresult)}")
    context = int(context)
    try:
        name = _choose_reader(context, target)
    except BaseException:
        with contextlib.suppress(scard.error, SystemError):
            scard.SCardReleaseContext(context)
        raise
    log.info("opened PC/SC reader %r", name)
    return PcscReader(context, name)


def _choose_reader(context: int, target: str) -> str:
    try:
        hresult, names = scard.SCardListReaders(context, [])
    except (scard.error, SystemError) as exc:
        raise ReaderUnavailable(f"listing PC/SC readers: {exc}") from exc
    hresult = _unsigned(hresult)
    if hresult == scard.SCARD_E_NO_READERS_AVAILABLE or (hresult == scard.SCARD_S_SUCCESS and not names):
        raise ReaderUnavailable("pcscd lists no card reader (is one plugged in?)")
    if hresult != scard.SCARD_S_SUCCESS:
        raise ReaderUnavailable(f"listing PC/SC readers: {_describe(hresult)}")
    wanted = target.strip().casefold()
    for name in names:
        if wanted in str(name).casefold():
            return str(name)
    listed = ", ".join(repr(str(name)) for name in names)
    raise ReaderUnavailable(f"no PC/SC reader name contains {target!r}; pcscd lists: {listed}")
