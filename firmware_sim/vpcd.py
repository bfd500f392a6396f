"""A virtual card on a vsmartcard-vpcd slot, so pcscd (and every PC/SC client) sees a real card.

vpcd runs inside pcscd and *listens* on TCP 127.0.0.1:35963 (reader "Virtual PCD 00 00") and
35964 ("Virtual PCD 00 01"); the card is the TCP client (docs/card-protocols.md §3, §7.2):

* connect = card put on the reader, close = card taken away;
* every message is a 2-byte big-endian length and a payload, in both directions;
* a 1-byte payload is a control: ``00`` power off, ``01`` power on, ``02`` reset, ``04`` get ATR.
  Only ``04`` is answered (with the ATR); anything longer is a C-APDU, answered with an R-APDU.

vpcd reads with ``MSG_WAITALL`` and no timeout, so a request left unanswered blocks pcscd's reader
thread: the slot answers every request at once from a background thread.

Usage::

    with VpcdSlot(port=35963) as slot:
        slot.insert(card)          # returns once pcscd has the card (powered, ATR read)
        slot.wait_until_read(5.0)  # the reader has talked to the card and gone quiet
        slot.remove()              # returns once pcscd has noticed the card is gone
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from types import TracebackType

from firmware_sim.cards import VirtualCard
from schemas.masking import mask_uid

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963

_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only

CTRL_OFF = 0x00
CTRL_ON = 0x01
CTRL_RESET = 0x02
CTRL_ATR = 0x04

# pcscd polls a vpcd slot every 0.4 s; the timeouts below leave room for a loaded 2-core CI box.
INSERT_TIMEOUT = 5.0
REMOVE_TIMEOUT = 5.0
READ_SETTLE = 0.15
# pcsc-lite's PCSCLITE_STATUS_POLL_RATE (0.4 s) plus a margin for a busy machine.
PRESENCE_POLL_PERIOD = 0.5
# pcscd tells its clients about a card just after the last exchange the slot can observe (the
# ATR read at power-up, the failed presence poll at removal); this covers the gap.
PUBLISH_GRACE = 0.02


class VpcdError(Exception):
    """The virtual card could not be presented to or taken from pcscd."""


class VpcdUnavailable(VpcdError):
    """Nothing listens on the slot's port: pcscd is not running or has no vpcd driver."""


