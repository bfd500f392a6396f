"""The ledgers (电子台账): an organisation's ledger for a period, and a member's history.

One function per ledger, each returning a pydantic model that the API returns as JSON, the CLI
prints and ``server.ledgers.render`` exports; the sign-in sheet of one event is
``server.attendance.service.build_attendance_sheet``. All of them read rolls
(``server.attendance.rolls``), so 应到 means the same in every ledger. Queries are set-based: the
number of statements does not grow with the number of events or members.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from sqlalchemy import ColumnElement, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from server.attendance.rolls import EventRoll, compute_rolls
from server.attendance.schemas import NamedRef
from server.attendance.service import card_check_label, quorums_of, roll_counts, sign_out_of, tap_levels
from server.caller import Caller
from server.cards.lifecycle import card_history
from server.labels import (
    CADENCE_LABELS,
    CARD_CHECK_LABELS,
    CATEGORY_LABELS,
    COUNTING_RULE,
    EVENT_KIND_LABELS,
    EXEMPTION_LABELS,
    LEAVE_LABELS,
    ORG_KIND_LABELS,
    STATUS_LABELS,
    kinds_label,
)
from server.ledgers.cadence import CADENCE_STATUS_LABELS, CadencePolicy, CadenceStatus, check_cadence
from server.ledgers.periods import Period
from server.ledgers.schemas import (
    CadenceRow,
    HistoryCard,
    HistoryEventRow,
    HistoryExemption,
    HistoryLeave,
    HistoryMembership,
    HistorySummary,
    LedgerEventRow,
    LedgerOrganisation,
    LedgerPeriod,
    LedgerTotals,
    MemberHistory,
    OrgLedger,
    ParticipationRow,
)
from server.orgs.reads import MemberRow, member_rows
from server.orgs.service import (
    organisation_names,
    organisation_subtree_ids,
    require_visible_member,
    require_visible_organisation,
)
from server.orgs.tree import ancestor_ids, own_and_group_ids, subtree_cte
from server.records.attendance import Attendance
from server.records.events import Event, EventOrganisation
from server.records.idlists import one_of
from server.records.leave import LeaveRequest
from server.records.orgs import MemberExemption, MembershipPeriod, Organisation
from server.venues.service import venue_names
from server.vocabulary import BindingStatus, MemberCategory

_OUTCOME_LABELS = {
    "present": "出席",
    "absent": "缺席",
    "on_leave": "请假",
    "exempt": "免于参加",
    "guest": "列席",
    "exempt_present": "免于参加者到会",
    "not_expected": "未要求参加",
    "upcoming": "未开始",
}
_BINDING_LABELS = {
    BindingStatus.ACTIVE: "在用",
    BindingStatus.LOST: "已挂失",
    BindingStatus.REPLACED: "已换卡",
    BindingStatus.REVOKED: "已注销",
}


def build_org_ledger(
    session: Session,
    *,
    org_id: int,
    period: Period,
    caller: Caller,
    now: datetime,
    tz: tzinfo,
    policy: CadencePolicy,
) -> OrgLedger:
    """The organisation's ledger for ``period``: every event with counts and rate, cadence
    compliance per required kind, and each member's participation.

    The caller sees only their scope (others: not found).

    Raises:
        OrganisationNotFound: no such organisation, or outside the caller's scope.
    """
    org = require_visible_organisation(session, org_id, caller=caller)
    ledger_orgs = own_and_group_ids(session, org_id)
    events = list(
        session.exec(
            select(Event)
            .where(
                col(Event.id).in_(
                    select(EventOrganisation.event_id).where(
                        col(EventOrganisation.org_id).in_(sorted(ledger_orgs))
                    )
                ),
                col(Event.start_at) >= period.start,
                col(Event.start_at) < period.end,
            )
            .order_by(col(Event.start_at), col(Event.id))
        ).all()
    )
    rolls = compute_rolls(session, events)
    participants = _participants(session, org_id, period)

    people = {
        m for roll in rolls.values() for m in (roll.event.chair_member_id, roll.event.recorder_member_id)
    }
    members = member_rows(session, {m for m in people if m is not None} | set(participants))
    org_ids = (
        ledger_orgs
        | {o for roll in rolls.values() for o in roll.org_ids}
        | {p.org_id for p in participants.values()}
    )
    org_names = organisation_names(session, org_ids)
    venues = venue_names(session, {event.venue_id for event in events})

    event_rows = [
        _event_row(rolls[event.id], members, org_names, venues, tz, upcoming=event.start_at > now)
        for event in events
        if event.id
    ]
    held_rows = [row for row in event_rows if not row.upcoming]
    ledger_org_rows = list(
        session.exec(select(Organisation).where(col(Organisation.id).in_(sorted(ledger_orgs)))).all()
    )
    checks = check_cadence(
        session, ledger_org_rows, start=period.start, end=period.end, now=now, tz=tz, policy=policy
    )
    cadence_rows = [
        CadenceRow(
            organisation=NamedRef(id=check.org_id, name=org_names[check.org_id]),
            kind=check.kind,
            kind_label=EVENT_KIND_LABELS[check.kind],
            cadence=check.cadence,
            cadence_label=CADENCE_LABELS[check.cadence],
            period_key=check.period.key,
            period_label=check.period.label,
            status=check.status,
            status_label=CADENCE_STATUS_LABELS[check.status],
            held_event_ids=check.held_event_ids,
            planned_event_ids=check.planned_event_ids,
        )
        for check in sorted(checks, key=lambda c: (c.org_id != org_id, c.org_id, c.period.start, c.kind))
    ]
    held_rolls = {event_id: roll for event_id, roll in rolls.items() if roll.event.start_at <= now}
    participation = _participation(session, participants, held_rolls, members, org_names, period, tz)
    _mark_moves(session, org_id, participation, period, tz)
    totals_expected = sum(row.expected for row in held_rows)
    totals_present = sum(row.present for row in held_rows)
    return OrgLedger(
        organisation=LedgerOrganisation(
            id=org_id, name=org.name, kind=org.kind, kind_label=ORG_KIND_LABELS[org.kind]
        ),
        period=_ledger_period(period, tz),
        generated_at=now.astimezone(tz),
        events=event_rows,
        cadence=cadence_rows,
        members=participation,
        totals=LedgerTotals(
            events=len(held_rows),
            expected=totals_expected,
            present=totals_present,
            on_leave=sum(row.on_leave for row in held_rows),
            absent=sum(row.absent for row in held_rows),
            attendance_rate=round(totals_present / totals_expected, 4) if totals_expected else None,
            cadence_met=sum(row.status == CadenceStatus.MET for row in cadence_rows),
            cadence_missed=sum(row.status == CadenceStatus.MISSED for row in cadence_rows),
            cadence_open=sum(
                row.status not in (CadenceStatus.MET, CadenceStatus.MISSED) for row in cadence_rows
            ),
        ),
        counting_rule=COUNTING_RULE,
    )


def build_member_history(
    session: Session,
    *,
    member_id: int,
    period: Period | None,
    caller: Caller,
    now: datetime,
    tz: tzinfo,
) -> MemberHistory:
    """A member's history: memberships, cards, and every event they were expected at or attended
    (in ``period``, or ever), with leave and exemptions.

    Raises:
        MemberNotFound: no such member, or outside the caller's scope (their current organisation).
    """
    member = require_visible_member(session, member_id, caller=caller)
    start = period.start if period else None
    end = period.end if period else None
    memberships = list(
        session.exec(
            select(MembershipPeriod)
            .where(MembershipPeriod.member_id == member_id)
            .order_by(col(MembershipPeriod.started_at).is_not(None), col(MembershipPeriod.started_at))
        ).all()
    )
    events = _history_events(session, member_id, memberships, start, end)
    rolls = compute_rolls(session, events, only_member_id=member_id)
    event_rows = []
    for event in events:
        assert event.id is not None
        event_rows.append(_history_row(rolls[event.id], member_id, tz, upcoming=event.start_at > now))
    org_names = organisation_names(
        session, {m.org_id for m in memberships} | {member.org_id} | {e.org_id for e in events}
    )
    levels = tap_levels(session, member_id=member_id) if event_rows else {}
    for row in event_rows:
        row.host.name = org_names.get(row.host.id, row.host.name)
        first_level, last_level = levels.get(row.event_id, (None, None))
        row.card_check = first_level
        row.card_check_label = card_check_label(first_level, last_level if row.checkout_at else None)

    leave_query = (
        select(LeaveRequest, Event)
        .join(Event, col(Event.id) == col(LeaveRequest.event_id))
        .where(LeaveRequest.member_id == member_id)
        .order_by(col(LeaveRequest.requested_at))
    )
    exemption_query = (
        select(MemberExemption)
        .where(MemberExemption.member_id == member_id)
        .order_by(col(MemberExemption.starts_at))
    )
    if start is not None and end is not None:
        leave_query = leave_query.where(col(Event.start_at) >= start, col(Event.start_at) < end)
        exemption_query = exemption_query.where(
            col(MemberExemption.starts_at) < end,
            or_(col(MemberExemption.ends_at).is_(None), col(MemberExemption.ends_at) > start),
        )
    leave_rows = [
        HistoryLeave(
            leave_id=leave.id or 0,
            event_id=leave.event_id,
            title=event.title,
            status=leave.status,
            status_label=LEAVE_LABELS[leave.status],
            reason=leave.reason,
            requested_at=leave.requested_at.astimezone(tz),
            decided_at=leave.decided_at.astimezone(tz) if leave.decided_at else None,
            decision_note=leave.decision_note,
        )
        for leave, event in session.exec(leave_query).all()
    ]
    exemptions = [
        HistoryExemption(
            exemption_id=exemption.id or 0,
            reason=exemption.reason,
            reason_label=EXEMPTION_LABELS[exemption.reason],
            note=exemption.note,
            starts_at=exemption.starts_at.astimezone(tz),
            ends_at=exemption.ends_at.astimezone(tz) if exemption.ends_at else None,
        )
        for exemption in session.exec(exemption_query).all()
    ]
    cards = [
        HistoryCard(
            binding_id=binding.id or 0,
            card=" / ".join(m for m in (binding.card_no_masked, binding.uid_masked) if m),
            status=binding.status,
            status_label=_BINDING_LABELS[binding.status],
            bound_at=binding.bound_at.astimezone(tz),
            ended_at=binding.ended_at.astimezone(tz) if binding.ended_at else None,
            verified_level=binding.verified_level,
            verified_level_label=CARD_CHECK_LABELS[binding.verified_level],
        )
        for binding in card_history(session, member_id=member_id, caller=caller)
    ]
    last_query = select(func.max(Attendance.first_tap_at)).where(Attendance.member_id == member_id)
    if end is not None:
        last_query = last_query.where(col(Attendance.first_tap_at) < end)
    last = session.exec(last_query).first()
    held = [row for row in event_rows if row.start_at <= now]
    expected = [row for row in held if row.expected]
    present = sum(row.outcome == "present" for row in expected)
    return MemberHistory(
        member_id=member_id,
        name=member.name,
        category=member.category,
        category_label=CATEGORY_LABELS[member.category],
        status=member.status,
        status_label=STATUS_LABELS[member.status],
        organisation=NamedRef(id=member.org_id, name=org_names[member.org_id]),
        period=_ledger_period(period, tz) if period else None,
        generated_at=now.astimezone(tz),
        memberships=[
            HistoryMembership(
                organisation=NamedRef(id=m.org_id, name=org_names[m.org_id]),
                category=m.category,
                started_at=m.started_at.astimezone(tz) if m.started_at else None,
                ended_at=m.ended_at.astimezone(tz) if m.ended_at else None,
            )
            for m in memberships
        ],
        cards=cards,
        events=event_rows,
        leave=leave_rows,
        exemptions=exemptions,
        summary=HistorySummary(
            expected=len(expected),
            present=present,
            on_leave=sum(row.outcome == "on_leave" for row in expected),
            absent=sum(row.outcome == "absent" for row in expected),
            guest=sum(row.outcome == "guest" for row in held),
            exempt_present=sum(row.outcome == "exempt_present" for row in held),
            attendance_rate=round(present / len(expected), 4) if expected else None,
            last_org_life_at=last.astimezone(tz) if last else None,
        ),
        counting_rule=COUNTING_RULE,
    )


def _ledger_period(period: Period, tz: tzinfo) -> LedgerPeriod:
    return LedgerPeriod(
        key=period.key, label=period.label, start=period.start.astimezone(tz), end=period.end.astimezone(tz)
    )


def _event_row(
    roll: EventRoll,
    members: dict[int, MemberRow],
    org_names: dict[int, str],
    venues: dict[int, str],
    tz: tzinfo,
    *,
    upcoming: bool,
) -> LedgerEventRow:
    event = roll.event
    assert event.id is not None
    counts = roll_counts(roll)

    def name(member_id: int | None) -> str | None:
        return members[member_id].name if member_id is not None and member_id in members else None

    kinds = [event.kind, *(kind for kind in roll.kinds if kind != event.kind)]
    return LedgerEventRow(
        event_id=event.id,
        title=event.title,
        kinds=kinds,
        kinds_label=kinds_label(kinds),
        start_at=event.start_at.astimezone(tz),
        end_at=event.end_at.astimezone(tz),
        venue=venues.get(event.venue_id, ""),
        host=NamedRef(id=event.org_id, name=org_names[event.org_id]),
        organisations=[NamedRef(id=o, name=org_names[o]) for o in roll.org_ids],
        chair=name(event.chair_member_id),
        recorder=name(event.recorder_member_id),
        topic=event.topic,
        upcoming=upcoming,
        expected=counts.expected,
        expected_full=counts.expected_full,
        expected_probationary=counts.expected_probationary,
        present=counts.present,
        present_full=counts.present_full,
        present_probationary=counts.present_probationary,
        on_leave=counts.on_leave,
        absent=0 if upcoming else counts.absent,
        exempt=counts.exempt,
        guests=counts.guests,
        exempt_present=counts.exempt_present,
        late=counts.late,
        attendance_rate=None if upcoming else counts.attendance_rate,
        quorums=[] if upcoming else quorums_of(roll),
    )


def _mark_moves(
    session: Session, org_id: int, rows: list[ParticipationRow], period: Period, tz: tzinfo
) -> None:
    """Set ``moved_in_at`` / ``moved_out_at`` on members who moved into or out of the
    organisation's subtree from or to another organisation during the period (one membership
    period ends as the next begins, on either side of the subtree's edge)."""
    if not rows:
        return
    subtree = organisation_subtree_ids(session, org_id)
    by_member = {row.member_id: row for row in rows}
    periods: dict[int, list[_Membership]] = defaultdict(list)
    for condition in one_of(session, col(MembershipPeriod.member_id), by_member):
        query = sa_select(*_MEMBERSHIP_COLUMNS).where(
            condition,
            or_(
                col(MembershipPeriod.started_at).is_(None),
                col(MembershipPeriod.started_at) <= period.end,
            ),
            or_(
                col(MembershipPeriod.ended_at).is_(None),
                col(MembershipPeriod.ended_at) >= period.start,
            ),
        )
        for found_row in session.connection().execute(query.order_by(col(MembershipPeriod.id))).all():
            membership = _Membership(*found_row)
            periods[membership.member_id].append(membership)
    for member_id, found in periods.items():
        if len(found) < 2:
            continue  # a move takes two periods, one ending as the other begins
        starts = {m.started_at: m for m in found if m.started_at is not None}
        row = by_member[member_id]
        for earlier in found:
            later = starts.get(earlier.ended_at) if earlier.ended_at is not None else None
            if later is None or earlier.ended_at is None or not period.contains(earlier.ended_at):
                continue
            moved_at = earlier.ended_at.astimezone(tz)
            if earlier.org_id not in subtree and later.org_id in subtree:
                row.moved_in_at = moved_at
            elif earlier.org_id in subtree and later.org_id not in subtree:
                row.moved_out_at = moved_at


