"""The nfcpy backend through nfcpy's real pn532 driver and pyserial, against the PN532 emulator on a pty.

Nothing below the :class:`~reader_agent.readers.Reader` interface is faked: frames cross a real
pseudo-terminal, and faults are injected by the emulated chip.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware_sim.cards import VirtualCard, uid_only_card, xiamen_card
from firmware_sim.pn532 import Pn532Sim, dev_link_path
from reader_agent.readers import (
    CardReadError,
    CardTimeout,
    Reader,
    ReaderDisconnected,
    ReaderUnavailable,
    open_reader,
)
from reader_agent.readers.nfc import parse_direct_tty
from schemas import CardApplication, ReaderBackend
from tests.reader_agent.readers.contract import ReaderContract, assert_quiet, poll_until_read, tunion

IN_COMMUNICATE_THRU = 0x42
IN_LIST_PASSIVE_TARGET = 0x4A


class NfcRig:
    """A PN532 emulator behind a stable symlink; the reader opens it by absolute path."""

    reads_card_applications = True

    def __init__(self, sim: Pn532Sim) -> None:
        self.sim = sim
        self.spec = sim.spec

    def present(self, card: VirtualCard) -> None:
        self.sim.present(card)

    def remove(self) -> None:
        self.sim.remove()

    def unplug(self) -> None:
        self.sim.unplug()

    def replug(self) -> None:
        self.sim.replug()


@pytest.fixture
def sim() -> Iterator[Pn532Sim]:
    with Pn532Sim() as simulator:
        yield simulator


@pytest.fixture
def rig(sim: Pn532Sim) -> NfcRig:
    return NfcRig(sim)


@pytest.mark.sim
class TestNfcReader(ReaderContract):
    def test_reads_are_tagged_with_the_nfc_backend_and_device(self, rig: NfcRig, reader: Reader) -> None:
        rig.present(tunion(7))
        read = poll_until_read(reader)
        assert read.backend is ReaderBackend.NFC
        assert read.reader_name == f"PN532v1.6 at {rig.sim.path}"


class TestParseDirectTty:
    def test_nfcpy_grammar_is_left_to_nfcpy(self) -> None:
        assert parse_direct_tty("tty:USB0:pn532") is None
        assert parse_direct_tty("usb:054c:06c3") is None

    def test_absolute_path_with_driver(self) -> None:
        direct = parse_direct_tty("tty:/dev/pts/5:pn532")
        assert direct is not None
        assert (direct.port, direct.drivers) == ("/dev/pts/5", ("pn532",))

    def test_absolute_path_without_driver_tries_all_serial_drivers(self) -> None:
        direct = parse_direct_tty("tty:/dev/serial/by-id/usb-FTDI_FT232R-if00-port0")
        assert direct is not None
        assert direct.drivers == ("pn532", "arygon")

    def test_unknown_driver(self) -> None:
        with pytest.raises(ReaderUnavailable, match="unknown nfcpy serial driver"):
            parse_direct_tty("tty:/dev/pts/5:pn533")


@pytest.mark.sim
class TestOpening:
    def test_nfcpys_own_grammar_finds_a_dev_name(self) -> None:
        """A PN532 at /dev/<name> opens with nfcpy's unchanged ``tty:<name>:pn532`` (needs root)."""
        assert os.access("/dev", os.W_OK), "this test puts a symlink in /dev; run it as root, as CI does"
        with Pn532Sim(link=dev_link_path()) as sim:
            assert sim.spec == f"nfc:tty:{sim.path.name}:pn532"
            reader = open_reader(sim.spec)
            try:
                sim.present(tunion(8))
                assert poll_until_read(reader).card.card_no == tunion(8).card_no
            finally:
                reader.close()

    def test_missing_path_is_unavailable(self, tmp_path: Path) -> None:
        with pytest.raises(ReaderUnavailable, match="does not exist"):
            open_reader(f"nfc:tty:{tmp_path}/nothing:pn532")

    def test_missing_dev_name_is_unavailable(self) -> None:
        with pytest.raises(ReaderUnavailable, match="no nfcpy reader"):
            open_reader("nfc:tty:no-such-reader-here:pn532")

    def test_empty_path_is_unavailable(self) -> None:
        with pytest.raises(ReaderUnavailable, match="empty nfcpy path"):
            open_reader("nfc:")

    def test_a_silent_serial_port_is_unavailable(self) -> None:
        """A tty where nothing answers like a PN532 (wrong device, chip dead) fails to open."""
        master, slave = os.openpty()
        try:
            with pytest.raises(ReaderUnavailable, match="no pn532 answered"):
                open_reader(f"nfc:tty:{os.ttyname(slave)}:pn532")
        finally:
            os.close(master)
            os.close(slave)


