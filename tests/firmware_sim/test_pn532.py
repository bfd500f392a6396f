"""The PN532 firmware emulator: frame codec, ISO-DEP card side, command semantics, the pty, the CLI.

The pure layers are tested byte for byte against what nfcpy 1.0.4 sends and expects
(docs/card-protocols.md §4); the pty tests talk raw frames to a running emulator; the last class
runs nfcpy's real pn532 driver against it.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.cards import SW_OK, Apdu, VirtualCard, xiamen_card
from firmware_sim.pn532 import (
    ACK,
    ERROR_FRAME,
    NACK,
    BadFrame,
    FrameParser,
    HostAck,
    HostCommand,
    HostNack,
    IsoDepPicc,
    PiccState,
    Pn532Firmware,
    Pn532Sim,
    encode_frame,
    nfc_spec_for,
    rf_timeout_seconds,
    strip_cascade_tags,
)
from firmware_sim.pn532_cli import CommandError, SimCommand, parse_command
from schemas.masking import mask_uid

UID = bytes.fromhex("A1B2C3D4")
CARD_NO = "3104390012345678901"
SELECT_TUNION = bytes.fromhex("00A4040008A00000063201010500")


def hexb(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def host_frame(code: int, data: bytes = b"") -> bytes:
    """A command frame as nfcpy writes it (normal below 254 data bytes, else extended)."""
    return encode_frame(bytes([0xD4, code]) + data)


def command(code: int, data: bytes = b"") -> HostCommand:
    return HostCommand(bytes([0xD4, code]) + data)


class TestEncodeFrame:
    def test_firmware_version_reply_is_what_nfcpy_expects(self) -> None:
        """The GetFirmwareVersion answer matches the bytes nfcpy's pn532.init checks."""
        assert encode_frame(hexb("D5 03 32 01 06 07")) == hexb("00 00 FF 06 FA D5 03 32 01 06 07 E8 00")

    def test_sam_configuration_reply_is_exact(self) -> None:
        """nfcpy compares the whole SAMConfiguration frame, not a prefix."""
        assert encode_frame(hexb("D5 15")) == hexb("00 00 FF 02 FE D5 15 16 00")

    def test_error_payload_is_the_error_frame(self) -> None:
        assert encode_frame(b"\x7f") == ERROR_FRAME

    def test_long_payloads_use_the_extended_frame(self) -> None:
        """From 255 bytes on (nfcpy reads LEN=FF as 'extended'), the extended form is used."""
        assert encode_frame(bytes(254))[3] == 254
        frame = encode_frame(bytes([0xD5]) + bytes(264))
        assert frame[:5] == hexb("00 00 FF FF FF")
        assert frame[5:8] == hexb("01 09 F6")
        assert len(frame) == 8 + 265 + 2

    def test_empty_payload_is_refused(self) -> None:
        with pytest.raises(ValueError, match="TFI"):
            encode_frame(b"")


