"""No downgrade of a card (issue #9, item 7), on SQLite and PostgreSQL.

The attack: a card bound with ``--card-no … --uid 5A3C9E02 --issuer-mac`` is impersonated by a
cheap magic-UID card carrying the same UID and no T-Union application. The kiosk's card
application reads it as UID-only, so the tap can only ever reach ``uid``. A binding remembers the
strongest level its card has been verified at (its ``verified_level``), and a read below it is
refused as ``card_downgrade``:

* from a pcsc or nfc kiosk always (those readers read the application and challenge the card);
* from a serial kiosk unless its venue accepts UID-only reads (off by default);
* a binding only ever verified by UID keeps working at ``uid`` everywhere.

Cards are ``firmware_sim`` cards read through the kiosk's own card application
(``reader_agent.cardapp``); the reader backend is the one the signed payload names.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from firmware_sim.cards import VirtualCard, issued_card, uid_only_card, xiamen_card
from firmware_sim.issuer import SimIssuer
from reader_agent.cardapp import GET_UID, CardChallenger, card_facts, exchange
from schemas.messages import CardFacts, ReaderBackend, ReaderInfo, TapBatch, TapMode
from server.caller import CLI_CALLER
from server.cards.checks import CardCheckPolicy
from server.cards.issuer import IssuerMacCheck, IssuerUnavailable
from server.cards.service import bind_member_card
from server.cli import admin_app
from server.db import unit_of_work
from server.keyring import Keyring
from server.migrate import alembic_config, migrate
from server.records.attendance import Attendance
from server.records.audit import AuditEntry
from server.records.cards import CardBinding
from server.records.taps import Tap
from server.taps.service import ingest_batch
from server.venues.service import set_uid_only_reads
from server.vocabulary import CardCheckLevel, CardCheckNote, RejectionCode, TapOutcome
from tests.server import conftest as server_suite
from tests.server.conftest import TEST_SECRET, FakeClock
from tests.server.factories import EVENT_START, LI_CARD, World
from tests.server.signing import tap_payload

MASTER_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
CARD_NO = "3104393000000042424"
UID = "5A3C9E02"  # the UID from the issue
RECEIVED = EVENT_START + timedelta(minutes=5)
# The server suite's fixtures: a fresh migrated database per test, [sqlite] and [pg], and its world.
sqlite_template = server_suite.sqlite_template
database_url = server_suite.database_url
settings = server_suite.settings
keyring = server_suite.keyring
engine = server_suite.engine
clock = server_suite.clock
world = server_suite.world
client = server_suite.client
DOWNGRADE_MESSAGE = "此卡须以更高等级验证，疑似复制卡，请联系组织委员"
CHALLENGING = [ReaderBackend.PCSC, ReaderBackend.NFC]


class Issuer:
    """The simulated issuer behind the server's verifier interface, with a switch for outages."""

    def __init__(self) -> None:
        self.issuer = SimIssuer(MASTER_KEY)
        self.down = False

    def verify(self, check: IssuerMacCheck) -> bool:
        if self.down:
            raise IssuerUnavailable("simulated outage")
        return self.issuer.verify(
            card_no=check.card_no,
            key_id=check.key_id,
            algorithm=check.algorithm.value,
            challenge=check.challenge,
            response=check.response,
        )


def read(card: VirtualCard, kiosk_id: str | None) -> CardFacts:
    """What a pcsc/nfc kiosk's card application reports, challenging when *kiosk_id* is given."""
    card.activate()
    uid = exchange(card.process_apdu, GET_UID)
    return card_facts(uid, card.process_apdu, CardChallenger(kiosk_id) if kiosk_id else None)


def magic_card(world: World) -> CardFacts:
    """A UID-changeable card with the bound card's UID and no T-Union application."""
    facts = read(uid_only_card(bytes.fromhex(UID)), world.kiosk_id)
    assert (facts.application.value, facts.card_no, facts.auth) == ("uid_only", None, None)
    return facts


def genuine_card(world: World) -> CardFacts:
    return read(issued_card(CARD_NO, bytes.fromhex(UID), MASTER_KEY), world.kiosk_id)