@pytest.fixture
def reader(sim: Pn532Sim) -> Iterator[Reader]:
    opened = open_reader(sim.spec)
    yield opened
    opened.close()


@dataclass
class MinimalAtsCard(VirtualCard):
    def ats(self) -> bytes:
        return b"\x02\x00"  # TL, T0 announcing neither TA, TB, TC nor historical bytes


@pytest.mark.sim
class TestFaults:
    def test_corrupt_checksum_while_sensing_is_survived(self, sim: Pn532Sim, reader: Reader) -> None:
        """A garbled answer to the poll command costs a retry, not the tap."""
        sim.corrupt_next_response(command=IN_LIST_PASSIVE_TARGET)
        sim.present(tunion(10))
        assert poll_until_read(reader).card.card_no == tunion(10).card_no
        assert sim.faults_pending == 0

    def test_corrupt_checksum_during_activation_is_survived(self, sim: Pn532Sim, reader: Reader) -> None:
        sim.corrupt_next_response(command=IN_COMMUNICATE_THRU)  # the first one carries RATS
        sim.present(tunion(11))
        assert poll_until_read(reader).card.card_no == tunion(11).card_no
        assert sim.faults_pending == 0

    def test_corrupt_checksum_mid_apdu_is_survived(self, sim: Pn532Sim, reader: Reader) -> None:
        """A garbled frame in the middle of reading the card: the card is read again, counted once."""
        sim.corrupt_next_response(command=IN_COMMUNICATE_THRU, skip=1)  # the SELECT after RATS
        sim.present(tunion(12))
        assert poll_until_read(reader).card.card_no == tunion(12).card_no
        assert sim.faults_pending == 0
        assert_quiet(reader, 0.5)

    def test_card_removed_mid_apdu_is_a_card_error_and_the_next_tap_works(
        self, sim: Pn532Sim, reader: Reader
    ) -> None:
        sim.remove_card_during_next_apdu()
        sim.present(tunion(13))
        with pytest.raises(CardTimeout) as excinfo:
            poll_until_read(reader)
        assert excinfo.value.code == "card_timeout"
        assert isinstance(excinfo.value, CardReadError)
        sim.present(tunion(30))
        assert poll_until_read(reader).card.card_no == tunion(30).card_no

    def test_slow_card_within_its_frame_waiting_time(self, sim: Pn532Sim, reader: Reader) -> None:
        """A card that takes 100 ms for its APDU (its FWT is 155 ms) reads normally."""
        sim.delay_card_answers(0.1)
        sim.present(tunion(14))
        assert poll_until_read(reader).card.card_no == tunion(14).card_no
        assert sim.faults_pending == 0

    def test_card_slower_than_the_chips_timeout_once(self, sim: Pn532Sim, reader: Reader) -> None:
        """One answer too late for the chip: nfcpy's ISO-DEP retransmission fetches it."""
        sim.delay_card_answers(1.0)
        sim.present(tunion(15))
        assert poll_until_read(reader).card.card_no == tunion(15).card_no
        assert sim.faults_pending == 0

    def test_chip_answering_too_late_once(self, sim: Pn532Sim, reader: Reader) -> None:
        """The host gives up on the chip mid-APDU (and aborts with ACK); ISO-DEP recovery reads on."""
        sim.delay_next_response(0.6, command=IN_COMMUNICATE_THRU, skip=1)
        sim.present(tunion(16))
        assert poll_until_read(reader).card.card_no == tunion(16).card_no
        assert sim.faults_pending == 0

    def test_chip_too_late_for_activation_once(self, sim: Pn532Sim, reader: Reader) -> None:
        """nfcpy does not repeat RATS; the backend selects the card again and activates it anew."""
        sim.delay_next_response(0.6, command=IN_COMMUNICATE_THRU)
        sim.present(tunion(17))
        assert poll_until_read(reader).card.card_no == tunion(17).card_no
        assert sim.faults_pending == 0

    def test_port_closed_while_idle(self, sim: Pn532Sim, reader: Reader) -> None:
        reader.poll(timeout=0.1)
        sim.unplug()
        with pytest.raises(ReaderDisconnected) as excinfo:
            reader.poll(timeout=1.0)
        assert excinfo.value.code == "reader_disconnected"

    def test_port_closed_while_a_card_is_held(self, sim: Pn532Sim, reader: Reader) -> None:
        sim.present(tunion(17))
        poll_until_read(reader)
        sim.unplug()
        with pytest.raises(ReaderDisconnected):
            reader.poll(timeout=1.0)

    def test_port_closed_mid_read(self, sim: Pn532Sim, reader: Reader) -> None:
        """Unplugged while the card is being read: the reader is gone, not the card."""
        sim.delay_card_answers(0.15)
        sim.present(tunion(18))
        unplugger = threading.Timer(0.05, sim.unplug)
        unplugger.start()
        try:
            with pytest.raises(ReaderDisconnected):
                poll_until_read(reader)
        finally:
            unplugger.join()

    def test_opening_an_unplugged_reader_is_unavailable_until_replugged(self, sim: Pn532Sim) -> None:
        sim.unplug()
        with pytest.raises(ReaderUnavailable) as excinfo:
            open_reader(sim.spec)
        assert excinfo.value.code == "reader_unavailable"
        sim.replug()
        reader = open_reader(sim.spec)
        try:
            sim.present(tunion(31))
            assert poll_until_read(reader).card.card_no == tunion(31).card_no
        finally:
            reader.close()

    def test_closing_an_unplugged_reader_is_quiet(self, sim: Pn532Sim, reader: Reader) -> None:
        sim.unplug()
        reader.close()
        reader.close()
        with pytest.raises(ReaderUnavailable):
            reader.poll(timeout=0.1)


