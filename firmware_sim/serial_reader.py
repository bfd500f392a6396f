"""A cheap serial UID reader, emulated on a pseudo-terminal (docs/card-protocols.md §5, §7.4).

The agent opens the pty's slave side with pyserial exactly as it would open ``/dev/ttyUSB0``;
the emulator writes the reader's real frame format into the master side. Like the real
readers, it prints a card's UID when the card arrives and repeats it every ``repeat_interval``
seconds while the card stays, and says nothing when the card leaves.

``port`` is a symlink in a temporary directory, re-pointed on :meth:`SerialReaderSim.replug`,
so one spec string (``serial:<port>?format=…``) survives an unplug/replug cycle the way a udev
symlink (``/dev/serial/by-id/…``) does for real hardware.

What each format reports of a simulated card (only ``VirtualCard.uid`` is used):

=============  ================================================================================
``rdm6300``    A 125 kHz reader cannot read an ISO 14443 card at all; the emulator pretends the
               card also carries an EM4100 tag whose 5 bytes are ``00`` (customer byte) + the
               last 4 bytes of the UID.
``hexline``    The UID itself (4, 7 or 10 bytes), as ``04A1B2C3`` or, in the MFRC522 sketch
               style, ``Card UID: 04 A1 B2 C3``; CR LF line end.
``wiegand26``  The last 3 bytes of the UID (facility code + 16-bit card number), ``XXYYZZ`` + CR.
=============  ================================================================================

This module deliberately does not import the agent's parser: it is written from the reader
formats, so it can catch the parser's mistakes instead of mirroring them.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
import threading
import time
import tty
from collections import deque
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from firmware_sim.cards import VirtualCard


class ReaderFormat(StrEnum):
    RDM6300 = "rdm6300"
    HEXLINE = "hexline"
    WIEGAND26 = "wiegand26"


class HexlineStyle(StrEnum):
    PLAIN = "plain"  # 04A1B2C3\r\n
    LABELLED = "labelled"  # Card UID: 04 A1 B2 C3\r\n (Arduino MFRC522 examples)


class Fault(StrEnum):
    """A fault applied to the next frame the reader emits."""

    BAD_CHECKSUM = "bad_checksum"  # RDM6300: wrong XOR; line formats (no checksum): a non-hex digit
    NOISE = "noise"  # line garbage (high-bit bytes, as from a baud mismatch) just before the frame
    TRUNCATED = "truncated"  # only the first half of the frame, as if the card left mid-frame


_HEXLINE_UID_LENGTHS = (4, 7, 10)


def reader_view(frame_format: ReaderFormat, uid: bytes) -> bytes:
    """The identifier a reader of *frame_format* reports for a card with *uid*."""
    if frame_format is ReaderFormat.RDM6300:
        if len(uid) < 4:
            raise ValueError("an RDM6300 id is derived from at least 4 UID bytes")
        return b"\x00" + uid[-4:]
    if frame_format is ReaderFormat.WIEGAND26:
        if len(uid) < 3:
            raise ValueError("a Wiegand-26 number is derived from at least 3 UID bytes")
        return uid[-3:]
    if len(uid) not in _HEXLINE_UID_LENGTHS:
        raise ValueError("an ISO 14443 UID has 4, 7 or 10 bytes")
    return uid


def encode_frame(
    frame_format: ReaderFormat, reported: bytes, *, hexline_style: HexlineStyle = HexlineStyle.PLAIN
) -> bytes:
    """One frame on the wire carrying *reported* (the output of :func:`reader_view`)."""
    if frame_format is ReaderFormat.RDM6300:
        checksum = 0
        for byte in reported:
            checksum ^= byte
        return b"\x02" + (reported.hex().upper() + f"{checksum:02X}").encode() + b"\x03"
    if frame_format is ReaderFormat.WIEGAND26:
        return reported.hex().upper().encode() + b"\r"
    if hexline_style is HexlineStyle.LABELLED:
        return b"Card UID: " + reported.hex(" ").upper().encode() + b"\r\n"
    return reported.hex().upper().encode() + b"\r\n"


def corrupt_frame(frame_format: ReaderFormat, frame: bytes) -> bytes:
    """*frame* with an error a reader could produce: a wrong checksum, or a garbled digit."""
    if frame_format is ReaderFormat.RDM6300:
        checksum = int(frame[11:13], 16) ^ 0xFF
        return frame[:11] + f"{checksum:02X}".encode() + frame[13:]
    body = frame.rstrip(b"\r\n")
    return body[:-1] + b"G" + frame[len(body) :]


class SerialReaderSim:
    """A serial UID reader on a pty. Thread-safe; use as a context manager.

    Args:
        frame_format: ``rdm6300``, ``hexline`` or ``wiegand26``.
        repeat_interval: seconds between repeated frames while a card stays; ``None`` sends one
            frame per presentation (some Wiegand readers do that).
        hexline_style: how the hexline format prints a UID.
        link_dir: where to put the stable ``port`` symlink; a fresh temporary directory
            (removed on close) by default.
        seed: seeds the noise generator, for reproducible fault runs.
    """

    def __init__(
        self,
        frame_format: ReaderFormat | str,
        *,
        repeat_interval: float | None = 0.15,
        hexline_style: HexlineStyle | str = HexlineStyle.PLAIN,
        link_dir: str | os.PathLike[str] | None = None,
        seed: int | None = None,
    ) -> None:
        if repeat_interval is not None and repeat_interval <= 0:
            raise ValueError("repeat_interval must be positive (or None for one frame per card)")
        self.frame_format = ReaderFormat(frame_format)
        self.hexline_style = HexlineStyle(hexline_style)
        self.repeat_interval = repeat_interval
        self._owns_dir = link_dir is None
        self._dir = Path(tempfile.mkdtemp(prefix="ecard-serial-")) if link_dir is None else Path(link_dir)
        self._link = self._dir / f"{self.frame_format}-reader"
        self._rng = random.Random(seed)

        # Lock order: _io_lock, then _state. _io_lock is held while bytes go to the master fd,
        # so unplug/close/remove wait for a frame in flight instead of closing the fd under it
        # (a closed fd number can be reused by an unrelated file at once).
        self._io_lock = threading.Lock()
        self._state = threading.Condition()
        self._master: int | None = None
        self._slave: int | None = None
        self._card: VirtualCard | None = None
        self._next_due = 0.0
        self._faults: deque[Fault] = deque()
        self._chunk_size: int | None = None
        self._chunk_delay = 0.0
        self._closed = False
        self.frames_written = 0
        self.bytes_dropped = 0

        self._plug()
        self._thread = threading.Thread(
            target=self._emit_loop, name=f"serial-sim-{self.frame_format}", daemon=True
        )
        self._thread.start()

    # -- the reader as the test/demo sees it -------------------------------------------------

    @property
    def port(self) -> str:
        """Stable path of the reader's serial port (a symlink to the current pty)."""
        return str(self._link)

    @property
    def device(self) -> str | None:
        """The pty the symlink points at now; ``None`` while unplugged."""
        with self._state:
            return os.ttyname(self._slave) if self._slave is not None else None

    @property
    def plugged(self) -> bool:
        with self._state:
            return self._master is not None

    def present(self, card: VirtualCard) -> None:
        """Put *card* on the reader: a frame now, then one every ``repeat_interval`` until removed."""
        reader_view(self.frame_format, card.uid)  # refuse an unusable UID here, not in the thread
        with self._state:
            self._card = card
            self._next_due = 0.0
            self._state.notify_all()

    def remove(self, *, mid_frame: bool = False) -> None:
        """Take the card away. No byte is written after this returns.

        With ``mid_frame`` the card leaves while a frame is on the wire: half of it is sent.
        """
        with self._io_lock:
            with self._state:
                card, self._card = self._card, None
                fd = self._master
            if mid_frame and card is not None and fd is not None:
                frame = self._frame_for(card)
                self._write(fd, frame[: len(frame) // 2])

    def inject(self, *faults: Fault | str) -> None:
        """Apply *faults*, one per frame, to the next frames emitted."""
        with self._state:
            self._faults.extend(Fault(fault) for fault in faults)

    def send_noise(self, data: bytes | None = None) -> None:
        """Write *data* (or random line garbage) now, card or no card."""
        with self._io_lock:
            with self._state:
                fd = self._master
            if fd is not None:
                self._write(fd, data if data is not None else self._noise())

    def pace_writes(self, chunk_size: int | None, delay: float = 0.0) -> None:
        """Write each frame in pieces of *chunk_size* bytes, *delay* seconds apart (None: whole frames)."""
        if chunk_size is not None and chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        with self._state:
            self._chunk_size = chunk_size
            self._chunk_delay = delay

    def unplug(self) -> None:
        """The reader is pulled out: the pty closes (the agent's reads fail) and the port path vanishes."""
        with self._io_lock, self._state:
            self._close_pty()
            self._state.notify_all()

    def replug(self) -> None:
        """The reader is plugged back in: a new pty behind the same ``port`` path.

        A card still lying on the reader is reported again, as a restarted reader would.
        """
        with self._state:
            if self._closed:
                raise RuntimeError("the emulator is closed")
            if self._master is None:
                self._plug()
                self._next_due = 0.0
                self._state.notify_all()

    def close(self) -> None:
        """Stop the emulator, close the pty and remove the symlink. Idempotent."""
        with self._io_lock, self._state:
            if self._closed:
                return
            self._closed = True
            self._close_pty()
            self._state.notify_all()
        self._thread.join(timeout=5)
        if self._owns_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> SerialReaderSim:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _plug(self) -> None:
        master, slave = os.openpty()
        # Raw at once: bytes queued before the agent opens the port would otherwise pass through
        # the default line discipline (ICRNL turns the frames' CR into LF).
        tty.setraw(slave)
        # Nobody may be reading (agent not started, or between reconnects): a real UART then
        # loses bytes, whereas a blocking write would hang this emulator once the tty buffer fills.
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        # The emulator keeps its own slave fd open so the pty survives the agent closing and
        # reopening the port; only unplug() ends it.
        staging = self._link.with_name(self._link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        staging.symlink_to(os.ttyname(slave))
        staging.replace(self._link)  # atomic: the port path never dangles during a replug

    def _close_pty(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._link.unlink()
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def _emit_loop(self) -> None:
        while True:
            with self._state:
                while not self._closed and not self._frame_due():
                    self._state.wait(self._seconds_until_due())
                if self._closed:
                    return
            with self._io_lock:
                with self._state:
                    # Re-check: remove/unplug may have run between the two locks.
                    if self._closed:
                        return
                    if not self._frame_due() or self._card is None or self._master is None:
                        continue
                    data = self._next_frame(self._card)
                    fd = self._master
                self._write(fd, data)

    def _frame_due(self) -> bool:
        return self._card is not None and self._master is not None and time.monotonic() >= self._next_due

    def _seconds_until_due(self) -> float | None:
        if self._card is None or self._master is None:
            return None
        return max(0.0, self._next_due - time.monotonic())

    def _next_frame(self, card: VirtualCard) -> bytes:
        """The bytes of the next frame for *card*, faults applied; schedules the one after."""
        self._next_due = time.monotonic() + self.repeat_interval if self.repeat_interval else float("inf")
        frame = self._frame_for(card)
        self.frames_written += 1
        fault = self._faults.popleft() if self._faults else None
        if fault is Fault.BAD_CHECKSUM:
            return corrupt_frame(self.frame_format, frame)
        if fault is Fault.NOISE:
            return self._noise() + frame
        if fault is Fault.TRUNCATED:
            return frame[: len(frame) // 2]
        return frame

    def _frame_for(self, card: VirtualCard) -> bytes:
        reported = reader_view(self.frame_format, card.uid)
        return encode_frame(self.frame_format, reported, hexline_style=self.hexline_style)

    def _noise(self) -> bytes:
        # High-bit bytes: what a baud-rate mismatch or a glitching line looks like, and never
        # part of a valid ASCII frame, so a test knows exactly which frames should survive.
        return bytes(self._rng.randrange(0x80, 0x100) for _ in range(self._rng.randint(3, 12)))

    def _write(self, fd: int, data: bytes) -> None:
        """Send *data* to the master, paced as configured. Caller holds ``_io_lock``."""
        with self._state:
            chunk_size = self._chunk_size or len(data) or 1
            delay = self._chunk_delay
        chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
        for index, chunk in enumerate(chunks):
            if index and delay:
                time.sleep(delay)
            try:
                written = os.write(fd, chunk)
            except BlockingIOError:
                written = 0
            except OSError:
                # The agent's side hung up in a way the pty reports on our side too; a real
                # reader keeps transmitting into the void.
                written = 0
            self.bytes_dropped += len(chunk) - written


__all__ = [
    "Fault",
    "HexlineStyle",
    "ReaderFormat",
    "SerialReaderSim",
    "corrupt_frame",
    "encode_frame",
    "reader_view",
]
