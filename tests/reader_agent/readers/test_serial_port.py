"""The pyserial backend: spec parsing, the shared contract and fault injection over real ptys, loop://."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from firmware_sim.cards import VirtualCard, uid_only_card
from firmware_sim.serial_reader import Fault, HexlineStyle, ReaderFormat, SerialReaderSim, encode_frame
from reader_agent.readers import CardRead, Reader, ReaderDisconnected, ReaderUnavailable, open_reader
from reader_agent.readers.framing import SerialFormat
from reader_agent.readers.serial_port import SerialReader, SerialTarget, parse_target
from schemas import CardApplication, ReaderBackend
from tests.reader_agent.readers.contract import ReaderContract, assert_quiet, poll_until_read

GAP_MS = 400
REPEAT_S = 0.1  # real readers repeat every 100-250 ms; the fast end keeps the suite quick


class TestParseTarget:
    @pytest.mark.parametrize(
        ("target", "expected"),
        [
            ("/dev/ttyUSB0?format=rdm6300", SerialTarget("/dev/ttyUSB0", SerialFormat.RDM6300)),
            (
                "/dev/ttyS1?format=hexline&baud=115200&gap_ms=800",
                SerialTarget("/dev/ttyS1", SerialFormat.HEXLINE, baudrate=115200, gap_s=0.8),
            ),
            ("loop://?format=wiegand26", SerialTarget("loop://", SerialFormat.WIEGAND26)),
            (
                "loop://?logging=debug&format=hexline",
                SerialTarget("loop://?logging=debug", SerialFormat.HEXLINE),
            ),
            (
                "spy:///dev/ttyUSB0?file=/tmp/t.txt&format=rdm6300&color&gap_ms=300",
                SerialTarget("spy:///dev/ttyUSB0?file=/tmp/t.txt&color", SerialFormat.RDM6300, gap_s=0.3),
            ),
            (
                "socket://10.0.0.5:4001?format=wiegand26&",
                SerialTarget("socket://10.0.0.5:4001", SerialFormat.WIEGAND26),
            ),
        ],
    )
    def test_splits_our_options_from_pyserials(self, target: str, expected: SerialTarget) -> None:
        """format/baud/gap_ms are ours wherever they appear; the rest of the query stays for pyserial."""
        assert parse_target(target) == expected

    @pytest.mark.parametrize(
        ("target", "message"),
        [
            ("/dev/ttyUSB0", r"needs \?format="),
            ("/dev/ttyUSB0?format=em4100", "unknown serial reader format"),
            ("/dev/ttyUSB0?format=hexline&format=rdm6300", "given twice"),
            ("/dev/ttyUSB0?format=hexline&baud=fast", "positive whole number"),
            ("/dev/ttyUSB0?format=hexline&gap_ms=0", "positive whole number"),
            ("/dev/ttyUSB0?format=hexline&gapms=300", "unknown serial reader option"),
            ("?format=hexline", "needs a device path"),
        ],
    )
    def test_refuses_malformed_targets(self, target: str, message: str) -> None:
        """A spec mistake is a configuration error, reported before any port is touched."""
        with pytest.raises(ValueError, match=message):
            parse_target(target)


class TestOpen:
    def test_missing_device_is_unavailable(self, tmp_path: Path) -> None:
        """No such port: ReaderUnavailable, which the agent retries with backoff."""
        with pytest.raises(ReaderUnavailable) as excinfo:
            open_reader(f"serial:{tmp_path / 'ttyUSB9'}?format=rdm6300")
        assert excinfo.value.code == "reader_unavailable"
        assert isinstance(excinfo.value.__cause__, serial.SerialException)

    def test_unknown_url_scheme_is_a_config_error(self) -> None:
        with pytest.raises(ValueError, match="invalid serial reader address"):
            open_reader("serial:nosuch://x?format=hexline")

    def test_loop_url_opens(self) -> None:
        """Any pyserial URL works; the name says format and address."""
        reader = open_reader("serial:loop://?format=hexline")
        try:
            assert reader.name == "serial hexline loop://"
            assert reader.poll(timeout=0.1) is None
        finally:
            reader.close()


class TestLoopFraming:
    """Bytes written into pyserial's loop:// come back through the whole reader."""

    @pytest.fixture
    def port(self) -> serial.Serial:
        return serial.serial_for_url("loop://", timeout=0.05)

    def test_frames_become_presentations(self, port: serial.Serial) -> None:
        """Repeated frames, split anywhere and mixed with noise, are one read per card, in order."""
        reader = SerialReader(port, frame_format=SerialFormat.RDM6300, gap_s=5.0, name="loop")
        try:
            a = encode_frame(ReaderFormat.RDM6300, bytes.fromhex("0004A1B2C3"))
            b = encode_frame(ReaderFormat.RDM6300, bytes.fromhex("0004D4E5F6"))
            wire = b"\xff\x13" + a + a + b"\x02012" + a + b + b"\x80" + b
            for i in range(0, len(wire), 5):
                port.write(wire[i : i + 5])
            reads = [poll_until_read(reader, 2.0), poll_until_read(reader, 2.0)]
            assert_quiet(reader, 0.3)
        finally:
            reader.close()
        assert [read.card.uid for read in reads] == ["0004A1B2C3", "0004D4E5F6"]
        assert all(read.card.application is CardApplication.UID_ONLY for read in reads)
        assert all(read.backend is ReaderBackend.SERIAL and read.reader_name == "loop" for read in reads)

    def test_times_presentations_with_the_clock_given(self, port: serial.Serial) -> None:
        """Removal is judged by the injected clock at the moment bytes arrive."""
        now = [0.0]
        reader = SerialReader(
            port, frame_format=SerialFormat.WIEGAND26, gap_s=0.5, name="loop", clock=lambda: now[0]
        )
        try:
            port.write(b"A1B2C3\r")
            assert poll_until_read(reader, 2.0).card.uid == "A1B2C3"
            now[0] = 0.4
            port.write(b"A1B2C3\r")
            assert reader.poll(timeout=0.3) is None
            now[0] = 1.0  # 0.6 s of silence since the last frame: the card left and came back
            port.write(b"A1B2C3\r")
            assert poll_until_read(reader, 2.0).card.uid == "A1B2C3"
        finally:
            reader.close()


