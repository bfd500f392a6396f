"""Attendance rules (#4 item 3): who is expected (membership at the event's time, exemptions,
leave, committees, joint events), 签到/签退 through the real ingest, shared venues, lateness,
guests, manual entries, and the quorum of 党员大会 and 支委会."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from server.attendance.service import record_manual_attendance
from server.audit.service import list_entries
from server.caller import UNSCOPED
from server.db import unit_of_work
from server.errors import AlreadyPresent, InvalidTimeRange, ReasonRequired
from server.keyring import Keyring
from server.leave.service import decide_leave, request_leave
from server.orgs.membership import (
    add_exemption,
    appoint_committee_member,
    change_member_category,
    change_member_status,
    move_member,
)
from server.vocabulary import (
    AttendanceSource,
    CommitteeRole,
    EventKind,
    ExemptionReason,
    MemberCategory,
    MemberStatus,
)
from tests.server.factories import LI_CARD, ZHANG_CARD, ZHAO_CARD, World
from tests.server.ledgers.helpers import CALLER, at, meeting, member, sheet, tap


def names(rows: list) -> list[str]:  # type: ignore[type-arg]
    return sorted(row.name for row in rows)


class TestExpectedAtTheEventsTime:
    def test_a_member_who_moved_stays_in_the_old_organisations_ledger(
        self, engine: Engine, world: World
    ) -> None:
        """王五 moves to the second branch on 20 April: expected at the first branch's April
        meeting, at the second branch's May meeting, not at the first branch's May meeting."""
        april = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        may_first = meeting(engine, world, "五月主题党日", at("2025-05-10"))
        may_second = meeting(
            engine, world, "二支部五月主题党日", at("2025-05-11"), org_id=world.other_branch_id
        )
        with unit_of_work(engine) as session:
            move_member(
                session,
                member_id=world.members["王五"],
                to_org_id=world.other_branch_id,
                at=at("2025-04-20"),
                caller=CALLER,
            )

        assert "王五" in names(sheet(engine, april).expected)
        assert "王五" not in names(sheet(engine, may_first).expected)
        assert names(sheet(engine, may_second).expected) == ["王五", "赵六"]

    def test_category_is_the_one_held_at_the_event(self, engine: Engine, world: World) -> None:
        """李四 becomes a full member (转正) on 1 May: 预备 in April's sheet, 正式 in May's."""
        april = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        may = meeting(engine, world, "五月主题党日", at("2025-05-10"))
        with unit_of_work(engine) as session:
            change_member_category(
                session,
                member_id=world.members["李四"],
                category=MemberCategory.FULL,
                at=at("2025-05-01", "00:00"),
                caller=CALLER,
                reason="支部大会通过转正",
            )

        def category_of_li(event_id: int) -> MemberCategory:
            return next(m.category for m in sheet(engine, event_id).expected if m.name == "李四")

        assert category_of_li(april) == MemberCategory.PROBATIONARY
        assert category_of_li(may) == MemberCategory.FULL
        assert sheet(engine, april).counts.expected_probationary == 1
        assert sheet(engine, may).counts.expected_probationary == 0

    def test_a_member_who_left_is_not_expected_afterwards(self, engine: Engine, world: World) -> None:
        april = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        may = meeting(engine, world, "五月主题党日", at("2025-05-10"))
        with unit_of_work(engine) as session:
            change_member_status(
                session,
                member_id=world.members["王五"],
                status=MemberStatus.TRANSFERRED_OUT,
                at=at("2025-04-30"),
                caller=CALLER,
            )
        assert "王五" in names(sheet(engine, april).expected)
        assert "王五" not in names(sheet(engine, may).expected)

    def test_a_change_dated_before_the_current_period_is_refused(self, engine: Engine, world: World) -> None:
        with unit_of_work(engine) as session:
            move_member(
                session,
                member_id=world.members["王五"],
                to_org_id=world.other_branch_id,
                at=at("2025-04-20"),
                caller=CALLER,
            )
        with pytest.raises(InvalidTimeRange) as excinfo, unit_of_work(engine) as session:
            move_member(
                session,
                member_id=world.members["王五"],
                to_org_id=world.branch_id,
                at=at("2025-04-01"),
                caller=CALLER,
            )
        assert excinfo.value.code == "invalid_time_range"


class TestJointEvents:
    def test_members_of_every_holding_organisation_are_expected(self, engine: Engine, world: World) -> None:
        joint = meeting(engine, world, "联合主题党日", at("2025-04-12"), joint=[world.other_branch_id])
        result = sheet(engine, joint)
        assert names(result.expected) == ["张三明", "李四", "王五", "赵六"]
        assert [org.id for org in result.event.organisations] == [world.branch_id, world.other_branch_id]


class TestExemptionsAndLeave:
    def test_an_exempt_member_is_neither_expected_nor_absent(self, engine: Engine, world: World) -> None:
        event = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        with unit_of_work(engine) as session:
            add_exemption(
                session,
                member_id=world.members["王五"],
                reason=ExemptionReason.ILLNESS,
                starts_at=at("2025-04-01"),
                ends_at=at("2025-06-01"),
                note="住院治疗",
                caller=CALLER,
                now=at("2025-04-01"),
            )
        result = sheet(engine, event)
        assert "王五" not in names(result.expected)
        assert "王五" not in names(result.absent)
        assert [(e.name, e.reason_label) for e in result.exempt] == [("王五", "患病住院或病休")]
        assert result.counts.exempt == 1
        after = meeting(engine, world, "六月主题党日", at("2025-06-10"))
        assert "王五" in names(sheet(engine, after).expected)

    def test_approved_leave_counts_as_leave_not_absence(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """应到 = membership − exempt = 实到 + 请假 + 缺席 (the minutes convention, #10): approved
        leave stays in 应到 and is counted 请假, not 缺席; a pending request changes nothing."""
        event = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        with unit_of_work(engine) as session:
            wang = request_leave(
                session,
                event_id=event,
                member_id=world.members["王五"],
                reason="出差",
                caller=CALLER,
                now=at("2025-04-08"),
            )
            li = request_leave(
                session,
                event_id=event,
                member_id=world.members["李四"],
                reason="家中有事",
                caller=CALLER,
                now=at("2025-04-08"),
            )
        assert sheet(engine, event).counts.on_leave == 0
        with unit_of_work(engine) as session:
            assert wang.id is not None
            assert li.id is not None
            decide_leave(
                session, leave_id=wang.id, approve=True, note="", caller=CALLER, now=at("2025-04-09")
            )
            decide_leave(session, leave_id=li.id, approve=True, note="", caller=CALLER, now=at("2025-04-09"))
        tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "08:55"))
        tap(engine, keyring, world, LI_CARD, at("2025-04-10", "08:56"))  # came anyway

        result = sheet(engine, event)
        assert [(r.name, r.reason) for r in result.on_leave] == [("王五", "出差")]
        assert names(result.expected) == ["张三明", "李四", "王五"]
        assert result.counts.model_dump(include={"expected", "present", "on_leave", "absent"}) == {
            "expected": 3,
            "present": 2,
            "on_leave": 1,
            "absent": 0,
        }
        assert result.absent == []


class TestQuorum:
    def test_party_congress_needs_more_than_half_of_the_voting_members(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Voting basis: full members (张三明, 王五), including one on leave; 李四 (预备) has no vote."""
        event = meeting(
            engine, world, "第二季度支部党员大会", at("2025-04-15"), kinds=[EventKind.BRANCH_GENERAL]
        )
        tap(engine, keyring, world, ZHANG_CARD, at("2025-04-15", "08:50"))
        tap(engine, keyring, world, LI_CARD, at("2025-04-15", "08:51"))
        (quorum,) = sheet(engine, event).quorums
        assert (quorum.kind, quorum.basis, quorum.present, quorum.required, quorum.met) == (
            EventKind.BRANCH_GENERAL,
            2,
            1,
            2,
            False,
        )
        assert "不足法定人数" in quorum.message

        with unit_of_work(engine) as session:
            record_manual_attendance(
                session,
                event_id=event,
                member_id=world.members["王五"],
                reason="忘带卡，记录人核实到会",
                at=None,
                caller=CALLER,
                now=at("2025-04-15", "09:30"),
            )
        (quorum,) = sheet(engine, event).quorums
        assert (quorum.present, quorum.met) == (2, True)

    def test_committee_meeting_expects_its_seats_and_needs_half_of_them(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        zhou = member(engine, "周九", world.branch_id)
        with unit_of_work(engine) as session:
            for member_id, role in (
                (world.members["张三明"], CommitteeRole.SECRETARY),
                (world.members["王五"], CommitteeRole.ORGANISATION),
                (zhou, CommitteeRole.PROPAGANDA),
            ):
                appoint_committee_member(
                    session,
                    org_id=world.branch_id,
                    member_id=member_id,
                    role=role,
                    at=at("2025-01-01"),
                    caller=CALLER,
                )
        event = meeting(engine, world, "四月支委会", at("2025-04-05"), kinds=[EventKind.COMMITTEE])
        tap(engine, keyring, world, ZHANG_CARD, at("2025-04-05", "08:50"))
        tap(engine, keyring, world, LI_CARD, at("2025-04-05", "08:52"))  # not on the committee: 列席

        result = sheet(engine, event)
        assert names(result.expected) == ["周九", "张三明", "王五"]
        li = next(p for p in result.present if p.name == "李四")
        # One label, one count (#10): 列席 on the row and in 列席's count, not 免于参加者到会.
        assert (li.expected, li.guest, li.role_label) == (False, True, "列席")
        assert (result.counts.guests, result.counts.exempt_present) == (1, 0)
        (quorum,) = result.quorums
        assert (quorum.kind, quorum.basis, quorum.present, quorum.met) == (EventKind.COMMITTEE, 3, 1, False)

    def test_committee_without_recorded_seats_cannot_be_judged(self, engine: Engine, world: World) -> None:
        event = meeting(engine, world, "支委会", at("2025-04-05"), kinds=[EventKind.COMMITTEE])
        result = sheet(engine, event)
        assert result.expected == []
        assert result.quorums[0].met is None


class TestSignInAndOut:
    def test_first_tap_signs_in_a_later_one_signs_out(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        event = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        messages = [
            tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", hhmm)).display.message
            for hhmm in ("08:50", "08:53", "10:40")
        ]
        assert messages == ["签到成功", "已签到，无需重复刷卡", "签退成功"]
        (zhang,) = sheet(engine, event).present
        assert (zhang.first_tap_at, zhang.checkout_at, zhang.duration_minutes) == (
            at("2025-04-10", "08:50"),
            at("2025-04-10", "10:40"),
            110,
        )
        assert sheet(engine, event).counts.signed_out == 1

    def test_signing_out_just_after_the_end(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """The window closes at the end; a member who checked in may still tap out for 30 minutes."""
        event = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "08:55"))
        out = tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "11:10"))
        stranger = tap(engine, keyring, world, LI_CARD, at("2025-04-10", "11:10"))
        late_out = tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "11:45"))
        assert (out.status.value, out.display.message) == ("accepted", "签退成功")
        assert (stranger.code, late_out.code) == ("no_event", "no_event")
        assert sheet(engine, event).present[0].checkout_at == at("2025-04-10", "11:10")

    def test_lateness(self, engine: Engine, keyring: Keyring, world: World) -> None:
        event = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "08:59"))
        tap(engine, keyring, world, LI_CARD, at("2025-04-10", "09:20"))
        result = sheet(engine, event)
        assert {p.name: p.late for p in result.present} == {"张三明": False, "李四": True}
        assert result.counts.late == 1


