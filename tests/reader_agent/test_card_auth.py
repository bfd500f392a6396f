"""The kiosk side of issuer-mac: challenging a card and carrying its answer in the signed tap."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from firmware_sim.cards import TUnionCard, VirtualCard, issued_card, uid_only_card, xiamen_card
from firmware_sim.issuer import card_key, internal_auth_mac
from reader_agent.agent import Agent
from reader_agent.cardapp import GET_UID, CardChallenger, ChallengesCards, card_facts, exchange
from reader_agent.feedback import Feedback, FeedbackStatus
from reader_agent.outbox import Outbox
from reader_agent.readers import CardRead, CardTimeout
from reader_agent.signing import KioskKey
from schemas import CardApplication, ReaderBackend, TapMode, TapPayload, TapReceipt, card_auth_challenge

MASTER_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
CARD_NO = "3104390012345678901"
UID = bytes.fromhex("A1B2C3D4")
NONCE = bytes.fromhex("00112233445566778899AABBCCDDEEFF")


def fixed_nonce(size: int) -> bytes:
    assert size == 16
    return NONCE


CHALLENGER = CardChallenger("kiosk-1", random_bytes=fixed_nonce)


class TestChallengeDerivation:
    def test_fixed_vector(self) -> None:
        """SM3("ecard/card-auth/v1" ‖ len16 ‖ kiosk id ‖ nonce), first 16 bytes: kiosk and server agree."""
        assert card_auth_challenge("kiosk-1", bytes(16)).hex() == "779d444ef3560e4f04278903609c8310"

    def test_depends_on_the_kiosk_and_the_nonce(self) -> None:
        base = card_auth_challenge("kiosk-1", NONCE)
        assert card_auth_challenge("kiosk-2", NONCE) != base
        assert card_auth_challenge("kiosk-1", bytes(16)) != base
        # The length prefix keeps "kiosk-1" + nonce apart from "kiosk-" + "1" + nonce[:-1].
        assert card_auth_challenge("kiosk-", b"1" + NONCE[:-1]) != base

    def test_a_long_unicode_kiosk_id_is_fine(self) -> None:
        assert len(card_auth_challenge("终端" * 32, NONCE)) == 16


class TestCardFacts:
    def test_genuine_card_answers_the_derived_challenge(self) -> None:
        card = issued_card(CARD_NO, UID, MASTER_KEY)
        facts = card_facts(UID, card.process_apdu, CHALLENGER)
        assert facts.auth is not None
        assert facts.auth.nonce == NONCE.hex().upper()
        assert (facts.auth.status, facts.auth.key_id, facts.auth.algorithm.value) == ("9000", 1, "sm4-cmac")
        expected = internal_auth_mac(card_key(MASTER_KEY, CARD_NO), card_auth_challenge("kiosk-1", NONCE))
        assert facts.auth.response == expected.hex().upper()

    def test_the_kiosk_never_sends_the_nonce_itself(self) -> None:
        """The card sees only the derived challenge, so it cannot be steered to answer a raw nonce."""
        card = issued_card(CARD_NO, UID, MASTER_KEY)
        card_facts(UID, card.process_apdu, CHALLENGER)
        auth_apdu = card.apdu_log[-1]
        assert auth_apdu[:5] == bytes.fromhex("0088000110")
        assert auth_apdu[5:21] == card_auth_challenge("kiosk-1", NONCE)

    def test_card_without_a_key_is_reported_as_refusing(self) -> None:
        facts = card_facts(UID, xiamen_card(CARD_NO, UID).process_apdu, CHALLENGER)
        assert facts.auth is not None
        assert (facts.auth.status, facts.auth.response) == ("6D00", None)

    def test_fresh_nonce_per_presentation(self) -> None:
        card = issued_card(CARD_NO, UID, MASTER_KEY)
        challenger = CardChallenger("kiosk-1")
        nonces = set()
        for _ in range(3):
            card.activate()
            facts = card_facts(UID, card.process_apdu, challenger)
            assert facts.auth is not None
            nonces.add(facts.auth.nonce)
        assert len(nonces) == 3

    def test_uid_only_card_is_not_challenged(self) -> None:
        facts = card_facts(UID, uid_only_card(UID).process_apdu, CHALLENGER)
        assert (facts.application, facts.auth) == (CardApplication.UID_ONLY, None)

    def test_without_a_challenger_nothing_changes(self) -> None:
        card = issued_card(CARD_NO, UID, MASTER_KEY)
        facts = card_facts(UID, card.process_apdu)
        assert facts.auth is None
        assert not any(apdu[1] == 0x88 for apdu in card.apdu_log)

    def test_card_leaving_during_the_challenge_is_a_timeout(self) -> None:
        card = issued_card(CARD_NO, UID, MASTER_KEY)

        def transmit(apdu: bytes) -> bytes:
            return b"" if apdu[1] == 0x88 else card.process_apdu(apdu)

        with pytest.raises(CardTimeout):
            card_facts(UID, transmit, CHALLENGER)

    def test_an_oversized_answer_is_not_passed_on(self) -> None:
        card = issued_card(CARD_NO, UID, MASTER_KEY)

        def transmit(apdu: bytes) -> bytes:
            return bytes(65) + b"\x90\x00" if apdu[1] == 0x88 else card.process_apdu(apdu)

        facts = card_facts(UID, transmit, CHALLENGER)
        assert facts.auth is not None
        assert (facts.auth.status, facts.auth.response) == ("9000", None)


class CardAppReader:
    """A reader that reads virtual cards in-process with the shared card application (no wire).

    Enough to test the agent layer: the wire stacks are tested with firmware_sim elsewhere.
    """

    name = "card-app"

    def __init__(self, cards: list[VirtualCard]) -> None:
        self._cards = cards
        self.challenger: CardChallenger | None = None

    def use_card_challenges(self, challenger: CardChallenger | None) -> None:
        self.challenger = challenger

    def poll(self, timeout: float) -> CardRead | None:
        if not self._cards:
            time.sleep(timeout)
            return None
        card = self._cards.pop(0)
        card.activate()
        uid = exchange(card.process_apdu, GET_UID)
        facts = card_facts(uid, card.process_apdu, self.challenger)
        return CardRead(card=facts, backend=ReaderBackend.PCSC, reader_name=self.name)

    def close(self) -> None:
        pass


class NoServer:
    def wake(self) -> None:
        pass

    def wait_for_receipt(self, seq: int, timeout: float) -> TapReceipt | None:
        return None


def run_agent(tmp_path: Path, reader: CardAppReader, *, until: Callable[[list[Feedback]], bool]) -> Outbox:
    outbox = Outbox.open(tmp_path / "outbox.sqlite")
    lines: list[Feedback] = []
    stop = threading.Event()
    clock = itertools.count()

    def emit(line: Feedback) -> None:
        lines.append(line)
        if until(lines):
            stop.set()

    agent = Agent(
        open_reader=lambda: reader,
        outbox=outbox,
        uploader=NoServer(),
        sealer=KioskKey.generate(),
        kiosk_id="kiosk-7",
        mode=TapMode.CHECKIN,
        emit=emit,
        now=lambda: datetime(2025, 3, 1, 9, 0, next(clock), tzinfo=UTC),
        poll_timeout_s=0.01,
        receipt_wait_s=0.0,
    )
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    return outbox


def offline_taps(lines: list[Feedback]) -> int:
    return sum(line.status is FeedbackStatus.OFFLINE for line in lines)


class TestAgent:
    def test_readers_that_can_challenge_are_told_this_kiosks_id(self, tmp_path: Path) -> None:
        reader = CardAppReader([issued_card(CARD_NO, UID, MASTER_KEY), xiamen_card(CARD_NO, UID)])
        assert isinstance(reader, ChallengesCards)
        outbox = run_agent(tmp_path, reader, until=lambda lines: offline_taps(lines) == 2)
        try:
            entries = outbox.pending_batch(10)
        finally:
            outbox.close()
        assert reader.challenger is not None
        assert reader.challenger.kiosk_id == "kiosk-7"
        genuine, copy = (TapPayload.model_validate_json(e.envelope.payload_bytes()) for e in entries)
        assert genuine.card.auth is not None
        challenge = card_auth_challenge("kiosk-7", bytes.fromhex(genuine.card.auth.nonce))
        expected = internal_auth_mac(card_key(MASTER_KEY, CARD_NO), challenge)
        assert genuine.card.auth.response == expected.hex().upper()
        assert copy.card.auth is not None
        assert copy.card.auth.status == "6D00"

    def test_signed_bytes_carry_the_answer(self, tmp_path: Path) -> None:
        """The answer is inside the signature: nobody on the way can swap it."""
        card: TUnionCard = issued_card(CARD_NO, UID, MASTER_KEY)
        outbox = run_agent(tmp_path, CardAppReader([card]), until=lambda lines: offline_taps(lines) == 1)
        try:
            (entry,) = outbox.pending_batch(10)
        finally:
            outbox.close()
        assert b'"auth":{"algorithm":"sm4-cmac"' in entry.envelope.payload_bytes()
