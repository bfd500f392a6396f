"""Who was expected at which event: the roll (花名) behind every ledger.

For a batch of events this loads, in a fixed number of set-based queries whatever the number of
events or members, everything a ledger needs: the membership of the holding organisations at each
event's start, exemptions, approved leave, committee seats and attendance. The sign-in sheet, the
organisation ledger, the member history and leave checks all read rolls, so 应到 means the same
everywhere:

* members (at the start) of the holding organisations and everything below them; for an event
  that is only a 支委会, the committee seated at the start instead;
* less members exempt at the start (docs/domain-rules.md §1.4).

Members on approved leave stay in 应到, so 应到 = 实到 + 请假 + 缺席 (the minutes convention). A
present member who was not invited (another organisation's, or a member without a seat at a
支委会) is a guest (列席); an exempt member who came is 免于参加者到会. Neither is in 应到 or 实到;
both are recorded, and count for the member's own organisational life.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from server.events.service import event_kinds, event_organisations
from server.orgs.tree import subtree_cte
from server.records.attendance import Attendance
from server.records.events import Event
from server.records.idlists import one_of
from server.records.leave import LeaveRequest
from server.records.orgs import CommitteeSeat, MemberExemption, MembershipPeriod
from server.vocabulary import AttendanceSource, EventKind, ExemptionReason, LeaveStatus, MemberCategory


@dataclass(frozen=True)
class Standing:
    """Where and as what a member stood at an event's start."""

    org_id: int
    category: MemberCategory
    since: datetime | None = None  # start of that membership period (None: before records began)


class Presence(NamedTuple):
    """A member's presence at an event, as read for ledgers (a plain row, built straight from the
    result tuple: cheaper than ORM objects when a sheet or a year's ledger reads thousands)."""

    event_id: int
    member_id: int
    first_tap_at: datetime
    last_tap_at: datetime
    tap_count: int
    source: AttendanceSource
    note: str


@dataclass(frozen=True, slots=True)
class Exemption:
    """An exemption from organisational life, as a roll needs it (docs/domain-rules.md §1.4)."""

    member_id: int
    reason: ExemptionReason
    starts_at: datetime
    ends_at: datetime | None


@dataclass(frozen=True, slots=True)
class ApprovedLeave:
    """An approved leave request for one event."""

    event_id: int
    member_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class _Period:
    member_id: int
    org_id: int
    category: MemberCategory
    started_at: datetime | None
    ended_at: datetime | None


# A membership period as (starts, ends, member, their standing during it).
_Covering = tuple[datetime | None, datetime | None, int, Standing]


@dataclass
class EventRoll:
    event: Event
    kinds: list[EventKind]
    org_ids: list[int]  # holding organisations, host first
    # Members of the holding organisations' subtrees at the start (before leave and exemptions).
    members: dict[int, Standing] = field(default_factory=dict)
    # For an event that is only a 支委会: the committee at the start; else None.
    committee: set[int] | None = None
    # Seat holders at the start when the event counts as a 支委会 at all (for the quorum).
    committee_seats: set[int] = field(default_factory=set)
    exempt: dict[int, Exemption] = field(default_factory=dict)
    approved_leave: dict[int, ApprovedLeave] = field(default_factory=dict)
    present: dict[int, Presence] = field(default_factory=dict)
    # Standing of present members who are not in ``members`` (guests), where known.
    guests: dict[int, Standing | None] = field(default_factory=dict)

    @property
    def invited(self) -> set[int]:
        """Who the event is for, before exemptions and leave."""
        return set(self.members) if self.committee is None else self.committee & set(self.members)

    @property
    def expected(self) -> set[int]:
        """应到: invited and not exempt. Members on approved leave are in it (the minutes
        convention 应到 = 实到 + 请假 + 缺席, docs/ledgers.md)."""
        return {member_id for member_id in self.invited if member_id not in self.exempt}

    @property
    def attended(self) -> set[int]:
        """实到: expected and present (on leave but came anyway included)."""
        return self.expected & set(self.present)

    @property
    def on_leave(self) -> set[int]:
        """请假: expected, approved leave, and did not come."""
        return {m for m in self.expected if m in self.approved_leave and m not in self.present}

    @property
    def absent(self) -> set[int]:
        """缺席: expected, did not come, no approved leave."""
        return self.expected - set(self.present) - set(self.approved_leave)

    @property
    def guest_ids(self) -> set[int]:
        """列席: present without being invited: members of other organisations, and at a 支委会
        members who hold no seat."""
        return set(self.present) - self.invited

    @property
    def exempt_present(self) -> set[int]:
        """免于参加者到会: invited but exempt, and came anyway (counted apart: neither 实到 nor 列席)."""
        return set(self.present) & self.exempt_invited

    @property
    def exempt_invited(self) -> set[int]:
        return {member_id for member_id in self.invited if member_id in self.exempt}

    def standing(self, member_id: int) -> Standing | None:
        return self.members.get(member_id) or self.guests.get(member_id)


