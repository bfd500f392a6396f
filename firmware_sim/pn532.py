"""PN532 firmware emulator on a pseudo-terminal, spoken to by nfcpy's own ``pn532`` driver.

The emulator is the chip on the far side of an HSU (UART) link: it parses host frames, answers
with ACK + response frames and drives one RF field with at most one
:class:`~firmware_sim.cards.VirtualCard` in it. Facts it follows are in card-protocols.md §4
(what nfcpy sends) and §7.3 (what the chip must answer).

Layers, each usable on its own:

* frame codec — :func:`encode_frame` and :class:`FrameParser` (bytes in, events out; no I/O);
* :class:`IsoDepPicc` — the ISO/IEC 14443-4 card side: RATS → ATS, I-blocks with chaining both
  ways, R(NAK) presence checks, retransmission, S(DESELECT);
* :class:`Pn532Firmware` — command semantics (no I/O, no clock: it says *how long* an answer
  takes and the caller waits);
* :class:`Pn532Sim` — the pty, the serving thread, card placement, unplug/replug and faults.

Usage::

    with Pn532Sim() as sim:                      # opens a pty, serves it from a thread
        reader = open_reader(sim.spec)           # "nfc:tty:/tmp/pn532sim-…/pn532:pn532"
        sim.present(xiamen_card("3104390012345678901", bytes.fromhex("A1B2C3D4")))
        ...
        sim.remove()
        sim.unplug(); sim.replug()               # same stable path, new pty behind it

Fault injection (each applies once unless said otherwise): :meth:`Pn532Sim.corrupt_next_response`,
:meth:`Pn532Sim.delay_next_response` (the chip is slow), :meth:`Pn532Sim.delay_card_answers`
(the card is slow; beyond the chip's RF timeout the chip reports a timeout),
:meth:`Pn532Sim.remove_card_during_next_apdu`, and :meth:`Pn532Sim.unplug` (port closed).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import re
import select
import shutil
import tempfile
import threading
import time
import tty
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from firmware_sim.cards import VirtualCard
from schemas.masking import mask_uid

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Frame codec (PN532 user manual UM0701-02 §6.2; card-protocols.md §4.3)
# --------------------------------------------------------------------------------------------

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
# ISO/IEC 14443-4 card side
# --------------------------------------------------------------------------------------------

FSD_BY_FSDI = (16, 24, 32, 40, 48, 64, 96, 128, 256)


class PiccState(Enum):
    OFF = "off"  # not powered: outside a field, or the field is off
    IDLE = "idle"  # powered, waiting for REQA
    ACTIVE = "active"  # selected (ISO 14443-3), waiting for RATS
    PROTOCOL = "protocol"  # ISO-DEP (ISO 14443-4) after RATS
    HALT = "halt"  # deselected; only a new field (or WUPA) brings it back


class CardLeftField(Exception):
    """Raised by an APDU handler: the card left the field before it could answer."""


ApduHandler = Callable[[bytes], bytes]


class IsoDepPicc:
    """One card in the field, speaking ISO-DEP as a PICC.

    Block numbering follows ISO/IEC 14443-4 §7.5.4.3 (PICC rules), which is what makes nfcpy's
    recovery work: after an answer was lost the host sends R(NAK) with the block number it is
    waiting for, and the card re-sends its last block if it already answered that one.
    """

    def __init__(self, card: VirtualCard, answer_apdu: ApduHandler | None = None) -> None:
        self.card = card
        self.state = PiccState.OFF
        self._answer_apdu: ApduHandler = answer_apdu or card.process_apdu
        self._reset_session()

    def _reset_session(self) -> None:
        self.block_number = 1  # rule C: the PICC block number starts at 1
        self.fsd = 256
        self._command_chain = bytearray()
        self._response_rest = b""
        self._last_block: bytes | None = None

    def power_on(self) -> None:
        if self.state is PiccState.OFF:
            self.card.activate()
            self.state = PiccState.IDLE

    def power_off(self) -> None:
        self.state = PiccState.OFF
        self._reset_session()

    def select(self) -> bool:
        """Anticollision + SELECT; True if the card answered (it must be powered and idle)."""
        if self.state is not PiccState.IDLE:
            return False
        self.state = PiccState.ACTIVE
        return True

    def halt(self) -> None:
        self.state = PiccState.HALT
        self._reset_session()

    @property
    def speaks_iso_dep(self) -> bool:
        return bool(self.card.sak & 0x20)

    def rats(self, param: int) -> bytes | None:
        if self.state is not PiccState.ACTIVE or not self.speaks_iso_dep:
            return None
        self._reset_session()
        self.fsd = FSD_BY_FSDI[min(param >> 4, len(FSD_BY_FSDI) - 1)]
        self.state = PiccState.PROTOCOL
        return self.card.ats()

    def exchange(self, frame: bytes) -> bytes | None:
        """Answer one frame from the reader; ``None`` means the card stays silent.

        Raises:
            CardLeftField: the APDU handler took the card away mid-APDU.
        """
        if not frame:
            return None
        if self.state is PiccState.ACTIVE and frame[0] == 0xE0 and len(frame) == 2:
            return self.rats(frame[1])
        if self.state is not PiccState.PROTOCOL:
            return None
        pcb = frame[0]
        cid = frame[1:2] if pcb & 0x08 else b""
        if pcb & 0xE2 == 0x02:
            inf = frame[1 + len(cid) + (1 if pcb & 0x04 else 0) :]
            return self._i_block(pcb, cid, inf)
        if pcb & 0xE6 == 0xA2:
            return self._r_block(pcb, cid)
        if pcb & 0xC7 == 0xC2 and pcb & 0x30 == 0x00:  # S(DESELECT)
            self.halt()
            return bytes([pcb]) + cid
        return None  # S(WTX) answers and anything else: we never asked, so stay silent

    def _send(self, block: bytes) -> bytes:
        self._last_block = block
        return block

    def _max_inf(self, cid: bytes) -> int:
        return self.fsd - 3 - len(cid)  # PCB and the two CRC bytes count against FSD

    def _i_block(self, pcb: int, cid: bytes, inf: bytes) -> bytes:
        # Rule D says "toggle"; taking the reader's number is the same in a correct exchange and
        # stays in step if the reader re-sends an I-block we never acknowledged.
        self.block_number = pcb & 0x01
        self._response_rest = b""
        if pcb & 0x10:
            self._command_chain += inf
            return self._send(bytes([0xA2 | self.block_number, *cid]))
        apdu = bytes(self._command_chain + inf)
        self._command_chain.clear()
        response = self._answer_apdu(apdu)
        return self._send(self._next_chunk(response, cid))

    def _next_chunk(self, data: bytes, cid: bytes) -> bytes:
        room = self._max_inf(cid)
        chunk, self._response_rest = data[:room], data[room:]
        chaining = 0x10 if self._response_rest else 0x00
        return bytes([0x02 | chaining | (0x08 if cid else 0) | self.block_number, *cid]) + chunk

    def _r_block(self, pcb: int, cid: bytes) -> bytes | None:
        if pcb & 0x01 == self.block_number:  # rule 11: re-send the last block
            return self._last_block if self._last_block is not None else None
        if pcb & 0x10:  # rule 12: R(NAK) with the other number (a presence check) → R(ACK)
            return bytes([0xA2 | (0x08 if cid else 0) | self.block_number, *cid])
        if self._response_rest:  # rule 13: R(ACK) continues our chain
            self.block_number ^= 1
            return self._send(self._next_chunk(self._response_rest, cid))
        return None


# --------------------------------------------------------------------------------------------
# PN532 command semantics
# --------------------------------------------------------------------------------------------

FIRMWARE_VERSION = bytes([0x32, 0x01, 0x06, 0x07])  # IC PN532, version 1.6, supports ISO A/B/18092

REG_TX_MODE = 0x6302
REG_RX_MODE = 0x6303
REG_TX_AUTO = 0x6305
REG_FIFO_DATA = 0x6339
REQA = 0x26

DEFAULT_REGISTERS = {REG_TX_MODE: 0x80, REG_RX_MODE: 0x80, REG_TX_AUTO: 0x40, REG_FIFO_DATA: REQA}

STATUS_OK = 0x00
STATUS_TIMEOUT = 0x01  # "the target has not answered"

SET_PARAMETERS_AUTO_RATS = 0x10

DEFAULT_RF_TIMEOUT_INDEX = 0x0A
MAX_RF_TIMEOUT = 100e-6 * (1 << 15)  # index 16; index 0 ("no timeout") is capped here too


def rf_timeout_seconds(index: int) -> float:
    """RFConfiguration item 02 timeout index n → 100 µs · 2^(n-1) (n = 1..16)."""
    if not 1 <= index <= 16:
        return MAX_RF_TIMEOUT
    return 100e-6 * (1 << (index - 1))


def strip_cascade_tags(initiator_data: bytes) -> bytes:
    """The UID a host asks for in InListPassiveTarget, without the 0x88 cascade tags nfcpy adds."""
    if len(initiator_data) == 8 and initiator_data[0] == 0x88:
        return initiator_data[1:]
    if len(initiator_data) == 12 and initiator_data[0] == 0x88 and initiator_data[4] == 0x88:
        return initiator_data[1:4] + initiator_data[5:]
    return initiator_data


@dataclass(frozen=True, slots=True)
class Reply:
    """What the chip answers to one command, and how long it takes to get there."""

    payload: bytes  # D5, code + 1, data — or the 7F error payload
    after: float = 0.0

    @property
    def frame(self) -> bytes:
        return encode_frame(self.payload)


ERROR_REPLY = Reply(bytes([ERROR_TFI]))


class _SyntaxError(Exception):
    """Malformed command parameters: the chip answers with the error frame."""


class Pn532Firmware:
    """The command set nfcpy uses (card-protocols.md §4.4) with the semantics of §7.3.

    Holds no pty and no clock: :meth:`execute` returns the reply and the time the chip needs
    before it can send it (an RF timeout, a slow card). Not thread-safe; :class:`Pn532Sim`
    serialises access.
    """

    def __init__(self) -> None:
        self.registers: dict[int, int] = dict(DEFAULT_REGISTERS)
        self.parameters = 0x00
        self.rf_on = False
        self.rf_timeout_index = DEFAULT_RF_TIMEOUT_INDEX
        self.rf_settings: dict[int, bytes] = {}
        self.picc: IsoDepPicc | None = None
        self._remove_on_next_apdu = False
        self._card_answer_delays: list[float] = []

    # -- the field -----------------------------------------------------------------------

    @property
    def card(self) -> VirtualCard | None:
        return self.picc.card if self.picc else None

    def present(self, card: VirtualCard) -> None:
        """Put *card* in the field (replacing any card there); it powers up if the field is on."""
        self.picc = IsoDepPicc(card, self._answer_apdu)
        if self.rf_on:
            self.picc.power_on()

    def remove(self) -> None:
        self.picc = None

    def _set_field(self, on: bool) -> None:
        self.rf_on = on
        if self.picc is None:
            return
        if on:
            self.picc.power_on()
        else:
            self.picc.power_off()

    @property
    def rf_timeout(self) -> float:
        return rf_timeout_seconds(self.rf_timeout_index)

    # -- faults --------------------------------------------------------------------------

    def remove_card_during_next_apdu(self) -> None:
        self._remove_on_next_apdu = True

    def delay_card_answers(self, seconds: float, count: int = 1) -> None:
        self._card_answer_delays.extend([seconds] * count)

    @property
    def faults_pending(self) -> int:
        return len(self._card_answer_delays) + int(self._remove_on_next_apdu)

    def _answer_apdu(self, apdu: bytes) -> bytes:
        if self._remove_on_next_apdu:
            self._remove_on_next_apdu = False
            raise CardLeftField
        card = self.card
        if card is None:  # cannot happen: a PICC exists only while its card is in the field
            raise CardLeftField
        return card.process_apdu(apdu)

    # -- commands ------------------------------------------------------------------------

    def execute(self, command: HostCommand) -> Reply:
        handler = self._handlers.get(command.code)
        if handler is None:
            return ERROR_REPLY
        try:
            return handler(self, command.data)
        except _SyntaxError:
            return ERROR_REPLY

    @staticmethod
    def _ok(code: int, data: bytes = b"", after: float = 0.0) -> Reply:
        return Reply(bytes([CHIP_TFI, code + 1]) + data, after)

    def _diagnose(self, data: bytes) -> Reply:
        if not data:
            raise _SyntaxError
        if data[0] == 0x00:  # communication line test: echo everything
            return self._ok(0x00, data)
        if data[0] in (0x01, 0x02):  # ROM / RAM test: passed
            return self._ok(0x00, b"\x00")
        raise _SyntaxError

    def _get_firmware_version(self, _data: bytes) -> Reply:
        return self._ok(0x02, FIRMWARE_VERSION)

    def _get_general_status(self, _data: bytes) -> Reply:
        active = self.picc is not None and self.picc.state in (PiccState.ACTIVE, PiccState.PROTOCOL)
        targets = b"\x01\x01\x00\x00\x00" if active else b"\x00"
        return self._ok(0x04, b"\x00\x00" + targets + b"\x00")

    def _read_register(self, data: bytes) -> Reply:
        if not data or len(data) % 2:
            raise _SyntaxError
        addresses = [data[i] << 8 | data[i + 1] for i in range(0, len(data), 2)]
        return self._ok(0x06, bytes(self.registers.get(a, 0x00) for a in addresses))

    def _write_register(self, data: bytes) -> Reply:
        if not data or len(data) % 3:
            raise _SyntaxError
        for i in range(0, len(data), 3):
            self.registers[data[i] << 8 | data[i + 1]] = data[i + 2]
        return self._ok(0x08)

    def _set_serial_baudrate(self, data: bytes) -> Reply:
        # A pty has no line speed; the host's ACK that follows is harmless (nothing to abort).
        if len(data) != 1 or data[0] > 8:
            raise _SyntaxError
        return self._ok(0x10)

    def _set_parameters(self, data: bytes) -> Reply:
        if len(data) != 1:
            raise _SyntaxError
        self.parameters = data[0]
        return self._ok(0x12)

    def _sam_configuration(self, data: bytes) -> Reply:
        if not data or data[0] not in (1, 2, 3, 4):
            raise _SyntaxError
        return self._ok(0x14)

    def _power_down(self, data: bytes) -> Reply:
        if not data:
            raise _SyntaxError
        self._set_field(False)
        return self._ok(0x16, bytes([STATUS_OK]))

    def _rf_configuration(self, data: bytes) -> Reply:
        if not data:
            raise _SyntaxError
        item, values = data[0], data[1:]
        if item == 0x01:
            if len(values) != 1:
                raise _SyntaxError
            self._set_field(bool(values[0] & 0x01))
        elif item == 0x02:
            if len(values) != 3:
                raise _SyntaxError
            self.rf_timeout_index = values[2]
        else:
            self.rf_settings[item] = bytes(values)
        return self._ok(0x32)

    def _in_list_passive_target(self, data: bytes) -> Reply:
        if len(data) < 2 or data[0] not in (1, 2):
            raise _SyntaxError
        brty, wanted_uid = data[1], strip_cascade_tags(data[2:])
        self._set_field(True)
        picc = self.picc
        if brty != 0x00 or picc is None or (wanted_uid and wanted_uid != picc.card.uid) or not picc.select():
            self.registers[REG_FIFO_DATA] = REQA  # the REQA is still in the FIFO: nobody answered
            return self._ok(0x4A, b"\x00")
        card = picc.card
        target = b"\x01" + card.atqa + bytes([card.sak, len(card.uid)]) + card.uid
        if self.parameters & SET_PARAMETERS_AUTO_RATS and picc.speaks_iso_dep:
            ats = picc.rats(0x80)
            target += ats or b""
        return self._ok(0x4A, b"\x01" + target)

    def _in_communicate_thru(self, data: bytes) -> Reply:
        if not data:
            raise _SyntaxError
        timeout = self.rf_timeout
        if self.picc is None or not self.rf_on:
            return self._ok(0x42, bytes([STATUS_TIMEOUT]), after=timeout)
        is_apdu_block = data[0] & 0xE2 == 0x02
        try:
            block = self.picc.exchange(data)
        except CardLeftField:
            log.debug("pn532 sim: card left the field mid-APDU")
            self.remove()
            return self._ok(0x42, bytes([STATUS_TIMEOUT]), after=timeout)
        if block is None:
            return self._ok(0x42, bytes([STATUS_TIMEOUT]), after=timeout)
        delay = self._card_answer_delays.pop(0) if is_apdu_block and self._card_answer_delays else 0.0
        if delay > timeout:  # the card answers after the chip stopped listening
            return self._ok(0x42, bytes([STATUS_TIMEOUT]), after=timeout)
        return self._ok(0x42, bytes([STATUS_OK]) + block, after=delay)

    def _in_data_exchange(self, data: bytes) -> Reply:
        # Only the chip-managed ISO-DEP case (SetParameters fAutomaticRATS), as libnfc uses it.
        if len(data) < 2:
            raise _SyntaxError
        picc = self.picc
        if picc is None or picc.state is not PiccState.PROTOCOL:
            return self._ok(0x40, bytes([STATUS_TIMEOUT]), after=self.rf_timeout)
        try:
            response = self._answer_apdu(data[1:])
        except CardLeftField:
            self.remove()
            return self._ok(0x40, bytes([STATUS_TIMEOUT]), after=self.rf_timeout)
        return self._ok(0x40, bytes([STATUS_OK]) + response)

    def _in_release(self, code: int) -> Reply:
        if self.picc is not None and self.picc.state in (PiccState.ACTIVE, PiccState.PROTOCOL):
            self.picc.halt()
        return self._ok(code, bytes([STATUS_OK]))

    def _in_deselect(self, data: bytes) -> Reply:
        if len(data) != 1:
            raise _SyntaxError
        return self._in_release(0x44)

    def _in_release_command(self, data: bytes) -> Reply:
        if len(data) != 1:
            raise _SyntaxError
        return self._in_release(0x52)

    _handlers: ClassVar[dict[int, Callable[[Pn532Firmware, bytes], Reply]]] = {
        0x00: _diagnose,
        0x02: _get_firmware_version,
        0x04: _get_general_status,
        0x06: _read_register,
        0x08: _write_register,
        0x10: _set_serial_baudrate,
        0x12: _set_parameters,
        0x14: _sam_configuration,
        0x16: _power_down,
        0x32: _rf_configuration,
        0x40: _in_data_exchange,
        0x42: _in_communicate_thru,
        0x44: _in_deselect,
        0x4A: _in_list_passive_target,
        0x52: _in_release_command,
    }


# --------------------------------------------------------------------------------------------
# The emulator on a pty
# --------------------------------------------------------------------------------------------

INTER_BYTE_TIMEOUT = 0.05
_IDLE_WAKEUP = 0.05
_NFCPY_TTY_NAME = re.compile(r"^[A-Za-z0-9-]+$")
_NFCPY_SPECIAL_TTY = re.compile(r"^(S|ACM|AMA|USB)\d*$|^usbserial")
_link_counter = itertools.count()


def dev_link_path(prefix: str = "pn532sim") -> Path:
    """A fresh ``/dev/<name>`` for :class:`Pn532Sim`, named so nfcpy's ``tty:<name>:pn532`` finds it."""
    return Path("/dev") / f"{prefix}-{os.getpid()}-{next(_link_counter)}"


