"""Card identifiers: normalising operator input, masking for display, keyed digests."""

from __future__ import annotations

import pytest

from server.cards.identifiers import card_no_digest, normalise_card_no, normalise_uid, uid_digest
from server.errors import InvalidCardIdentifier
from server.keyring import Keyring, Purpose
from server.masking import mask_card_no, mask_name, mask_uid


class TestMasking:
    @pytest.mark.parametrize(
        ("name", "masked"), [("张三明", "张*明"), ("张三", "张*"), ("欧阳娜娜", "欧**娜"), ("张", "张*")]
    )
    def test_names(self, name: str, masked: str) -> None:
        assert mask_name(name) == masked

    def test_card_number_shows_four_and_four(self) -> None:
        assert mask_card_no("3104393000000018901") == "3104********8901"

    def test_uid_shows_only_its_tail(self) -> None:
        """The same policy as the kiosk's: its last byte (two for a 7-byte UID), never its head."""
        assert mask_uid("A1B2C3D4") == "******D4"
        assert mask_uid("04A1B2C3D4E5F6") == "**********E5F6"


class TestNormalising:
    def test_card_number_separators_are_dropped(self) -> None:
        assert normalise_card_no("3104 3930 0000 0018 901") == "3104393000000018901"

    def test_uid_is_upper_hex(self) -> None:
        assert normalise_uid("04:a1:b2:c3") == "04A1B2C3"
        assert normalise_uid("0x04a1b2c3") == "04A1B2C3"

    @pytest.mark.parametrize("value", ["123", "31043930000000189012", "310439300000001890X"])
    def test_bad_card_numbers(self, value: str) -> None:
        with pytest.raises(InvalidCardIdentifier) as excinfo:
            normalise_card_no(value)
        assert excinfo.value.code == "invalid_card_identifier"

    @pytest.mark.parametrize("value", ["12", "XYZXYZ", "0" * 22])
    def test_bad_uids(self, value: str) -> None:
        with pytest.raises(InvalidCardIdentifier):
            normalise_uid(value)


class TestDigests:
    def test_same_input_same_digest_under_one_key(self) -> None:
        keyring = Keyring(b"k" * 16 + b"0123456789abcdef")
        assert card_no_digest(keyring, "3104393000000018901") == card_no_digest(
            keyring, "3104393000000018901"
        )

    def test_other_key_other_digest(self) -> None:
        """Without the server secret a digest cannot be recomputed from a guessed card number."""
        a, b = Keyring(b"a" * 32), Keyring(b"b" * 32)
        assert card_no_digest(a, "3104393000000018901") != card_no_digest(b, "3104393000000018901")

    def test_purposes_are_separated(self) -> None:
        """The same bytes digest differently per purpose (a UID digest is never a token digest)."""
        keyring = Keyring(b"s" * 32)
        digests = {keyring.digest(purpose, b"04A1B2C3") for purpose in Purpose}
        assert len(digests) == len(Purpose)
        assert uid_digest(keyring, "04A1B2C3") == keyring.digest(Purpose.CARD_UID, b"04A1B2C3")

    def test_repr_hides_the_secret(self) -> None:
        assert "s" * 8 not in repr(Keyring(b"s" * 32))