# -- the shared contract, over real ptys -------------------------------------------------------


class SerialRig:
    """A :class:`SerialReaderSim` seen as a ReaderRig."""

    reads_card_applications = False

    def __init__(self, sim: SerialReaderSim, gap_ms: int = GAP_MS) -> None:
        self.sim = sim
        self.gap_s = gap_ms / 1000
        self.spec = f"serial:{sim.port}?format={sim.frame_format}&gap_ms={gap_ms}"

    def present(self, card: VirtualCard) -> None:
        self.sim.present(card)

    def remove(self) -> None:
        # The reader only learns of a removal from silence.
        self.sim.remove()
        time.sleep(self.gap_s + 0.15)

    def unplug(self) -> None:
        self.sim.unplug()

    def replug(self) -> None:
        self.sim.replug()


@pytest.fixture(params=list(ReaderFormat))
def sim(request: pytest.FixtureRequest) -> Iterator[SerialReaderSim]:
    with SerialReaderSim(request.param, repeat_interval=REPEAT_S, seed=3) as sim:
        yield sim


@pytest.fixture
def rig(sim: SerialReaderSim) -> SerialRig:
    return SerialRig(sim)


@pytest.mark.sim
class TestSerialReader(ReaderContract):
    pass


# -- faults at the wire ----------------------------------------------------------------------

CARD_A = uid_only_card(bytes.fromhex("04A1B2C3"))
CARD_B = uid_only_card(bytes.fromhex("04D4E5F6"))


def reads_within(reader: Reader, seconds: float) -> list[CardRead]:
    reads = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        read = reader.poll(timeout=0.1)
        if read is not None:
            reads.append(read)
    return reads