class TestFrameParser:
    def test_nfcpy_preamble_and_command(self) -> None:
        """nfcpy's first write (ten 00s, then GetFirmwareVersion) is one command."""
        events = FrameParser().feed(bytes(10) + hexb("00 00 FF 02 FE D4 02 2A 00"))
        assert events == [command(0x02)]

    def test_ack_and_nack(self) -> None:
        assert FrameParser().feed(ACK + NACK) == [HostAck(), HostNack()]

    def test_extended_frame(self) -> None:
        """The Diagnose line test nfcpy sends at init is an extended frame of 265 bytes."""
        data = b"\x00" + bytes(x & 0xFF for x in range(262))
        raw = hexb("00 00 FF FF FF 01 09 F6") + b"\xd4\x00" + data
        raw += bytes([-sum(b"\xd4\x00" + data) & 0xFF, 0])
        assert raw == host_frame(0x00, data)
        assert FrameParser().feed(raw) == [command(0x00, data)]

    def test_byte_by_byte(self) -> None:
        parser = FrameParser()
        events = [event for byte in host_frame(0x4A, hexb("01 00")) for event in parser.feed(bytes([byte]))]
        assert events == [command(0x4A, hexb("01 00"))]

    def test_two_frames_in_one_read(self) -> None:
        raw = host_frame(0x12, b"\x00") + ACK + host_frame(0x02)
        assert FrameParser().feed(raw) == [command(0x12, b"\x00"), HostAck(), command(0x02)]

    def test_noise_before_a_frame_is_ignored(self) -> None:
        """Line noise and 55 wake-up bytes before the start code do not hide the frame."""
        events = FrameParser().feed(hexb("55 55 13 37 FF 00") + host_frame(0x02))
        assert events == [command(0x02)]

    def test_bad_length_checksum_resyncs_on_the_next_frame(self) -> None:
        bad = bytearray(host_frame(0x02))
        bad[4] ^= 0x01
        events = FrameParser().feed(bytes(bad) + host_frame(0x12, b"\x00"))
        assert events[0] == BadFrame("length checksum")
        assert events[-1] == command(0x12, b"\x00")

    def test_bad_data_checksum_drops_only_that_frame(self) -> None:
        bad = bytearray(host_frame(0x02))
        bad[-2] ^= 0x01
        events = FrameParser().feed(bytes(bad) + host_frame(0x02))
        assert events == [BadFrame("data checksum"), command(0x02)]

    def test_a_frame_that_is_no_host_command_earns_the_error_frame(self) -> None:
        [event] = FrameParser().feed(encode_frame(hexb("D5 03")))
        assert isinstance(event, BadFrame)
        assert event.answer_with_error_frame

    def test_partial_frame_is_kept_until_complete_or_discarded(self) -> None:
        parser = FrameParser()
        frame = host_frame(0x02)
        assert parser.feed(frame[:5]) == []
        assert parser.has_partial_frame
        parser.discard_partial_frame()
        assert not parser.has_partial_frame
        assert parser.feed(frame) == [command(0x02)]

    @given(
        data=st.binary(max_size=300),
        code=st.integers(0, 255),
        preamble=st.lists(st.sampled_from([0x00, 0x55]), max_size=12),
        cut=st.integers(0, 400),
    )
    def test_any_command_survives_encoding_preamble_and_splitting(
        self, data: bytes, code: int, preamble: list[int], cut: int
    ) -> None:
        raw = bytes(preamble) + host_frame(code, data)
        parser = FrameParser()
        events = parser.feed(raw[:cut]) + parser.feed(raw[cut:])
        assert events == [command(code, data)]


@dataclass
class EchoCard(VirtualCard):
    """INS EE echoes its data plus 300 filler bytes: long commands and long responses."""

    def application_apdu(self, apdu: Apdu) -> bytes:
        if apdu.ins == 0xEE:
            return apdu.data + bytes(range(256)) + bytes(44) + SW_OK
        return super().application_apdu(apdu)


def activated(card: VirtualCard, rats_param: int = 0x80) -> IsoDepPicc:
    picc = IsoDepPicc(card)
    picc.power_on()
    assert picc.select()
    assert picc.exchange(bytes([0xE0, rats_param])) == card.ats()
    return picc