class TestSharedVenue:
    def test_a_members_own_meeting_wins_when_windows_overlap(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """First branch 09:00–11:00, second branch 10:30–12:00 in the same room (window from 10:00)."""
        first = meeting(engine, world, "一支部主题党日", at("2025-04-10", "09:00"))
        second = meeting(
            engine,
            world,
            "二支部主题党日",
            at("2025-04-10", "10:30"),
            org_id=world.other_branch_id,
            hours=1.5,
        )
        zhang = tap(
            engine, keyring, world, ZHANG_CARD, at("2025-04-10", "10:20")
        )  # nearer the second's start
        zhao = tap(engine, keyring, world, ZHAO_CARD, at("2025-04-10", "10:05"))
        assert zhang.display.event_title == "一支部主题党日"
        assert zhao.display.event_title == "二支部主题党日"
        assert names(sheet(engine, first).present) == ["张三明"]
        assert names(sheet(engine, second).present) == ["赵六"]

    def test_a_guest_goes_to_the_nearest_meeting(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Two meetings of the second branch overlap; 张三明 is a guest at either, so the nearest
        start decides."""
        meeting(engine, world, "二支部上午会", at("2025-04-10", "09:00"), org_id=world.other_branch_id)
        meeting(
            engine, world, "二支部下午会", at("2025-04-10", "10:45"), org_id=world.other_branch_id, hours=1
        )
        receipt = tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "10:30"))
        assert receipt.display.event_title == "二支部下午会"


class TestGuestsAndManualEntries:
    def test_a_member_of_another_branch_is_a_guest(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        event = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        tap(engine, keyring, world, ZHAO_CARD, at("2025-04-10", "08:58"))
        result = sheet(engine, event)
        (zhao,) = result.present
        assert (zhao.name, zhao.expected, zhao.guest, zhao.organisation.id) == (
            "赵六",
            False,
            True,
            world.other_branch_id,
        )
        assert (result.counts.present, result.counts.guests) == (0, 1)

    def test_manual_entry_needs_a_reason_and_is_audited(self, engine: Engine, world: World) -> None:
        event = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        with pytest.raises(ReasonRequired) as excinfo, unit_of_work(engine) as session:
            record_manual_attendance(
                session,
                event_id=event,
                member_id=world.members["王五"],
                reason=" ",
                at=None,
                caller=CALLER,
                now=at("2025-04-10"),
            )
        assert excinfo.value.code == "reason_required"
        with unit_of_work(engine) as session:
            record_manual_attendance(
                session,
                event_id=event,
                member_id=world.members["王五"],
                reason="签到机故障",
                at=at("2025-04-10", "09:05"),
                caller=CALLER,
                now=at("2025-04-10", "10:00"),
            )
        (wang,) = sheet(engine, event).present
        assert (wang.source, wang.note, wang.first_tap_at, wang.late) == (
            AttendanceSource.MANUAL,
            "签到机故障",
            at("2025-04-10", "09:05"),
            True,
        )
        with unit_of_work(engine) as session:
            (entry,) = list_entries(session, scope=UNSCOPED, object_type="attendance")
            assert (entry.action, entry.reason, entry.actor) == ("attendance.manual", "签到机故障", "cli")
        with pytest.raises(AlreadyPresent), unit_of_work(engine) as session:
            record_manual_attendance(
                session,
                event_id=event,
                member_id=world.members["王五"],
                reason="重复",
                at=None,
                caller=CALLER,
                now=at("2025-04-10"),
            )

    def test_manual_entry_outside_the_event_is_refused(self, engine: Engine, world: World) -> None:
        event = meeting(engine, world, "四月主题党日", at("2025-04-10"))
        with pytest.raises(InvalidTimeRange), unit_of_work(engine) as session:
            record_manual_attendance(
                session,
                event_id=event,
                member_id=world.members["王五"],
                reason="补录",
                at=at("2025-04-10", "13:00"),
                caller=CALLER,
                now=at("2025-04-10", "13:00"),
            )


def test_event_window_defaults(engine: Engine, world: World) -> None:
    """Opens 30 minutes before the start, closes at the end; late after the start."""
    event = sheet(engine, meeting(engine, world, "四月主题党日", at("2025-04-10"))).event
    assert event.checkin_opens_at == at("2025-04-10", "08:30")
    assert event.checkin_closes_at == at("2025-04-10", "11:00")
    assert event.late_after == at("2025-04-10", "09:00")
    assert event.kinds == [EventKind.THEME_DAY]
    assert event.checkin_closes_at - event.checkin_opens_at == timedelta(hours=2, minutes=30)
