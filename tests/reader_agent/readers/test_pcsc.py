"""The pyscard backend through the real stack: pyscard -> pcscd -> vpcd -> firmware_sim card.

Uses vpcd slot 35963 ("Virtual PCD 00 00"); slot 35964 is left to the end-to-end tests.
The unplug test stops pcscd for a moment; a finalizer starts it again whatever happens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from firmware_sim.cards import Apdu, TUnionCard, VirtualCard
from firmware_sim.vpcd import VpcdSlot
from reader_agent.cardapp import SELECT_TUNION
from reader_agent.readers import (
    CardReadError,
    Reader,
    ReaderUnavailable,
    UnsupportedCard,
    open_reader,
)
from schemas import CardApplication, ReaderBackend
from tests.reader_agent.readers.contract import ReaderContract, assert_quiet, poll_until_read, tunion

pytestmark = pytest.mark.sim

READER_NAME = "Virtual PCD 00 00"
SLOT_PORT = 35963
REPO = Path(__file__).resolve().parents[3]
PCSCD_PIDFILE = Path("/run/pcscd/pcscd.pid")


def start_pcscd() -> None:
    """Start pcscd (idempotent) and wait until it lists our reader."""
    subprocess.run([str(REPO / "scripts" / "ensure-pcscd.sh")], check=True, timeout=30, capture_output=True)
    from smartcard import scard

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult == scard.SCARD_S_SUCCESS:
            hresult, names = scard.SCardListReaders(context, [])
            scard.SCardReleaseContext(context)
            if hresult == scard.SCARD_S_SUCCESS and READER_NAME in names:
                return
        time.sleep(0.05)
    raise RuntimeError(f"pcscd is running but does not list {READER_NAME!r}")


def stop_pcscd() -> None:
    """Stop the pcscd named in its pid file (SIGTERM) and wait until it has exited."""
    pid = int(PCSCD_PIDFILE.read_text().strip("\0\n "))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline += 5
        time.sleep(0.05)


@pytest.fixture(scope="session")
def pcscd() -> None:
    start_pcscd()


@dataclass
class PcscRig:
    """pcscd + vpcd slot 35963: present = connect a virtual card, unplug = stop pcscd."""

    slot: VpcdSlot
    spec: str = f"pcsc:{READER_NAME}"
    reads_card_applications: bool = True
    unplugged: bool = field(default=False)

    def present(self, card: VirtualCard) -> None:
        self.slot.insert(card)

    def remove(self) -> None:
        self.slot.remove()

    def unplug(self) -> None:
        self.unplugged = True
        stop_pcscd()

    def replug(self) -> None:
        start_pcscd()
        self.unplugged = False


@pytest.fixture
def rig(pcscd: None) -> Iterator[PcscRig]:
    rig = PcscRig(slot=VpcdSlot(port=SLOT_PORT))
    try:
        yield rig
    finally:
        rig.slot.close()
        if rig.unplugged:
            start_pcscd()


@pytest.fixture
def reader(rig: PcscRig) -> Iterator[Reader]:
    reader = open_reader(rig.spec)
    try:
        yield reader
    finally:
        reader.close()


class TestPcscReader(ReaderContract):
    pass


@dataclass
class _StallingCard(TUnionCard):
    """A card that hangs on SELECT until released, so a test can pull it away mid-read."""

    selected: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def application_apdu(self, apdu: Apdu) -> bytes:
        if apdu.ins == 0xA4:
            self.selected.set()
            self.released.wait(5)
        return super().application_apdu(apdu)


@dataclass
class _NoUidCard(TUnionCard):
    """What a reader that does not support GET DATA looks like: FF CA answers 6A 81."""

    def pseudo_apdu(self, _apdu: Apdu) -> bytes:
        return bytes.fromhex("6A81")


class TestPcscSpecifics:
    def test_reader_name_and_backend_are_carried_in_the_read(self, rig: PcscRig, reader: Reader) -> None:
        """Every read names the full pcscd reader name and the pcsc backend."""
        rig.present(tunion(11))
        read = poll_until_read(reader)
        assert read.reader_name == READER_NAME
        assert read.backend is ReaderBackend.PCSC

    @pytest.mark.usefixtures("pcscd")
    def test_empty_target_opens_the_first_reader(self) -> None:
        reader = open_reader("pcsc")
        try:
            assert reader.name == READER_NAME
        finally:
            reader.close()

    @pytest.mark.usefixtures("pcscd")
    def test_unknown_reader_is_unavailable_and_lists_the_readers(self) -> None:
        with pytest.raises(ReaderUnavailable, match="Virtual PCD 00 00") as excinfo:
            open_reader("pcsc:ACR1252")
        assert excinfo.value.code == "reader_unavailable"

    @pytest.mark.usefixtures("pcscd")
    def test_reader_name_is_matched_case_insensitively(self) -> None:
        reader = open_reader("pcsc:virtual pcd 00 01")
        try:
            assert reader.name == "Virtual PCD 00 01"
        finally:
            reader.close()

    def test_no_pcscd_at_open_is_unavailable(self, tmp_path: Path) -> None:
        """Without pcscd (here: a client pointed at a socket nobody serves) open raises ReaderUnavailable."""
        probe = (
            "from reader_agent.readers import open_reader, ReaderUnavailable\n"
            "try:\n"
            "    open_reader('pcsc')\n"
            "except ReaderUnavailable as exc:\n"
            "    print('unavailable:', exc)\n"
        )
        env = {**os.environ, "PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd.comm")}
        result = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=30, cwd=REPO
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("unavailable:")

    def test_card_already_on_the_reader_at_open_is_read(self, rig: PcscRig) -> None:
        """A card lying on the reader when the agent starts counts as one presentation."""
        card = tunion(12)
        rig.present(card)
        reader = open_reader(rig.spec)
        try:
            assert poll_until_read(reader).card.card_no == card.card_no
            assert_quiet(reader, 0.6)
        finally:
            reader.close()

    def test_card_pulled_away_mid_read_fails_and_the_next_card_reads(
        self, rig: PcscRig, reader: Reader
    ) -> None:
        """A card taken away while it is being read raises CardReadError; the reader keeps working."""
        card = _StallingCard(uid=bytes.fromhex("A1B2C3E0"))
        rig.present(card)

        def pull_away() -> None:
            if card.selected.wait(5):
                rig.remove()

        puller = threading.Thread(target=pull_away)
        puller.start()
        try:
            with pytest.raises(CardReadError):
                poll_until_read(reader)
        finally:
            card.released.set()
            puller.join(10)
        assert SELECT_TUNION in card.apdu_log
        rig.present(tunion(13))
        assert poll_until_read(reader).card.card_no == tunion(13).card_no

    def test_card_without_uid_is_unsupported_once(self, rig: PcscRig, reader: Reader) -> None:
        """A card the reader cannot give a UID for is reported as unsupported, once per presentation."""
        rig.present(_NoUidCard(uid=bytes.fromhex("A1B2C3E1")))
        with pytest.raises(UnsupportedCard):
            poll_until_read(reader)
        assert_quiet(reader, 0.6)

    def test_poll_on_closed_reader_is_unavailable(self, reader: Reader) -> None:
        reader.close()
        with pytest.raises(ReaderUnavailable):
            reader.poll(timeout=0.1)

    def test_tap_latency(self, rig: PcscRig, reader: Reader) -> None:
        """Card on the reader -> CardRead stays under a second; pcscd's 0.4 s poll is most of it."""
        noticed, total = [], []
        for n in range(5):
            card = tunion(20 + n)
            assert reader.poll(timeout=0) is None
            started = time.monotonic()
            rig.slot.insert(card)  # returns once pcscd has powered the card
            noticed.append(time.monotonic() - started)
            read = poll_until_read(reader)
            total.append(time.monotonic() - started)
            rig.remove()
            assert read.card.application is CardApplication.TUNION
        print(
            "pcsc tap latency (pcscd noticed / CardRead returned): "
            + ", ".join(f"{a * 1000:.0f}/{b * 1000:.0f} ms" for a, b in zip(noticed, total, strict=True))
        )
        assert max(total) < 1.5
        assert max(b - a for a, b in zip(noticed, total, strict=True)) < 0.3