class TestIsoDepPicc:
    def test_rats_answers_the_ats_and_enters_iso_dep(self) -> None:
        card = xiamen_card(CARD_NO, UID)
        picc = activated(card)
        assert picc.state is PiccState.PROTOCOL
        assert picc.fsd == 256

    def test_silent_before_selection(self) -> None:
        picc = IsoDepPicc(xiamen_card(CARD_NO, UID))
        picc.power_on()
        assert picc.exchange(hexb("E0 80")) is None
        assert picc.exchange(hexb("02") + SELECT_TUNION) is None

    def test_i_block_carries_an_apdu_and_its_answer(self) -> None:
        card = xiamen_card(CARD_NO, UID)
        picc = activated(card)
        answer = picc.exchange(hexb("02") + SELECT_TUNION)
        assert answer is not None
        assert answer[0] == 0x02
        assert answer[1:] == xiamen_card(CARD_NO, UID).process_apdu(SELECT_TUNION)

    def test_block_numbers_follow_the_reader(self) -> None:
        picc = activated(xiamen_card(CARD_NO, UID))
        first = picc.exchange(hexb("02") + SELECT_TUNION)
        second = picc.exchange(hexb("03") + hexb("00B0950000"))
        assert first is not None
        assert second is not None
        assert (first[0], second[0]) == (0x02, 0x03)

    def test_command_chaining(self) -> None:
        """A chained command is acknowledged block by block and answered once complete."""
        picc = activated(EchoCard(uid=UID))
        apdu = hexb("00 EE 00 00 0A") + bytes(range(10))
        assert picc.exchange(b"\x12" + apdu[:6]) == b"\xa2"
        answer = picc.exchange(b"\x03" + apdu[6:])
        assert answer is not None
        assert answer[0] & 0x01 == 1
        assert answer[1:11] == bytes(range(10))

    def test_response_chaining_respects_fsd(self) -> None:
        """With FSD 16 (RATS E0 00) the FCI comes in 13-byte chained blocks, each acked by the reader."""
        card = xiamen_card(CARD_NO, UID)
        picc = activated(card, rats_param=0x00)
        block = picc.exchange(b"\x02" + SELECT_TUNION)
        received, pni = b"", 0
        while block is not None and block[0] & 0x10:
            assert len(block) == 1 + 13
            received += block[1:]
            pni ^= 1
            block = picc.exchange(bytes([0xA2 | pni]))
        assert block is not None
        assert block[0] & 0x01 == pni
        assert received + block[1:] == xiamen_card(CARD_NO, UID).process_apdu(SELECT_TUNION)

    def test_presence_check_is_acknowledged(self) -> None:
        """R(NAK) with the next block number (nfcpy's is_present) gets an R(ACK)."""
        picc = activated(xiamen_card(CARD_NO, UID))
        picc.exchange(hexb("02") + SELECT_TUNION)
        assert picc.exchange(b"\xb3") == b"\xa2"

    def test_lost_answer_is_sent_again(self) -> None:
        """R(NAK) with the number of the block just answered re-sends that answer (rule 11)."""
        picc = activated(xiamen_card(CARD_NO, UID))
        answer = picc.exchange(hexb("02") + SELECT_TUNION)
        assert picc.exchange(b"\xb2") == answer

    def test_deselect_halts_the_card(self) -> None:
        picc = activated(xiamen_card(CARD_NO, UID))
        assert picc.exchange(b"\xc2") == b"\xc2"
        assert picc.state is PiccState.HALT
        assert picc.exchange(hexb("02") + SELECT_TUNION) is None

    def test_card_without_iso_dep_ignores_rats(self) -> None:
        picc = IsoDepPicc(VirtualCard(uid=UID, sak=0x08))
        picc.power_on()
        picc.select()
        assert picc.exchange(hexb("E0 80")) is None


def run(firmware: Pn532Firmware, code: int, data: str = "") -> bytes:
    reply = firmware.execute(command(code, hexb(data)))
    return reply.payload


@pytest.fixture
def firmware() -> Pn532Firmware:
    return Pn532Firmware()


