"""nfcpy backend: a contactless frontend driven by nfcpy's own drivers (PN532 on a UART, USB readers).

Spec ``nfc:<path>``. The path is nfcpy's own grammar, passed unchanged to
``nfc.ContactlessFrontend.open`` — plus one form nfcpy cannot express:

=================================  ===============================================================
``nfc:tty:USB0:pn532``             nfcpy: ``/dev/ttyUSB0`` with the pn532 driver (``S0``, ``ACM0``,
                                   ``AMA0`` likewise; any other name is looked up in ``/dev``)
``nfc:tty:<name>:pn532``           nfcpy: ``/dev/<name>``; *name* may hold only letters, digits, ``-``
``nfc:usb:054c:06c3``              nfcpy: first USB reader with that vendor/product (here RC-S380)
``nfc:usb`` / ``nfc:usb:001:023``  nfcpy: first supported USB reader / bus 1, device 23
``nfc:tty:/abs/path[:driver]``     ours: any serial device by absolute path — a pty
                                   (``/dev/pts/5``), ``/dev/serial/by-id/…``, a symlink. Driver
                                   ``pn532`` or ``arygon``; without one both are tried. The path
                                   must not contain ``:`` or spaces (nfcpy runs ``stty -F <path>``)
=================================  ===============================================================

nfcpy matches serial ports only against names directly under ``/dev`` (docs/card-protocols.md §4.1),
so pseudo-terminals and ``/dev/serial/by-id`` links cannot be named in its grammar. For an
absolute path this backend opens the transport itself and hands it to the driver's ``init`` —
exactly what nfcpy's ``device.connect`` does after its search.

Capabilities:

==============================  =========  ===================================================
function                        support    remarks
==============================  =========  ===================================================
ISO 14443-4A (T-Union 易通卡)   yes        RATS, then the shared T-Union APDUs (cardapp)
card challenge (issuer key)     yes        INTERNAL AUTHENTICATE once the agent calls
                                           ``use_card_challenges``; the answer goes to the
                                           server, which has the issuer check it
ISO 14443-3A without ISO-DEP    UID only   Type 2 / MIFARE Classic: not activated, UID from
                                           anticollision (also ISO-DEP cards whose ATS
                                           nfcpy cannot parse)
Type B, FeliCa                  no         only ``106A`` is polled
removal detection               yes        ISO-DEP R(NAK) presence check every 0.1 s while
                                           the card lies on the reader; re-select by UID for
                                           UID-only cards
one read per presentation       yes        a held card is reported once, again only after it
                                           was seen gone
reader unplugged                yes        ``ReaderDisconnected`` (the port's I/O fails twice)
==============================  =========  ===================================================

Errors: nfcpy's exceptions are translated here, ``from`` the original. A single I/O error on
the serial link (a corrupted frame, a lost byte) is retried once — a real UART glitches, and a
member should not have to tap again for it; a second one in a row means the reader is gone.
Timeouts while talking to a card are the card's fault (``CardTimeout``), not the reader's.

Logging: this module masks UIDs. nfcpy's own DEBUG output prints UIDs and APDUs in clear, so a
kiosk keeps the ``nfc`` logger at INFO or above.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from reader_agent.cardapp import CardChallenger, card_facts
from reader_agent.readers.base import (
    CardRead,
    CardReadError,
    CardTimeout,
    ReaderDisconnected,
    ReaderUnavailable,
)
from schemas import ReaderBackend
from schemas.masking import mask_uid

log = logging.getLogger(__name__)

SENSE_INTERVAL = 0.05
"""Pause between polls of an empty field: fast enough that a tap feels instant, idle otherwise."""

PRESENCE_INTERVAL = 0.1
"""Pause between presence checks of a card lying on the reader (nfcpy's own ``connect`` rate)."""

TTY_DRIVERS = ("pn532", "arygon")

_T = TypeVar("_T")


class _LinkGlitch(Exception):
    """One failed exchange with the reader hardware; retried once before it means 'disconnected'."""


class _ActivationFailed(Exception):
    """The card did not complete RATS; worth one more try while it is still in the field."""


def open_reader(target: str) -> NfcReader:
    """Open the nfcpy reader at *target* (see the module docstring for the path grammar).

    Raises:
        ReaderUnavailable: nfcpy is not installed, no device at the path, no permission, or the
            device did not answer like the named driver's chip.
    """
    return NfcReader(_open_frontend(target))


@dataclass(frozen=True, slots=True)
class _DirectTty:
    port: str
    drivers: tuple[str, ...]


def parse_direct_tty(target: str) -> _DirectTty | None:
    """``tty:/abs/path[:driver]`` → port and drivers to try; ``None`` for nfcpy's own grammar."""
    kind, _, rest = target.partition(":")
    if kind != "tty" or not rest.startswith("/"):
        return None
    port, _, driver = rest.partition(":")
    if not driver:
        return _DirectTty(port, TTY_DRIVERS)
    if driver not in TTY_DRIVERS:
        choices = ", ".join(TTY_DRIVERS)
        raise ReaderUnavailable(f"unknown nfcpy serial driver {driver!r}; choose one of: {choices}")
    return _DirectTty(port, (driver,))


def _open_frontend(target: str) -> Any:
    try:
        import nfc
        import nfc.clf.transport
    except ImportError as exc:  # nfcpy, or libusb1 which nfcpy imports unconditionally
        raise ReaderUnavailable(f"nfcpy is not usable: {exc}") from exc
    if not target:
        raise ReaderUnavailable("empty nfcpy path; e.g. nfc:tty:USB0:pn532 or nfc:tty:/dev/pts/5:pn532")
    direct = parse_direct_tty(target)
    clf = nfc.ContactlessFrontend()
    if direct is None:
        open_errors: tuple[type[BaseException], ...] = (ValueError, *_link_errors())
        try:
            found = clf.open(target)
        except open_errors as exc:
            raise ReaderUnavailable(f"读卡器无法打开: nfcpy path {target!r}: {exc}") from exc
        if not found:
            raise ReaderUnavailable(f"读卡器未连接: no nfcpy reader on path {target!r}")
        return clf
    if not os.path.exists(direct.port):
        raise ReaderUnavailable(f"读卡器未连接: {direct.port} does not exist")
    failure: BaseException | None = None
    for driver_name in direct.drivers:
        transport = None
        try:
            driver = importlib.import_module(f"nfc.clf.{driver_name}")
            transport = nfc.clf.transport.TTY(direct.port)
            device = driver.init(transport)
        except _link_errors() as exc:
            failure = exc
            if transport is not None:
                _close_serial(transport)
            continue
        device._path = direct.port  # as nfcpy's device.connect does; it names the device
        clf.device = device
        return clf
    raise ReaderUnavailable(
        f"读卡器无响应: no {'/'.join(direct.drivers)} answered on {direct.port}: {failure}"
    ) from failure


def _close_serial(transport: Any) -> None:
    """Close nfcpy's TTY transport without its flushOutput, which fails on a dead port."""
    serial_port = getattr(transport, "tty", None)
    if serial_port is not None:
        with contextlib.suppress(OSError, termios.error):
            serial_port.close()
        transport.tty = None


def _link_errors() -> tuple[type[BaseException], ...]:
    """What a failing reader link raises through nfcpy.

    pyserial's SerialException is an OSError; a pty whose master is gone fails tcflush with
    termios.error, which nfcpy lets through untouched; so are the drivers' own chip errors (an
    error frame, a bad status).
    """
    import nfc.clf.pn53x
    import nfc.clf.rcs380

    return (
        OSError,
        termios.error,
        nfc.clf.pn53x.Chipset.Error,
        nfc.clf.rcs380.StatusError,
        nfc.clf.rcs380.CommunicationError,
    )


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Map nfcpy/pyserial errors to the reader error tree (plus :class:`_LinkGlitch`)."""
    import nfc.clf
    import nfc.tag

    try:
        yield
    except nfc.tag.TagCommandError as exc:
        if exc.errno == nfc.tag.TIMEOUT_ERROR:
            raise CardTimeout(f"卡片无响应，请重新刷卡 ({what}: {exc})") from exc
        raise CardReadError(f"读卡失败，请重新刷卡 ({what}: {exc})") from exc
    except nfc.clf.TimeoutError as exc:
        raise CardTimeout(f"卡片无响应，请重新刷卡 ({what}: timeout)") from exc
    except nfc.clf.CommunicationError as exc:
        raise CardReadError(f"读卡失败，请重新刷卡 ({what}: {type(exc).__name__} {exc})") from exc
    except _link_errors() as exc:
        raise _LinkGlitch(f"{what}: {type(exc).__name__}: {exc}") from exc


class NfcReader:
    """A :class:`~reader_agent.readers.Reader` over an open nfcpy ``ContactlessFrontend``."""

    def __init__(self, clf: Any) -> None:
        self._clf: Any = clf
        self._name = str(clf.device) if clf.device is not None else "nfcpy"
        # The presentation being held on the reader: its UID, and its ISO-DEP session if any.
        self._held_uid: bytes | None = None
        self._held_tag: Any = None
        self._challenger: CardChallenger | None = None

    @property
    def name(self) -> str:
        return self._name

    def use_card_challenges(self, challenger: CardChallenger | None) -> None:
        """Challenge every T-Union card read from now on (see ``reader_agent.cardapp``)."""
        self._challenger = challenger

    def poll(self, timeout: float) -> CardRead | None:
        """Wait up to *timeout* s for a new card; a card still lying on the reader is not new."""
        deadline = time.monotonic() + timeout
        while True:
            if self._held_uid is not None:
                if not self._held_card_present():
                    log.debug("nfc %s: card %s left", self._name, mask_uid(self._held_uid))
                    self._held_uid, self._held_tag = None, None
                    continue
                pause = PRESENCE_INTERVAL
            else:
                target = self._sense()
                if target is not None:
                    return self._read_presentation(target)
                pause = SENSE_INTERVAL
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(pause, remaining))

    def close(self) -> None:
        clf, self._clf = self._clf, None
        if clf is None:
            return
        transport = getattr(getattr(clf.device, "chipset", None), "transport", None)
        try:
            clf.close()
        # close() runs on every error path of the agent; a reader that cannot even be told
        # goodbye (unplugged, wedged) must not turn that into a second failure.
        except Exception as exc:
            log.debug("nfc %s: close: %s: %s", self._name, type(exc).__name__, exc)
        finally:
            clf.device = None
            if transport is not None:
                _close_serial(transport)

    # -- steps -----------------------------------------------------------------------------

    def _frontend(self) -> Any:
        if self._clf is None:
            raise ReaderUnavailable(f"reader {self._name} is closed")
        return self._clf

    def _retrying(self, operation: Callable[[], _T]) -> _T:
        """Run *operation*; one link glitch is retried, a second means the reader is gone."""
        try:
            return operation()
        except _LinkGlitch as glitch:
            log.warning("nfc %s: %s; retrying once", self._name, glitch)
        try:
            return operation()
        except _LinkGlitch as glitch:
            raise ReaderDisconnected(f"读卡器连接中断: {self._name}: {glitch}") from glitch.__cause__

    def _sense(self, uid: bytes | None = None) -> Any:
        import nfc.clf

        clf = self._frontend()
        wanted = nfc.clf.RemoteTarget("106A", sel_req=bytearray(uid)) if uid else nfc.clf.RemoteTarget("106A")

        def sense() -> Any:
            with _translated("sense"):
                return clf.sense(wanted)

        return self._retrying(sense)

    def _held_card_present(self) -> bool:
        if self._held_tag is None:
            assert self._held_uid is not None
            return self._sense(self._held_uid) is not None
        tag = self._held_tag

        def check() -> bool:
            with _translated("presence check"):
                return bool(tag.is_present)

        return self._retrying(check)

    def _read_presentation(self, target: Any) -> CardRead:
        """Read the card just sensed. Whatever happens, this presentation is spent.

        A link glitch or a failed activation (a card at the edge of the field, a late chip) is
        worth one more attempt from a fresh selection: the member is still holding the card out.
        """
        uid = _target_uid(target)
        self._held_uid, self._held_tag = uid, None
        try:
            return self._read_target(target, uid)
        except (_LinkGlitch, _ActivationFailed) as first:
            log.warning("nfc %s: card %s: %s; reading it again", self._name, mask_uid(uid), first)
        again = self._sense(uid)
        if again is None:
            raise CardReadError("读卡失败，请重新刷卡 (the card left before it could be read)")
        try:
            return self._read_target(again, uid)
        except _LinkGlitch as glitch:
            raise CardReadError(f"读卡失败，请重新刷卡 ({glitch})") from glitch.__cause__
        except _ActivationFailed as failed:
            raise CardTimeout(f"卡片无响应，请重新刷卡 ({failed})") from failed.__cause__

    def _read_target(self, target: Any, uid: bytes) -> CardRead:
        import nfc.tag.tt4

        clf = self._frontend()
        if _speaks_iso_dep(target):
            # nfc.tag.activate() would swallow the CommunicationError and return None; the
            # Type 4 activation itself raises, so the failure keeps its cause.
            try:
                with _translated("activation"):
                    tag = nfc.tag.tt4.activate(clf, target)
            except CardReadError as exc:
                raise _ActivationFailed(str(exc)) from exc.__cause__
            except IndexError:
                # nfcpy reads FSCI and FWI at fixed ATS offsets; an ATS without TA/TB breaks
                # that parse. The card did answer, so its UID still identifies it.
                log.warning("nfc %s: card %s: ATS nfcpy cannot parse; UID only", self._name, mask_uid(uid))
                tag = None
        else:
            tag = None
        if tag is not None:
            self._held_tag = tag

            def transmit(apdu: bytes) -> bytes:
                with _translated("APDU"):
                    return bytes(tag.transceive(bytearray(apdu)))

            facts = card_facts(uid, transmit, self._challenger)
        else:
            facts = card_facts(uid, None)
        log.info("nfc %s: read card %s (%s)", self._name, mask_uid(uid), facts.application.value)
        return CardRead(card=facts, backend=ReaderBackend.NFC, reader_name=self._name)


def _target_uid(target: Any) -> bytes:
    if target.sdd_res:
        return bytes(target.sdd_res)
    if target.rid_res:  # Type 1 (Topaz): UID0-3 follow HR0 HR1 in the RID response
        return bytes(target.rid_res[2:6])
    raise CardReadError("读卡失败，请重新刷卡 (the card gave no UID)")


def _speaks_iso_dep(target: Any) -> bool:
    return bool(target.sel_res) and bool(target.sel_res[0] & 0x20) and not target.rid_res


__all__ = ["NfcReader", "open_reader", "parse_direct_tty"]
