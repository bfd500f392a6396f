"""The vpcd virtual-card client: against real pcscd (``sim``), and against a scripted vpcd.

The pcscd tests watch the slot through pyscard's raw ``smartcard.scard`` API, not through the
reader backend, so they pin down what the simulator promises on its own. They use slot 35963
("Virtual PCD 00 00"); 35964 belongs to the end-to-end tests.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.cards import TUnionCard, uid_only_card
from firmware_sim.vpcd import VpcdError, VpcdSlot, VpcdUnavailable
from reader_agent.cardapp import SELECT_TUNION, parse_tlv
from schemas.masking import mask_uid

READER_NAME = "Virtual PCD 00 00"
SLOT_PORT = 35963
REPO = Path(__file__).resolve().parents[2]


def xiamen(n: int) -> TUnionCard:
    return TUnionCard(uid=bytes([0xA1, 0xB2, 0xC3, 0x40 + n]), card_no=f"31043900{n:011d}")


# --- against real pcscd -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pcsc_context() -> Iterator[int]:
    """A raw PC/SC context, after making sure pcscd runs with the vpcd slots."""
    subprocess.run([str(REPO / "scripts" / "ensure-pcscd.sh")], check=True, timeout=30, capture_output=True)
    from smartcard import scard

    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hresult == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hresult)
    yield context
    scard.SCardReleaseContext(context)


@pytest.fixture
def slot(pcsc_context: int) -> Iterator[VpcdSlot]:
    with VpcdSlot(port=SLOT_PORT) as slot:
        yield slot


def reader_state(context: int) -> tuple[int, bytes]:
    """pcscd's current view of the slot: (state flags, ATR)."""
    from smartcard import scard

    hresult, states = scard.SCardGetStatusChange(context, 0, [(READER_NAME, scard.SCARD_STATE_UNAWARE)])
    assert hresult == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hresult)
    _, flags, atr = states[0]
    return flags & 0xFFFF, bytes(atr)


def transmit_all(context: int, apdus: list[bytes]) -> list[bytes]:
    """Connect like a kiosk would (shared, T=1), send *apdus*, leave the card."""
    from smartcard import scard

    hresult, card, protocol = scard.SCardConnect(
        context, READER_NAME, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T1
    )
    assert hresult == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hresult)
    try:
        responses = []
        for apdu in apdus:
            hresult, response = scard.SCardTransmit(card, protocol, list(apdu))
            assert hresult == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hresult)
            responses.append(bytes(response))
        return responses
    finally:
        scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)


