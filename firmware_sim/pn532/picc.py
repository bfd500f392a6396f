"""The ISO/IEC 14443-4 card side: one :class:`~firmware_sim.cards.VirtualCard` in the RF field.

:class:`IsoDepPicc` is the card as an ISO-DEP PICC: RATS → ATS, I-blocks with chaining both ways,
R(NAK) presence checks, retransmission, S(DESELECT). No I/O: the firmware layer hands it one frame
from the reader at a time and sends back what it answers.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from firmware_sim.cards import VirtualCard

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


__all__ = ["FSD_BY_FSDI", "ApduHandler", "CardLeftField", "IsoDepPicc", "PiccState"]
