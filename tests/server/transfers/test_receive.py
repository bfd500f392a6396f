"""Receiving a member: they move into the branch in the same transaction as the transition, keep
their history, are expected from then on; a person new to the system becomes a member with the
card they tapped; and a failure part-way rolls everything back (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.messages import TapMode
from server.attendance.service import build_attendance_sheet
from server.caller import CLI_CALLER
from server.cards.service import bind_card
from server.db import unit_of_work
from server.errors import DomainError
from server.events.service import add_event
from server.keyring import Keyring
from server.orgs.membership import move_member
from server.orgs.service import add_organisation
from server.records.attendance import Attendance
from server.records.audit import AuditEntry
from server.records.cards import CardBinding
from server.records.orgs import Member
from server.records.transfers import TransferAction, TransferRequest, TransferState
from server.transfers.schemas import TransferUpdate
from server.transfers.service import attach_letter, transition, update_details
from server.vocabulary import EventKind, MemberCategory, OrgKind
from tests.server.factories import EVENT_END, EVENT_START, World, upload
from tests.server.transfers.factories import (
    NEWCOMER_CARD,
    QIAN_CARD,
    SHANGHAI,
    Elsewhere,
    build_elsewhere,
    letter,
    policy,
    release,
    requests,
    reviewer,
)

A = TransferAction
RECEIVED_AT = EVENT_START + timedelta(days=10)  # 11 March 2025
LATER_EVENT = EVENT_START + timedelta(days=20)


@pytest.fixture
def elsewhere(engine: Engine, keyring: Keyring, world: World) -> Elsewhere:
    return build_elsewhere(engine, keyring, now=EVENT_START - timedelta(days=30))


def tap_transfer_in(
    engine: Engine, keyring: Keyring, world: World, card_facts: object, elsewhere: Elsewhere | None = None
) -> int:
    """A transfer-in tap at the world's kiosk; for 钱七, his own organisation then releases him."""
    at = EVENT_START + timedelta(days=2)
    upload(
        engine,
        keyring,
        [world.keys.seal(world.payload(card_facts, at=at, mode=TapMode.TRANSFER_IN))],  # type: ignore[arg-type]
        received_at=at,
    )
    if elsewhere is not None:
        (waiting,) = [r for r in requests(engine) if r.state == TransferState.AWAITING_SOURCE]
        assert waiting.id is not None
        release(engine, elsewhere, waiting.id, now=at)
    (request,) = [r for r in requests(engine) if r.state == TransferState.SUBMITTED]
    assert request.id is not None
    return request.id


def approve(
    engine: Engine, world: World, request_id: int, *, category: MemberCategory = MemberCategory.FULL
) -> None:
    """Letter, placement in 第一党支部, branch and committee approval: ready to receive."""
    committee = reviewer(engine, world.committee_id)
    at = EVENT_START + timedelta(days=3)
    with unit_of_work(engine) as session:
        attach_letter(
            session,
            request_id=request_id,
            letter=letter(issued_on=date(2025, 3, 1), category=category),
            caller=committee,
            policy=policy(),
            now=at,
        )
        for action in (A.BRANCH_ACCEPT, A.COMMITTEE_APPROVE):
            transition(
                session,
                request_id=request_id,
                action=action,
                reason="",
                caller=committee,
                policy=policy(),
                now=at,
                placement_org_id=world.branch_id if action == A.BRANCH_ACCEPT else None,
            )


def receive(engine: Engine, world: World, request_id: int) -> None:
    with unit_of_work(engine) as session:
        transition(
            session,
            request_id=request_id,
            action=A.RECEIVE,
            reason="",
            caller=reviewer(session, world.committee_id),
            policy=policy(),
            now=RECEIVED_AT,
        )


def sheet_ids(engine: Engine, event_id: int) -> tuple[set[int], set[int]]:
    """(expected member ids, present member ids) of an event's sign-in sheet."""
    with Session(engine) as session:
        sheet = build_attendance_sheet(session, event_id=event_id, caller=CLI_CALLER, tz=SHANGHAI)
    return {m.member_id for m in sheet.expected}, {p.member_id for p in sheet.present}


class TestKnownMember:
    def test_moves_into_the_branch_and_keeps_their_history(
        self, engine: Engine, keyring: Keyring, world: World, elsewhere: Elsewhere
    ) -> None:
        qian = elsewhere.qian_id
        # Before transferring, 钱七 came to the branch's March theme day as a guest.
        upload(
            engine,
            keyring,
            [world.keys.seal(world.payload(QIAN_CARD, at=EVENT_START))],
            received_at=EVENT_START,
        )
        with unit_of_work(engine) as session:
            later = add_event(
                session,
                title="四月主题党日",
                org_id=world.branch_id,
                venue_id=world.venue_id,
                kind=EventKind.THEME_DAY,
                start_at=LATER_EVENT,
                end_at=LATER_EVENT + (EVENT_END - EVENT_START),
                now=EVENT_START,
                caller=CLI_CALLER,
            )
            assert later.id is not None
            later_id = later.id
        request_id = tap_transfer_in(engine, keyring, world, QIAN_CARD, elsewhere)
        approve(engine, world, request_id, category=MemberCategory.PROBATIONARY)
        receive(engine, world, request_id)

        with Session(engine) as session:
            member = session.get(Member, qian)
            assert member is not None
            assert (member.org_id, member.category, member.joined_org_at) == (
                world.branch_id,
                MemberCategory.PROBATIONARY,  # as the letter states
                None,  # a move within the system keeps their six-month clock (#10): as recorded
            )
            attendance = session.exec(select(Attendance).where(Attendance.member_id == qian)).one()
            assert attendance.event_id == world.event_id  # their past attendance is still theirs
            moved = session.exec(select(AuditEntry).where(AuditEntry.action == "member.move")).one()
            assert (moved.object_id, moved.org_id) == (str(qian), world.branch_id)
            assert moved.reason == f"组织关系转入（申请编号 {request_id}）"
            recategorised = session.exec(
                select(AuditEntry).where(AuditEntry.action == "member.category")
            ).one()
            assert recategorised.object_id == str(qian)

        expected_then, present_then = sheet_ids(engine, world.event_id)
        assert qian not in expected_then  # not retroactively expected before joining
        assert qian in present_then  # still shown as having come (as a guest)
        expected_later, _ = sheet_ids(engine, later_id)
        assert qian in expected_later  # expected from the receipt on

        with Session(engine) as session:
            request = session.get(TransferRequest, request_id)
            assert request is not None
            assert (request.state, request.received_at, request.pending_key) == (
                TransferState.RECEIVED,
                RECEIVED_AT,
                None,
            )


