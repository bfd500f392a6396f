"""Serial UID readers through pyserial: RDM6300, hex-line modules, Wiegand-26 converters.

Spec: ``serial:<device or pyserial URL>?format=<fmt>[&baud=<n>][&gap_ms=<n>]``, e.g.
``serial:/dev/ttyUSB0?format=rdm6300``, ``serial:/dev/serial/by-id/usb-1a86…?format=hexline&baud=115200``,
``serial:socket://10.0.0.5:4001?format=wiegand26``, ``serial:loop://?logging=debug&format=hexline``.

Our options (``format``, ``baud``, ``gap_ms``) are taken out of the query wherever they appear;
every other query item stays, in its order, for pyserial's URL handler (``logging`` for
``loop://``/``socket://``, ``file``/``color``/``raw`` for ``spy://``, …). No pyserial handler uses
our three names. A plain device path has no query of its own, so any other option there is a
typo and is refused. Device paths containing ``?`` are not supported.

=============  ==============================================================================
option         meaning
=============  ==============================================================================
``format``     required: ``rdm6300``, ``hexline`` or ``wiegand26`` (see :mod:`.framing`)
``baud``       line speed, default 9600 (ignored by ``socket://``)
``gap_ms``     silence after which a card counts as removed, default 600; must exceed the
               reader's repeat interval with room for one lost frame
=============  ==============================================================================

Capabilities:

==========================  ===================================================================
reads                       the UID the reader prints (RDM6300: 125 kHz EM4100 id, 5 bytes;
                            hexline: ISO 14443 UID, 4/7/10 bytes; Wiegand-26: 3 bytes).
                            Never card applications: every read is ``UID_ONLY``.
reports removal             no; inferred from ``gap_ms`` of silence. A card taken away and put
                            back within the gap is one presentation.
reader loss                 detected when the port fails (USB unplug, pty closed, socket
                            dropped): ``ReaderDisconnected``. A reader that silently stops
                            transmitting cannot be told from an empty reader.
quirks                      frames repeat every 100-250 ms while a card stays; bytes are
                            timestamped as they arrive (background thread), so a slow agent
                            loop does not turn a card held on the reader into new taps.
==========================  ===================================================================

Errors: failing to open → ``ReaderUnavailable``; the port failing later (``SerialException``,
``OSError`` such as EIO when a pty master closes) → ``ReaderDisconnected``. A malformed spec is a
configuration error: ``ValueError``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import serial

from reader_agent.readers.base import CardRead, ReaderDisconnected, ReaderUnavailable
from reader_agent.readers.framing import PresentationTracker, SerialFormat, make_parser
from schemas import CardApplication, CardFacts, ReaderBackend
from schemas.masking import mask_uid

log = logging.getLogger(__name__)

DEFAULT_BAUDRATE = 9600
DEFAULT_GAP_MS = 600
_OUR_OPTIONS = ("format", "baud", "gap_ms")

# How long one blocking read may take: bounds how long close() waits for the pump thread.
_READ_SLICE_S = 0.05
# This many bytes without a single good frame almost always means a wrong format= or baud=.
_GARBAGE_WARNING_BYTES = 512


@dataclass(frozen=True, slots=True)
class SerialTarget:
    """A parsed serial reader target."""

    url: str  # handed to pyserial unchanged, minus our options
    frame_format: SerialFormat
    baudrate: int = DEFAULT_BAUDRATE
    gap_s: float = DEFAULT_GAP_MS / 1000


def parse_target(target: str) -> SerialTarget:
    """Split *target* into the pyserial address and our options; ValueError when malformed."""
    address, has_query, query = target.partition("?")
    if not address:
        raise ValueError(
            "a serial reader needs a device path or pyserial URL, e.g. serial:/dev/ttyUSB0?format=rdm6300"
        )
    ours: dict[str, str] = {}
    passed_on: list[str] = []
    for item in query.split("&") if has_query else []:
        if not item:
            continue
        key, _, value = item.partition("=")
        if key not in _OUR_OPTIONS:
            passed_on.append(item)
            continue
        if key in ours:
            raise ValueError(f"serial reader option {key!r} given twice")
        ours[key] = value
    if passed_on and "://" not in address:
        raise ValueError(
            f"unknown serial reader option(s) {', '.join(passed_on)}; "
            f"a device path takes only {', '.join(_OUR_OPTIONS)}"
        )
    choices = "|".join(SerialFormat)
    if "format" not in ours:
        raise ValueError(f"a serial reader spec needs ?format={choices}")
    try:
        frame_format = SerialFormat(ours["format"])
    except ValueError:
        raise ValueError(f"unknown serial reader format {ours['format']!r}; choose {choices}") from None
    baudrate = _positive_int(ours, "baud", DEFAULT_BAUDRATE)
    gap_ms = _positive_int(ours, "gap_ms", DEFAULT_GAP_MS)
    url = f"{address}?{'&'.join(passed_on)}" if passed_on else address
    return SerialTarget(url=url, frame_format=frame_format, baudrate=baudrate, gap_s=gap_ms / 1000)


def _positive_int(options: dict[str, str], key: str, default: int) -> int:
    if key not in options:
        return default
    raw = options[key]
    if not (raw.isascii() and raw.isdigit()) or int(raw) == 0:
        raise ValueError(f"serial reader option {key}={raw!r} must be a positive whole number")
    return int(raw)


class ByteSource(Protocol):
    """The part of a pyserial port the reader uses (any ``serial_for_url`` object has it)."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...