class TestPn532Firmware:
    def test_identity_and_setup_commands(self, firmware: Pn532Firmware) -> None:
        assert run(firmware, 0x02) == hexb("D5 03 32 01 06 07")
        assert run(firmware, 0x14, "01 00 00") == hexb("D5 15")
        assert run(firmware, 0x10, "07") == hexb("D5 11")
        assert run(firmware, 0x12, "00") == hexb("D5 13")
        assert run(firmware, 0x16, "B0 00") == hexb("D5 17 00")

    def test_diagnose_line_test_echoes(self, firmware: Pn532Firmware) -> None:
        data = "00" + bytes(range(200)).hex()
        assert run(firmware, 0x00, data) == hexb("D5 01" + data)

    def test_registers_read_without_status_byte(self, firmware: Pn532Firmware) -> None:
        """ReadRegister answers only the values, in the order asked (nfcpy depends on it)."""
        assert run(firmware, 0x06, "6302 6303 6305") == hexb("D5 07 80 80 40")
        assert run(firmware, 0x08, "6302 00 6303 81") == hexb("D5 09")
        assert run(firmware, 0x06, "6303 6302") == hexb("D5 07 81 00")

    def test_unknown_or_malformed_commands_get_the_error_frame(self, firmware: Pn532Firmware) -> None:
        assert firmware.execute(command(0x8C)).frame == ERROR_FRAME
        assert firmware.execute(command(0x06, b"\x63")).frame == ERROR_FRAME

    def test_empty_field(self, firmware: Pn532Firmware) -> None:
        """No card: InListPassiveTarget finds nothing and the REQA stays in the CIU FIFO (0x26)."""
        assert run(firmware, 0x4A, "01 00") == hexb("D5 4B 00")
        assert run(firmware, 0x06, "6339") == hexb("D5 07 26")

    def test_card_is_listed_with_atqa_sak_uid_and_no_ats(self, firmware: Pn532Firmware) -> None:
        firmware.present(xiamen_card(CARD_NO, UID))
        assert run(firmware, 0x4A, "01 00") == hexb("D5 4B 01 01 00 08 28 04 A1B2C3D4")

    def test_automatic_rats_appends_the_ats(self, firmware: Pn532Firmware) -> None:
        card = xiamen_card(CARD_NO, UID)
        firmware.present(card)
        run(firmware, 0x12, "10")
        assert run(firmware, 0x4A, "01 00").endswith(card.ats())
        response = run(firmware, 0x40, "01" + SELECT_TUNION.hex())
        assert response[:3] == hexb("D5 41 00")
        assert response[-2:] == SW_OK

    def test_listing_by_uid(self, firmware: Pn532Firmware) -> None:
        """nfcpy re-selects a card by UID, with cascade tags for 7-byte UIDs."""
        uid7 = hexb("04 11 22 33 44 55 66")
        firmware.present(VirtualCard(uid=uid7, sak=0x00, atqa=hexb("00 44")))
        assert run(firmware, 0x4A, "01 00 88" + uid7.hex()) != hexb("D5 4B 00")
        run(firmware, 0x32, "01 00")
        assert run(firmware, 0x4A, "01 00 A1B2C3D4") == hexb("D5 4B 00")

    def test_strip_cascade_tags(self) -> None:
        uid10 = bytes(range(1, 11))
        assert strip_cascade_tags(hexb("88") + uid10[:3] + hexb("88") + uid10[3:]) == uid10
        assert strip_cascade_tags(UID) == UID

    def test_iso_dep_through_in_communicate_thru(self, firmware: Pn532Firmware) -> None:
        card = xiamen_card(CARD_NO, UID)
        firmware.present(card)
        run(firmware, 0x4A, "01 00")
        assert run(firmware, 0x42, "E0 80") == hexb("D5 43 00") + card.ats()
        answer = run(firmware, 0x42, "02" + SELECT_TUNION.hex())
        assert answer[:4] == hexb("D5 43 00 02")
        assert answer[-2:] == SW_OK

    def test_rf_off_deactivates_the_card(self, firmware: Pn532Firmware) -> None:
        """After the field goes off the card must be listed and activated again; a random UID changes."""
        card = VirtualCard(uid=hexb("08 01 02 03"), random_uid=True)
        firmware.present(card)
        first = run(firmware, 0x4A, "01 00")
        run(firmware, 0x42, "E0 80")
        run(firmware, 0x32, "01 02")
        assert run(firmware, 0x42, "02" + SELECT_TUNION.hex()) == hexb("D5 43 01")
        second = run(firmware, 0x4A, "01 00")
        assert second[:4] == first[:4]
        assert second[-4] == 0x08
        assert second[-3:] != first[-3:] or second == first  # 1 in 16M: the same random UID again

    def test_no_card_times_out_after_the_configured_rf_timeout(self, firmware: Pn532Firmware) -> None:
        run(firmware, 0x32, "02 00 0B 0C")
        reply = firmware.execute(command(0x42, hexb("B2")))
        assert reply.payload == hexb("D5 43 01")
        assert reply.after == pytest.approx(rf_timeout_seconds(12)) == pytest.approx(0.2048)

    def test_card_removed_mid_apdu(self, firmware: Pn532Firmware) -> None:
        firmware.present(xiamen_card(CARD_NO, UID))
        run(firmware, 0x4A, "01 00")
        run(firmware, 0x42, "E0 80")
        firmware.remove_card_during_next_apdu()
        assert run(firmware, 0x42, "02" + SELECT_TUNION.hex()) == hexb("D5 43 01")
        assert firmware.card is None

    def test_slow_card_within_the_rf_timeout_is_just_late(self, firmware: Pn532Firmware) -> None:
        firmware.present(xiamen_card(CARD_NO, UID))
        run(firmware, 0x32, "02 00 0B 0C")
        run(firmware, 0x4A, "01 00")
        run(firmware, 0x42, "E0 80")
        firmware.delay_card_answers(0.1)
        reply = firmware.execute(command(0x42, hexb("02") + SELECT_TUNION))
        assert reply.payload[:3] == hexb("D5 43 00")
        assert reply.after == pytest.approx(0.1)

    def test_card_slower_than_the_rf_timeout_answers_on_retransmission(self, firmware: Pn532Firmware) -> None:
        """The chip gives up (status 01), but the card did answer: R(NAK) fetches that answer."""
        firmware.present(xiamen_card(CARD_NO, UID))
        run(firmware, 0x32, "02 00 0B 0A")
        run(firmware, 0x4A, "01 00")
        run(firmware, 0x42, "E0 80")
        firmware.delay_card_answers(1.0)
        late = firmware.execute(command(0x42, hexb("02") + SELECT_TUNION))
        assert late.payload == hexb("D5 43 01")
        assert late.after == pytest.approx(0.0512)
        again = run(firmware, 0x42, "B2")
        assert again[:4] == hexb("D5 43 00 02")
        assert again[-2:] == SW_OK


