"""Transfer-in taps through the real ingest pipeline (signed envelopes → receipts → requests), and
how a guest's check-in taps become a suggestion rather than a request."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from schemas.messages import BatchReceipt, SignedEnvelope, TapMode
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.errors import DomainError
from server.events.service import add_event
from server.keyring import Keyring
from server.records.audit import AuditEntry
from server.records.taps import Tap
from server.records.transfers import TransferSource, TransferState
from server.transfers.queue import get_detail, list_suggestions
from server.transfers.schemas import TransferCreate
from server.transfers.service import create_request, file_from_suggestion
from server.vocabulary import EventKind
from tests.server.factories import EVENT_END, EVENT_START, World, enrol_second_kiosk, upload
from tests.server.signing import card
from tests.server.transfers.factories import (
    NEWCOMER_CARD,
    QIAN_CARD,
    Elsewhere,
    build_elsewhere,
    policy,
    requests,
    reviewer,
)

RECEIVED = EVENT_START + timedelta(minutes=5)
FILED = "已提交组织关系转入申请，请等待组织委员联系"
PENDING = "您的转入申请正在办理中，请等待组织委员联系"


@pytest.fixture
def elsewhere(engine: Engine, keyring: Keyring, world: World) -> Elsewhere:
    return build_elsewhere(engine, keyring, now=EVENT_START - timedelta(days=30))


def transfer_tap(world: World, card_facts: object, at: datetime = EVENT_START) -> SignedEnvelope:
    return world.keys.seal(world.payload(card_facts, at=at, mode=TapMode.TRANSFER_IN))  # type: ignore[arg-type]


def tap_row(engine: Engine, tap_id: int) -> Tap:
    with Session(engine) as session:
        row = session.get(Tap, tap_id)
        assert row is not None
        return row


def only(receipts: BatchReceipt) -> tuple[str, str | None, str | None, str]:
    (receipt,) = receipts.receipts
    return receipt.status.value, receipt.code, receipt.display.member_name, receipt.display.message


class TestTransferInMode:
    def test_a_member_of_another_organisation_files_a_request(
        self, engine: Engine, keyring: Keyring, world: World, elsewhere: Elsewhere
    ) -> None:
        """The tap is accepted with the promised message and becomes the request's evidence, at
        the venue's organisation; it is not attendance. It is the member's own confirmation, not
        their organisation's release, which the request waits for."""
        result = upload(engine, keyring, [transfer_tap(world, QIAN_CARD)], received_at=RECEIVED)

        assert only(result) == ("accepted", None, "钱*", FILED)
        (request,) = requests(engine)
        assert (request.member_id, request.to_org_id, request.state) == (
            elsewhere.qian_id,
            world.committee_id,
            TransferState.AWAITING_SOURCE,
        )
        assert (request.from_org_id, request.from_committee_id) == (
            elsewhere.branch_id,
            elsewhere.committee_id,
        )
        assert (request.member_confirmed_at, request.member_confirm_tap_id) == (
            RECEIVED,
            request.evidence_tap_id,
        )
        assert request.released_at is None
        assert request.source == TransferSource.KIOSK_TAP
        assert request.submitted_at == RECEIVED
        assert request.evidence_tap_id is not None
        tap = tap_row(engine, request.evidence_tap_id)
        assert (tap.member_id, tap.event_id, tap.mode) == (elsewhere.qian_id, None, TapMode.TRANSFER_IN)
        with Session(engine) as session:
            entry = session.exec(select(AuditEntry).where(AuditEntry.object_type == "transfer_request")).one()
        assert (entry.action, entry.actor, entry.at) == (
            "transfer.submit",
            f"kiosk:{world.kiosk_id}",
            RECEIVED,
        )

    def test_tapping_again_refers_to_the_pending_request(
        self, engine: Engine, keyring: Keyring, world: World, elsewhere: Elsewhere
    ) -> None:
        upload(engine, keyring, [transfer_tap(world, QIAN_CARD)], received_at=RECEIVED)
        again = upload(
            engine,
            keyring,
            [transfer_tap(world, QIAN_CARD, EVENT_START + timedelta(days=2))],
            received_at=RECEIVED + timedelta(days=2),
        )
        assert only(again) == ("accepted", None, "钱*", PENDING)
        assert len(requests(engine)) == 1

    def test_an_unknown_card_files_for_an_unknown_person_keyed_by_the_card(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        result = upload(engine, keyring, [transfer_tap(world, NEWCOMER_CARD)], received_at=RECEIVED)
        assert only(result) == ("accepted", None, None, FILED)
        (request,) = requests(engine)
        assert request.member_id is None
        assert request.claimed_name is None
        assert request.card_masked == "3104********6789"
        assert request.card_no_hmac is not None
        assert request.card_no_hmac != NEWCOMER_CARD.card_no  # a keyed digest, never the number
        with Session(engine) as session:
            detail = get_detail(
                session,
                request_id=request.id or 0,
                caller=reviewer(session, world.committee_id),
                policy=policy(),
                now=RECEIVED,
            )
        assert detail.applicant_name == "未登记持卡人（3104********6789）"
        assert detail.blockers == ["applicant_name_missing", "letter_missing"]

        # The same card read by a UID-only reader is the same person.
        uid_only = card(None, NEWCOMER_CARD.uid)
        again = upload(engine, keyring, [transfer_tap(world, uid_only)], received_at=RECEIVED)
        assert only(again)[3] == PENDING
        assert len(requests(engine)) == 1

    def test_a_card_number_typed_by_a_secretary_waits_for_its_holders_tap(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """For a card nobody holds, the holder's own tap at a kiosk here is the confirmation: the
        request goes on to review, and on receipt the card tapped is the one bound."""
        committee = reviewer(engine, world.committee_id)
        with unit_of_work(engine) as session:
            filed = create_request(
                session,
                keyring=keyring,
                data=TransferCreate(to_org_id=world.committee_id, card_no=NEWCOMER_CARD.card_no),
                caller=committee,
                source=TransferSource.WEB,
                policy=policy(),
                now=RECEIVED,
            )
            assert filed.state == TransferState.AWAITING_SOURCE
        tapped = upload(engine, keyring, [transfer_tap(world, NEWCOMER_CARD)], received_at=RECEIVED)
        assert only(tapped)[3] == PENDING
        (request,) = requests(engine)
        assert request.state == TransferState.SUBMITTED
        assert request.released_at == RECEIVED
        assert request.member_confirmed_at == RECEIVED
        assert request.uid_hmac is not None
        with Session(engine) as session:
            actions = session.exec(
                select(AuditEntry.action).where(AuditEntry.object_type == "transfer_request")
            ).all()
        assert actions == ["transfer.submit", "transfer.member_confirm", "transfer.confirm_by_tap"]

    def test_a_members_own_tap_confirms_but_does_not_release(
        self, engine: Engine, keyring: Keyring, world: World, elsewhere: Elsewhere
    ) -> None:
        """钱七 taps at our kiosk after a secretary typed his card number: his confirmation is
        recorded (once), and the request still waits for his organisation."""
        with unit_of_work(engine) as session:
            create_request(
                session,
                keyring=keyring,
                data=TransferCreate(to_org_id=world.committee_id, card_no=QIAN_CARD.card_no),
                caller=reviewer(session, world.committee_id),
                source=TransferSource.API,
                policy=policy(),
                now=RECEIVED,
            )
        for day in (1, 2):
            at = RECEIVED + timedelta(days=day)
            assert (
                only(upload(engine, keyring, [transfer_tap(world, QIAN_CARD, at)], received_at=at))[3]
                == PENDING
            )
        (request,) = requests(engine)
        assert request.state == TransferState.AWAITING_SOURCE
        assert request.member_confirmed_at == RECEIVED + timedelta(days=1)
        assert request.released_at is None

    def test_a_cloned_card_is_refused_not_filed(
        self, engine: Engine, keyring: Keyring, world: World, elsewhere: Elsewhere
    ) -> None:
        """钱七's card number on a card with another UID: the card check refuses it in this mode too."""
        clone = card(QIAN_CARD.card_no, "04FFFFFFFFFFFF")
        result = upload(engine, keyring, [transfer_tap(world, clone)], received_at=RECEIVED)
        assert only(result)[:2] == ("rejected", "card_mismatch")
        assert requests(engine) == []

    def test_a_member_already_here_is_told_so(self, engine: Engine, keyring: Keyring, world: World) -> None:
        from tests.server.factories import ZHANG_CARD

        result = upload(engine, keyring, [transfer_tap(world, ZHANG_CARD)], received_at=RECEIVED)
        assert only(result) == ("rejected", "already_member", "张*明", "您的组织关系已在本组织，无需转入")
        assert requests(engine) == []

    def test_a_replayed_upload_files_once(
        self, engine: Engine, keyring: Keyring, world: World, elsewhere: Elsewhere
    ) -> None:
        envelope = transfer_tap(world, QIAN_CARD)
        upload(engine, keyring, [envelope], received_at=RECEIVED)
        replay = upload(engine, keyring, [envelope], received_at=RECEIVED + timedelta(minutes=1))
        assert replay.receipts[0].status.value == "duplicate"
        assert replay.receipts[0].display.message == FILED
        assert len(requests(engine)) == 1

    def test_one_card_at_two_kiosks_at_once_files_one_request(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """The pending-key constraint makes the loser of the race retry and find the winner's."""
        second_kiosk, second_keys = enrol_second_kiosk(engine, keyring, world, now=RECEIVED)
        envelopes = [
            transfer_tap(world, NEWCOMER_CARD),
            second_keys.seal(
                world.payload(NEWCOMER_CARD, at=EVENT_START, seq=1, mode=TapMode.TRANSFER_IN).model_copy(
                    update={"kiosk_id": second_kiosk}
                )
            ),
        ]
        results: list[BatchReceipt] = []
        start = threading.Barrier(2)

        def send(envelope: SignedEnvelope) -> None:
            start.wait()
            results.append(upload(engine, keyring, [envelope], received_at=RECEIVED))

        threads = [threading.Thread(target=send, args=(e,)) for e in envelopes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(r.receipts[0].display.message for r in results) == sorted([FILED, PENDING])
        assert len(requests(engine)) == 1


class TestGuestsInCheckInMode:
    def test_a_guest_check_in_is_attendance_and_files_nothing(
        self, engine: Engine, keyring: Keyring, world: World, elsewhere: Elsewhere
    ) -> None:
        """The kiosk's mode decides: in check-in mode a member from elsewhere is a guest."""
        result = upload(
            engine, keyring, [world.keys.seal(world.payload(QIAN_CARD, at=EVENT_START))], received_at=RECEIVED
        )
        assert result.receipts[0].status.value == "accepted"
        assert result.receipts[0].display.message == "签到成功"
        assert requests(engine) == []

    def test_a_guest_who_keeps_coming_is_suggested_and_filed_in_one_step(
        self, engine: Engine, keyring: Keyring, world: World, elsewhere: Elsewhere
    ) -> None:
        later_start = EVENT_START + timedelta(days=14)
        with unit_of_work(engine) as session:
            add_event(
                session,
                title="三月党课",
                org_id=world.branch_id,
                venue_id=world.venue_id,
                kind=EventKind.LECTURE,
                start_at=later_start,
                end_at=later_start + (EVENT_END - EVENT_START),
                now=RECEIVED,
                caller=CLI_CALLER,
            )
        committee = reviewer(engine, world.committee_id)
        since = EVENT_START - timedelta(days=180)
        upload(
            engine, keyring, [world.keys.seal(world.payload(QIAN_CARD, at=EVENT_START))], received_at=RECEIVED
        )
        with Session(engine) as session:
            assert list_suggestions(session, caller=committee, org_id=world.committee_id, since=since) == []
        second = upload(
            engine,
            keyring,
            [world.keys.seal(world.payload(QIAN_CARD, at=later_start))],
            received_at=later_start + timedelta(minutes=1),
        )
        with Session(engine) as session:
            (suggestion,) = list_suggestions(
                session, caller=committee, org_id=world.committee_id, since=since
            )
            last_tap = session.exec(select(Tap).where(Tap.seq == second.receipts[0].seq)).one()
        assert (suggestion.member_id, suggestion.name, suggestion.events_attended) == (
            elsewhere.qian_id,
            "钱七",
            2,
        )
        assert suggestion.home_org.name == "湖里第三党支部"
        assert suggestion.evidence_tap_id == last_tap.id

        with unit_of_work(engine) as session:
            request = file_from_suggestion(
                session,
                member_id=elsewhere.qian_id,
                org_id=world.committee_id,
                caller=committee,
                now=later_start,
            )
            assert (request.source, request.evidence_tap_id) == (TransferSource.GUEST_TAP, last_tap.id)
            # Coming to our events is neither his application nor his organisation's consent.
            assert (request.state, request.from_org_id) == (
                TransferState.AWAITING_SOURCE,
                elsewhere.branch_id,
            )
        with Session(engine) as session:
            assert list_suggestions(session, caller=committee, org_id=world.committee_id, since=since) == []

    def test_only_guests_of_ones_own_events_can_be_filed_this_way(
        self, engine: Engine, keyring: Keyring, world: World, elsewhere: Elsewhere
    ) -> None:
        with unit_of_work(engine) as session, pytest.raises(DomainError) as excinfo:
            file_from_suggestion(
                session,
                member_id=elsewhere.qian_id,
                org_id=world.committee_id,
                caller=reviewer(session, world.committee_id),
                now=RECEIVED,
            )
        assert excinfo.value.code == "member_not_found"

    def test_a_branch_outside_the_reviewers_scope_cannot_be_asked(
        self, engine: Engine, world: World, elsewhere: Elsewhere
    ) -> None:
        with Session(engine) as session, pytest.raises(DomainError) as excinfo:
            list_suggestions(
                session,
                caller=reviewer(session, world.branch_id),
                org_id=elsewhere.committee_id,
                since=RECEIVED,
            )
        assert excinfo.value.code == "organisation_not_found"