def poll_until_error(reader: Reader, seconds: float = 2.0) -> None:
    """Poll until the reader raises; fail if it does not within *seconds*."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        reader.poll(timeout=0.1)
    raise AssertionError(f"reader still polling after {seconds} s")


# Fault tests count reads over a second or more while the emulator dribbles bytes; with the whole
# suite loading both cores a writer thread was once starved past the 400 ms gap, turning one
# presentation into two. A wider gap keeps the test about framing, not about the scheduler.
FAULT_GAP_MS = 1000


@pytest.mark.sim
class TestFaults:
    @pytest.fixture
    def rig(self, sim: SerialReaderSim) -> SerialRig:
        return SerialRig(sim, gap_ms=FAULT_GAP_MS)

    @pytest.fixture
    def reader(self, rig: SerialRig) -> Iterator[Reader]:
        reader = open_reader(rig.spec)
        try:
            yield reader
        finally:
            reader.close()

    def test_noise_bad_checksum_truncation_and_split_writes(
        self, sim: SerialReaderSim, reader: Reader
    ) -> None:
        """A reader garbling frames and dribbling bytes still yields one read per card."""
        sim.pace_writes(chunk_size=3, delay=0.005)
        sim.inject(Fault.NOISE, Fault.BAD_CHECKSUM, Fault.TRUNCATED, Fault.NOISE)
        sim.present(CARD_A)
        reads = reads_within(reader, 1.5)
        sim.remove()
        assert [read.card.uid[-6:] for read in reads] == ["A1B2C3"]

    def test_corrupt_repeat_while_held_does_not_split_the_presentation(
        self, sim: SerialReaderSim, reader: Reader
    ) -> None:
        """A garbled repeat (one frame lost, within the gap) is not mistaken for a removal."""
        sim.present(CARD_A)
        poll_until_read(reader)
        sim.inject(Fault.NOISE, Fault.BAD_CHECKSUM, Fault.NOISE)
        assert_quiet(reader, 1.0)
        sim.remove()

    def test_slow_reader(self, sim: SerialReaderSim, reader: Reader) -> None:
        """A frame arriving a byte at a time, slowly, is still one read."""
        sim.pace_writes(chunk_size=1, delay=0.02)
        sim.present(CARD_B)
        read = poll_until_read(reader)
        sim.remove()
        assert read.card.uid.endswith("E5F6")

    def test_card_pulled_mid_frame_then_next_card(self, rig: SerialRig, reader: Reader) -> None:
        """Half a frame followed by another member's card: the other card is read, nothing else."""
        rig.present(CARD_A)
        poll_until_read(reader)
        rig.sim.remove(mid_frame=True)
        rig.present(CARD_B)
        reads = reads_within(reader, 1.0)
        rig.remove()
        assert [read.card.uid[-4:] for read in reads] == ["E5F6"]

    def test_reads_before_unplug_are_delivered_before_the_error(
        self, sim: SerialReaderSim, reader: Reader
    ) -> None:
        """A tap the reader saw just before it was pulled out is not lost."""
        sim.present(CARD_A)
        time.sleep(0.3)  # the agent is busy: frames arrive, nobody polls
        sim.unplug()
        read = reader.poll(timeout=1.0)
        assert read is not None
        assert read.card.uid.endswith("C3")
        with pytest.raises(ReaderDisconnected) as excinfo:
            poll_until_error(reader)
        assert isinstance(excinfo.value.__cause__, OSError)
        with pytest.raises(ReaderDisconnected):
            reader.poll(timeout=0.1)  # and it stays that way until reopened

    def test_unplugged_port_cannot_be_opened(self, rig: SerialRig) -> None:
        """While the reader is out, opening it fails with ReaderUnavailable; after replug it works."""
        rig.unplug()
        with pytest.raises(ReaderUnavailable):
            open_reader(rig.spec)
        rig.replug()
        open_reader(rig.spec).close()

    @pytest.mark.usefixtures("reader")
    def test_second_agent_on_the_port_is_refused(self, rig: SerialRig) -> None:
        """The port is opened exclusively: another process would steal frames."""
        with pytest.raises(ReaderUnavailable, match="exclusively"):
            open_reader(rig.spec)

    def test_uids_are_masked_in_logs(
        self, sim: SerialReaderSim, reader: Reader, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Card identifiers never reach the log in the clear."""
        caplog.set_level(logging.DEBUG)
        sim.present(CARD_B)
        read = poll_until_read(reader)
        sim.unplug()
        with pytest.raises(ReaderDisconnected):
            poll_until_error(reader)
        assert caplog.records
        assert read.card.uid not in caplog.text
        assert read.card.uid[-4:] not in caplog.text


@pytest.mark.sim
def test_hexline_mfrc522_style(tmp_path: Path) -> None:
    """The Arduino MFRC522 sketch output ("Card UID: 04 A1 B2 C3") reads like a plain hex line."""
    with SerialReaderSim(ReaderFormat.HEXLINE, hexline_style=HexlineStyle.LABELLED, link_dir=tmp_path) as sim:
        reader = open_reader(f"serial:{sim.port}?format=hexline")
        try:
            sim.present(uid_only_card(bytes.fromhex("04A1B2C3D4E5F6")))
            assert poll_until_read(reader).card.uid == "04A1B2C3D4E5F6"
        finally:
            reader.close()


@pytest.mark.sim
def test_demo_cli_drives_the_reader() -> None:
    """`ecard sim serial` prints its port, then taps cards typed on stdin."""
    cli = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from firmware_sim.serial_cli import serial_app; serial_app()",
            "--format",
            "wiegand26",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert cli.stdin is not None
    assert cli.stdout is not None
    try:
        spec = next(line.split()[-1] for line in cli.stdout if line.startswith("reader spec:"))
        reader = open_reader(spec)
        try:
            cli.stdin.write("tap 04A1B2C3\n")
            cli.stdin.flush()
            assert poll_until_read(reader).card.uid == "A1B2C3"
        finally:
            reader.close()
        cli.stdin.write("quit\n")
        cli.stdin.flush()
        assert cli.wait(timeout=10) == 0
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