@dataclass(frozen=True, slots=True)
class _Membership:
    """A membership period as a plain row (a 基层党委's year reads hundreds of them)."""

    member_id: int
    org_id: int
    category: MemberCategory
    started_at: datetime | None
    ended_at: datetime | None


_MEMBERSHIP_COLUMNS = (
    col(MembershipPeriod.member_id),
    col(MembershipPeriod.org_id),
    col(MembershipPeriod.category),
    col(MembershipPeriod.started_at),
    col(MembershipPeriod.ended_at),
)


def _participants(session: Session, org_id: int, period: Period) -> dict[int, _Membership]:
    """Members of the organisation's subtree at some time in the period → their last period there."""
    tree = subtree_cte([org_id])
    rows = session.connection().execute(
        sa_select(*_MEMBERSHIP_COLUMNS)
        .where(
            col(MembershipPeriod.org_id).in_(sa_select(tree.c.org_id)),
            or_(col(MembershipPeriod.started_at).is_(None), col(MembershipPeriod.started_at) < period.end),
            or_(col(MembershipPeriod.ended_at).is_(None), col(MembershipPeriod.ended_at) > period.start),
        )
        .order_by(col(MembershipPeriod.started_at).is_not(None), col(MembershipPeriod.started_at))
    )
    found: dict[int, _Membership] = {}
    for row in rows.all():
        membership = _Membership(*row)
        found[membership.member_id] = membership
    return found


