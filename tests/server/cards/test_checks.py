"""Card checks at ingest: each level, every clone variant, the minimum, replay and issuer outages.

Cards are ``firmware_sim`` cards read through the kiosk's own card application
(``reader_agent.cardapp``), so the answers are the ones a real kiosk would sign. The issuer is
the simulator's logic behind the :class:`IssuerVerifier` interface; its HTTP form is tested in
``test_issuer_http.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from firmware_sim.cards import VirtualCard, issued_card, uid_only_card, xiamen_card
from firmware_sim.issuer import SimIssuer
from reader_agent.cardapp import GET_UID, CardChallenger, card_facts, exchange
from schemas.messages import (
    BatchReceipt,
    CardFacts,
    SignedEnvelope,
    card_auth_challenge,
)
from server.caller import CLI_CALLER
from server.cards.checks import CardCheckPolicy
from server.cards.issuer import IssuerMacCheck, IssuerUnavailable
from server.cards.service import bind_card
from server.db import unit_of_work
from server.errors import InvalidCardIdentifier
from server.keyring import Keyring
from server.records.cards import CardBinding
from server.records.taps import Tap
from server.venues.service import set_uid_only_reads
from server.vocabulary import CardCheckLevel, CardCheckNote
from tests.server.factories import EVENT_START, LI_CARD, ZHANG_CARD, ZHAO_CARD, World, enrol_second_kiosk
from tests.server.factories import upload as upload_batch
from tests.server.signing import tap_payload

MASTER_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
CLONER_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
RECEIVED = EVENT_START + timedelta(minutes=5)
OTHER_NUMBER = "3104393000000099999"
OTHER_UID = "04BADC0FFEE000"


class SimIssuerVerifier:
    """The simulated issuer behind the server's verifier interface, with a switch for outages."""

    def __init__(self, master_key: bytes = MASTER_KEY) -> None:
        self.issuer = SimIssuer(master_key)
        self.calls = 0
        self.down = False

    def verify(self, check: IssuerMacCheck) -> bool:
        self.calls += 1
        if self.down:
            raise IssuerUnavailable("simulated outage")
        return self.issuer.verify(
            card_no=check.card_no,
            key_id=check.key_id,
            algorithm=check.algorithm.value,
            challenge=check.challenge,
            response=check.response,
        )


def genuine(card_no: str = ZHANG_CARD.card_no or "", uid: str = ZHANG_CARD.uid) -> VirtualCard:
    return issued_card(card_no, bytes.fromhex(uid), MASTER_KEY)


def data_copy(card_no: str = ZHANG_CARD.card_no or "", uid: str = ZHANG_CARD.uid) -> VirtualCard:
    """An emulator replaying the card's UID and files, without its key."""
    return xiamen_card(card_no, bytes.fromhex(uid))


def read(card: VirtualCard, kiosk_id: str | None) -> CardFacts:
    """What a pcsc/nfc kiosk reads: the card application, challenging when *kiosk_id* is given."""
    card.activate()
    uid = exchange(card.process_apdu, GET_UID)
    return card_facts(uid, card.process_apdu, CardChallenger(kiosk_id) if kiosk_id else None)


def upload(
    engine: Engine, keyring: Keyring, envelopes: Sequence[SignedEnvelope], policy: CardCheckPolicy
) -> BatchReceipt:
    return upload_batch(engine, keyring, envelopes, received_at=RECEIVED, card_policy=policy)


def tap(engine: Engine, keyring: Keyring, world: World, facts: CardFacts, policy: CardCheckPolicy) -> str:
    """Upload one tap from the world's kiosk; its receipt as "accepted" or the rejection code."""
    result = upload(engine, keyring, [world.keys.seal(world.payload(facts, at=EVENT_START))], policy)
    (receipt,) = result.receipts
    return receipt.code or receipt.status.value


def last_tap(engine: Engine) -> Tap:
    with Session(engine) as session:
        row = session.exec(select(Tap).order_by(col(Tap.id).desc())).first()
    assert row is not None
    return row


