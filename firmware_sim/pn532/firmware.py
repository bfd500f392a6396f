"""PN532 command semantics: the command set nfcpy uses, with no pty and no clock.

:class:`Pn532Firmware` executes one parsed :class:`~firmware_sim.pn532.frames.HostCommand` at a
time and drives one RF field with at most one card in it (an
:class:`~firmware_sim.pn532.picc.IsoDepPicc`). It says *how long* an answer takes and the caller
waits. Facts it follows are in docs/card-protocols.md §4 (what nfcpy sends) and §7.3 (what the chip
must answer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from firmware_sim.cards import VirtualCard
from firmware_sim.pn532.frames import CHIP_TFI, ERROR_TFI, HostCommand, encode_frame
from firmware_sim.pn532.picc import CardLeftField, IsoDepPicc, PiccState

log = logging.getLogger(__name__)

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
    """The command set nfcpy uses (docs/card-protocols.md §4.4) with the semantics of §7.3.

    Holds no pty and no clock: :meth:`execute` returns the reply and the time the chip needs
    before it can send it (an RF timeout, a slow card). Not thread-safe;
    :class:`~firmware_sim.pn532.simulator.Pn532Sim` serialises access.
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


__all__ = [
    "DEFAULT_REGISTERS",
    "ERROR_REPLY",
    "FIRMWARE_VERSION",
    "STATUS_OK",
    "STATUS_TIMEOUT",
    "Pn532Firmware",
    "Reply",
    "rf_timeout_seconds",
    "strip_cascade_tags",
]