def _participation(
    session: Session,
    participants: dict[int, _Membership],
    rolls: dict[int, EventRoll],
    members: dict[int, MemberRow],
    org_names: dict[int, str],
    period: Period,
    tz: tzinfo,
) -> list[ParticipationRow]:
    if not participants:
        return []
    # Counted a set at a time (Counter.update runs in C): a 基层党委's year is thousands of
    # (event, member) pairs.
    tallies = {
        name: Counter[int]()
        for name in ("expected", "present", "on_leave", "absent", "exempt", "guest_at", "exempt_present")
    }
    for roll in rolls.values():
        present = roll.present
        invited = roll.invited
        expected = {m for m in invited if m not in roll.exempt}
        exempt_invited = invited - expected
        came = {m for m in expected if m in present}
        on_leave = {m for m in expected if m in roll.approved_leave and m not in present}
        tallies["exempt"].update(exempt_invited)
        tallies["expected"].update(expected)
        tallies["present"].update(came)
        tallies["on_leave"].update(on_leave)
        tallies["absent"].update(expected - came - on_leave)
        tallies["guest_at"].update(m for m in present if m not in invited)
        tallies["exempt_present"].update(m for m in present if m in exempt_invited)

    member_ids = sorted(participants)
    ledger_event_ids = set(rolls)
    # Rows come back in UTC; bounds of the same tzinfo compare without offset lookups.
    period_start, period_end = period.start.astimezone(UTC), period.end.astimezone(UTC)
    elsewhere: dict[int, int] = defaultdict(int)
    last_seen: dict[int, datetime] = {}
    for condition in one_of(session, col(Attendance.member_id), member_ids):
        # The members' attendance, then the start of the other events it is for, matched here.
        # As one join with the period condition on event, both planners may start from the
        # period's events (every event of the city that year): at city scale a 基层党委 ledger
        # took 0.4-1.3 s on PostgreSQL (hash join over a full scan of event) and SQLite (walking
        # the start_at index); two index lookups take ~20 ms (benchmarks/ledger.py).
        attendance_query = sa_select(col(Attendance.member_id), col(Attendance.event_id)).where(condition)
        attended = session.connection().execute(attendance_query).all()
        other_events = {event_id for _, event_id in attended} - ledger_event_ids
        in_period: set[int] = set()
        for events_condition in one_of(session, col(Event.id), other_events):
            starts = session.connection().execute(
                sa_select(col(Event.id), col(Event.start_at)).where(events_condition)
            )
            in_period.update(e for e, at in starts.all() if e is not None and period_start <= at < period_end)
        for member_id, event_id in attended:
            if event_id in in_period:
                elsewhere[member_id] += 1
        last_rows = session.connection().execute(
            sa_select(col(Attendance.member_id), func.max(col(Attendance.first_tap_at)))
            .where(condition, col(Attendance.first_tap_at) < period.end)
            .group_by(col(Attendance.member_id))
        )
        last_seen.update({member_id: at for member_id, at in last_rows.all() if at is not None})

    org_refs = {org_id: NamedRef(id=org_id, name=name) for org_id, name in org_names.items()}
    rows = []
    for member_id in sorted(member_ids, key=lambda m: (participants[m].org_id, members[m].roster_key())):
        standing = participants[member_id]
        tally = {name: counts.get(member_id, 0) for name, counts in tallies.items()}
        last = last_seen.get(member_id)
        rows.append(
            ParticipationRow(
                member_id=member_id,
                name=members[member_id].name,
                category=standing.category,
                organisation=org_refs[standing.org_id],
                expected=tally["expected"],
                present=tally["present"],
                on_leave=tally["on_leave"],
                absent=tally["absent"],
                exempt=tally["exempt"],
                guest_at=tally["guest_at"],
                exempt_present=tally["exempt_present"],
                elsewhere=elsewhere.get(member_id, 0),
                attendance_rate=round(tally["present"] / tally["expected"], 4) if tally["expected"] else None,
                last_org_life_at=last.astimezone(tz) if last else None,
            )
        )
    return rows