def zhang_binding(engine: Engine, world: World) -> CardBinding:
    with Session(engine) as session:
        binding = session.exec(
            select(CardBinding).where(CardBinding.member_id == world.members["张三明"])
        ).one()
    return binding


@pytest.fixture
def issuer() -> SimIssuerVerifier:
    return SimIssuerVerifier()


@pytest.fixture
def policy(issuer: SimIssuerVerifier) -> CardCheckPolicy:
    return CardCheckPolicy(minimum=CardCheckLevel.UID, issuer=issuer)


class TestLevels:
    def test_genuine_card_reaches_issuer_mac(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        """Number, UID and a verified answer: the tap records issuer-mac and its challenge."""
        facts = read(genuine(), world.kiosk_id)
        assert tap(engine, keyring, world, facts, policy) == "accepted"
        row = last_tap(engine)
        assert (row.card_check, row.card_check_note) == (CardCheckLevel.ISSUER_MAC, None)
        assert facts.auth is not None
        expected = card_auth_challenge(world.kiosk_id, bytes.fromhex(facts.auth.nonce)).hex().upper()
        assert row.auth_challenge == expected
        assert row.member_id == world.members["张三明"]

    def test_first_verified_answer_teaches_the_binding(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        assert zhang_binding(engine, world).issuer_mac_since is None
        assert zhang_binding(engine, world).verified_level == CardCheckLevel.CARD_NUMBER
        tap(engine, keyring, world, read(genuine(), world.kiosk_id), policy)
        assert zhang_binding(engine, world).issuer_mac_since == RECEIVED
        assert zhang_binding(engine, world).verified_level == CardCheckLevel.ISSUER_MAC

    @pytest.mark.parametrize(
        ("facts", "level"),
        [
            pytest.param(ZHANG_CARD, CardCheckLevel.CARD_NUMBER, id="number-and-uid-binding"),
            pytest.param(ZHAO_CARD, CardCheckLevel.CARD_NUMBER, id="number-only-binding"),
            pytest.param(LI_CARD, CardCheckLevel.UID, id="uid-only-binding"),
        ],
    )
    def test_without_a_challenge_the_level_is_what_binding_and_read_share(
        self,
        engine: Engine,
        keyring: Keyring,
        world: World,
        policy: CardCheckPolicy,
        facts: CardFacts,
        level: CardCheckLevel,
    ) -> None:
        """Serial readers and older kiosks send no answer: the tap is checked as far as it goes."""
        assert tap(engine, keyring, world, facts, policy) == "accepted"
        assert last_tap(engine).card_check == level

    def test_serial_uid_reader_reads_a_genuine_card_at_uid_level_where_the_venue_accepts_it(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        """张三明's card is bound with its number: a UID-only read of it is a downgrade
        (tests/security/test_card_downgrade.py) unless the venue accepts UID-only reads."""
        facts = read(uid_only_card(bytes.fromhex(ZHANG_CARD.uid)), world.kiosk_id)
        assert tap(engine, keyring, world, facts, policy) == "card_downgrade"
        with unit_of_work(engine) as session:
            set_uid_only_reads(session, venue_id=world.venue_id, accept=True, caller=CLI_CALLER, now=RECEIVED)
        assert tap(engine, keyring, world, facts, policy) == "accepted"
        assert last_tap(engine).card_check == CardCheckLevel.UID

    def test_card_that_cannot_answer_stays_at_card_number(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        """A card without an issuer key (6D 00) is not a clone by itself while its binding knows nothing."""
        facts = read(data_copy(), world.kiosk_id)
        assert facts.auth is not None
        assert facts.auth.status == "6D00"
        assert tap(engine, keyring, world, facts, policy) == "accepted"
        assert last_tap(engine).card_check == CardCheckLevel.CARD_NUMBER

    def test_no_issuer_configured_means_card_number(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        facts = read(genuine(), world.kiosk_id)
        assert tap(engine, keyring, world, facts, CardCheckPolicy()) == "accepted"
        row = last_tap(engine)
        assert (row.card_check, row.auth_challenge) == (CardCheckLevel.CARD_NUMBER, None)

    def test_level_is_recorded_on_a_tap_outside_any_event(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        facts = read(genuine(), world.kiosk_id)
        payload = world.payload(facts, at=EVENT_START - timedelta(hours=3))
        result = upload(engine, keyring, [world.keys.seal(payload)], policy)
        assert result.receipts[0].code == "no_event"
        assert last_tap(engine).card_check == CardCheckLevel.ISSUER_MAC


class TestClones:
    def test_copied_uid_with_another_number(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        facts = read(genuine(card_no=OTHER_NUMBER), world.kiosk_id)
        assert tap(engine, keyring, world, facts, policy) == "card_mismatch"
        row = last_tap(engine)
        assert (row.member_id, row.card_check, row.display_member_name) == (None, None, None)
        assert row.display_message == "卡片信息与登记不符，请联系组织委员"

    def test_copied_number_with_another_uid(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        facts = read(data_copy(uid=OTHER_UID), world.kiosk_id)
        assert tap(engine, keyring, world, facts, policy) == "card_mismatch"

    def test_copied_number_with_another_uid_and_a_valid_mac_is_still_a_mismatch(
        self,
        engine: Engine,
        keyring: Keyring,
        world: World,
        policy: CardCheckPolicy,
        issuer: SimIssuerVerifier,
    ) -> None:
        """Identifiers are checked first: the issuer is not even asked."""
        facts = read(genuine(uid=OTHER_UID), world.kiosk_id)
        assert tap(engine, keyring, world, facts, policy) == "card_mismatch"
        assert issuer.calls == 0

    def test_card_under_another_issuer_key_is_refused_on_its_first_tap(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        """A clone that answers, but under a key of its maker's choosing."""
        assert ZHANG_CARD.card_no is not None
        clone = issued_card(ZHANG_CARD.card_no, bytes.fromhex(ZHANG_CARD.uid), CLONER_KEY)
        assert tap(engine, keyring, world, read(clone, world.kiosk_id), policy) == "issuer_mac_invalid"
        assert last_tap(engine).member_id is None
        assert zhang_binding(engine, world).issuer_mac_since is None

    def test_data_copy_is_refused_once_the_card_is_known_to_answer(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        """Copied UID and number, no key: it passes only until the genuine card has answered once."""
        assert tap(engine, keyring, world, read(data_copy(), world.kiosk_id), policy) == "accepted"
        assert tap(engine, keyring, world, read(genuine(), world.kiosk_id), policy) == "accepted"
        assert tap(engine, keyring, world, read(data_copy(), world.kiosk_id), policy) == "issuer_mac_invalid"
        # A kiosk that does not challenge (serial, older agent) still caps it at card-number.
        assert tap(engine, keyring, world, read(data_copy(), None), policy) == "accepted"
        assert last_tap(engine).card_check == CardCheckLevel.CARD_NUMBER

    def test_data_copy_of_a_card_bound_with_issuer_mac_is_refused(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        card_no, uid = "3104393000000042424", "04AABBCCDD4242"
        with unit_of_work(engine) as session:
            bind_card(
                session,
                keyring=keyring,
                member_id=world.members["王五"],
                card_no=card_no,
                uid=uid,
                now=EVENT_START,
                issuer_mac=True,
            )
        assert tap(engine, keyring, world, read(data_copy(card_no, uid), world.kiosk_id), policy) == (
            "issuer_mac_invalid"
        )
        assert tap(engine, keyring, world, read(genuine(card_no, uid), world.kiosk_id), policy) == "accepted"


class TestReplay:
    def test_answer_reused_in_a_new_tap_is_refused(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        facts = read(genuine(), world.kiosk_id)
        first = world.keys.seal(world.payload(facts, at=EVENT_START))
        assert upload(engine, keyring, [first], policy).receipts[0].status.value == "accepted"
        # The same bytes again are the same tap: answered as a duplicate, not judged again.
        assert upload(engine, keyring, [first], policy).receipts[0].status.value == "duplicate"
        # The same answer under a new seq is a second tap the card never made.
        assert tap(engine, keyring, world, facts, policy) == "issuer_mac_replayed"
        assert last_tap(engine).auth_challenge is None

    def test_old_answer_to_a_new_challenge_fails(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        old = read(genuine(), world.kiosk_id)
        fresh = read(data_copy(), world.kiosk_id)
        assert old.auth is not None
        assert fresh.auth is not None
        replayed = fresh.model_copy(
            update={"auth": fresh.auth.model_copy(update={"status": "9000", "response": old.auth.response})}
        )
        assert tap(engine, keyring, world, replayed, policy) == "issuer_mac_invalid"

    def test_answer_moved_to_another_kiosk_fails(
        self, engine: Engine, keyring: Keyring, world: World, policy: CardCheckPolicy
    ) -> None:
        """An answer copied out of kiosk 1's outbox is no good signed by kiosk 2: it was for kiosk 1."""
        other_kiosk, other_keys = enrol_second_kiosk(engine, keyring, world, now=EVENT_START)
        stolen = read(genuine(), world.kiosk_id)
        payload = tap_payload(kiosk_id=other_kiosk, seq=1, at=EVENT_START, card_facts=stolen)
        result = upload(engine, keyring, [other_keys.seal(payload)], policy)
        assert result.receipts[0].code == "issuer_mac_invalid"
        # ...and the genuine tap, uploaded later by kiosk 1, is still good.
        assert tap(engine, keyring, world, stolen, policy) == "accepted"


class TestMinimum:
    @pytest.mark.parametrize(
        ("facts", "outcome"),
        [
            pytest.param(
                CardFacts(uid=ZHANG_CARD.uid, application="uid_only"), "card_downgrade", id="uid-read"
            ),
            pytest.param(LI_CARD, "weak_card_check", id="uid-binding"),
            pytest.param(ZHANG_CARD, "accepted", id="card-number"),
        ],
    )
    def test_card_number_minimum(
        self,
        engine: Engine,
        keyring: Keyring,
        world: World,
        issuer: SimIssuerVerifier,
        facts: CardFacts,
        outcome: str,
    ) -> None:
        policy = CardCheckPolicy(minimum=CardCheckLevel.CARD_NUMBER, issuer=issuer)
        assert tap(engine, keyring, world, facts, policy) == outcome

    def test_weak_tap_records_the_level_it_reached_but_no_member(
        self, engine: Engine, keyring: Keyring, world: World, issuer: SimIssuerVerifier
    ) -> None:
        policy = CardCheckPolicy(minimum=CardCheckLevel.CARD_NUMBER, issuer=issuer)
        assert tap(engine, keyring, world, LI_CARD, policy) == "weak_card_check"
        row = last_tap(engine)
        assert (row.card_check, row.member_id, row.display_member_name) == (CardCheckLevel.UID, None, None)

    def test_issuer_mac_minimum(
        self, engine: Engine, keyring: Keyring, world: World, issuer: SimIssuerVerifier
    ) -> None:
        policy = CardCheckPolicy(minimum=CardCheckLevel.ISSUER_MAC, issuer=issuer)
        assert tap(engine, keyring, world, ZHANG_CARD, policy) == "weak_card_check"
        assert tap(engine, keyring, world, read(data_copy(), world.kiosk_id), policy) == "weak_card_check"
        assert tap(engine, keyring, world, read(genuine(), world.kiosk_id), policy) == "accepted"


class TestIssuerOutage:
    def test_tap_is_kept_at_card_number_and_flagged(
        self,
        engine: Engine,
        keyring: Keyring,
        world: World,
        policy: CardCheckPolicy,
        issuer: SimIssuerVerifier,
    ) -> None:
        issuer.down = True
        assert tap(engine, keyring, world, read(genuine(), world.kiosk_id), policy) == "accepted"
        row = last_tap(engine)
        assert (row.card_check, row.card_check_note) == (
            CardCheckLevel.CARD_NUMBER,
            CardCheckNote.ISSUER_UNAVAILABLE,
        )
        assert row.auth_challenge is None
        assert zhang_binding(engine, world).issuer_mac_since is None

    def test_refused_when_the_deployment_requires_issuer_mac(
        self, engine: Engine, keyring: Keyring, world: World, issuer: SimIssuerVerifier
    ) -> None:
        issuer.down = True
        policy = CardCheckPolicy(minimum=CardCheckLevel.ISSUER_MAC, issuer=issuer)
        assert tap(engine, keyring, world, read(genuine(), world.kiosk_id), policy) == "issuer_unavailable"
        assert last_tap(engine).display_message == "暂时无法向发卡机构验证卡片，请稍后重新刷卡"
        # The member taps again once the issuer is back: a new nonce, a new tap, accepted.
        issuer.down = False
        assert tap(engine, keyring, world, read(genuine(), world.kiosk_id), policy) == "accepted"

    def test_one_outage_is_noticed_once_per_batch(
        self,
        engine: Engine,
        keyring: Keyring,
        world: World,
        policy: CardCheckPolicy,
        issuer: SimIssuerVerifier,
    ) -> None:
        issuer.down = True
        envelopes = [
            world.keys.seal(world.payload(read(genuine(), world.kiosk_id), at=EVENT_START)) for _ in range(3)
        ]
        result = upload(engine, keyring, envelopes, policy)
        assert [r.status.value for r in result.receipts] == ["accepted"] * 3
        assert issuer.calls == 1

    def test_a_refusing_card_needs_no_issuer_to_be_caught(
        self,
        engine: Engine,
        keyring: Keyring,
        world: World,
        policy: CardCheckPolicy,
        issuer: SimIssuerVerifier,
    ) -> None:
        tap(engine, keyring, world, read(genuine(), world.kiosk_id), policy)
        issuer.down = True
        assert tap(engine, keyring, world, read(data_copy(), world.kiosk_id), policy) == "issuer_mac_invalid"


class TestBinding:
    def test_issuer_mac_needs_a_card_number(self, engine: Engine, keyring: Keyring, world: World) -> None:
        with unit_of_work(engine) as session, pytest.raises(InvalidCardIdentifier) as excinfo:
            bind_card(
                session,
                keyring=keyring,
                member_id=world.members["王五"],
                card_no=None,
                uid="04AABBCCDD4242",
                now=EVENT_START,
                issuer_mac=True,
            )
        assert excinfo.value.code == "invalid_card_identifier"

    def test_binding_again_with_issuer_mac_declares_it(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        with unit_of_work(engine) as session:
            binding = bind_card(
                session,
                keyring=keyring,
                member_id=world.members["张三明"],
                card_no=ZHANG_CARD.card_no,
                uid=ZHANG_CARD.uid,
                now=RECEIVED,
                issuer_mac=True,
            )
            assert binding.issuer_mac_since == RECEIVED
        assert zhang_binding(engine, world).issuer_mac_since == RECEIVED
        assert zhang_binding(engine, world).verified_level == CardCheckLevel.ISSUER_MAC

    @pytest.mark.parametrize(
        ("card_no", "uid", "issuer_mac", "level"),
        [
            pytest.param(
                "3104393000000042424", "04AABBCCDD4242", True, CardCheckLevel.ISSUER_MAC, id="issuer-mac"
            ),
            pytest.param(
                "3104393000000042424", "04AABBCCDD4242", False, CardCheckLevel.CARD_NUMBER, id="both"
            ),
            pytest.param("3104393000000042424", None, False, CardCheckLevel.CARD_NUMBER, id="number"),
            pytest.param(None, "04AABBCCDD4242", False, CardCheckLevel.UID, id="uid"),
        ],
    )
    def test_a_binding_is_verified_at_the_evidence_it_is_made_with(
        self,
        engine: Engine,
        keyring: Keyring,
        world: World,
        card_no: str | None,
        uid: str | None,
        issuer_mac: bool,
        level: CardCheckLevel,
    ) -> None:
        with unit_of_work(engine) as session:
            binding = bind_card(
                session,
                keyring=keyring,
                member_id=world.members["王五"],
                card_no=card_no,
                uid=uid,
                now=EVENT_START,
                issuer_mac=issuer_mac,
            )
            assert binding.verified_level == level