def compute_rolls(
    session: Session, events: Sequence[Event], *, only_member_id: int | None = None
) -> dict[int, EventRoll]:
    """The roll of each event (by id). ``only_member_id`` restricts every roll to one member (a
    member's history), which keeps the work small for events of large organisations."""
    events = [event for event in events if event.id is not None]
    if not events:
        return {}
    event_ids = [event.id for event in events if event.id is not None]
    kinds = event_kinds(session, event_ids)
    holders = event_organisations(session, event_ids)
    rolls = {
        event.id: EventRoll(
            event=event,
            kinds=kinds[event.id],
            org_ids=sorted(holders[event.id], key=lambda org_id: (org_id != event.org_id, org_id)),
        )
        for event in events
        if event.id is not None
    }
    first_start = min(event.start_at for event in events)
    last_start = max(event.start_at for event in events)
    roots = {org_id for roll in rolls.values() for org_id in roll.org_ids}

    tree = subtree_cte(roots)
    period_query = (
        sa_select(
            tree.c.root_id,
            col(MembershipPeriod.member_id),
            col(MembershipPeriod.org_id),
            col(MembershipPeriod.category),
            col(MembershipPeriod.started_at),
            col(MembershipPeriod.ended_at),
        )
        .join_from(MembershipPeriod, tree, tree.c.org_id == col(MembershipPeriod.org_id))
        .where(
            or_(col(MembershipPeriod.started_at).is_(None), col(MembershipPeriod.started_at) <= last_start),
            or_(col(MembershipPeriod.ended_at).is_(None), col(MembershipPeriod.ended_at) > first_start),
        )
    )
    if only_member_id is not None:
        period_query = period_query.where(col(MembershipPeriod.member_id) == only_member_id)
    # One Standing per period, shared by every roll the period covers (it is immutable): a year's
    # ledger of a 基层党委 puts hundreds of members on each of its events.
    periods_by_root: dict[int, list[_Covering]] = defaultdict(list)
    for root_id, member_id, org_id, category, started_at, ended_at in (
        session.connection().execute(period_query).all()
    ):
        standing = Standing(org_id, category, started_at)
        periods_by_root[root_id].append((started_at, ended_at, member_id, standing))

    for roll in rolls.values():
        start = roll.event.start_at
        members = roll.members
        for root_id in roll.org_ids:
            for started_at, ended_at, member_id, standing in periods_by_root.get(root_id, ()):
                if (started_at is None or started_at <= start) and (ended_at is None or ended_at > start):
                    members[member_id] = standing

    member_ids = {member_id for roll in rolls.values() for member_id in roll.members}
    _load_exemptions(session, rolls, member_ids, first_start, last_start)
    _load_seats(session, rolls, first_start, last_start, only_member_id)
    _load_leave_and_presence(session, rolls, event_ids, only_member_id)
    _load_guest_standing(session, rolls, first_start, last_start)
    return rolls


def _covers(starts: datetime | None, ends: datetime | None, at: datetime) -> bool:
    return (starts is None or starts <= at) and (ends is None or ends > at)


def _load_exemptions(
    session: Session, rolls: dict[int, EventRoll], member_ids: set[int], first: datetime, last: datetime
) -> None:
    if not member_ids:
        return
    exemptions: dict[int, list[Exemption]] = defaultdict(list)
    for condition in one_of(session, col(MemberExemption.member_id), member_ids):
        query = sa_select(
            col(MemberExemption.member_id),
            col(MemberExemption.reason),
            col(MemberExemption.starts_at),
            col(MemberExemption.ends_at),
        ).where(
            condition,
            col(MemberExemption.starts_at) <= last,
            or_(col(MemberExemption.ends_at).is_(None), col(MemberExemption.ends_at) > first),
        )
        # Most members have no exemption: visiting only those who do keeps this off the
        # members × events product.
        for row in session.connection().execute(query.order_by(col(MemberExemption.id))).all():
            exemption = Exemption(*row)
            exemptions[exemption.member_id].append(exemption)
    if not exemptions:
        return
    for roll in rolls.values():
        for member_id, found in exemptions.items():
            if member_id not in roll.members:
                continue
            for exemption in found:
                if _covers(exemption.starts_at, exemption.ends_at, roll.event.start_at):
                    roll.exempt[member_id] = exemption
                    break


