"""The read helpers behind the sign-in sheet and the ledgers: id lists as one ``= ANY(array)`` on
PostgreSQL and chunked ``IN`` lists on SQLite, members as plain rows, and counts taken from a roll
in one pass that must agree with the roll's own definitions (docs/ledgers.md)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from server.attendance.rolls import ApprovedLeave, EventRoll, Exemption, Presence, Standing
from server.attendance.service import roll_counts
from server.db import IN_CHUNK_SIZE
from server.orgs.reads import member_rows
from server.orgs.service import members_by_id, roster_order
from server.records.events import Event
from server.records.idlists import one_of
from server.records.orgs import Member
from server.vocabulary import AttendanceSource, EventKind, ExemptionReason, MemberCategory
from tests.server.factories import EVENT_END, EVENT_START, World


def test_one_of_selects_exactly_the_listed_ids(engine: Engine, world: World) -> None:
    """More ids than one IN list takes, most naming nobody: one array on PostgreSQL, three
    chunks on SQLite, the same rows either way."""
    wanted = {world.members["张三明"], world.members["赵六"]}
    values = wanted | set(range(10**6, 10**6 + 2 * IN_CHUNK_SIZE + 1))
    with Session(engine) as session:
        conditions = list(one_of(session, col(Member.id), values))
        found: set[int | None] = set()
        for condition in conditions:
            found.update(session.exec(select(Member.id).where(condition)).all())
    assert len(conditions) == (1 if engine.dialect.name == "postgresql" else 3)
    assert found == wanted


def test_one_of_no_ids_gives_no_statement(engine: Engine) -> None:
    with Session(engine) as session:
        assert list(one_of(session, col(Member.id), [])) == []


def test_member_rows_agree_with_members(engine: Engine, world: World) -> None:
    ids = set(world.members.values())
    with Session(engine) as session:
        rows = member_rows(session, ids)
        members = members_by_id(session, ids)
    assert set(rows) == ids
    for member_id, member in members.items():
        row = rows[member_id]
        assert (row.name, row.org_id, row.category, row.roster_position) == (
            member.name,
            member.org_id,
            member.category,
            member.roster_position,
        )
        assert row.roster_key() == roster_order(member)


def _roll(kinds: list[EventKind], committee: set[int] | None) -> EventRoll:
    """Members 1-8 of organisation 1 (6 and 8 probationary); 3 and 7 exempt; 4, 5 and 7 on
    leave; 1, 4, 7 and 9 (a guest) present; 2 late-free absent; a 支委会 of 1, 2, 4 and 6."""
    event = Event(
        id=1,
        title="t",
        org_id=1,
        venue_id=1,
        kind=kinds[0],
        start_at=EVENT_START,
        end_at=EVENT_END,
        checkin_opens_at=EVENT_START - timedelta(minutes=30),
        checkin_closes_at=EVENT_END,
        late_after=EVENT_START,
        created_at=EVENT_START,
    )
    roll = EventRoll(event=event, kinds=kinds, org_ids=[1], committee=committee)
    for member_id in range(1, 9):
        category = MemberCategory.PROBATIONARY if member_id in (6, 8) else MemberCategory.FULL
        roll.members[member_id] = Standing(1, category)
    for member_id in (3, 7):
        roll.exempt[member_id] = Exemption(member_id, ExemptionReason.ILLNESS, EVENT_START, None)
    for member_id in (4, 5, 7):
        roll.approved_leave[member_id] = ApprovedLeave(1, member_id, "出差")
    for member_id, minutes in ((1, -5), (4, 10), (7, 0), (9, 3)):
        at = EVENT_START + timedelta(minutes=minutes)
        roll.present[member_id] = Presence(
            1, member_id, at, at + timedelta(minutes=60), 2, AttendanceSource.TAP, ""
        )
    return roll


def test_roll_counts_agree_with_the_roll() -> None:
    """Counts worked out once per roll equal the roll's set definitions, with and without a
    committee restricting who is invited."""
    for kinds, committee in (([EventKind.THEME_DAY], None), ([EventKind.COMMITTEE], {1, 2, 4, 6})):
        roll = _roll(kinds, committee)
        counts = roll_counts(roll)

        def full(ids: set[int], roll: EventRoll = roll) -> int:
            return sum(roll.members[m].category == MemberCategory.FULL for m in ids)

        assert counts.expected == len(roll.expected)
        assert counts.present == len(roll.attended)
        assert counts.absent == len(roll.absent)
        assert counts.on_leave == len(roll.on_leave)
        assert counts.guests == len(roll.guest_ids)
        assert counts.exempt == len(roll.exempt_invited)
        assert counts.exempt_present == len(roll.exempt_present)
        assert counts.expected_full == full(roll.expected)
        assert counts.present_full == full(roll.attended)
        assert counts.absent_full == full(roll.absent)
        assert counts.on_leave_full == full(roll.on_leave)
        assert counts.late == 1  # member 4, ten minutes after the start
        assert counts.expected == counts.present + counts.on_leave + counts.absent
