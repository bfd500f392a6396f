"""Monthly series, the events list's filters, 主持人/记录人 and the printable 签到表, as services."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from server.attendance.service import record_manual_attendance
from server.audit.service import list_entries
from server.caller import UNSCOPED
from server.db import unit_of_work
from server.errors import DomainError
from server.events.recurrence import RepeatRule
from server.events.service import event_kinds, month_span, search_events, set_event_roles
from server.meetings.printing import printable_sheet
from server.meetings.series import schedule_series
from server.records.events import Event
from server.vocabulary import EventKind, UserRole
from tests.server.factories import EVENT_START, SHANGHAI, World
from tests.server.ledgers.helpers import meeting
from tests.server.meetings.test_minutes import caller

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=SHANGHAI)


def test_a_series_is_twelve_ordinary_events_at_the_same_local_time(engine: Engine, world: World) -> None:
    secretary = caller(engine, world.branch_id)
    start = datetime(2027, 1, 31, 14, 30, tzinfo=SHANGHAI)
    with unit_of_work(engine) as session:
        events = schedule_series(
            session,
            title="每月主题党日",
            org_id=world.branch_id,
            venue_id=world.venue_id,
            kind=EventKind.THEME_DAY,
            start_at=start,
            end_at=start + timedelta(hours=2),
            checkin_opens_at=start - timedelta(minutes=45),
            also_counts_as=[EventKind.BRANCH_GENERAL],
            chair_member_id=world.members["张三明"],
            rule=RepeatRule.SAME_DAY,
            count=12,
            tz=SHANGHAI,
            now=NOW,
            caller=secretary,
        )
        ids = [e.id for e in events if e.id is not None]
        kinds = event_kinds(session, ids)
    local = [e.start_at.astimezone(SHANGHAI) for e in events]
    assert len(events) == 12
    assert [(d.month, d.day) for d in local[:4]] == [(1, 31), (2, 28), (3, 31), (4, 30)]
    assert {(d.hour, d.minute) for d in local} == {(14, 30)}
    assert all(e.end_at - e.start_at == timedelta(hours=2) for e in events)
    assert all(e.start_at - e.checkin_opens_at == timedelta(minutes=45) for e in events)
    assert all(e.chair_member_id == world.members["张三明"] for e in events)
    assert all(kinds[i] == [EventKind.BRANCH_GENERAL, EventKind.THEME_DAY] for i in ids)
    with Session(engine) as session:
        series = [
            e
            for e in list_entries(session, scope=UNSCOPED, object_type="event")
            if e.action == "event.series"
        ]
    assert len(series) == 1
    assert json.loads(series[0].detail)["count"] == 12


def test_a_refused_series_creates_no_event(engine: Engine, world: World) -> None:
    secretary = caller(engine, world.branch_id)
    start = datetime(2027, 3, 29, 9, 0, tzinfo=SHANGHAI)  # the fifth Monday
    with Session(engine) as session:
        before = len(session.exec(select(Event)).all())
    with pytest.raises(DomainError) as refused, unit_of_work(engine) as session:
        schedule_series(
            session,
            title="每月支委会",
            org_id=world.branch_id,
            venue_id=world.venue_id,
            kind=EventKind.COMMITTEE,
            start_at=start,
            end_at=start + timedelta(hours=1),
            rule=RepeatRule.NTH_WEEKDAY,
            count=6,
            tz=SHANGHAI,
            now=NOW,
            caller=secretary,
        )
    assert refused.value.code == "invalid_recurrence"
    with Session(engine) as session:
        assert len(session.exec(select(Event)).all()) == before


def test_search_by_month_kind_and_text_within_scope(engine: Engine, world: World) -> None:
    december = meeting(engine, world, "十二月主题党日", datetime(2026, 12, 31, 19, 0, tzinfo=SHANGHAI))
    january = meeting(
        engine, world, "一月支委会", datetime(2027, 1, 1, 9, 0, tzinfo=SHANGHAI), kinds=[EventKind.COMMITTEE]
    )
    joint = meeting(
        engine,
        world,
        "联合党课：学习二十届三中全会精神",
        datetime(2026, 12, 10, 9, 0, tzinfo=SHANGHAI),
        kinds=[EventKind.LECTURE, EventKind.BRANCH_GENERAL],
        org_id=world.other_branch_id,
    )
    secretary = caller(engine, world.branch_id)
    other = caller(engine, world.other_branch_id, name="赵书记")
    span = month_span("2026-12", SHANGHAI)
    with Session(engine) as session:

        def ids(c: object = secretary, **filters: object) -> list[int | None]:
            return [e.id for e in search_events(session, caller=c, now=NOW, **filters)]  # type: ignore[arg-type]

        # 19:00 on 31 December in Shanghai is still December, though it is 11:00 UTC.
        assert ids(span=span) == [december]
        assert ids(span=month_span("2027-01", SHANGHAI)) == [january]
        assert ids(other, span=span) == [joint]
        assert ids(other, span=span, kind=EventKind.BRANCH_GENERAL) == [joint]  # an extra kind counts
        assert ids(kind=EventKind.COMMITTEE) == [january]
        assert ids(other, text="三中全会") == [joint]
        assert ids(text="三中全会") == []  # another branch's event stays out of the search
        assert ids(text="100%") == []  # LIKE wildcards are literal


@pytest.mark.parametrize(
    "text", ["2026-13", "2026-00", "26-12", "1999-12", "2101-01", "十二月", "2026-12-01", ""]
)
def test_a_month_that_is_not_one_is_refused_in_chinese(text: str) -> None:
    with pytest.raises(DomainError) as refused:
        month_span(text, SHANGHAI)
    assert refused.value.code == "invalid_input"
    assert "月份格式不正确" in refused.value.message


def test_chair_and_recorder_are_members_the_caller_may_see(engine: Engine, world: World) -> None:
    secretary = caller(engine, world.branch_id)
    with unit_of_work(engine) as session:
        set_event_roles(
            session,
            event_id=world.event_id,
            chair_member_id=world.members["张三明"],
            recorder_member_id=world.members["李四"],
            now=NOW,
            caller=secretary,
        )
    with pytest.raises(DomainError) as refused, unit_of_work(engine) as session:
        set_event_roles(
            session,
            event_id=world.event_id,
            chair_member_id=world.members["赵六"],  # another branch's member
            recorder_member_id=None,
            now=NOW,
            caller=secretary,
        )
    assert refused.value.code == "member_not_found"
    with unit_of_work(engine) as session:
        event = set_event_roles(
            session,
            event_id=world.event_id,
            chair_member_id=world.members["王五"],
            recorder_member_id=None,
            now=NOW,
            caller=secretary,
        )
        assert (event.chair_member_id, event.recorder_member_id) == (world.members["王五"], None)
    with Session(engine) as session:
        roles = [
            e for e in list_entries(session, scope=UNSCOPED, object_type="event") if e.action == "event.roles"
        ]
    assert len(roles) == 2


def test_the_printable_sheet_marks_members_without_a_card(engine: Engine, world: World) -> None:
    secretary = caller(engine, world.branch_id, UserRole.SECRETARY)
    with Session(engine) as session:
        printable = printable_sheet(session, event_id=world.event_id, caller=secretary, tz=SHANGHAI)
    names = {row.name: row for row in printable.rows}
    assert set(names) == {"张三明", "李四", "王五"}
    assert names["王五"].has_card is False  # the factory binds cards for 张三明 and 李四 only
    assert names["张三明"].has_card is True
    assert [row.name for row in printable.without_card] == ["王五"]
    assert all(row.presence is None for row in printable.rows)
    assert printable.blank_rows > 0
    # A member who forgot the card and was signed in by hand (补签) shows the time, marked so.
    with unit_of_work(engine) as session:
        record_manual_attendance(
            session,
            event_id=world.event_id,
            member_id=world.members["王五"],
            reason="忘带卡",
            at=EVENT_START + timedelta(minutes=5),
            caller=secretary,
            now=EVENT_START + timedelta(minutes=6),
        )
    with Session(engine) as session:
        printable = printable_sheet(session, event_id=world.event_id, caller=secretary, tz=SHANGHAI)
    wang = next(row for row in printable.rows if row.name == "王五")
    assert wang.how == "补签"
    assert wang.presence is not None
    assert wang.presence.first_tap_at == EVENT_START + timedelta(minutes=5)
    assert printable.without_card == []  # signed in already: no line for them on the paper sheet
    other = caller(engine, world.other_branch_id)
    with pytest.raises(DomainError) as refused, Session(engine) as session:
        printable_sheet(session, event_id=world.event_id, caller=other, tz=SHANGHAI)
    assert refused.value.code == "event_not_found"