class Host:
    """The host end of the emulator's serial line: the pty opened raw, frames in and out."""

    def __init__(self, path: str) -> None:
        import tty

        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def send(self, raw: bytes) -> None:
        os.write(self.fd, raw)

    def receive(self, timeout: float = 0.5) -> bytes:
        """Everything the chip sends until it has been quiet for 50 ms (or *timeout*)."""
        data = b""
        end = time.monotonic() + timeout
        while (remaining := end - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], min(remaining, 0.05 if data else remaining))
            if not ready:
                if data:
                    break
                continue
            data += os.read(self.fd, 4096)
        return data

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def sim() -> Iterator[Pn532Sim]:
    with Pn532Sim() as simulator:
        yield simulator


@pytest.fixture
def host(sim: Pn532Sim) -> Iterator[Host]:
    assert sim.pty_path is not None
    line = Host(str(sim.path))
    yield line
    line.close()


@pytest.mark.sim
class TestPn532SimOnPty:
    def test_command_is_acked_then_answered(self, host: Host) -> None:
        host.send(bytes(10) + host_frame(0x02))
        assert host.receive() == ACK + encode_frame(hexb("D5 03 32 01 06 07"))

    def test_bad_checksum_gets_no_answer(self, sim: Pn532Sim, host: Host) -> None:
        """A corrupted host frame is dropped: no ACK, so the host times out and sends again."""
        bad = bytearray(host_frame(0x02))
        bad[-2] ^= 0x55
        host.send(bytes(bad))
        assert host.receive(timeout=0.2) == b""
        assert sim.bad_frames["data checksum"] == 1
        host.send(host_frame(0x02))
        assert host.receive().startswith(ACK)

    def test_nack_repeats_the_last_response(self, host: Host) -> None:
        host.send(host_frame(0x02))
        first = host.receive()
        host.send(NACK)
        assert host.receive() == first[len(ACK) :]

    def test_host_ack_aborts_a_pending_answer(self, sim: Pn532Sim, host: Host) -> None:
        sim.delay_next_response(0.3)
        host.send(host_frame(0x02))
        assert host.receive(timeout=0.1) == ACK
        host.send(ACK)
        assert host.receive(timeout=0.5) == b""

    def test_slow_reply(self, sim: Pn532Sim, host: Host) -> None:
        sim.delay_next_response(0.2, command=0x02)
        host.send(host_frame(0x02))
        started = time.monotonic()
        assert host.receive(timeout=0.1) == ACK
        assert host.receive(timeout=1.0) == encode_frame(hexb("D5 03 32 01 06 07"))
        assert time.monotonic() - started >= 0.15

    def test_corrupt_checksum_once(self, sim: Pn532Sim, host: Host) -> None:
        sim.corrupt_next_response()
        host.send(host_frame(0x02))
        corrupted = host.receive()[len(ACK) :]
        good = encode_frame(hexb("D5 03 32 01 06 07"))
        assert len(corrupted) == len(good)
        assert corrupted[-2] != good[-2]
        assert corrupted[:-2] == good[:-2]
        host.send(host_frame(0x02))
        assert host.receive() == ACK + encode_frame(hexb("D5 03 32 01 06 07"))

    def test_incomplete_frame_is_forgotten(self, sim: Pn532Sim, host: Host) -> None:
        """A frame cut short (inter-byte timeout) does not swallow the next command."""
        host.send(host_frame(0x02)[:6])
        time.sleep(0.15)
        host.send(host_frame(0x02))
        assert host.receive().startswith(ACK)
        assert sim.bad_frames["incomplete frame"] == 1

    def test_unplug_and_replug_keep_the_stable_path(self, sim: Pn532Sim, host: Host) -> None:
        sim.unplug()
        assert not sim.path.exists()
        with pytest.raises(OSError, match="Input/output error"):
            host.send(host_frame(0x02))
        sim.replug()
        assert sim.pty_path is not None
        assert os.path.realpath(sim.path) == sim.pty_path
        replugged = Host(str(sim.path))
        try:
            replugged.send(host_frame(0x02))
            assert replugged.receive().startswith(ACK)
        finally:
            replugged.close()

    def test_close_removes_the_stable_path(self) -> None:
        simulator = Pn532Sim()
        path = simulator.path
        assert path.is_symlink()
        simulator.close()
        simulator.close()
        assert not path.exists()
        assert not path.parent.exists()