def tap(
    engine: Engine,
    keyring: Keyring,
    world: World,
    facts: CardFacts,
    backend: ReaderBackend,
    *,
    policy: CardCheckPolicy | None = None,
    mode: TapMode = TapMode.CHECKIN,
) -> Tap:
    """One tap from the world's kiosk, its reader named *backend*; the stored row."""
    world.seq += 1
    payload = tap_payload(kiosk_id=world.kiosk_id, seq=world.seq, at=EVENT_START, card_facts=facts, mode=mode)
    payload = payload.model_copy(
        update={"reader": ReaderInfo(backend=backend, name=f"{backend.value} reader")}
    )
    with unit_of_work(engine) as session:
        result = ingest_batch(
            session,
            TapBatch(envelopes=[world.keys.seal(payload)]),
            keyring=keyring,
            received_at=RECEIVED,
            max_clock_skew=timedelta(minutes=10),
            card_policy=policy,
        )
    (receipt,) = result.receipts
    with Session(engine) as session:
        row = session.exec(select(Tap).order_by(col(Tap.id).desc())).first()
    assert row is not None
    assert receipt.code == (row.code.value if row.code else None)
    return row


def bind(engine: Engine, keyring: Keyring, world: World, *, issuer_mac: bool) -> CardBinding:
    """王五's card, bound as the issue did: card number, UID and (maybe) ``--issuer-mac``."""
    with unit_of_work(engine) as session:
        binding = bind_member_card(
            session,
            keyring=keyring,
            member_id=world.members["王五"],
            card_no=CARD_NO,
            uid=UID,
            now=EVENT_START - timedelta(days=1),
            caller=CLI_CALLER,
            issuer_mac=issuer_mac,
        )
        session.expunge(binding)
    return binding


def binding_level(engine: Engine, binding_id: int | None) -> CardCheckLevel:
    with Session(engine) as session:
        binding = session.get(CardBinding, binding_id)
        assert binding is not None
        return binding.verified_level


def present(engine: Engine, world: World, name: str) -> bool:
    with Session(engine) as session:
        found = session.exec(
            select(Attendance).where(
                Attendance.event_id == world.event_id, Attendance.member_id == world.members[name]
            )
        ).first()
    return found is not None


def assert_refused_as_downgrade(row: Tap) -> None:
    """Refused with its own code and message, stored like every refusal, filed against nobody."""
    assert (row.outcome, row.code) == (TapOutcome.REJECTED, RejectionCode.CARD_DOWNGRADE)
    assert row.display_message == DOWNGRADE_MESSAGE
    assert (row.member_id, row.event_id, row.display_member_name) == (None, None, None)
    assert row.card_check == CardCheckLevel.UID  # what the read reached, kept for the record


