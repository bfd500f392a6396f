"""PN532 firmware emulator on a pseudo-terminal, spoken to by nfcpy's own ``pn532`` driver.

The emulator is the chip on the far side of an HSU (UART) link. Facts it follows are in
docs/card-protocols.md §4 (what nfcpy sends) and §7.3 (what the chip must answer).

Layers, each usable on its own; each module imports only those listed before it:

* :mod:`.frames` — frame codec: :func:`encode_frame` and :class:`FrameParser` (bytes in, events
  out; no I/O);
* :mod:`.picc` — :class:`IsoDepPicc`, the ISO/IEC 14443-4 card side: RATS → ATS, I-blocks with
  chaining both ways, R(NAK) presence checks, retransmission, S(DESELECT);
* :mod:`.firmware` — :class:`Pn532Firmware`, command semantics (no I/O, no clock: it says *how
  long* an answer takes and the caller waits);
* :mod:`.simulator` — :class:`Pn532Sim`, the pty, the serving thread, card placement,
  unplug/replug and fault injection (usage there).
"""

from __future__ import annotations

from firmware_sim.pn532.firmware import Pn532Firmware, Reply, rf_timeout_seconds, strip_cascade_tags
from firmware_sim.pn532.frames import (
    ACK,
    ERROR_FRAME,
    NACK,
    BadFrame,
    FrameParser,
    HostAck,
    HostCommand,
    HostEvent,
    HostNack,
    encode_frame,
)
from firmware_sim.pn532.picc import CardLeftField, IsoDepPicc, PiccState
from firmware_sim.pn532.simulator import Pn532Sim, dev_link_path, nfc_spec_for

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
