"""The PN532 emulator on a pseudo-terminal, spoken to by nfcpy's own ``pn532`` driver.

The emulator is the chip on the far side of an HSU (UART) link: a thread serving a pty parses host
frames (:mod:`~firmware_sim.pn532.frames`), answers with ACK + response frames and has the
:class:`~firmware_sim.pn532.firmware.Pn532Firmware` drive one RF field with at most one
:class:`~firmware_sim.cards.VirtualCard` in it. :class:`Pn532Sim` owns the pty, the serving
thread, card placement, unplug/replug and faults.

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
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from firmware_sim.cards import VirtualCard
from firmware_sim.pn532.firmware import Pn532Firmware
from firmware_sim.pn532.frames import ACK, ERROR_FRAME, BadFrame, FrameParser, HostAck, HostCommand, HostNack
from schemas.masking import mask_uid

log = logging.getLogger(__name__)

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


__all__ = ["INTER_BYTE_TIMEOUT", "Pn532Sim", "dev_link_path", "nfc_spec_for"]
