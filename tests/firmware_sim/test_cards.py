"""The virtual cards (firmware_sim.cards) read through the shared APDU logic (reader_agent.cardapp).

Pure and fast: the card's ``process_apdu`` is the transmit function, no reader stack involved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from firmware_sim.cards import Apdu, TUnionCard, VirtualCard, uid_only_card, xiamen_card
from reader_agent.cardapp import (
    READ_EF15,
    SELECT_TUNION,
    ApduError,
    card_facts,
    exchange,
    parse_ef15,
    parse_tlv,
    read_tunion,
)
from reader_agent.readers.base import CardTimeout
from schemas import CardApplication

UID = bytes.fromhex("A1B2C3D4")
CARD_NO = "3104390012345678901"


def apdu(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@pytest.fixture
def card() -> TUnionCard:
    return xiamen_card(CARD_NO, UID)


class TestCardFacts:
    def test_tunion_card_yields_card_number_and_xiamen_city(self, card: TUnionCard) -> None:
        """A 易通卡 with the T-Union application is identified by its 19-digit card number."""
        facts = card_facts(UID, card.process_apdu)
        assert facts.application is CardApplication.TUNION
        assert facts.card_no == CARD_NO
        assert facts.city_code == "3930"
        assert facts.uid == "A1B2C3D4"

    def test_single_select_is_enough(self, card: TUnionCard) -> None:
        """The card number comes from the FCI of SELECT, so a tap costs one APDU."""
        card_facts(UID, card.process_apdu)
        assert card.apdu_log == [SELECT_TUNION]

    def test_uid_only_card_falls_back_to_uid(self) -> None:
        """A card without the T-Union application (an M1-like local e通卡) is its UID alone."""
        m1 = uid_only_card(bytes.fromhex("04A1B2C3"))
        facts = card_facts(m1.uid, m1.process_apdu)
        assert facts.application is CardApplication.UID_ONLY
        assert facts.card_no is None
        assert facts.city_code is None
        assert facts.uid == "04A1B2C3"

    def test_reader_without_apdus_gives_uid_only(self) -> None:
        """A reader that cannot send APDUs (no transmit) still reports the UID."""
        facts = card_facts(UID, None)
        assert facts.application is CardApplication.UID_ONLY

    def test_fci_without_card_image_falls_back_to_ef15(self) -> None:
        """When the FCI lacks tag 9F0C, the card number is read from EF15 instead."""
        card = _CardWithBareFci(uid=UID, card_no=CARD_NO)
        facts = card_facts(UID, card.process_apdu)
        assert facts.card_no == CARD_NO
        assert card.apdu_log == [SELECT_TUNION, READ_EF15]

    def test_unreadable_ef15_means_uid_only(self) -> None:
        """An application that will not give up its EF15 is treated as a UID-only card."""
        card = _CardWithBareFci(uid=UID, card_no=CARD_NO, ef15_status=bytes.fromhex("6982"))
        facts = card_facts(UID, card.process_apdu)
        assert facts.application is CardApplication.UID_ONLY

    def test_other_city_is_reported_as_is(self) -> None:
        """The city code is passed on unchanged; deciding what to accept is the server's job."""
        shanghai = TUnionCard(uid=UID, card_no=CARD_NO, city_code="2900")
        assert card_facts(UID, shanghai.process_apdu).city_code == "2900"

    def test_transport_errors_propagate(self) -> None:
        """A reader failure mid-read is not mistaken for a UID-only card."""

        class Gone(Exception):
            pass

        def transmit(_: bytes) -> bytes:
            raise Gone

        with pytest.raises(Gone):
            card_facts(UID, transmit)


@dataclass
class _CardWithBareFci(TUnionCard):
    """A T-Union card whose FCI carries no proprietary data (real FCIs vary, docs/card-protocols.md §1.1)."""

    ef15_status: bytes | None = field(default=None)

    def fci_tunion(self) -> bytes:
        return bytes.fromhex("6F0A8408") + bytes.fromhex("A000000632010105")

    def _read_binary(self, apdu: Apdu) -> bytes:
        if self.ef15_status is not None:
            return self.ef15_status
        return super()._read_binary(apdu)


