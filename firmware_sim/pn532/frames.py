"""PN532 HSU (UART) frame codec: bytes in, events out; no I/O, no clock.

:func:`encode_frame` wraps a chip payload in a normal or extended frame; :class:`FrameParser` turns
the host's byte stream into :data:`HostEvent` s (a command, ACK, NACK or a frame the chip cannot
use). Frame layout per the PN532 user manual UM0701-02 §6.2 and docs/card-protocols.md §4.3.
"""

from __future__ import annotations

from dataclasses import dataclass

HOST_TFI = 0xD4
CHIP_TFI = 0xD5
ERROR_TFI = 0x7F

ACK = bytes.fromhex("0000FF00FF00")
NACK = bytes.fromhex("0000FFFF0000")
ERROR_FRAME = bytes.fromhex("0000FF01FF7F8100")
"""The application-level error frame: the chip's answer to a syntactically wrong command."""

_START = b"\x00\xff"


def encode_frame(payload: bytes) -> bytes:
    """Wrap a payload (TFI + command/response code + data) in a normal or extended frame.

    A payload of 255 bytes could be sent as a normal frame, but nfcpy's TTY transport reads a
    LEN of 0xFF as the extended-frame marker without checking LCS, so from 255 bytes on the
    extended form is used.
    """
    if not payload:
        raise ValueError("a frame carries at least the TFI byte")
    if len(payload) > 0xFFFF:
        raise ValueError("payload too long for an extended frame")
    dcs = -sum(payload) & 0xFF
    if len(payload) < 0xFF:
        head = b"\x00\x00\xff" + bytes([len(payload), -len(payload) & 0xFF])
    else:
        high, low = divmod(len(payload), 0x100)
        head = b"\x00\x00\xff\xff\xff" + bytes([high, low, -(high + low) & 0xFF])
    return head + payload + bytes([dcs, 0x00])


@dataclass(frozen=True, slots=True)
class HostCommand:
    """A well-formed host command frame."""

    payload: bytes  # D4, command code, parameters

    @property
    def code(self) -> int:
        return self.payload[1]

    @property
    def data(self) -> bytes:
        return self.payload[2:]


@dataclass(frozen=True, slots=True)
class HostAck:
    """Host ACK: abort the command in progress."""


@dataclass(frozen=True, slots=True)
class HostNack:
    """Host NACK: send the last response frame again."""


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame the chip cannot use. Checksum errors are dropped silently (the host times out
    waiting for the ACK); a well-framed payload that is not a host command gets the error frame."""

    reason: str
    answer_with_error_frame: bool = False


HostEvent = HostCommand | HostAck | HostNack | BadFrame


class FrameParser:
    """Turns the host's byte stream into :data:`HostEvent` s.

    Tolerates any preamble or noise before the start code ``00 FF``, frames split across reads
    and several frames in one read. A frame with a bad length checksum is skipped by resyncing on
    the next start code; a bad data checksum drops that frame only.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def has_partial_frame(self) -> bool:
        """A start code has arrived but the rest of its frame has not (yet)."""
        return self._buffer.startswith(_START)

    def discard_partial_frame(self) -> None:
        """Inter-byte timeout: forget an incomplete frame so the next one is not swallowed."""
        self._buffer.clear()

    def feed(self, data: bytes) -> list[HostEvent]:
        self._buffer += data
        events: list[HostEvent] = []
        while (event := self._next_event()) is not None:
            events.append(event)
        return events

    def _next_event(self) -> HostEvent | None:
        buf = self._buffer
        start = buf.find(_START)
        if start < 0:
            # A trailing 00 may be the first half of the next start code.
            del buf[: len(buf) - 1 if buf.endswith(b"\x00") else len(buf)]
            return None
        del buf[:start]
        if len(buf) < 4:
            return None
        length, lcs = buf[2], buf[3]
        if (length, lcs) == (0x00, 0xFF):
            del buf[:4]
            return HostAck()
        if (length, lcs) == (0xFF, 0x00):
            del buf[:4]
            return HostNack()
        if (length, lcs) == (0xFF, 0xFF):
            if len(buf) < 7:
                return None
            if (buf[4] + buf[5] + buf[6]) & 0xFF:
                del buf[:2]
                return BadFrame("extended length checksum")
            length, header = buf[4] << 8 | buf[5], 7
        else:
            if (length + lcs) & 0xFF:
                del buf[:2]
                return BadFrame("length checksum")
            header = 4
        end = header + length + 1
        if len(buf) < end:
            return None
        payload = bytes(buf[header : header + length])
        dcs = buf[header + length]
        del buf[:end]
        if (sum(payload) + dcs) & 0xFF:
            return BadFrame("data checksum")
        if len(payload) < 2 or payload[0] != HOST_TFI:
            return BadFrame("not a host command", answer_with_error_frame=True)
        return HostCommand(payload)


# --------------------------------------------------------------------------------------------


__all__ = [
    "ACK",
    "CHIP_TFI",
    "ERROR_FRAME",
    "ERROR_TFI",
    "HOST_TFI",
    "NACK",
    "BadFrame",
    "FrameParser",
    "HostAck",
    "HostCommand",
    "HostEvent",
    "HostNack",
    "encode_frame",
]