class TestChallengingKiosks:
    @pytest.mark.parametrize("backend", CHALLENGING)
    @pytest.mark.parametrize("issuer_mac", [True, False], ids=["issuer-mac", "card-number"])
    def test_magic_uid_card_is_refused(
        self, engine: Engine, keyring: Keyring, world: World, backend: ReaderBackend, issuer_mac: bool
    ) -> None:
        """The issue's clone, at the default minimum (``uid``): refused, not checked at ``uid``."""
        binding = bind(engine, keyring, world, issuer_mac=issuer_mac)
        expected = CardCheckLevel.ISSUER_MAC if issuer_mac else CardCheckLevel.CARD_NUMBER
        assert binding.verified_level == expected
        assert_refused_as_downgrade(tap(engine, keyring, world, magic_card(world), backend))
        assert not present(engine, world, "王五")
        assert binding_level(engine, binding.id) == expected  # a refusal teaches the binding nothing

    @pytest.mark.parametrize("backend", CHALLENGING)
    def test_level_learnt_from_a_tap_is_kept(
        self, engine: Engine, keyring: Keyring, world: World, backend: ReaderBackend
    ) -> None:
        """Bound with its number (card-number); once the genuine card has answered the issuer, the
        binding is at issuer-mac, the magic card is refused and the genuine card keeps passing."""
        binding = bind(engine, keyring, world, issuer_mac=False)
        policy = CardCheckPolicy(issuer=Issuer())
        genuine = tap(engine, keyring, world, genuine_card(world), backend, policy=policy)
        assert (genuine.outcome, genuine.card_check) == (TapOutcome.ACCEPTED, CardCheckLevel.ISSUER_MAC)
        assert binding_level(engine, binding.id) == CardCheckLevel.ISSUER_MAC
        assert_refused_as_downgrade(tap(engine, keyring, world, magic_card(world), backend, policy=policy))
        again = tap(engine, keyring, world, genuine_card(world), backend, policy=policy)
        assert (again.outcome, again.card_check) == (TapOutcome.ACCEPTED, CardCheckLevel.ISSUER_MAC)

    @pytest.mark.parametrize("backend", CHALLENGING)
    def test_venue_option_does_not_open_a_challenging_kiosk(
        self, engine: Engine, keyring: Keyring, world: World, backend: ReaderBackend
    ) -> None:
        bind(engine, keyring, world, issuer_mac=True)
        with unit_of_work(engine) as session:
            set_uid_only_reads(session, venue_id=world.venue_id, accept=True, caller=CLI_CALLER, now=RECEIVED)
        assert_refused_as_downgrade(tap(engine, keyring, world, magic_card(world), backend))

    @pytest.mark.parametrize("backend", CHALLENGING)
    def test_unchallenged_read_of_an_issuer_mac_card_is_refused(
        self, engine: Engine, keyring: Keyring, world: World, backend: ReaderBackend
    ) -> None:
        """A copy of the card's data (number and UID), sent by a pcsc/nfc kiosk without the challenge
        those kiosks always put: below issuer-mac, refused."""
        bind(engine, keyring, world, issuer_mac=True)
        facts = read(xiamen_card(CARD_NO, bytes.fromhex(UID)), None)
        assert (facts.card_no, facts.auth) == (CARD_NO, None)
        row = tap(engine, keyring, world, facts, backend, policy=CardCheckPolicy(issuer=Issuer()))
        assert (row.code, row.card_check) == (RejectionCode.CARD_DOWNGRADE, CardCheckLevel.CARD_NUMBER)

    def test_an_issuer_outage_is_not_a_downgrade(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """The card answered; the server could not ask: kept at card-number and flagged, as before."""
        bind(engine, keyring, world, issuer_mac=True)
        issuer = Issuer()
        issuer.down = True
        row = tap(
            engine,
            keyring,
            world,
            genuine_card(world),
            ReaderBackend.PCSC,
            policy=CardCheckPolicy(issuer=issuer),
        )
        assert (row.outcome, row.card_check, row.card_check_note) == (
            TapOutcome.ACCEPTED,
            CardCheckLevel.CARD_NUMBER,
            CardCheckNote.ISSUER_UNAVAILABLE,
        )

    def test_a_deployment_without_an_issuer_is_no_downgrade(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        bind(engine, keyring, world, issuer_mac=True)
        row = tap(engine, keyring, world, genuine_card(world), ReaderBackend.NFC)
        assert (row.outcome, row.card_check) == (TapOutcome.ACCEPTED, CardCheckLevel.CARD_NUMBER)

    def test_transfer_in_mode_refuses_the_clone_too(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        bind(engine, keyring, world, issuer_mac=True)
        row = tap(engine, keyring, world, magic_card(world), ReaderBackend.PCSC, mode=TapMode.TRANSFER_IN)
        assert row.code == RejectionCode.CARD_DOWNGRADE


class TestSerialKiosks:
    @pytest.mark.parametrize("issuer_mac", [True, False], ids=["issuer-mac", "card-number"])
    def test_uid_only_read_is_refused_unless_the_venue_accepts_it(
        self, engine: Engine, keyring: Keyring, world: World, issuer_mac: bool
    ) -> None:
        bind(engine, keyring, world, issuer_mac=issuer_mac)
        facts = magic_card(world)  # a serial reader reports any card, genuine or not, by UID alone
        assert_refused_as_downgrade(tap(engine, keyring, world, facts, ReaderBackend.SERIAL))

        with unit_of_work(engine) as session:
            set_uid_only_reads(session, venue_id=world.venue_id, accept=True, caller=CLI_CALLER, now=RECEIVED)
        accepted = tap(engine, keyring, world, facts, ReaderBackend.SERIAL)
        assert (accepted.outcome, accepted.card_check) == (TapOutcome.ACCEPTED, CardCheckLevel.UID)
        assert accepted.member_id == world.members["王五"]

        with unit_of_work(engine) as session:
            set_uid_only_reads(
                session, venue_id=world.venue_id, accept=False, caller=CLI_CALLER, now=RECEIVED
            )
        assert_refused_as_downgrade(tap(engine, keyring, world, facts, ReaderBackend.SERIAL))

    def test_scripted_reader_is_held_to_the_serial_rule(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Any reader other than pcsc/nfc: refused unless the venue accepts UID-only reads."""
        bind(engine, keyring, world, issuer_mac=False)
        assert_refused_as_downgrade(tap(engine, keyring, world, magic_card(world), ReaderBackend.SCRIPTED))

    def test_changing_the_option_is_audited(self, engine: Engine, world: World) -> None:
        with unit_of_work(engine) as session:
            venue = set_uid_only_reads(
                session, venue_id=world.venue_id, accept=True, caller=CLI_CALLER, now=RECEIVED
            )
            assert venue.accept_uid_only_reads is True
        with Session(engine) as session:
            entry = session.exec(select(AuditEntry).where(AuditEntry.action == "venue.uid_only_reads")).one()
        assert (entry.object_type, entry.object_id) == ("venue", str(world.venue_id))


class TestUidOnlyBindings:
    @pytest.mark.parametrize("backend", list(ReaderBackend))
    def test_a_card_only_ever_verified_by_uid_keeps_working(
        self, engine: Engine, keyring: Keyring, world: World, backend: ReaderBackend
    ) -> None:
        """李四's card was bound by UID; UID-only reads and full reads both pass at uid, everywhere."""
        uid_read = CardFacts(uid=LI_CARD.uid, application="uid_only")
        for facts in (uid_read, LI_CARD):
            row = tap(engine, keyring, world, facts, backend)
            assert (row.outcome, row.card_check) == (TapOutcome.ACCEPTED, CardCheckLevel.UID)
        assert present(engine, world, "李四")
        with Session(engine) as session:
            binding = session.exec(
                select(CardBinding).where(CardBinding.member_id == world.members["李四"])
            ).one()
        assert binding.verified_level == CardCheckLevel.UID


class TestOverHttp:
    def test_the_issues_clone_is_refused_by_a_running_server(
        self,
        client: TestClient,
        clock: FakeClock,
        database_url: str,
        world: World,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        """Bound through ``ecard admin card bind --card-no … --uid 5A3C9E02 --issuer-mac``; the magic
        card uploaded by a pcsc kiosk to ``POST /api/v1/taps`` under the default settings."""
        monkeypatch.setenv("ECARD_SECRET_KEY", TEST_SECRET)
        monkeypatch.setenv("ECARD_DATA_DIR", str(tmp_path / "cli-data"))
        runner = CliRunner()

        def admin(*args: str) -> dict[str, object]:
            result = runner.invoke(admin_app, [*args, "--json", "--db", database_url])
            assert result.exit_code == 0, result.output
            parsed: dict[str, object] = json.loads(result.stdout)
            return parsed

        member = str(world.members["王五"])
        bound = admin("card", "bind", member, "--card-no", CARD_NO, "--uid", UID, "--issuer-mac")
        assert (bound["issuer_mac"], bound["verified_level"]) == (True, "issuer-mac")

        clock.now = RECEIVED

        def upload(backend: ReaderBackend) -> dict[str, object]:
            world.seq += 1
            payload = tap_payload(
                kiosk_id=world.kiosk_id, seq=world.seq, at=EVENT_START, card_facts=magic_card(world)
            )
            payload = payload.model_copy(update={"reader": ReaderInfo(backend=backend, name="reader")})
            batch = TapBatch(envelopes=[world.keys.seal(payload)]).model_dump_json()
            response = client.post(
                "/api/v1/taps", content=batch, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 200, response.text
            (receipt,) = response.json()["receipts"]
            result: dict[str, object] = receipt
            return result

        refused = upload(ReaderBackend.PCSC)
        assert (refused["status"], refused["code"]) == ("rejected", "card_downgrade")
        assert refused["display"] == {
            "member_name": None,
            "event_title": None,
            "message": DOWNGRADE_MESSAGE,
            "link": None,
        }
        assert upload(ReaderBackend.SERIAL)["code"] == "card_downgrade"

        venue = admin("venue", "set", str(world.venue_id), "--accept-uid-only-reads")
        assert venue["accept_uid_only_reads"] is True
        listed = admin("venue", "list")["venues"]
        assert isinstance(listed, list)
        assert [v["accept_uid_only_reads"] for v in listed if v["id"] == world.venue_id] == [True]
        assert upload(ReaderBackend.SERIAL)["status"] == "accepted"
        assert upload(ReaderBackend.NFC)["code"] == "card_downgrade"

        cards = admin("card", "list", member)["cards"]
        assert isinstance(cards, list)
        assert [c["verified_level"] for c in cards] == ["issuer-mac"]


def test_the_migration_gives_existing_bindings_the_level_their_evidence_shows(
    engine: Engine, keyring: Keyring, world: World
) -> None:
    """Bindings made before this check: number → card-number, declared answer → issuer-mac, else uid."""
    bind(engine, keyring, world, issuer_mac=True)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0008_transfers")
    migrate(engine)
    with Session(engine) as session:
        levels = {
            binding.member_id: binding.verified_level for binding in session.exec(select(CardBinding)).all()
        }
    assert levels == {
        world.members["张三明"]: CardCheckLevel.CARD_NUMBER,  # number and UID
        world.members["李四"]: CardCheckLevel.UID,  # UID only
        world.members["王五"]: CardCheckLevel.ISSUER_MAC,  # bound with --issuer-mac
        world.members["赵六"]: CardCheckLevel.CARD_NUMBER,  # number only
    }