class TestExchange:
    def test_wrong_le_is_retried_with_the_length_the_card_asks_for(self, card: TUnionCard) -> None:
        """On 6C XX the APDU is resent once with Le = XX."""
        card.process_apdu(SELECT_TUNION)
        data = exchange(card.process_apdu, apdu("00 B0 95 00 10"))
        assert data == card.ef15()
        assert card.apdu_log[-2:] == [apdu("00 B0 95 00 10"), apdu("00 B0 95 00 1E")]

    def test_error_status_raises_with_the_status_word(self, card: TUnionCard) -> None:
        with pytest.raises(ApduError) as excinfo:
            exchange(card.process_apdu, apdu("00 B0 95 00 00"))  # nothing selected yet
        assert excinfo.value.sw == bytes.fromhex("6A82")

    def test_response_without_status_word_means_the_card_is_gone(self) -> None:
        """No status word is a transport failure, not a card's refusal."""
        with pytest.raises(CardTimeout):
            exchange(lambda _: b"\x90", apdu("00 B0 95 00 00"))

    def test_card_pulled_mid_read_is_not_mistaken_for_a_uid_only_card(self) -> None:
        """A T-Union card that vanishes during SELECT raises instead of degrading to UID-only."""
        with pytest.raises(CardTimeout):
            card_facts(UID, lambda _: b"")


class TestParseTlv:
    def test_descends_into_constructed_tags(self, card: TUnionCard) -> None:
        found = parse_tlv(card.fci_tunion())
        assert found[0x84] == bytes.fromhex("A000000632010105")
        assert found[0x9F0C] == card.ef15()
        assert found[0x9F08] == b"\x01"

    def test_long_form_lengths(self) -> None:
        value = bytes(range(200))
        assert parse_tlv(b"\x9f\x0c\x81\xc8" + value)[0x9F0C] == value
        assert parse_tlv(b"\x53\x82\x00\xc8" + value)[0x53] == value

    def test_padding_between_objects_is_skipped(self) -> None:
        assert parse_tlv(b"\x00\xff\x50\x02AB\x00") == {0x50: b"AB"}

    def test_truncated_value_stops_parsing_without_error(self) -> None:
        assert parse_tlv(b"\x50\x02AB\x9f\x0c\x10abc") == {0x50: b"AB"}

    def test_first_occurrence_wins(self) -> None:
        assert parse_tlv(b"\x50\x01A\x50\x01B")[0x50] == b"A"

    def test_garbage_does_not_raise(self) -> None:
        for junk in (b"", b"\x9f", b"\x6f", b"\x6f\x85", b"\x6f\x80", b"\x1f\xff\xff"):
            parse_tlv(junk)


class TestParseEf15:
    def test_card_number_drops_the_first_nibble(self, card: TUnionCard) -> None:
        data = parse_ef15(card.ef15())
        assert data.card_no == CARD_NO
        assert data.city_code == "3930"

    def test_non_bcd_card_number_is_rejected(self, card: TUnionCard) -> None:
        ef15 = bytearray(card.ef15())
        ef15[19] = 0xAB
        with pytest.raises(ValueError, match="BCD"):
            parse_ef15(bytes(ef15))

    def test_short_file_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="too short"):
            parse_ef15(bytes(19))

    def test_malformed_card_image_in_fci_falls_back_to_ef15(self, card: TUnionCard) -> None:
        """A 9F0C that does not parse is not trusted; EF15 is read instead."""

        def transmit(raw: bytes) -> bytes:
            if raw == SELECT_TUNION:
                return bytes.fromhex("6F23A5219F0C1E") + bytes.fromhex("AA" * 30) + b"\x90\x00"
            return card.process_apdu(raw)

        card.process_apdu(SELECT_TUNION)
        result = read_tunion(transmit)
        assert result is not None
        assert result.card_no == CARD_NO