@pytest.mark.sim
class TestPresentations:
    def test_card_without_iso_dep_is_read_by_uid(self, sim: Pn532Sim, reader: Reader) -> None:
        """A MIFARE-like card (SAK 08, no ISO 14443-4) is identified by its UID, once while held."""
        sim.present(VirtualCard(uid=bytes.fromhex("04112233445566"), sak=0x08, atqa=bytes.fromhex("0044")))
        read = poll_until_read(reader)
        assert read.card.uid == "04112233445566"
        assert read.card.application is CardApplication.UID_ONLY
        assert_quiet(reader, 0.6)
        sim.remove()
        sim.present(uid_only_card(bytes.fromhex("04A1B2C3")))
        assert poll_until_read(reader).card.uid == "04A1B2C3"

    def test_card_with_a_minimal_ats_is_read_by_uid(self, sim: Pn532Sim, reader: Reader) -> None:
        """An ATS without TA/TB (nfcpy cannot parse it) still yields the card's UID, not a crash."""
        sim.present(MinimalAtsCard(uid=bytes.fromhex("A1B2C3E0")))
        read = poll_until_read(reader)
        assert read.card.uid == "A1B2C3E0"
        assert read.card.application is CardApplication.UID_ONLY
        assert_quiet(reader, 0.5)

    def test_random_uid_card_held_counts_once(self, sim: Pn532Sim, reader: Reader) -> None:
        """A card whose UID changes per activation is tracked by its ISO-DEP session, not its UID."""
        random_card = xiamen_card("3104390000000000019", bytes.fromhex("08000000"))
        random_card.random_uid = True
        sim.present(random_card)
        read = poll_until_read(reader)
        assert read.card.uid.startswith("08")
        assert_quiet(reader, 0.8)

    def test_nothing_sensitive_is_logged(
        self, sim: Pn532Sim, reader: Reader, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="reader_agent")
        sim.present(tunion(19))
        read = poll_until_read(reader)
        assert read.card.card_no is not None
        assert "read card" in caplog.text
        assert read.card.uid not in caplog.text
        assert read.card.card_no not in caplog.text

    def test_tap_latency(self, sim: Pn532Sim, reader: Reader) -> None:
        """A card laid on an idle reader is read within a fraction of a second (median of 10)."""
        latencies = []
        for n in range(10):
            assert reader.poll(timeout=0.25) is None  # the previous card's removal has been noticed
            delay = 0.01 * n  # the card lands at different points of the polling cycle
            placed: list[float] = []

            def place(n: int = n, placed: list[float] = placed) -> None:
                placed.append(time.monotonic())
                sim.present(tunion(20 + n))

            timer = threading.Timer(delay, place)
            timer.start()
            read = poll_until_read(reader)
            latencies.append(time.monotonic() - placed[0])
            timer.join()
            assert read.card.card_no == tunion(20 + n).card_no
            sim.remove()
        assert statistics.median(latencies) < 0.15, latencies