class _Presentation:
    """One stay of one card on the reader: a TCP connection and the thread that answers vpcd.

    A fresh object per insert keeps a late event of the previous card (its EOF, a stray APDU)
    from being mistaken for one of the next card.
    """

    def __init__(self, card: VirtualCard, sock: socket.socket, label: str) -> None:
        self.card = card
        self.sock = sock
        self.label = label
        self.powered = False
        self.apdu_count = 0
        self.last_apdu_at = 0.0
        self.end_reason = ""
        # The two latest messages from vpcd, to tell what vpcd was doing when it let go.
        self._recent: tuple[bytes, bytes] = (b"", b"")
        self.seen = threading.Event()
        self.ended = threading.Event()
        self.activity = threading.Condition()
        self._withdrawing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"vpcd-{label}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def withdraw(self) -> None:
        """Start taking the card away; :attr:`ended` is set once vpcd has let go of it.

        Only our sending half is closed. vpcd notices at its next request (its read returns 0),
        closes its side, and our read sees EOF. When that request was a presence poll, the EOF is
        the moment pcscd marks the reader empty, so waiting for it replaces a blind sleep.
        """
        self._withdrawing.set()
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.abort()  # not connected any more: the serving thread is already ending

    def abort(self) -> None:
        """Drop the connection at once (wakes the serving thread's blocking read)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _serve(self) -> None:
        try:
            while True:
                message = self._receive()
                if message is not None:
                    self._recent = (self._recent[1], message)
                if message is None:
                    self.end_reason = "removed" if self._withdrawing.is_set() else "pcscd closed the slot"
                    return
                reply = self._answer(message)
                if reply is not None and not self._withdrawing.is_set():
                    self._send(reply)
        except OSError as exc:
            # pcscd killed or restarted mid-conversation: the card simply falls off the reader.
            self.end_reason = "removed" if self._withdrawing.is_set() else f"connection lost: {exc}"
        finally:
            with contextlib.suppress(OSError):
                self.sock.close()
            uid = mask_uid(self.card.uid)
            log.debug("vpcd %s: card %s off the reader (%s)", self.label, uid, self.end_reason)
            self.ended.set()
            with self.activity:
                self.activity.notify_all()

    @property
    def released_at_presence_poll(self) -> bool:
        """Whether vpcd let go of the card while asking for its ATR outside a power-up.

        That is pcscd's presence poll (``IFDHICCPresence``), which then reports the slot empty
        at once. vpcd also lets go when an APDU or a power-up goes unanswered, but then pcscd
        learns that the slot is empty only at its next presence poll, up to 0.4 s later; a card
        inserted before that poll would be taken for the old one, still lying there.
        """
        previous, last = self._recent
        return last == bytes([CTRL_ATR]) and previous not in (bytes([CTRL_ON]), bytes([CTRL_RESET]))

    def _receive(self) -> bytes | None:
        header = self._receive_exactly(2)
        if header is None:
            return None
        length = int.from_bytes(header, "big")
        return self._receive_exactly(length) if length else b""

    def _receive_exactly(self, n: int) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = self.sock.recv(n - len(chunks))
            if not chunk:
                return None
            chunks += chunk
            self._ack_now()
        return bytes(chunks)

    def _ack_now(self) -> None:
        """Acknowledge at once rather than after Linux's 40 ms delayed-ACK timer.

        vpcd writes the length and the payload of a message separately, so Nagle holds the
        payload back until the length is acknowledged: without this every APDU costs 40 ms.
        The flag is not sticky, hence once per read.
        """
        if _TCP_QUICKACK is not None:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)

    def _send(self, payload: bytes) -> None:
        self.sock.sendall(len(payload).to_bytes(2, "big") + payload)

    def _answer(self, message: bytes) -> bytes | None:
        if len(message) == 1:
            return self._control(message[0])
        if not message:
            return None
        response = self.card.process_apdu(message)
        with self.activity:
            self.apdu_count += 1
            self.last_apdu_at = time.monotonic()
            self.activity.notify_all()
        return response

    def _control(self, code: int) -> bytes | None:
        if code == CTRL_ATR:
            # pcscd asks for the ATR after powering the card up; once it has one for a powered card
            # the reader state is "present, powered" and SCardConnect works.
            if self.powered:
                self.seen.set()
            return self.card.atr()
        if code in (CTRL_ON, CTRL_RESET):
            # The card stays in the same field: selection state is cleared, the UID is kept
            # (a random-UID card draws a new one per presentation, in VpcdSlot.insert).
            self.powered = True
            self.card.reset()
        elif code == CTRL_OFF:
            self.powered = False
            self.card.reset()
        else:
            log.debug("vpcd %s: ignoring unknown control byte %02X", self.label, code)
        return None


class VpcdSlot:
    """One vpcd reader slot, into which virtual cards are put and from which they are taken.

    Not thread-safe: one owner drives a slot. pcscd accepts one card per slot; a second client
    on the same port waits until the first disconnects, so use one slot object per port.
    """

    def __init__(self, port: int = DEFAULT_PORT, host: str = DEFAULT_HOST) -> None:
        self.host = host
        self.port = port
        self._presentation: _Presentation | None = None

    @property
    def card(self) -> VirtualCard | None:
        """The card on the reader, if any (``None`` also after pcscd dropped it)."""
        presentation = self._presentation
        if presentation is None or presentation.ended.is_set():
            return None
        return presentation.card

    @property
    def apdu_count(self) -> int:
        """C-APDUs the current card has answered since it was inserted."""
        return self._presentation.apdu_count if self._presentation else 0

    def insert(self, card: VirtualCard, timeout: float = INSERT_TIMEOUT) -> None:
        """Put *card* on the reader; returns once pcscd has powered it and read its ATR.

        Raises:
            VpcdUnavailable: nothing listens on the port (pcscd down).
            VpcdError: a card is already inserted, or pcscd did not pick the card up in time.
        """
        if self.card is not None:
            raise VpcdError(f"slot {self.port} already holds a card; remove it first")
        self._discard()
        card.activate()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except ConnectionRefusedError as exc:
            where = f"{self.host}:{self.port}"
            raise VpcdUnavailable(f"no vpcd listening on {where} (is pcscd running?)") from exc
        except OSError as exc:
            raise VpcdError(f"connecting to vpcd at {self.host}:{self.port} failed: {exc}") from exc
        # A connection reset this early surfaces below as "pcscd dropped the card".
        with contextlib.suppress(OSError):
            sock.settimeout(None)
            # Replies are tiny and latency matters more than throughput.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        presentation = _Presentation(card, sock, str(self.port))
        self._presentation = presentation
        presentation.start()
        log.debug("vpcd %s: card %s inserted", self.port, mask_uid(card.uid))
        deadline = time.monotonic() + timeout
        while not presentation.seen.wait(0.05):
            if presentation.ended.is_set():
                self._discard()
                raise VpcdError(f"pcscd dropped the card on slot {self.port}: {presentation.end_reason}")
            if time.monotonic() > deadline:
                self._discard()
                raise VpcdError(
                    f"pcscd did not pick up the card on slot {self.port} within {timeout} s "
                    "(is another simulator connected to this port, or was the previous card "
                    "pulled away in a way pcscd has not noticed yet?)"
                )
        time.sleep(PUBLISH_GRACE)

    def remove(self, timeout: float = REMOVE_TIMEOUT) -> None:
        """Take the card away; returns once pcscd has noticed (a no-op without a card)."""
        presentation = self._presentation
        if presentation is None:
            return
        presentation.withdraw()
        if not presentation.ended.wait(timeout):
            # pcscd stopped polling (busy or hung): drop the connection; it will notice eventually.
            log.warning("vpcd %s: pcscd did not notice the removal within %s s", self.port, timeout)
        elif presentation.end_reason == "removed":
            released_at_poll = presentation.released_at_presence_poll
            time.sleep(PUBLISH_GRACE if released_at_poll else PRESENCE_POLL_PERIOD)
        self._discard()

    def tap(self, card: VirtualCard, hold: float = 0.8, *, wait_read: float = 0.0) -> bool:
        """Insert *card*, hold it for *hold* seconds, remove it; True if a reader read it meanwhile.

        With *wait_read*, the card stays up to that much longer when no reader has finished
        with it by the end of *hold*, like a member who waits for the beep.
        """
        self.insert(card)
        try:
            hold_until = time.monotonic() + hold
            read = self.wait_until_read(hold + wait_read)
            time.sleep(max(0.0, hold_until - time.monotonic()))
            return read
        finally:
            self.remove()

    def wait_until_read(self, timeout: float, settle: float = READ_SETTLE) -> bool:
        """Wait until a reader has sent the card APDUs and then been quiet for *settle* seconds.

        Returns False on timeout, or when the card left the reader before any APDU arrived.
        """
        presentation = self._presentation
        if presentation is None:
            return False
        deadline = time.monotonic() + timeout
        with presentation.activity:
            while True:
                now = time.monotonic()
                if presentation.apdu_count and now - presentation.last_apdu_at >= settle:
                    return True
                if presentation.ended.is_set():
                    return presentation.apdu_count > 0
                if now >= deadline:
                    return False
                wake_at = presentation.last_apdu_at + settle if presentation.apdu_count else deadline
                presentation.activity.wait(max(0.0, min(wake_at, deadline) - now) + 0.001)

    def close(self) -> None:
        """Remove any card. Idempotent."""
        self.remove()

    def _discard(self) -> None:
        presentation, self._presentation = self._presentation, None
        if presentation is not None:
            presentation.abort()
            presentation.join(timeout=1.0)

    def __enter__(self) -> VpcdSlot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