class TestVirtualCard:
    def test_get_data_returns_the_uid(self, card: TUnionCard) -> None:
        assert card.process_apdu(apdu("FF CA 00 00 00")) == UID + b"\x90\x00"

    def test_get_data_honours_le(self, card: TUnionCard) -> None:
        assert card.process_apdu(apdu("FF CA 00 00 02")) == bytes.fromhex("6C04")

    def test_get_data_ats(self, card: TUnionCard) -> None:
        assert card.process_apdu(apdu("FF CA 01 00 00")) == card.ats() + b"\x90\x00"

    def test_unknown_pseudo_apdu_is_not_supported(self, card: TUnionCard) -> None:
        assert card.process_apdu(apdu("FF 00 00 00 02 D4 02")) == bytes.fromhex("6A81")

    def test_atr_is_pcsc_part3_contactless_form(self, card: TUnionCard) -> None:
        """3B 8n 80 01 <historical bytes> TCK, with TCK making the XOR of T0..TCK zero."""
        atr = card.atr()
        assert atr[:4] == bytes([0x3B, 0x80 | len(card.historical_bytes), 0x80, 0x01])
        assert atr[4:-1] == card.historical_bytes
        check = 0
        for byte in atr[1:]:
            check ^= byte
        assert check == 0

    def test_uid_only_card_has_the_mifare_storage_atr(self) -> None:
        """An M1-like card presents the PC/SC Part 3 storage-card ATR (MIFARE 1K)."""
        assert uid_only_card(UID).atr() == bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")

    def test_atr_without_historical_bytes(self) -> None:
        assert VirtualCard(uid=UID, historical_bytes=b"").atr() == bytes.fromhex("3B80800101")

    def test_ats_length_byte_counts_itself(self, card: TUnionCard) -> None:
        ats = card.ats()
        assert ats[0] == len(ats)

    def test_unknown_class_is_refused(self, card: TUnionCard) -> None:
        assert card.process_apdu(apdu("40 A4 04 00 00")) == bytes.fromhex("6E00")

    def test_malformed_apdu_is_wrong_length(self, card: TUnionCard) -> None:
        assert card.process_apdu(b"\x00\xa4") == bytes.fromhex("6700")
        assert card.process_apdu(apdu("00 A4 04 00 05 A0 00")) == bytes.fromhex("6700")

    def test_every_apdu_is_logged(self, card: TUnionCard) -> None:
        card.process_apdu(apdu("FF CA 00 00 00"))
        card.process_apdu(b"\x00")
        assert card.apdu_log == [apdu("FF CA 00 00 00"), b"\x00"]

    def test_uid_only_card_has_no_application(self) -> None:
        m1 = uid_only_card(bytes.fromhex("04A1B2C3"))
        assert m1.process_apdu(SELECT_TUNION) == bytes.fromhex("6A82")
        assert m1.process_apdu(apdu("00 B0 95 00 00")) == bytes.fromhex("6A82")
        assert m1.process_apdu(apdu("00 CA 00 00 00")) == bytes.fromhex("6D00")

    def test_random_uid_changes_per_activation(self) -> None:
        card = VirtualCard(uid=bytes.fromhex("08000000"), random_uid=True)
        seen = set()
        for _ in range(5):
            card.activate()
            assert card.uid[0] == 0x08
            assert len(card.uid) == 4
            seen.add(card.uid)
        assert len(seen) > 1

    def test_fixed_uid_survives_activation(self, card: TUnionCard) -> None:
        card.activate()
        assert card.uid == UID