class TestNaming:
    def test_dev_names_use_nfcpys_grammar(self) -> None:
        assert nfc_spec_for(Path("/dev/pn532sim-1-0")) == "nfc:tty:pn532sim-1-0:pn532"
        assert nfc_spec_for(Path("/dev/ttyUSB0")) == "nfc:tty:ttyUSB0:pn532"

    def test_other_paths_use_the_absolute_form(self) -> None:
        assert nfc_spec_for(Path("/tmp/x/pn532")) == "nfc:tty:/tmp/x/pn532:pn532"
        assert nfc_spec_for(Path("/dev/USB0")) == "nfc:tty:/dev/USB0:pn532"  # nfcpy reads USB0 as ttyUSB0
        assert nfc_spec_for(Path("/dev/my_reader")) == "nfc:tty:/dev/my_reader:pn532"

    def test_uids_are_masked(self) -> None:
        assert mask_uid(UID) == "******D4"


@pytest.mark.sim
class TestWithNfcpyDriver:
    """nfcpy's own pn532 driver and ISO-DEP code against the emulator: no backend of ours involved."""

    @pytest.fixture
    def clf(self, sim: Pn532Sim) -> Iterator[Any]:
        import nfc
        import nfc.clf.pn532
        import nfc.clf.transport

        device = nfc.clf.pn532.init(nfc.clf.transport.TTY(str(sim.path)))
        device._path = str(sim.path)
        frontend = nfc.ContactlessFrontend()
        frontend.device = device
        yield frontend
        frontend.close()

    def test_driver_initialises(self, sim: Pn532Sim, clf: Any) -> None:
        assert str(clf.device).startswith("PN532v1.6 at ")
        assert sim.command_counts[0x00] == 1  # the extended-frame line test passed

    def test_sense_activate_and_exchange_long_apdus(self, sim: Pn532Sim, clf: Any) -> None:
        """nfcpy chains a 255-byte command and reassembles a chained 557-byte response."""
        import nfc.clf
        import nfc.tag

        sim.present(EchoCard(uid=UID))
        target = clf.sense(nfc.clf.RemoteTarget("106A"))
        assert target is not None
        assert bytes(target.sdd_res) == UID
        tag = nfc.tag.activate(clf, target)
        payload = bytes(range(255))
        response = tag.send_apdu(0x00, 0xEE, 0x00, 0x00, payload, check_status=False)
        assert response == payload + bytes(range(256)) + bytes(44) + SW_OK
        assert tag.is_present
        sim.remove()
        assert not tag.is_present

    def test_empty_field_senses_nothing(self, clf: Any) -> None:
        import nfc.clf

        assert clf.sense(nfc.clf.RemoteTarget("106A")) is None