def _load_seats(
    session: Session, rolls: dict[int, EventRoll], first: datetime, last: datetime, only_member_id: int | None
) -> None:
    committee_rolls = [roll for roll in rolls.values() if EventKind.COMMITTEE in roll.kinds]
    if not committee_rolls:
        return
    org_ids = {org_id for roll in committee_rolls for org_id in roll.org_ids}
    query = select(CommitteeSeat).where(
        col(CommitteeSeat.org_id).in_(sorted(org_ids)),
        col(CommitteeSeat.started_at) <= last,
        or_(col(CommitteeSeat.ended_at).is_(None), col(CommitteeSeat.ended_at) > first),
    )
    if only_member_id is not None:
        query = query.where(CommitteeSeat.member_id == only_member_id)
    seats = list(session.exec(query).all())
    for roll in committee_rolls:
        holders = set(roll.org_ids)
        roll.committee_seats = {
            seat.member_id
            for seat in seats
            if seat.org_id in holders and _covers(seat.started_at, seat.ended_at, roll.event.start_at)
        }
        if roll.kinds == [EventKind.COMMITTEE]:
            roll.committee = set(roll.committee_seats)


def _load_leave_and_presence(
    session: Session, rolls: dict[int, EventRoll], event_ids: list[int], only_member_id: int | None
) -> None:
    for condition in one_of(session, col(LeaveRequest.event_id), event_ids):
        leave_query = sa_select(
            col(LeaveRequest.event_id), col(LeaveRequest.member_id), col(LeaveRequest.reason)
        ).where(condition, col(LeaveRequest.status) == LeaveStatus.APPROVED)
        if only_member_id is not None:
            leave_query = leave_query.where(col(LeaveRequest.member_id) == only_member_id)
        # In id order, so that of two approved requests (which the leave workflow prevents) the
        # later one wins, as before.
        for leave_row in session.connection().execute(leave_query.order_by(col(LeaveRequest.id))).all():
            leave = ApprovedLeave(*leave_row)
            rolls[leave.event_id].approved_leave[leave.member_id] = leave
    for condition in one_of(session, col(Attendance.event_id), event_ids):
        presence_query = sa_select(
            col(Attendance.event_id),
            col(Attendance.member_id),
            col(Attendance.first_tap_at),
            col(Attendance.last_tap_at),
            col(Attendance.tap_count),
            col(Attendance.source),
            col(Attendance.note),
        ).where(condition)
        if only_member_id is not None:
            presence_query = presence_query.where(col(Attendance.member_id) == only_member_id)
        for presence_row in session.connection().execute(presence_query).all():
            presence = Presence._make(presence_row)
            rolls[presence.event_id].present[presence.member_id] = presence


def _load_guest_standing(
    session: Session, rolls: dict[int, EventRoll], first: datetime, last: datetime
) -> None:
    guest_ids = {
        member_id for roll in rolls.values() for member_id in roll.present if member_id not in roll.members
    }
    if not guest_ids:
        return
    periods: dict[int, list[_Period]] = defaultdict(list)
    for condition in one_of(session, col(MembershipPeriod.member_id), guest_ids):
        query = sa_select(
            col(MembershipPeriod.member_id),
            col(MembershipPeriod.org_id),
            col(MembershipPeriod.category),
            col(MembershipPeriod.started_at),
            col(MembershipPeriod.ended_at),
        ).where(
            condition,
            or_(col(MembershipPeriod.started_at).is_(None), col(MembershipPeriod.started_at) <= last),
            or_(col(MembershipPeriod.ended_at).is_(None), col(MembershipPeriod.ended_at) > first),
        )
        for row in session.connection().execute(query.order_by(col(MembershipPeriod.id))).all():
            period = _Period(*row)
            periods[period.member_id].append(period)
    for roll in rolls.values():
        for member_id in roll.present:
            if member_id in roll.members:
                continue
            standing = None
            for period in periods.get(member_id, ()):
                if _covers(period.started_at, period.ended_at, roll.event.start_at):
                    standing = Standing(period.org_id, period.category)
                    break
            roll.guests[member_id] = standing