class TestTUnionCard:
    def test_ppse_lists_the_tunion_application(self, card: TUnionCard) -> None:
        response = card.process_apdu(apdu("00 A4 04 00 0E") + b"2PAY.SYS.DDF01" + b"\x00")
        assert response[-2:] == b"\x90\x00"
        found = parse_tlv(response[:-2])
        assert found[0x4F] == bytes.fromhex("A000000632010105")
        assert found[0x50] == b"MOT_T_EP"

    def test_unknown_aid_is_not_found(self, card: TUnionCard) -> None:
        assert card.process_apdu(apdu("00 A4 04 00 09 A0 00 00 00 03 86 98 07 01 00")) == bytes.fromhex(
            "6A82"
        )

    def test_ef15_layout(self, card: TUnionCard) -> None:
        ef15 = card.ef15()
        assert len(ef15) == 30
        assert ef15[2:4] == bytes.fromhex("3930")
        assert ef15[10:20].hex() == "0" + CARD_NO
        assert ef15[20:24] == bytes.fromhex("20200101")
        assert ef15[24:28] == bytes.fromhex("20391231")

    def test_ef15_read_with_le_00_or_exact(self, card: TUnionCard) -> None:
        card.process_apdu(SELECT_TUNION)
        assert card.process_apdu(apdu("00 B0 95 00 00")) == card.ef15() + b"\x90\x00"
        assert card.process_apdu(apdu("00 B0 95 00 1E")) == card.ef15() + b"\x90\x00"

    def test_balance_needs_the_application_selected(self, card: TUnionCard) -> None:
        assert card.process_apdu(apdu("80 5C 00 02 04")) == bytes.fromhex("6985")
        card.process_apdu(SELECT_TUNION)
        assert card.process_apdu(apdu("80 5C 00 02 04")) == (2755).to_bytes(4, "big") + b"\x90\x00"
        assert card.process_apdu(apdu("80 5C 00 05 04")) == bytes.fromhex("6A86")

    def test_empty_logs_end_with_record_not_found(self, card: TUnionCard) -> None:
        card.process_apdu(SELECT_TUNION)
        assert card.process_apdu(apdu("00 B2 01 C4 00")) == bytes.fromhex("6A83")
        assert card.process_apdu(apdu("00 B2 01 F4 00")) == bytes.fromhex("6A83")

    def test_no_cardholder_file(self, card: TUnionCard) -> None:
        """EF16 holds the holder's name and ID number; the simulator deliberately has none."""
        card.process_apdu(SELECT_TUNION)
        assert card.process_apdu(apdu("00 B0 96 00 37")) == bytes.fromhex("6A82")

    def test_get_challenge(self, card: TUnionCard) -> None:
        first = card.process_apdu(apdu("00 84 00 00 08"))
        second = card.process_apdu(apdu("00 84 00 00 08"))
        assert len(first) == 10
        assert first[-2:] == b"\x90\x00"
        assert first != second
        assert card.process_apdu(apdu("00 84 00 00 05")) == bytes.fromhex("6700")

    def test_reset_deselects_the_application(self, card: TUnionCard) -> None:
        card.process_apdu(SELECT_TUNION)
        card.reset()
        assert card.process_apdu(apdu("00 B0 95 00 00")) == bytes.fromhex("6A82")

    def test_select_mf_deselects_the_application(self, card: TUnionCard) -> None:
        card.process_apdu(SELECT_TUNION)
        assert card.process_apdu(apdu("00 A4 00 00 02 3F 00")) == b"\x90\x00"
        assert card.process_apdu(apdu("00 B0 95 00 00")) == bytes.fromhex("6A82")

    @pytest.mark.parametrize("card_no", ["310439001234567890", "31043900123456789012", "310439001234567890X"])
    def test_card_number_must_have_19_digits(self, card_no: str) -> None:
        with pytest.raises(ValueError, match="19 digits"):
            TUnionCard(uid=UID, card_no=card_no)

    def test_city_code_must_have_4_digits(self) -> None:
        with pytest.raises(ValueError, match="4 BCD"):
            TUnionCard(uid=UID, card_no=CARD_NO, city_code="393")


class TestApduParse:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("00 A4 00 00", (b"", None)),
            ("00 B0 95 00 1E", (b"", 0x1E)),
            ("00 A4 00 00 02 3F 00", (b"\x3f\x00", None)),
            ("00 A4 04 00 02 3F 00 00", (b"\x3f\x00", 0)),
        ],
        ids=["case1", "case2", "case3", "case4"],
    )
    def test_short_apdu_cases(self, raw: str, expected: tuple[bytes, int | None]) -> None:
        parsed = Apdu.parse(apdu(raw))
        assert (parsed.data, parsed.le) == expected

    @pytest.mark.parametrize("raw", ["00 A4 00", "00 A4 04 00 00 00 01", "00 A4 04 00 03 3F 00"])
    def test_malformed(self, raw: str) -> None:
        with pytest.raises(ValueError, match=r"APDU|Lc"):
            Apdu.parse(apdu(raw))