@pytest.mark.sim
class TestAgainstPcscd:
    def test_insert_returns_once_pcscd_has_the_card(self, slot: VpcdSlot, pcsc_context: int) -> None:
        """Right after insert() pcscd reports a card with the virtual card's ATR: no sleeping needed."""
        from smartcard import scard

        card = xiamen(1)
        slot.insert(card)
        flags, atr = reader_state(pcsc_context)
        assert flags & scard.SCARD_STATE_PRESENT
        assert atr == card.atr()

    def test_remove_returns_once_pcscd_has_noticed(self, slot: VpcdSlot, pcsc_context: int) -> None:
        """Right after remove() pcscd reports the reader empty."""
        from smartcard import scard

        slot.insert(xiamen(2))
        slot.remove()
        flags, _ = reader_state(pcsc_context)
        assert flags & scard.SCARD_STATE_EMPTY
        assert slot.card is None

    def test_apdus_reach_the_card(self, slot: VpcdSlot, pcsc_context: int) -> None:
        """GET DATA (UID) and SELECT travel through pcscd to the card and back."""
        card = xiamen(3)
        slot.insert(card)
        uid, fci = transmit_all(pcsc_context, [bytes.fromhex("FFCA000000"), SELECT_TUNION])
        assert uid == card.uid + b"\x90\x00"
        assert fci[-2:] == b"\x90\x00"
        assert parse_tlv(fci[:-2])[0x9F0C] == card.ef15()
        assert slot.apdu_count == 2
        assert slot.wait_until_read(timeout=2.0)

    def test_wait_until_read_times_out_without_a_reader(self, slot: VpcdSlot) -> None:
        slot.insert(xiamen(4))
        started = time.monotonic()
        assert not slot.wait_until_read(timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 1.0

    def test_tap_without_a_reader_reports_unread(self, slot: VpcdSlot, pcsc_context: int) -> None:
        """A tap nobody reads returns False, and the card is gone afterwards."""
        from smartcard import scard

        assert slot.tap(xiamen(5), hold=0.2) is False
        assert slot.card is None
        assert reader_state(pcsc_context)[0] & scard.SCARD_STATE_EMPTY

    def test_tap_waits_for_a_reader_when_asked(self, slot: VpcdSlot, pcsc_context: int) -> None:
        """With wait_read, the card stays until the reader has read it, then leaves."""
        from smartcard import scard

        responses: list[list[bytes]] = []

        def kiosk() -> None:
            from smartcard import scard

            _, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            try:
                state = scard.SCARD_STATE_UNAWARE
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    _, states = scard.SCardGetStatusChange(context, 200, [(READER_NAME, state)])
                    state = states[0][1] & ~scard.SCARD_STATE_CHANGED
                    if state & scard.SCARD_STATE_PRESENT:
                        time.sleep(0.3)  # a slow reader: still reading when the member's hold ends
                        responses.append(transmit_all(context, [bytes.fromhex("FFCA000000")]))
                        return
            finally:
                scard.SCardReleaseContext(context)

        thread = threading.Thread(target=kiosk)
        thread.start()
        card = uid_only_card(bytes.fromhex("04A1B2C3"))
        assert slot.tap(card, hold=0.1, wait_read=3.0) is True
        thread.join(5)
        assert responses == [[card.uid + b"\x90\x00"]]
        assert reader_state(pcsc_context)[0] & scard.SCARD_STATE_EMPTY

    def test_a_card_at_a_time(self, slot: VpcdSlot) -> None:
        slot.insert(xiamen(6))
        with pytest.raises(VpcdError, match="already holds a card"):
            slot.insert(xiamen(7))

    def test_second_simulator_on_a_busy_port_fails_clearly(self, slot: VpcdSlot) -> None:
        """vpcd serves one card per port; a second client is told so instead of hanging."""
        slot.insert(xiamen(8))
        with VpcdSlot(port=SLOT_PORT) as intruder, pytest.raises(VpcdError, match="another simulator"):
            intruder.insert(xiamen(9), timeout=1.0)
        assert slot.card is not None

    def test_context_manager_takes_the_card_away(self, pcsc_context: int) -> None:
        from smartcard import scard

        with VpcdSlot(port=SLOT_PORT) as slot:
            slot.insert(xiamen(10))
        assert reader_state(pcsc_context)[0] & scard.SCARD_STATE_EMPTY

    def test_remove_without_a_card_is_harmless(self, slot: VpcdSlot) -> None:
        slot.remove()
        slot.close()
        slot.close()


# --- against a scripted vpcd (no pcscd involved) -------------------------------------------------


class ScriptedVpcd:
    """The listening side of vpcd, driven step by step by a test."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.client: socket.socket | None = None

    def accept(self) -> socket.socket:
        self.server.settimeout(5)
        self.client, _ = self.server.accept()
        self.client.settimeout(5)
        return self.client

    def send(self, payload: bytes, *, byte_by_byte: bool = False) -> None:
        assert self.client is not None
        frame = struct.pack(">H", len(payload)) + payload
        if byte_by_byte:
            for i in range(len(frame)):
                self.client.sendall(frame[i : i + 1])
                time.sleep(0.002)
        else:
            self.client.sendall(frame)

    def receive(self) -> bytes:
        assert self.client is not None
        header = self._exactly(2)
        return self._exactly(struct.unpack(">H", header)[0])

    def ask(self, payload: bytes, *, byte_by_byte: bool = False) -> bytes:
        self.send(payload, byte_by_byte=byte_by_byte)
        return self.receive()

    def power_up(self) -> None:
        """What pcscd does on insertion: presence poll, power on, read the ATR."""
        self.ask(b"\x04")
        self.send(b"\x01")
        self.ask(b"\x04")

    def eof(self, timeout: float = 5.0) -> bool:
        """Whether the card side has closed its sending half."""
        assert self.client is not None
        self.client.settimeout(timeout)
        try:
            return self.client.recv(1) == b""
        except TimeoutError:
            return False

    def reset_connection(self) -> None:
        """Drop the client with an RST, as a killed pcscd does."""
        assert self.client is not None
        self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.client.close()
        self.client = None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.server.close()

    def _exactly(self, n: int) -> bytes:
        assert self.client is not None
        data = b""
        while len(data) < n:
            chunk = self.client.recv(n - len(data))
            assert chunk, "the card closed the connection"
            data += chunk
        return data


@pytest.fixture
def vpcd() -> Iterator[ScriptedVpcd]:
    server = ScriptedVpcd()
    yield server
    server.close()


class BackgroundInsert(threading.Thread):
    """slot.insert() in a thread, since it returns only once the scripted vpcd has polled."""

    def __init__(self, slot: VpcdSlot, card: TUnionCard, timeout: float = 5.0) -> None:
        super().__init__()
        self.slot, self.card, self.timeout = slot, card, timeout
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            self.slot.insert(self.card, timeout=self.timeout)
        except BaseException as exc:
            self.errors.append(exc)


def insert_in_background(slot: VpcdSlot, card: TUnionCard, timeout: float = 5.0) -> BackgroundInsert:
    thread = BackgroundInsert(slot, card, timeout)
    thread.start()
    return thread


class TestWireProtocol:
    def test_insert_waits_for_power_up_and_atr(self, vpcd: ScriptedVpcd) -> None:
        """insert() returns only after pcscd powered the card and read its ATR."""
        card = xiamen(1)
        slot = VpcdSlot(port=vpcd.port)
        inserting = insert_in_background(slot, card)
        vpcd.accept()
        assert vpcd.ask(b"\x04") == card.atr()
        time.sleep(0.1)
        assert inserting.is_alive()
        vpcd.send(b"\x01")
        assert vpcd.ask(b"\x04") == card.atr()
        inserting.join(2)
        assert not inserting.is_alive()
        assert inserting.errors == []

    def test_messages_split_into_single_bytes_are_reassembled(self, vpcd: ScriptedVpcd) -> None:
        card = xiamen(2)
        slot = VpcdSlot(port=vpcd.port)
        inserting = insert_in_background(slot, card)
        vpcd.accept()
        vpcd.power_up()
        inserting.join(2)
        assert vpcd.ask(bytes.fromhex("FFCA000000"), byte_by_byte=True) == card.uid + b"\x90\x00"
        assert vpcd.ask(SELECT_TUNION, byte_by_byte=True)[-2:] == b"\x90\x00"
        assert slot.apdu_count == 2

    def test_only_get_atr_is_answered_among_controls(self, vpcd: ScriptedVpcd) -> None:
        """Power on/off/reset and unknown control bytes get no reply, which vpcd does not expect."""
        card = xiamen(3)
        slot = VpcdSlot(port=vpcd.port)
        inserting = insert_in_background(slot, card)
        vpcd.accept()
        vpcd.power_up()
        inserting.join(2)
        for control in (b"\x00", b"\x01", b"\x02", b"\x07"):
            vpcd.send(control)
        assert vpcd.ask(b"\x04") == card.atr()  # the very next reply is this ATR

    def test_reset_and_power_off_clear_the_selected_application(self, vpcd: ScriptedVpcd) -> None:
        card = xiamen(4)
        slot = VpcdSlot(port=vpcd.port)
        inserting = insert_in_background(slot, card)
        vpcd.accept()
        vpcd.power_up()
        inserting.join(2)
        read_ef15 = bytes.fromhex("00B0950000")
        for control in (b"\x02", b"\x00"):
            assert vpcd.ask(SELECT_TUNION)[-2:] == b"\x90\x00"
            assert vpcd.ask(read_ef15)[-2:] == b"\x90\x00"
            vpcd.send(control)
            assert vpcd.ask(read_ef15) == bytes.fromhex("6A82")

    def test_vpcd_going_away_drops_the_card_without_crashing(self, vpcd: ScriptedVpcd) -> None:
        """pcscd killed mid-session: the card falls off the reader; remove() and insert() still work."""
        card = xiamen(5)
        slot = VpcdSlot(port=vpcd.port)
        inserting = insert_in_background(slot, card)
        vpcd.accept()
        vpcd.power_up()
        inserting.join(2)
        vpcd.reset_connection()
        deadline = time.monotonic() + 2
        while slot.card is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert slot.card is None
        started = time.monotonic()
        slot.remove()
        assert time.monotonic() - started < 0.5
        again = insert_in_background(slot, card)
        vpcd.accept()
        vpcd.power_up()
        again.join(2)
        assert again.errors == []
        assert slot.card is card

    def test_insert_fails_when_vpcd_drops_the_card_at_once(self, vpcd: ScriptedVpcd) -> None:
        slot = VpcdSlot(port=vpcd.port)
        inserting = insert_in_background(slot, xiamen(6))
        vpcd.accept()
        vpcd.reset_connection()
        inserting.join(2)
        assert len(inserting.errors) == 1
        assert isinstance(inserting.errors[0], VpcdError)

    def test_insert_times_out_when_vpcd_never_polls(self, vpcd: ScriptedVpcd) -> None:
        slot = VpcdSlot(port=vpcd.port)
        inserting = insert_in_background(slot, xiamen(7), timeout=0.5)
        vpcd.accept()
        inserting.join(3)
        assert [type(e) for e in inserting.errors] == [VpcdError]

    def test_remove_at_a_presence_poll_returns_at_once(self, vpcd: ScriptedVpcd) -> None:
        """Removal completes when vpcd's next presence poll finds the card gone."""
        slot = VpcdSlot(port=vpcd.port)
        inserting = insert_in_background(slot, xiamen(8))
        vpcd.accept()
        vpcd.power_up()
        inserting.join(2)
        removing = threading.Thread(target=slot.remove)
        started = time.monotonic()
        removing.start()
        assert vpcd.eof()  # the card closed its half; vpcd polls and gets no answer
        vpcd.send(b"\x04")
        assert vpcd.client is not None
        vpcd.client.close()
        vpcd.client = None
        removing.join(2)
        assert time.monotonic() - started < 0.3
        assert slot.card is None

    def test_remove_mid_apdu_waits_for_pcscd_to_notice(self, vpcd: ScriptedVpcd) -> None:
        """When vpcd lets go mid-APDU, pcscd learns of it only at its next poll; remove() waits for that."""
        slot = VpcdSlot(port=vpcd.port)
        inserting = insert_in_background(slot, xiamen(9))
        vpcd.accept()
        vpcd.power_up()
        inserting.join(2)
        removing = threading.Thread(target=slot.remove)
        started = time.monotonic()
        removing.start()
        assert vpcd.eof()
        vpcd.send(bytes.fromhex("FFCA000000"))  # unanswered: vpcd reads EOF and closes
        assert vpcd.client is not None
        vpcd.client.close()
        vpcd.client = None
        removing.join(3)
        assert time.monotonic() - started >= 0.4

    def test_nothing_listening_is_unavailable(self) -> None:
        probe = socket.create_server(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        with pytest.raises(VpcdUnavailable, match="is pcscd running"):
            VpcdSlot(port=port).insert(xiamen(10), timeout=1.0)


def test_masked_uid_shows_only_the_last_byte() -> None:
    assert mask_uid(bytes.fromhex("A1B2C3D4")) == "******D4"


class TestCardCli:
    """``ecard sim card tap``, run through typer's test runner."""

    def invoke(self, *args: str) -> tuple[int, str]:
        from typer.testing import CliRunner

        from firmware_sim.card_cli import card_app

        result = CliRunner().invoke(card_app, list(args))
        return result.exit_code, result.output

    def test_bad_uid_is_refused(self) -> None:
        code, output = self.invoke("tap", "--uid", "XYZ")
        assert code == 2
        assert "hex" in output

    def test_no_pcscd_exits_2(self) -> None:
        probe = socket.create_server(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        code, output = self.invoke("tap", "--port", str(port))
        assert code == 2
        assert "is pcscd running" in output

    @pytest.mark.sim
    @pytest.mark.usefixtures("pcsc_context")
    def test_unread_tap_exits_1_and_masks_the_card(self) -> None:
        code, output = self.invoke(
            "tap", "--card-no", "3104390012345678901", "--uid", "A1B2C3D4", "--hold", "0.1"
        )
        assert code == 1
        assert "no reader read it" in output
        assert "A1B2C3D4" not in output
        assert "3104390012345678901" not in output

    @pytest.mark.sim
    @pytest.mark.usefixtures("pcsc_context")
    def test_tap_read_by_a_kiosk_exits_0(self) -> None:
        from reader_agent.readers import CardRead, open_reader

        reads: list[CardRead] = []

        def kiosk() -> None:
            reader = open_reader(f"pcsc:{READER_NAME}")
            try:
                deadline = time.monotonic() + 5
                while not reads and time.monotonic() < deadline:
                    read = reader.poll(timeout=0.2)
                    if read is not None:
                        reads.append(read)
            finally:
                reader.close()

        thread = threading.Thread(target=kiosk)
        thread.start()
        code, output = self.invoke(
            "tap", "--uid-only", "--uid", "04A1B2C3", "--hold", "0.2", "--wait-read", "3"
        )
        thread.join(6)
        assert code == 0, output
        assert [read.card.uid for read in reads] == ["04A1B2C3"]