def _history_events(
    session: Session,
    member_id: int,
    memberships: list[MembershipPeriod],
    start: datetime | None,
    end: datetime | None,
) -> list[Event]:
    """Events the member may have been expected at (held by an organisation on their path while
    they belonged to it) or attended."""
    conditions = []
    lineage_cache: dict[int, list[int]] = {}
    for membership in memberships:
        if membership.org_id not in lineage_cache:
            lineage_cache[membership.org_id] = ancestor_ids(session, membership.org_id)
        window: list[ColumnElement[bool]] = [
            col(EventOrganisation.org_id).in_(lineage_cache[membership.org_id])
        ]
        if membership.started_at is not None:
            window.append(col(Event.start_at) >= membership.started_at)
        if membership.ended_at is not None:
            window.append(col(Event.start_at) < membership.ended_at)
        conditions.append(window)
    attended = select(Attendance.event_id).where(Attendance.member_id == member_id)
    by_membership = [
        select(EventOrganisation.event_id)
        .join(Event, col(Event.id) == col(EventOrganisation.event_id))
        .where(*window)
        for window in conditions
    ]
    candidates = [col(Event.id).in_(attended), *(col(Event.id).in_(query) for query in by_membership)]
    query = select(Event).where(or_(*candidates))
    if start is not None and end is not None:
        query = query.where(col(Event.start_at) >= start, col(Event.start_at) < end)
    return list(session.exec(query.order_by(col(Event.start_at), col(Event.id))).all())