def open_reader(target: str) -> SerialReader:
    """Open the serial reader at *target* (see the module docstring for the grammar).

    Raises:
        ValueError: the target is malformed, or pyserial does not know the URL scheme.
        ReaderUnavailable: the port cannot be opened (missing, busy, refused).
    """
    parsed = parse_target(target)
    try:
        # exclusive: a second agent (or a stray minicom) on the same port would steal frames.
        port = serial.serial_for_url(
            parsed.url, baudrate=parsed.baudrate, timeout=_READ_SLICE_S, exclusive=True
        )
    except ValueError as exc:
        raise ValueError(f"invalid serial reader address {parsed.url!r}: {exc}") from exc
    except OSError as exc:  # serial.SerialException is an OSError
        raise ReaderUnavailable(f"cannot open serial reader {parsed.url}: {exc}") from exc
    name = f"serial {parsed.frame_format} {parsed.url}"
    return SerialReader(port, frame_format=parsed.frame_format, gap_s=parsed.gap_s, name=name)


class SerialReader:
    """A UID reader on a byte stream; see the module docstring for what it can and cannot do.

    A background thread pumps bytes from *port* through the frame parser and the presentation
    tracker and queues one :class:`CardRead` per presentation; :meth:`poll` takes from that
    queue. The reader owns *port* and closes it. *port* must have a read timeout, which bounds
    how long :meth:`close` waits.
    """

    def __init__(
        self,
        port: ByteSource,
        *,
        frame_format: SerialFormat,
        gap_s: float = DEFAULT_GAP_MS / 1000,
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._port = port
        self._frame_format = frame_format
        self._parser = make_parser(frame_format)
        self._tracker = PresentationTracker(gap_s)
        self._name = name[:200]  # ReaderInfo.name limit
        self._clock = clock
        self._events: queue.Queue[CardRead | Exception] = queue.Queue()
        self._failure: Exception | None = None
        self._closed = False
        self._stop = threading.Event()
        self._bytes_without_frame = 0
        self._warned_garbage = False
        self._pump_thread = threading.Thread(
            target=self._pump, name=f"serial-reader-{frame_format}", daemon=True
        )
        self._pump_thread.start()

    @property
    def name(self) -> str:
        return self._name

    def poll(self, timeout: float) -> CardRead | None:
        """Wait up to *timeout* seconds for a new presentation; see :class:`~reader_agent.readers.Reader`."""
        if self._closed:
            raise ReaderDisconnected(f"{self._name} is closed")
        if self._failure is not None:
            raise ReaderDisconnected(f"{self._name} lost: {self._failure}") from self._failure
        try:
            event = self._events.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if isinstance(event, Exception):
            self._failure = event
            log.warning("%s lost: %s", self._name, event)
            raise ReaderDisconnected(f"{self._name} lost: {event}") from event
        return event

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._pump_thread.join(timeout=max(1.0, 20 * _READ_SLICE_S))
        # Closing a port whose device is already gone can fail; the port is being discarded
        # either way and the caller asked for nothing more than that.
        with contextlib.suppress(OSError):
            self._port.close()

    def _pump(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._port.read(max(1, self._port.in_waiting))
                if data:
                    self._consume(data, self._clock())
        except Exception as exc:
            # Whatever stops the pump (a port error, or a bug) must reach poll() rather than die
            # silently with the thread and leave the agent polling an empty queue forever.
            if not self._stop.is_set():
                self._events.put(exc)

    def _consume(self, data: bytes, now: float) -> None:
        uids = self._parser.feed(data)
        if not uids:
            self._note_garbage(len(data))
            return
        self._bytes_without_frame = 0
        self._warned_garbage = False
        for uid in uids:
            if self._tracker.observe(uid, now):
                log.info("card presented on %s: uid %s", self._name, mask_uid(uid))
                facts = CardFacts(uid=uid.hex().upper(), application=CardApplication.UID_ONLY)
                self._events.put(CardRead(card=facts, backend=ReaderBackend.SERIAL, reader_name=self._name))

    def _note_garbage(self, count: int) -> None:
        self._bytes_without_frame += count
        if self._bytes_without_frame >= _GARBAGE_WARNING_BYTES and not self._warned_garbage:
            self._warned_garbage = True
            log.warning(
                "%s: %d bytes without one valid %s frame (rejected: %s); wrong format= or baud=?",
                self._name,
                self._bytes_without_frame,
                self._frame_format,
                dict(self._parser.rejected) or "none",
            )


__all__ = ["ByteSource", "SerialReader", "SerialTarget", "open_reader", "parse_target"]