class TestCli:
    def test_parse_command(self) -> None:
        assert parse_command("tap 3104390012345678901 A1B2C3D4") == SimCommand(
            "tap", ("3104390012345678901", "A1B2C3D4")
        )
        assert parse_command("  # a comment") is None
        assert parse_command("REMOVE") == SimCommand("remove")

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("swipe", "unknown command"),
            ("tap 123 A1B2C3D4", "19 digits"),
            ("uid A1B2C3", "4, 7 or 10 bytes"),
            ("uid zz", "hex"),
            ("remove now", "takes 0"),
            ("sleep soon", "seconds"),
        ],
    )
    def test_bad_lines_are_refused(self, line: str, message: str) -> None:
        with pytest.raises(CommandError, match=message):
            parse_command(line)

    @pytest.mark.sim
    def test_taps_typed_on_stdin_reach_a_reader(self, tmp_path: Path) -> None:
        """The CLI prints a spec; a reader opened with it reads the cards typed on stdin."""
        from reader_agent.readers import open_reader
        from schemas import CardApplication
        from tests.reader_agent.readers.contract import poll_until_read

        link = tmp_path / "pn532"
        code = "from firmware_sim.pn532_cli import pn532_app; pn532_app()"
        process = subprocess.Popen(
            [sys.executable, "-c", code, "--link", str(link)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            lines = [process.stdout.readline() for _ in range(3)]
            spec = next(line.split(": ", 1)[1].strip() for line in lines if line.startswith("spec: "))
            assert spec == f"nfc:tty:{link}:pn532"
            reader = open_reader(spec)
            try:
                process.stdin.write(f"tap {CARD_NO} A1B2C3D4\n")
                process.stdin.flush()
                read = poll_until_read(reader)
                assert read.card.application is CardApplication.TUNION
                assert read.card.card_no == CARD_NO
                process.stdin.write("remove\nuid 04A1B2C3\n")
                process.stdin.flush()
                read = poll_until_read(reader)
                assert read.card.uid == "04A1B2C3"
                assert read.card.application is CardApplication.UID_ONLY
            finally:
                reader.close()
            process.stdin.write("quit\n")
            process.stdin.flush()
            assert process.wait(timeout=10) == 0
            assert not link.exists()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