class TestWithoutRelease:
    def test_a_member_of_another_organisation_who_moved_on_is_not_received(
        self, engine: Engine, keyring: Keyring, world: World, elsewhere: Elsewhere
    ) -> None:
        """Released by 湖里, but moved to another 基层党委 before the receipt: that one never
        consented, so receiving is refused and 钱七 stays where he is."""
        request_id = tap_transfer_in(engine, keyring, world, QIAN_CARD, elsewhere)
        approve(engine, world, request_id)
        with unit_of_work(engine) as session:
            third = add_organisation(
                session, name="集美某党委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=EVENT_START
            )
            assert third.id is not None
            move_member(
                session,
                member_id=elsewhere.qian_id,
                to_org_id=third.id,
                at=EVENT_START + timedelta(days=4),
                caller=CLI_CALLER,
                reason="调动",
            )
            third_id = third.id
        with pytest.raises(DomainError) as excinfo:
            receive(engine, world, request_id)
        assert excinfo.value.code == "transfer_release_required"
        with Session(engine) as session:
            member = session.get(Member, elsewhere.qian_id)
            assert member is not None
            assert member.org_id == third_id


class TestUnknownPerson:
    def test_becomes_a_member_with_the_card_they_tapped(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        request_id = tap_transfer_in(engine, keyring, world, NEWCOMER_CARD)
        with unit_of_work(engine) as session:
            update_details(
                session,
                request_id=request_id,
                changes=TransferUpdate(claimed_name="周九"),
                caller=reviewer(session, world.committee_id),
                now=EVENT_START + timedelta(days=3),
            )
        approve(engine, world, request_id)
        receive(engine, world, request_id)

        with Session(engine) as session:
            member = session.exec(select(Member).where(Member.name == "周九")).one()
            # From outside: the six-month clock starts at the letter's date, 1 March (#10).
            assert (member.org_id, member.joined_org_at) == (
                world.branch_id,
                datetime(2025, 3, 1, tzinfo=SHANGHAI),
            )
            binding = session.exec(select(CardBinding).where(CardBinding.member_id == member.id)).one()
            assert binding.card_no_masked == "3104********6789"
            request = session.get(TransferRequest, request_id)
            assert request is not None
            assert request.member_id == member.id

        # Their card now checks them in.
        with unit_of_work(engine) as session:
            later = add_event(
                session,
                title="四月主题党日",
                org_id=world.branch_id,
                venue_id=world.venue_id,
                kind=EventKind.THEME_DAY,
                start_at=LATER_EVENT,
                end_at=LATER_EVENT + timedelta(hours=2),
                now=RECEIVED_AT,
                caller=CLI_CALLER,
            )
        result = upload(
            engine,
            keyring,
            [world.keys.seal(world.payload(NEWCOMER_CARD, at=LATER_EVENT))],
            received_at=LATER_EVENT,
        )
        assert (result.receipts[0].status.value, result.receipts[0].display.member_name) == (
            "accepted",
            "周*",
        )
        assert later.id is not None
        expected, present = sheet_ids(engine, later.id)
        assert member.id in expected & present

    def test_a_failure_after_creating_the_member_rolls_everything_back(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """The card was bound to 王五 in the meantime: receiving refuses, and neither the new
        member, nor the state change, nor any audit entry of it remains."""
        request_id = tap_transfer_in(engine, keyring, world, NEWCOMER_CARD)
        with unit_of_work(engine) as session:
            update_details(
                session,
                request_id=request_id,
                changes=TransferUpdate(claimed_name="周九"),
                caller=reviewer(session, world.committee_id),
                now=EVENT_START + timedelta(days=3),
            )
        approve(engine, world, request_id)
        with unit_of_work(engine) as session:
            bind_card(
                session,
                keyring=keyring,
                member_id=world.members["王五"],
                card_no=NEWCOMER_CARD.card_no,
                uid=None,
                now=EVENT_START + timedelta(days=4),
            )
        with Session(engine) as session:
            audit_before = len(session.exec(select(AuditEntry)).all())
            members_before = len(session.exec(select(Member)).all())

        with pytest.raises(DomainError) as excinfo:
            receive(engine, world, request_id)
        assert excinfo.value.code == "transfer_card_taken"

        with Session(engine) as session:
            assert session.exec(select(Member).where(Member.name == "周九")).first() is None
            assert len(session.exec(select(Member)).all()) == members_before
            assert len(session.exec(select(AuditEntry)).all()) == audit_before
            request = session.get(TransferRequest, request_id)
            assert request is not None
            assert (request.state, request.member_id, request.received_at) == (
                TransferState.COMMITTEE_APPROVED,
                None,
                None,
            )
            bindings = session.exec(select(CardBinding).order_by(col(CardBinding.id))).all()
            assert [b.member_id for b in bindings if b.card_no_masked == "3104********6789"] == [
                world.members["王五"]
            ]
