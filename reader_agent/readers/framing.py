"""Framing for serial UID readers: bytes in, UIDs out. No I/O and no clock.

Cheap serial readers print a card's UID as a frame and keep printing it, every 100-250 ms,
for as long as the card stays in the field. They never say when a card leaves. This module
has two layers, both pure:

* a :class:`FrameParser` per format turns a byte stream, cut into chunks at arbitrary points,
  into the UIDs of the well-formed frames in it. Noise, bad checksums and truncated frames are
  dropped and counted (:attr:`FrameParser.rejected`); the parser resynchronises on the next frame.
* a :class:`PresentationTracker` turns the stream of repeated UIDs into *presentations*: a UID
  seen again within ``gap`` seconds of its last frame is the same card still lying there. "Card
  gone" is inferred from silence longer than ``gap``. The caller passes the time in.

Formats (docs/card-protocols.md §5):

=============  =======================================================  ==========================
format         frame on the wire                                        UID reported
=============  =======================================================  ==========================
``rdm6300``    ``02`` + 10 ASCII hex data + 2 ASCII hex checksum +      5 bytes (10 hex): customer
               ``03``; checksum = XOR of the 5 data bytes               byte + 32-bit EM4100 id
``hexline``    a text line ending CR and/or LF whose last token is the  4, 7 or 10 bytes (8/14/20
               UID: ``04A1B2C3``, ``Card UID: 04 A1 B2 C3``,            hex), the ISO 14443 UID
               ``uid=04:a1:b2:c3``                                      as the module prints it
``wiegand26``  6 ASCII hex + CR (Wiegand-to-RS232 converters, parity    3 bytes (6 hex): facility
               already checked by the converter)                        code + 16-bit card number
=============  =======================================================  ==========================

Line formats (hexline, wiegand26) have no start marker, so the UID must be the last token of its
line, preceded by the start of the line or by a character that is not a hex digit: garbage glued
in front of a frame is tolerated only when it does not end in a hex digit. A hexline label that
itself ends in a separated hex pair (``Tag AB 04 A1 B2 C3``) makes the line unreadable rather than
guessing where the UID starts. Converters that print the Wiegand number in decimal (10 digits)
are not supported: their lines are rejected, not misread.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from enum import StrEnum
from typing import Protocol


class SerialFormat(StrEnum):
    """The frame formats a serial UID reader may speak (the ``format=`` of a serial spec)."""

    RDM6300 = "rdm6300"
    HEXLINE = "hexline"
    WIEGAND26 = "wiegand26"


UID_LENGTHS: dict[SerialFormat, tuple[int, ...]] = {
    SerialFormat.RDM6300: (5,),
    SerialFormat.HEXLINE: (4, 7, 10),
    SerialFormat.WIEGAND26: (3,),
}
"""UID lengths in bytes that each format can report."""


class Rejection(StrEnum):
    """Why a frame was dropped."""

    BAD_CHECKSUM = "bad_checksum"  # complete RDM6300 frame whose XOR does not match
    TRUNCATED = "truncated"  # a new frame started before the previous one ended
    MALFORMED = "malformed"  # wrong characters or wrong length where a frame should be
    OVERLONG = "overlong"  # a line longer than any frame: skipped up to its end


class FrameParser(Protocol):
    """Incremental parser for one frame format.

    ``feed`` may be called with any chunking of the byte stream; the frames it returns do not
    depend on where the chunks were cut.
    """

    rejected: Counter[Rejection]
    """Frames dropped so far, by reason."""

    def feed(self, data: bytes) -> list[bytes]:
        """Consume *data*; return the UIDs of the frames it completed, in order."""
        ...

    def reset(self) -> None:
        """Forget any partial frame (after a reconnect the stream starts anew)."""
        ...


_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")
_STX = 0x02
_ETX = 0x03
_CR = 0x0D
_LF = 0x0A


class Rdm6300Parser:
    """RDM6300/RDM630 125 kHz frames: ``02 <10 hex data> <2 hex XOR> 03``.

    STX always starts a new frame, so a frame cut off by noise or by a card pulled away is
    abandoned as soon as the next frame begins. Bytes outside a frame are ignored.
    """

    _BODY_LENGTH = 12  # 10 hex digits of data + 2 of checksum

    def __init__(self) -> None:
        self.rejected: Counter[Rejection] = Counter()
        self._body: bytearray | None = None

    def reset(self) -> None:
        self._body = None

    def feed(self, data: bytes) -> list[bytes]:
        uids: list[bytes] = []
        for byte in data:
            if byte == _STX:
                if self._body is not None:
                    self.rejected[Rejection.TRUNCATED] += 1
                self._body = bytearray()
                continue
            if self._body is None:
                continue
            if len(self._body) < self._BODY_LENGTH:
                if byte in _HEX_DIGITS:
                    self._body.append(byte)
                else:
                    self._drop(Rejection.MALFORMED)
                continue
            body, self._body = bytes(self._body), None
            if byte != _ETX:
                self.rejected[Rejection.MALFORMED] += 1
                continue
            uid = self._checked_uid(body)
            if uid is not None:
                uids.append(uid)
        return uids

    def _drop(self, reason: Rejection) -> None:
        self.rejected[reason] += 1
        self._body = None

    def _checked_uid(self, body: bytes) -> bytes | None:
        decoded = bytes.fromhex(body.decode("ascii"))
        uid, checksum = decoded[:5], decoded[5]
        expected = 0
        for byte in uid:
            expected ^= byte
        if expected != checksum:
            self.rejected[Rejection.BAD_CHECKSUM] += 1
            return None
        return uid


class _LineParser(ABC):
    """Shared line splitting for the CR/LF-terminated formats."""

    # Longer than any frame with a label ("Card UID: " + 10 spaced bytes is 39), short enough
    # that a stream of garbage without line ends cannot grow the buffer.
    _MAX_LINE = 80

    def __init__(self) -> None:
        self.rejected: Counter[Rejection] = Counter()
        self._line = bytearray()
        self._skipping_overlong = False

    def reset(self) -> None:
        self._line.clear()
        self._skipping_overlong = False

    def feed(self, data: bytes) -> list[bytes]:
        uids: list[bytes] = []
        for byte in data:
            if byte in (_CR, _LF):
                if self._line and not self._skipping_overlong:
                    uid = self._parse_line(bytes(self._line).rstrip(b" \t"))
                    if uid is None:
                        self.rejected[Rejection.MALFORMED] += 1
                    else:
                        uids.append(uid)
                self._line.clear()
                self._skipping_overlong = False
            elif self._skipping_overlong:
                continue
            elif len(self._line) >= self._MAX_LINE:
                self.rejected[Rejection.OVERLONG] += 1
                self._line.clear()
                self._skipping_overlong = True
            else:
                self._line.append(byte)
        return uids

    @abstractmethod
    def _parse_line(self, line: bytes) -> bytes | None:
        """The UID in one complete line, or None if the line is not a frame of this format."""


# The UID is the last token of the line: either a run of hex digits, or hex pairs joined by one
# separator used consistently. The lookbehind refuses to start inside a longer hex run.
_HEXLINE_UID = re.compile(
    rb"(?<![0-9A-Fa-f])"
    rb"(?:(?P<plain>[0-9A-Fa-f]+)"
    rb"|(?P<spaced>[0-9A-Fa-f]{2}(?P<sep>[ :-])[0-9A-Fa-f]{2}(?:(?P=sep)[0-9A-Fa-f]{2})*))"
    rb"\Z"
)
_WIEGAND26_UID = re.compile(rb"(?<![0-9A-Fa-f])[0-9A-Fa-f]{6}\Z")


class HexLineParser(_LineParser):
    """Lines whose last token is a 4, 7 or 10 byte UID in hex (MFRC522/PN532 sketches, CH340 modules)."""

    def _parse_line(self, line: bytes) -> bytes | None:
        match = _HEXLINE_UID.search(line)
        if match is None:
            return None
        digits = match.group("plain") or match.group("spaced").replace(match.group("sep"), b"")
        if len(digits) // 2 not in UID_LENGTHS[SerialFormat.HEXLINE] or len(digits) % 2:
            return None
        return bytes.fromhex(digits.decode("ascii"))


class Wiegand26Parser(_LineParser):
    """Wiegand-26 to RS232 converters: ``XXYYZZ`` + CR, facility code then card number."""

    def _parse_line(self, line: bytes) -> bytes | None:
        match = _WIEGAND26_UID.search(line)
        if match is None:
            return None
        return bytes.fromhex(match.group().decode("ascii"))


def make_parser(frame_format: SerialFormat) -> FrameParser:
    """A fresh parser for *frame_format*."""
    parsers: dict[SerialFormat, type[Rdm6300Parser | HexLineParser | Wiegand26Parser]] = {
        SerialFormat.RDM6300: Rdm6300Parser,
        SerialFormat.HEXLINE: HexLineParser,
        SerialFormat.WIEGAND26: Wiegand26Parser,
    }
    return parsers[frame_format]()


class PresentationTracker:
    """Collapses a reader's repeated frames into one event per card presentation.

    A UID is a new presentation unless the same UID was last seen at most ``gap`` seconds ago.
    Each UID is tracked on its own, so two cards tapped in quick succession are two
    presentations, and two cards lying on the reader together (which some readers report
    alternately) stay one presentation each. The price of inferring removal from silence: a
    card taken away and put back within ``gap`` is one presentation, and ``gap`` must exceed the
    reader's repeat interval with room for a dropped frame, or a card left lying on the reader
    counts again.
    """

    def __init__(self, gap: float) -> None:
        if gap <= 0:
            raise ValueError("the presentation gap must be positive")
        self._gap = gap
        self._last_seen: dict[bytes, float] = {}

    @property
    def gap(self) -> float:
        return self._gap

    def observe(self, uid: bytes, now: float) -> bool:
        """Record a frame of *uid* read at *now* (seconds, monotonic); True if it starts a presentation."""
        self._forget_gone(now)
        is_new = uid not in self._last_seen
        self._last_seen[uid] = now
        return is_new

    def cards_present(self, now: float) -> frozenset[bytes]:
        """UIDs whose frames were seen within the last ``gap`` seconds."""
        self._forget_gone(now)
        return frozenset(self._last_seen)

    def _forget_gone(self, now: float) -> None:
        self._last_seen = {uid: seen for uid, seen in self._last_seen.items() if now - seen <= self._gap}


__all__ = [
    "UID_LENGTHS",
    "FrameParser",
    "HexLineParser",
    "PresentationTracker",
    "Rdm6300Parser",
    "Rejection",
    "SerialFormat",
    "Wiegand26Parser",
    "make_parser",
]