def _history_row(roll: EventRoll, member_id: int, tz: tzinfo, *, upcoming: bool) -> HistoryEventRow:
    event = roll.event
    assert event.id is not None
    attendance = roll.present.get(member_id)
    expected = member_id in roll.expected
    if attendance is not None:
        outcome = "present" if expected else "exempt_present" if member_id in roll.exempt else "guest"
    elif member_id in roll.on_leave:
        outcome = "on_leave"
    elif member_id in roll.exempt and member_id in roll.invited:
        outcome = "exempt"
    elif expected:
        outcome = "upcoming" if upcoming else "absent"
    else:
        outcome = "not_expected"
    checkout = sign_out_of(attendance) if attendance else None
    kinds = [event.kind, *(kind for kind in roll.kinds if kind != event.kind)]
    return HistoryEventRow(
        event_id=event.id,
        title=event.title,
        kinds_label=kinds_label(kinds),
        start_at=event.start_at.astimezone(tz),
        host=NamedRef(id=event.org_id, name=""),
        expected=expected,
        outcome=outcome,
        outcome_label=_OUTCOME_LABELS[outcome],
        first_tap_at=attendance.first_tap_at.astimezone(tz) if attendance else None,
        checkout_at=checkout.astimezone(tz) if checkout else None,
        duration_minutes=int((checkout - attendance.first_tap_at).total_seconds() // 60)
        if checkout and attendance
        else None,
        late=bool(attendance and attendance.first_tap_at > event.late_after),
        source=attendance.source if attendance else None,
        note=attendance.note if attendance else "",
    )
