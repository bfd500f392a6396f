"""The simulated issuer: key diversification, the card's SM4-CMAC answer, and its HTTP service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from firmware_sim.cards import TUnionCard, issued_card, xiamen_card
from firmware_sim.issuer import (
    VERIFY_PATH,
    IssuerServer,
    SimIssuer,
    card_key,
    diversification_data,
    internal_auth_mac,
)

MASTER_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
OTHER_MASTER_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
CARD_NO = "3104390012345678901"
UID = bytes.fromhex("A1B2C3D4")
CHALLENGE = bytes(range(16))
SELECT_TUNION = bytes.fromhex("00A4040008A00000063201010500")


def sm4_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def cmac_one_block(key: bytes, block: bytes) -> bytes:
    """NIST SP 800-38B CMAC of exactly one full block, written out from SM4-ECB."""
    ell = int.from_bytes(sm4_block(key, bytes(16)), "big")
    k1 = (ell << 1) & ((1 << 128) - 1)
    if ell >> 127:
        k1 ^= 0x87
    return sm4_block(key, (int.from_bytes(block, "big") ^ k1).to_bytes(16, "big"))


def internal_authenticate(challenge: bytes, key_id: int = 1) -> bytes:
    return bytes([0x00, 0x88, 0x00, key_id, len(challenge)]) + challenge + b"\x00"


class TestKeyScheme:
    def test_sm4_is_the_standard_cipher(self) -> None:
        """GB/T 32907 test vector: the cipher under everything below."""
        assert sm4_block(MASTER_KEY, MASTER_KEY).hex() == "681edf34d206965e86b3e94f536e4246"

    def test_diversification_data_is_the_last_16_digits_and_their_complement(self) -> None:
        assert diversification_data(CARD_NO).hex().upper() == "4390012345678901BC6FFEDCBA9876FE"

    def test_card_key_is_the_master_key_encrypting_the_diversification_data(self) -> None:
        key = card_key(MASTER_KEY, CARD_NO)
        assert key == sm4_block(MASTER_KEY, diversification_data(CARD_NO))
        assert key.hex().upper() == "4E450E7D4C69F7BA7E7117453EA29FE8"

    def test_answer_is_sm4_cmac_of_the_challenge(self) -> None:
        key = card_key(MASTER_KEY, CARD_NO)
        answer = internal_auth_mac(key, CHALLENGE)
        assert answer == cmac_one_block(key, CHALLENGE)
        assert answer.hex().upper() == "53C0DA0C17B3B211FD526BDB1B90E21A"

    def test_every_card_has_its_own_key(self) -> None:
        assert card_key(MASTER_KEY, CARD_NO) != card_key(MASTER_KEY, "3104390012345678902")
        assert card_key(MASTER_KEY, CARD_NO) != card_key(OTHER_MASTER_KEY, CARD_NO)

    @pytest.mark.parametrize("card_no", ["310439001234567890", "31043900123456789012", "310439001234567890X"])
    def test_malformed_card_numbers_are_refused(self, card_no: str) -> None:
        with pytest.raises(ValueError, match="19 digits"):
            card_key(MASTER_KEY, card_no)

    def test_master_key_length_is_checked(self) -> None:
        with pytest.raises(ValueError, match="16 bytes"):
            SimIssuer(MASTER_KEY[:8])


class TestCardInternalAuthenticate:
    def card(self) -> TUnionCard:
        card = issued_card(CARD_NO, UID, MASTER_KEY)
        assert card.process_apdu(SELECT_TUNION)[-2:] == b"\x90\x00"
        return card

    def test_issued_card_answers_with_its_mac(self) -> None:
        answer = self.card().process_apdu(internal_authenticate(CHALLENGE))
        assert answer == internal_auth_mac(card_key(MASTER_KEY, CARD_NO), CHALLENGE) + b"\x90\x00"

    def test_card_without_a_key_does_not_know_the_command(self) -> None:
        """A plain card, or a clone of its data: 6D 00, so card-number is its strongest level."""
        card = xiamen_card(CARD_NO, UID)
        card.process_apdu(SELECT_TUNION)
        assert card.process_apdu(internal_authenticate(CHALLENGE)) == b"\x6d\x00"

    def test_outside_the_application_conditions_are_not_satisfied(self) -> None:
        card = issued_card(CARD_NO, UID, MASTER_KEY)
        assert card.process_apdu(internal_authenticate(CHALLENGE)) == b"\x69\x85"

    def test_unknown_key_id(self) -> None:
        assert self.card().process_apdu(internal_authenticate(CHALLENGE, key_id=2)) == b"\x6a\x88"

    def test_challenge_must_be_16_bytes(self) -> None:
        assert self.card().process_apdu(internal_authenticate(CHALLENGE[:8])) == b"\x67\x00"

    def test_wrong_le_gets_6c(self) -> None:
        apdu = internal_authenticate(CHALLENGE)[:-1] + b"\x08"
        assert self.card().process_apdu(apdu) == b"\x6c\x10"

    def test_key_is_not_in_the_repr(self) -> None:
        assert card_key(MASTER_KEY, CARD_NO).hex() not in repr(issued_card(CARD_NO, UID, MASTER_KEY)).lower()


class TestSimIssuer:
    issuer = SimIssuer(MASTER_KEY)
    answer = internal_auth_mac(card_key(MASTER_KEY, CARD_NO), CHALLENGE)

    def verify(self, **overrides: object) -> bool:
        request: dict[str, object] = {
            "card_no": CARD_NO,
            "key_id": 1,
            "algorithm": "sm4-cmac",
            "challenge": CHALLENGE,
            "response": self.answer,
        }
        request.update(overrides)
        return self.issuer.verify(**request)  # type: ignore[arg-type]

    def test_the_cards_own_answer_is_valid(self) -> None:
        assert self.verify()

    @pytest.mark.parametrize(
        "overrides",
        [
            {"card_no": "3104390012345678902"},  # another card's number
            {"challenge": bytes(16)},  # an answer to another challenge
            {"response": bytes(16)},
            {"response": b"\x00"},
            {"key_id": 2},
            {"algorithm": "3des-mac"},
        ],
    )
    def test_anything_else_is_invalid(self, overrides: dict[str, object]) -> None:
        assert not self.verify(**overrides)

    def test_the_master_key_is_not_in_the_repr(self) -> None:
        assert MASTER_KEY.hex() not in repr(self.issuer).lower()


@pytest.fixture
def service() -> Iterator[IssuerServer]:
    with IssuerServer(SimIssuer(MASTER_KEY)) as server:
        yield server


def body(**overrides: object) -> dict[str, object]:
    answer = internal_auth_mac(card_key(MASTER_KEY, CARD_NO), CHALLENGE)
    request: dict[str, object] = {
        "card_no": CARD_NO,
        "key_id": 1,
        "algorithm": "sm4-cmac",
        "challenge": CHALLENGE.hex().upper(),
        "response": answer.hex().upper(),
    }
    request.update(overrides)
    return request


class TestIssuerService:
    def test_valid_answer(self, service: IssuerServer) -> None:
        response = httpx.post(service.url + VERIFY_PATH, json=body(), timeout=5)
        assert (response.status_code, response.json()) == (200, {"valid": True})

    def test_invalid_answer(self, service: IssuerServer) -> None:
        response = httpx.post(service.url + VERIFY_PATH, json=body(response="00" * 16), timeout=5)
        assert (response.status_code, response.json()) == (200, {"valid": False})

    @pytest.mark.parametrize(
        "bad",
        [
            {"card_no": "123"},
            {"key_id": "1"},
            {"key_id": True},
            {"challenge": "00"},
            {"response": "zz"},
            {"response": "00" * 65},
        ],
    )
    def test_malformed_requests_are_400(self, service: IssuerServer, bad: dict[str, object]) -> None:
        response = httpx.post(service.url + VERIFY_PATH, json=body(**bad), timeout=5)
        assert response.status_code == 400
        assert response.json()["error"] == "malformed"

    def test_not_json_is_400(self, service: IssuerServer) -> None:
        response = httpx.post(service.url + VERIFY_PATH, content=b"card=1", timeout=5)
        assert response.status_code == 400

    def test_other_paths_are_404(self, service: IssuerServer) -> None:
        assert httpx.post(service.url + "/v1/other", json=body(), timeout=5).status_code == 404

    def test_simulated_outage_is_503(self, service: IssuerServer) -> None:
        service.outage = True
        response = httpx.post(service.url + VERIFY_PATH, json=body(), timeout=5)
        assert (response.status_code, response.json()) == (503, {"error": "unavailable"})


class TestIssuerCli:
    def test_serves_until_sigterm(self) -> None:
        """``python -m firmware_sim.issuer_cli`` prints its URL, answers, and stops on SIGTERM."""
        env = dict(os.environ, ECARD_SIM_ISSUER_MASTER_KEY=MASTER_KEY.hex(), PYTHONUNBUFFERED="1")
        process = subprocess.Popen(
            [sys.executable, "-m", "firmware_sim.issuer_cli", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("issuer listening on http://127.0.0.1:"), line
            url = line.split()[-1]
            assert httpx.post(url + VERIFY_PATH, json=body(), timeout=5).json() == {"valid": True}
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    def test_bad_master_key_is_a_usage_error(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "firmware_sim.issuer_cli", "--master-key", "abcd"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2
        assert "16 bytes" in result.stderr