def nfc_spec_for(path: Path) -> str:
    """The reader spec for a PN532 at *path*: nfcpy's own grammar when it can name it, else ours."""
    nameable = _NFCPY_TTY_NAME.match(path.name) and not _NFCPY_SPECIAL_TTY.match(path.name)
    if path.parent == Path("/dev") and nameable:
        return f"nfc:tty:{path.name}:pn532"
    return f"nfc:tty:{path}:pn532"


@dataclass
class _ChipFault:
    command: int | None  # None: whatever command comes next
    skip: int = 0  # matching commands to let through first
    delay: float = 0.0

    def fires(self, code: int) -> bool:
        """Called once per command: True when this is the command the fault is meant for."""
        if self.command is not None and self.command != code:
            return False
        if self.skip:
            self.skip -= 1
            return False
        return True


@dataclass
class _Pending:
    frame: bytes
    due: float


class _Port:
    """One plugged-in period: a pty pair and the thread serving it."""

    def __init__(self, sim: Pn532Sim) -> None:
        self.master, self.slave = os.openpty()
        # Raw on both ends: no echo, no CR/LF translation, bytes exactly as sent.
        tty.setraw(self.master)
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._sim = sim
        self._thread = threading.Thread(target=self._serve, name=f"pn532-sim {self.path}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        # Closing the master is what the reader sees as the cable being pulled: EIO from then on.
        for fd in (self.master, self.slave, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                # The host stopped reading and its input queue is full: a real UART drops bytes too.
                log.warning("pn532 sim %s: host not reading, dropped %d bytes", self.path, len(view))
                return
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                return

    def _serve(self) -> None:
        parser = FrameParser()
        pending: _Pending | None = None
        last_frame = b""
        last_rx = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            wait = _IDLE_WAKEUP if pending is None else max(0.0, pending.due - now)
            readable, _, _ = select.select([self.master, self._wake_r], [], [], wait)
            now = time.monotonic()
            if pending is not None and now >= pending.due:
                self._write(pending.frame)
                last_frame, pending = pending.frame, None
            if self.master not in readable:
                if parser.has_partial_frame and now - last_rx > INTER_BYTE_TIMEOUT:
                    parser.discard_partial_frame()
                    self._sim._note_bad_frame("incomplete frame")
                continue
            try:
                chunk = os.read(self.master, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:  # the slave side is gone for good
                log.debug("pn532 sim %s: read failed: %s", self.path, exc)
                return
            last_rx = now
            for event in parser.feed(chunk):
                if isinstance(event, HostAck):
                    pending = None  # abort: the answer to the aborted command is never sent
                elif isinstance(event, HostNack):
                    if last_frame:
                        self._write(last_frame)
                elif isinstance(event, BadFrame):
                    self._sim._note_bad_frame(event.reason)
                    if event.answer_with_error_frame:
                        self._write(ERROR_FRAME)
                else:
                    self._write(ACK)
                    frame, after = self._sim._execute(event)
                    if after <= 0:
                        self._write(frame)
                        last_frame, pending = frame, None
                    else:
                        pending = _Pending(frame, time.monotonic() + after)


class Pn532Sim:
    """A PN532 on a pty behind a stable path (a symlink that survives unplug/replug).

    Args:
        link: where to put the stable symlink. ``None`` makes one in a private temp directory;
            :func:`dev_link_path` gives a ``/dev`` name (needs root) that nfcpy's own
            ``tty:<name>:pn532`` grammar can find.
        card: a card already lying on the reader.
    """

    def __init__(
        self, *, link: str | os.PathLike[str] | None = None, card: VirtualCard | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._firmware = Pn532Firmware()
        self._chip_faults: list[_ChipFault] = []
        self._corrupt: list[_ChipFault] = []
        self.command_counts: Counter[int] = Counter()
        self.bad_frames: Counter[str] = Counter()
        self._own_dir: str | None = None
        if link is None:
            self._own_dir = tempfile.mkdtemp(prefix="pn532sim-")
            link = Path(self._own_dir) / "pn532"
        self.path = Path(link)
        self._port: _Port | None = None
        self._closed = False
        if card is not None:
            self._firmware.present(card)
        self.replug()

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Pn532Sim:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving, close the pty and remove the stable path. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.unplug()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    @property
    def spec(self) -> str:
        """The reader spec to open this PN532 with (``open_reader(sim.spec)``)."""
        return nfc_spec_for(self.path)

    @property
    def direct_spec(self) -> str:
        """The same reader named by its absolute path (works whoever owns /dev)."""
        return f"nfc:tty:{self.path}:pn532"

    @property
    def pty_path(self) -> str | None:
        """The pty currently behind :attr:`path` (``None`` while unplugged)."""
        return self._port.path if self._port else None

    @property
    def plugged(self) -> bool:
        return self._port is not None

    def unplug(self) -> None:
        """The reader goes away: the pty closes (the host gets EIO) and the stable path vanishes."""
        port, self._port = self._port, None
        if port is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        port.close()
        log.debug("pn532 sim: unplugged %s", port.path)

    def replug(self) -> None:
        """The reader comes back: a fresh chip on a new pty, behind the same stable path.

        A card lying on the reader stays there, unpowered until the host switches the field on.
        """
        if self._closed:
            raise RuntimeError("the simulator is closed")
        if self._port is not None:
            return
        with self._lock:
            card = self._firmware.card
            self._firmware = Pn532Firmware()
            if card is not None:
                self._firmware.present(card)
        port = _Port(self)
        staging = self.path.with_name(self.path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        os.symlink(port.path, staging)
        os.replace(staging, self.path)  # atomic: a reader opening the path never sees it missing
        self._port = port
        log.debug("pn532 sim: serving %s at %s", port.path, self.path)

    # -- the card ------------------------------------------------------------------------

    @property
    def card(self) -> VirtualCard | None:
        with self._lock:
            return self._firmware.card

    def present(self, card: VirtualCard) -> None:
        """Put *card* on the reader; it stays until :meth:`remove` (or another card replaces it)."""
        with self._lock:
            self._firmware.present(card)
        log.debug("pn532 sim: card %s on the reader", mask_uid(card.uid))

    def remove(self) -> None:
        """Take the card away; the next exchange with it times out, as with a real field."""
        with self._lock:
            self._firmware.remove()

    # -- faults --------------------------------------------------------------------------

    def corrupt_next_response(self, command: int | None = None, *, skip: int = 0) -> None:
        """Send one response with a wrong data checksum: to the next command, or to the next
        *command* after *skip* of them went through (e.g. ``0x42, skip=1``: the first APDU after RATS)."""
        with self._lock:
            self._corrupt.append(_ChipFault(command, skip))

    def delay_next_response(self, seconds: float, command: int | None = None, *, skip: int = 0) -> None:
        """The chip takes *seconds* longer to answer one command (chosen as for corruption)."""
        with self._lock:
            self._chip_faults.append(_ChipFault(command, skip, seconds))

    def delay_card_answers(self, seconds: float, count: int = 1) -> None:
        """The card needs *seconds* to answer each of the next *count* APDU blocks.

        Within the chip's RF timeout (set by the host from the card's FWT) the answer is just
        late; beyond it the chip reports a timeout although the card did process the block.
        """
        with self._lock:
            self._firmware.delay_card_answers(seconds, count)

    def remove_card_during_next_apdu(self) -> None:
        """The card leaves the field after receiving the next APDU, before answering it."""
        with self._lock:
            self._firmware.remove_card_during_next_apdu()

    @property
    def faults_pending(self) -> int:
        """Injected faults that have not happened yet (tests check theirs did)."""
        with self._lock:
            return len(self._chip_faults) + len(self._corrupt) + self._firmware.faults_pending

    # -- called from the serving thread --------------------------------------------------

    def _execute(self, command: HostCommand) -> tuple[bytes, float]:
        with self._lock:
            self.command_counts[command.code] += 1
            reply = self._firmware.execute(command)
            frame, after = reply.frame, reply.after
            for fault in [f for f in self._chip_faults if f.fires(command.code)]:
                self._chip_faults.remove(fault)
                after += fault.delay
            for fault in [f for f in self._corrupt if f.fires(command.code)]:
                self._corrupt.remove(fault)
                frame = frame[:-2] + bytes([frame[-2] ^ 0xFF]) + frame[-1:]
        return frame, after

    def _note_bad_frame(self, reason: str) -> None:
        with self._lock:
            self.bad_frames[reason] += 1
        log.debug("pn532 sim: dropped host frame (%s)", reason)


__all__ = [
    "ACK",
    "ERROR_FRAME",
    "NACK",
    "BadFrame",
    "CardLeftField",
    "FrameParser",
    "HostAck",
    "HostCommand",
    "HostEvent",
    "HostNack",
    "IsoDepPicc",
    "PiccState",
    "Pn532Firmware",
    "Pn532Sim",
    "Reply",
    "dev_link_path",
    "encode_frame",
    "nfc_spec_for",
    "rf_timeout_seconds",
    "strip_cascade_tags",
]
