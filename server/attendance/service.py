"""Recording presence (taps, manual entries by the recorder) and the sign-in sheet (签到表), one
builder for the API, the CLI, the web app and the exports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum
from functools import cache
from itertools import product
from typing import Any

from sqlalchemy import ColumnElement, Connection, Dialect, Select
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, col, select

from server.attendance.rolls import EventRoll, Presence, Standing, compute_rolls
from server.attendance.schemas import (
    AttendanceSheet,
    NamedRef,
    Quorum,
    SheetCounts,
    SheetEvent,
    SheetExempt,
    SheetLeave,
    SheetMember,
    SheetPresence,
)
from server.audit.service import record
from server.caller import Caller
from server.db import bulk_insert, bulk_update, in_values, key_probe_params, key_probes, value_chunks
from server.errors import AlreadyPresent, InvalidTimeRange
from server.events.service import require_visible_event
from server.inputs import required_reason
from server.labels import CARD_CHECK_LABELS, COUNTING_RULE, EXEMPTION_LABELS, PRESENCE_ROLE_LABELS
from server.orgs.reads import MemberRow, member_rows
from server.orgs.service import organisation_names, require_visible_member
from server.orgs.tree import subtrees
from server.records.attendance import Attendance
from server.records.events import Event
from server.records.orgs import MembershipPeriod
from server.records.taps import Tap
from server.records.venues import Venue
from server.vocabulary import AttendanceSource, CardCheckLevel, EventKind, MemberCategory, PresenceRole

SIGN_OUT_MIN_GAP = timedelta(minutes=10)
"""A later tap counts as 签退 only this long after 签到; sooner it is a repeat (a nervous double tap)."""


class CheckinResult(StrEnum):
    CHECKED_IN = "checked_in"  # 签到
    ALREADY_CHECKED_IN = "already_checked_in"  # a repeat tap, or an earlier one arriving late
    SIGNED_OUT = "signed_out"  # 签退


@dataclass(slots=True)
class AttendanceRow:
    """An attendance row as a batch of taps reads and changes it: plain attributes (building and
    flushing :class:`Attendance` objects cost more than the check-ins themselves). Its fields are
    the table's columns; ``id`` is None for a row the batch added."""

    event_id: int
    member_id: int
    first_tap_at: datetime
    last_tap_at: datetime
    tap_count: int
    first_tap_id: int | None = None
    last_tap_id: int | None = None
    manual_at: datetime | None = None
    source: AttendanceSource = AttendanceSource.TAP
    note: str = ""
    recorded_by: str = ""
    id: int | None = None


ATTENDANCE_TABLE = SQLModel.metadata.tables[Attendance.__tablename__]
_ROW_COLUMNS = tuple(f.name for f in fields(AttendanceRow))
_INSERT_COLUMNS = tuple(name for name in _ROW_COLUMNS if name != "id")
_MERGED_COLUMNS = ("first_tap_at", "first_tap_id", "last_tap_at", "last_tap_id", "tap_count")
ATTENDANCE_KEY = ("event_id", "member_id")


class AttendanceRows:
    """The attendance rows of some members at some events, read and locked at once: a batch of
    taps records its check-ins without a query per tap. The rows are plain
    (:class:`AttendanceRow`), read with Core and kept here: what the batch adds or changes is
    written by :meth:`write` (bulk statements), which must run before anything else reads or
    changes those rows (the batch's ``write``)."""

    def __init__(
        self, rows: Iterable[AttendanceRow], *, event_ids: Iterable[int], member_ids: Iterable[int]
    ) -> None:
        self._events, self._members = set(event_ids), set(member_ids)
        self._rows = {(row.event_id, row.member_id): row for row in rows}
        self._pairs: set[tuple[int, int]] = set()  # known one by one (read after forget_all)
        self._added: dict[tuple[int, int], AttendanceRow] = {}
        self._changed: dict[tuple[int, int], AttendanceRow] = {}

    @classmethod
    def load(cls, session: Session, *, event_ids: Iterable[int], member_ids: Iterable[int]) -> AttendanceRows:
        """The rows of every (event, member) pair of *event_ids* × *member_ids*, locked.

        On PostgreSQL each pair is one seek in the (event_id, member_id) unique index
        (:func:`server.db.key_probes`), in (event, member) order: an event new to the
        statistics (every event, at its start) would otherwise be read whole, 1,000 rows a run at
        a flash event. SQLite takes that index for ``event_id IN (...) AND member_id IN (...)``."""
        events, members = sorted(set(event_ids)), sorted(set(member_ids))
        rows: list[AttendanceRow] = []
        if events and members:
            connection = session.connection()
            for statement, params in cls.queries(connection.dialect, events, members):
                rows.extend(AttendanceRow(*values) for values in connection.execute(statement, params))
        return cls(rows, event_ids=events, member_ids=members)

    @staticmethod
    def queries(
        dialect: Dialect, events: Sequence[int], members: Sequence[int]
    ) -> list[tuple[Select[Any], dict[str, Any]]]:
        """What :meth:`load` reads, with the parameters of each statement."""
        if dialect.name == "postgresql":
            return [(_locked_rows_query(), key_probe_params(ATTENDANCE_KEY, product(events, members)))]
        table = ATTENDANCE_TABLE
        return [
            (_rows_query(in_values(table.c.event_id, events), in_values(table.c.member_id, chunk)), {})
            for chunk in value_chunks(dialect, members)
        ]

    def covers(self, event_id: int, member_id: int) -> bool:
        """Whether this record knows the pair's row, or knows there is none."""
        pair = (event_id, member_id)
        return (
            pair in self._rows
            or pair in self._pairs
            or (event_id in self._events and member_id in self._members)
        )

    def get(self, event_id: int, member_id: int) -> AttendanceRow | None:
        return self._rows.get((event_id, member_id))

    def lock(self, session: Session, *, event_id: int, member_id: int) -> AttendanceRow | None:
        """The pair's row, read (and locked) now, and known from here on."""
        table = ATTENDANCE_TABLE
        connection = session.connection()
        found = _read_rows(connection, table.c.event_id == event_id, table.c.member_id == member_id)
        pair = (event_id, member_id)
        self._pairs.add(pair)
        if found:
            self._rows[pair] = found[0]
            return found[0]
        return None

    def add(self, row: AttendanceRow) -> None:
        """A new row, inserted by the next :meth:`write`."""
        pair = (row.event_id, row.member_id)
        self._rows[pair] = row
        self._added[pair] = row

    def changed(self, row: AttendanceRow) -> None:
        """*row* (one of this record's) was changed: updated by the next :meth:`write`."""
        pair = (row.event_id, row.member_id)
        if pair not in self._added:
            self._changed[pair] = row

    def write(self, session: Session) -> None:
        """Insert the added rows and update the changed ones: after the taps they refer to are
        written and the session flushed, before anything reads attendance through the ORM."""
        if self._added:
            rows = [{name: getattr(row, name) for name in _INSERT_COLUMNS} for row in self._added.values()]
            bulk_insert(session, ATTENDANCE_TABLE, rows)
            self._added.clear()
        if self._changed:
            changes = [
                {name: getattr(row, name) for name in (*ATTENDANCE_KEY, *_MERGED_COLUMNS)}
                for row in self._changed.values()
            ]
            bulk_update(session, ATTENDANCE_TABLE, ATTENDANCE_KEY, changes)
            # An Attendance object the session read earlier would still hold the old values, and a
            # later flush of it would compare against them (a change back to them never written).
            for obj in session.identity_map.values():
                if isinstance(obj, Attendance):
                    # Read from the loaded state: an expired object is read again anyway.
                    loaded = obj.__dict__
                    changed = self._changed.get((loaded.get("event_id", 0), loaded.get("member_id", 0)))
                    if changed is not None:
                        for name in _MERGED_COLUMNS:
                            set_committed_value(obj, name, getattr(changed, name))
            self._changed.clear()

    def forget_all(self) -> None:
        """Rows may have changed behind this record's back (a re-decision): read them again.
        Call after :meth:`write`, so that the rows this record held are in the database."""
        assert not self._added, "attendance rows not written yet"
        assert not self._changed, "attendance changes not written yet"
        self._events.clear()
        self._members.clear()
        self._rows.clear()
        self._pairs.clear()


@cache
def _locked_rows_query() -> Select[Any]:
    """PostgreSQL's statement behind :meth:`AttendanceRows.load`, built once."""
    return key_probes(ATTENDANCE_TABLE, ATTENDANCE_KEY, unique=True, columns=_ROW_COLUMNS, for_update=True)


def _rows_query(*where: ColumnElement[bool]) -> Select[Any]:
    table = ATTENDANCE_TABLE
    columns = (table.c[name] for name in _ROW_COLUMNS)
    return sa_select(*columns).where(*where).order_by(table.c.id).with_for_update()


def _read_rows(connection: Connection, *where: ColumnElement[bool]) -> list[AttendanceRow]:
    return [AttendanceRow(*values) for values in connection.execute(_rows_query(*where))]


def checkin_result(
    session: Session, *, event_id: int, member_id: int, at: datetime, known: AttendanceRows | None = None
) -> tuple[Attendance | AttendanceRow | None, CheckinResult]:
    """The member's attendance row (locked) and what a tap at *at* will count as, without
    recording it: the receipt is known before the tap row is stored. With *known*, the row is
    the batch's plain one."""
    attendance: Attendance | AttendanceRow | None
    if known is None:
        attendance = lock_attendance(session, event_id=event_id, member_id=member_id)
    elif known.covers(event_id, member_id):
        attendance = known.get(event_id, member_id)
    else:
        attendance = known.lock(session, event_id=event_id, member_id=member_id)
    if attendance is None:
        return None, CheckinResult.CHECKED_IN
    return attendance, _merged_result(attendance, at)


def record_checkin(
    session: Session,
    *,
    event_id: int,
    member_id: int,
    tap_id: int,
    at: datetime,
    known: AttendanceRows | None = None,
) -> CheckinResult:
    """Count an accepted tap towards the member's attendance: the first is 签到, a later one 签退.

    Taps can arrive out of order (a kiosk uploads its offline backlog late), so first and last are
    the earliest and latest tap times seen, not the first and last received. Two first taps racing
    on PostgreSQL: the second insert fails on the (event, member) unique key and the caller retries.
    *known*: the rows read for a whole batch; the change is then written by its ``write`` (else
    flushed at once).
    """
    if known is not None:
        return _record_known(
            session, event_id=event_id, member_id=member_id, tap_id=tap_id, at=at, known=known
        )
    attendance = lock_attendance(session, event_id=event_id, member_id=member_id)
    if attendance is None:
        attendance = Attendance(**_first_tap(event_id, member_id, tap_id=tap_id, at=at))
        result = CheckinResult.CHECKED_IN
    else:
        result = merge_tap(attendance, tap_id=tap_id, at=at)
    session.add(attendance)
    session.flush()
    return result


def _record_known(
    session: Session, *, event_id: int, member_id: int, tap_id: int, at: datetime, known: AttendanceRows
) -> CheckinResult:
    attendance, _result = checkin_result(session, event_id=event_id, member_id=member_id, at=at, known=known)
    if attendance is None:
        known.add(AttendanceRow(**_first_tap(event_id, member_id, tap_id=tap_id, at=at)))
        return CheckinResult.CHECKED_IN
    assert isinstance(attendance, AttendanceRow)
    result = merge_tap(attendance, tap_id=tap_id, at=at)
    known.changed(attendance)
    return result


def _first_tap(event_id: int, member_id: int, *, tap_id: int, at: datetime) -> dict[str, Any]:
    """An attendance row's columns as the member's first tap at the event sets them."""
    return {
        "event_id": event_id,
        "member_id": member_id,
        "first_tap_at": at,
        "last_tap_at": at,
        "tap_count": 1,
        "first_tap_id": tap_id,
        "last_tap_id": tap_id,
    }


def merge_tap(attendance: Attendance | AttendanceRow, *, tap_id: int, at: datetime) -> CheckinResult:
    result = _merged_result(attendance, at)
    if at < attendance.first_tap_at:
        attendance.first_tap_at, attendance.first_tap_id = at, tap_id
    if at >= attendance.last_tap_at:
        attendance.last_tap_at, attendance.last_tap_id = at, tap_id
    attendance.tap_count += 1
    return result


def _merged_result(attendance: Attendance | AttendanceRow, at: datetime) -> CheckinResult:
    # A tap before the first one moves the 签到 earlier; it is no 签退.
    if at >= attendance.first_tap_at and at - attendance.first_tap_at >= SIGN_OUT_MIN_GAP:
        return CheckinResult.SIGNED_OUT
    return CheckinResult.ALREADY_CHECKED_IN


def lock_attendance(session: Session, *, event_id: int, member_id: int) -> Attendance | None:
    return session.exec(
        select(Attendance)
        .where(Attendance.event_id == event_id, Attendance.member_id == member_id)
        .with_for_update()
    ).first()


def record_manual_attendance(
    session: Session,
    *,
    event_id: int,
    member_id: int,
    reason: str,
    at: datetime | None,
    caller: Caller,
    now: datetime,
) -> Attendance:
    """The recorder enters a presence without a tap (forgotten card, broken kiosk), with a reason.

    ``at`` is when they arrived (default: the start); it must fall between the window's opening
    and the end. Audited.

    Raises:
        EventNotFound (also outside the caller's scope), MemberNotFound.
        ReasonRequired: no reason given.
        InvalidTimeRange: ``at`` outside the event.
        AlreadyPresent: the member is already recorded as present.
    """
    event = require_visible_event(session, event_id, caller=caller)
    # Only a member the caller may see: another organisation's member is not theirs to vouch for
    # (a guest is recorded by their own tap), and an id outside the scope must look missing.
    require_visible_member(session, member_id, caller=caller)
    text = required_reason(reason, missing="补录须填写理由（如：忘带卡、签到机故障）")
    arrived = at or event.start_at
    if not event.checkin_opens_at <= arrived <= event.end_at:
        raise InvalidTimeRange("补录的到会时间须在签到开始与活动结束之间")
    if lock_attendance(session, event_id=event_id, member_id=member_id) is not None:
        raise AlreadyPresent()
    attendance = Attendance(
        event_id=event_id,
        member_id=member_id,
        first_tap_at=arrived,
        last_tap_at=arrived,
        tap_count=0,
        manual_at=arrived,
        source=AttendanceSource.MANUAL,
        note=text,
        recorded_by=caller.actor.ref,
    )
    session.add(attendance)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="attendance.manual",
        object_type="attendance",
        object_id=attendance.id or 0,
        org_id=event.org_id,
        at=now,
        reason=text,
        detail={"event_id": event_id, "member_id": member_id, "arrived_at": arrived},
    )
    return attendance


def sign_out_of(attendance: Attendance | Presence) -> datetime | None:
    """签退 time: the last tap, when it came at least :data:`SIGN_OUT_MIN_GAP` after 签到."""
    if attendance.tap_count < 2 and attendance.source == AttendanceSource.TAP:
        return None
    if attendance.last_tap_at - attendance.first_tap_at < SIGN_OUT_MIN_GAP:
        return None
    return attendance.last_tap_at


def build_attendance_sheet(session: Session, *, event_id: int, caller: Caller, tz: tzinfo) -> AttendanceSheet:
    """The event's sign-in sheet: expected (应到), present (签到/签退, late), on leave, exempt and
    absent members, counts split 正式/预备, and the quorum of a 党员大会 or 支委会.

    Expectation follows :mod:`server.attendance.rolls` (membership at the event's start, less
    exemptions; 应到 = 实到 + 请假 + 缺席). Names are in 花名册 order. The caller only sees events
    held by their scope; others look as if they did not exist.

    Raises:
        EventNotFound: no such event, or outside the caller's scope.
    """
    event = require_visible_event(session, event_id, caller=caller)
    roll = compute_rolls(session, [event])[event_id]
    return sheet_from_roll(session, roll, tz=tz)


def sheet_from_roll(session: Session, roll: EventRoll, *, tz: tzinfo) -> AttendanceSheet:
    """The sheet for an already computed roll."""
    event = roll.event
    people = (
        set(roll.members)
        | set(roll.present)
        | {person for person in (event.chair_member_id, event.recorder_member_id) if person is not None}
    )
    members = member_rows(session, people)
    standings = _standings(roll, members)
    org_ids = set(roll.org_ids) | {standing.org_id for standing in standings.values()}
    # One reference per organisation, shared by every row of it: a 1,000-member sheet otherwise
    # validates a thousand identical NamedRef objects.
    org_refs = {
        org_id: NamedRef(id=org_id, name=name)
        for org_id, name in organisation_names(session, org_ids).items()
    }
    moved_in = _moved_in_this_month(session, roll, tz)

    def person_fields(member_id: int) -> dict[str, Any]:
        standing = standings[member_id]
        moved = moved_in.get(member_id)
        return {
            "member_id": member_id,
            "name": members[member_id].name,
            "category": standing.category,
            "organisation": org_refs[standing.org_id],
            "moved_in_at": moved.astimezone(tz) if moved else None,
        }

    def ordered(member_ids: set[int]) -> list[int]:
        """By organisation, then in 花名册 order (docs/ledgers.md)."""
        return sorted(member_ids, key=lambda m: (standings[m].org_id, members[m].roster_key()))

    expected_ids = roll.expected
    guest_ids, exempt_present_ids = roll.guest_ids, roll.exempt_present
    expected = [SheetMember(**person_fields(m)) for m in ordered(expected_ids)]
    presences = sorted(roll.present.values(), key=lambda a: (a.first_tap_at, a.member_id))
    levels = tap_levels(session, event_id=event.id) if presences and event.id is not None else {}
    present = []
    for attendance in presences:
        checkout = sign_out_of(attendance)
        first_level, last_level = levels.get(attendance.member_id, (None, None))
        checkout_level = last_level if checkout is not None else None
        role = (
            PresenceRole.GUEST
            if attendance.member_id in guest_ids
            else PresenceRole.EXEMPT
            if attendance.member_id in exempt_present_ids
            else PresenceRole.EXPECTED
        )
        present.append(
            SheetPresence(
                **person_fields(attendance.member_id),
                first_tap_at=attendance.first_tap_at.astimezone(tz),
                last_tap_at=attendance.last_tap_at.astimezone(tz),
                tap_count=attendance.tap_count,
                expected=attendance.member_id in expected_ids,
                guest=role == PresenceRole.GUEST,
                role=role,
                role_label=PRESENCE_ROLE_LABELS[role],
                checkout_at=checkout.astimezone(tz) if checkout else None,
                duration_minutes=int((checkout - attendance.first_tap_at).total_seconds() // 60)
                if checkout
                else None,
                late=attendance.first_tap_at > event.late_after,
                source=attendance.source,
                note=attendance.note,
                card_check=first_level,
                checkout_card_check=checkout_level,
                card_check_label=card_check_label(first_level, checkout_level),
            )
        )
    absent = [SheetMember(**person_fields(m)) for m in ordered(roll.absent)]
    on_leave = [
        SheetLeave(**person_fields(m), reason=roll.approved_leave[m].reason) for m in ordered(roll.on_leave)
    ]
    exempt = [
        SheetExempt(
            **person_fields(m),
            reason=roll.exempt[m].reason,
            reason_label=EXEMPTION_LABELS[roll.exempt[m].reason],
        )
        for m in ordered(roll.exempt_invited)
    ]
    counts = roll_counts(roll)
    return AttendanceSheet(
        event=_sheet_event(session, roll, org_refs, members, tz),
        expected=expected,
        present=present,
        absent=absent,
        on_leave=on_leave,
        exempt=exempt,
        counts=counts,
        quorums=quorums_of(roll),
        counting_rule=COUNTING_RULE,
    )


def tap_levels(
    session: Session, *, event_id: int | None = None, member_id: int | None = None
) -> dict[int, tuple[CardCheckLevel | None, CardCheckLevel | None]]:
    """The card-check level of the 签到 tap and of the latest tap (a manual entry has neither):
    per member present at *event_id*, or per event *member_id* was present at."""
    first, last = aliased(Tap), aliased(Tap)
    key = col(Attendance.member_id) if member_id is None else col(Attendance.event_id)
    # Plain rows (no ORM result machinery): a 1,000-member sheet reads a thousand of them.
    query = (
        sa_select(key, col(first.card_check), col(last.card_check))
        .select_from(Attendance)
        .join(first, col(Attendance.first_tap_id) == col(first.id), isouter=True)
        .join(last, col(Attendance.last_tap_id) == col(last.id), isouter=True)
    )
    if event_id is not None:
        query = query.where(col(Attendance.event_id) == event_id)
    if member_id is not None:
        query = query.where(col(Attendance.member_id) == member_id)
    rows = session.connection().execute(query).all()

    def level(value: str | None) -> CardCheckLevel | None:
        return CardCheckLevel(value) if value is not None else None

    return {found: (level(first_level), level(last_level)) for found, first_level, last_level in rows}


def card_check_label(first: CardCheckLevel | None, checkout: CardCheckLevel | None) -> str:
    """核验等级 as a secretary reads it: the 签到 tap's, and the 签退 tap's when it differs."""
    if first is None:
        return CARD_CHECK_LABELS[checkout] if checkout is not None else ""
    label = CARD_CHECK_LABELS[first]
    if checkout is not None and checkout != first:
        label += f"；签退：{CARD_CHECK_LABELS[checkout]}"
    return label


def roll_counts(roll: EventRoll) -> SheetCounts:
    """应到/实到/请假/缺席 split 正式/预备, lateness and 签退, from a roll alone (no names needed).
    应到 = 实到 + 请假 + 缺席; the rate is 实到 ÷ 应到."""
    # The sets are worked out once here (the roll's properties rebuild them on every use), as a
    # year's ledger counts every event of a 基层党委 with hundreds of members each.
    present, leave, exempt = roll.present, roll.approved_leave, roll.exempt
    invited = roll.invited
    expected = {m for m in invited if m not in exempt}
    exempt_invited = invited - expected
    came = {m for m in expected if m in present}
    absent = {m for m in expected if m not in present and m not in leave}
    on_leave = {m for m in expected if m in leave and m not in present}
    full_members = {m for m, standing in roll.members.items() if standing.category == MemberCategory.FULL}

    def full(member_ids: set[int]) -> int:
        return len(member_ids & full_members)

    return SheetCounts(
        expected=len(expected),
        present=len(came),
        absent=len(absent),
        present_full=full(came),
        present_probationary=len(came) - full(came),
        guests=sum(m not in invited for m in present),
        exempt_present=sum(m in exempt_invited for m in present),
        expected_full=full(expected),
        expected_probationary=len(expected) - full(expected),
        absent_full=full(absent),
        absent_probationary=len(absent) - full(absent),
        on_leave=len(on_leave),
        on_leave_full=full(on_leave),
        on_leave_probationary=len(on_leave) - full(on_leave),
        exempt=len(exempt_invited),
        late=sum(present[m].first_tap_at > roll.event.late_after for m in came),
        signed_out=sum(sign_out_of(present[m]) is not None for m in came),
        attendance_rate=round(len(came) / len(expected), 4) if expected else None,
    )


def quorums_of(roll: EventRoll) -> list[Quorum]:
    """The quorum checks that apply to the event's kinds (支部条例 第十一、十二条)."""
    quorums = []
    if EventKind.BRANCH_GENERAL in roll.kinds:
        voters = {
            m
            for m in roll.members
            if roll.members[m].category == MemberCategory.FULL and m not in roll.exempt
        }
        quorums.append(_quorum(EventKind.BRANCH_GENERAL, voters, roll, "有表决权的党员"))
    if EventKind.COMMITTEE in roll.kinds:
        quorums.append(_quorum(EventKind.COMMITTEE, roll.committee_seats, roll, "支委会委员"))
    return quorums


def _quorum(kind: EventKind, basis: set[int], roll: EventRoll, who: str) -> Quorum:
    present = len(basis & set(roll.present))
    required = len(basis) // 2 + 1
    if not basis:
        met = None
        message = "未登记支委会委员，无法判断法定人数" if kind == EventKind.COMMITTEE else "无有表决权的党员"
    elif present >= required:
        met = True
        message = f"应到{who}{len(basis)}人，实到{present}人，超过半数，会议有效"
    else:
        met = False
        message = f"应到{who}{len(basis)}人，实到{present}人，不足法定人数，表决无效"
    return Quorum(kind=kind, basis=len(basis), present=present, required=required, met=met, message=message)


def _moved_in_this_month(session: Session, roll: EventRoll, tz: tzinfo) -> dict[int, datetime]:
    """Members of the roll whose membership began in the event's (local) month by a move from an
    organisation outside the holding ones: member → when (a 转正 in place is not a move)."""
    month = roll.event.start_at.astimezone(tz)
    recent: dict[int, datetime] = {}
    for member_id, standing in roll.members.items():
        since = standing.since.astimezone(tz) if standing.since is not None else None
        if since is not None and (since.year, since.month) == (month.year, month.month):
            recent[member_id] = since
    if not recent:
        return {}
    holders = set().union(*subtrees(session, roll.org_ids).values())
    earlier = session.exec(
        select(MembershipPeriod.member_id, MembershipPeriod.org_id, MembershipPeriod.ended_at).where(
            col(MembershipPeriod.member_id).in_(sorted(recent))
        )
    ).all()
    return {
        member_id: recent[member_id]
        for member_id, org_id, ended_at in earlier
        if ended_at is not None and ended_at == recent[member_id] and org_id not in holders
    }


def _standings(roll: EventRoll, members: dict[int, MemberRow]) -> dict[int, Standing]:
    """Everyone's standing at the event; a guest without a recorded period falls back to today's."""
    found: dict[int, Standing] = dict(roll.members)
    for member_id in roll.present:
        if member_id not in found:
            known = roll.guests.get(member_id)
            member = members[member_id]
            found[member_id] = known or Standing(member.org_id, member.category)
    return found


def _sheet_event(
    session: Session,
    roll: EventRoll,
    org_refs: dict[int, NamedRef],
    members: dict[int, MemberRow],
    tz: tzinfo,
) -> SheetEvent:
    event: Event = roll.event
    venue = session.get(Venue, event.venue_id)
    assert event.id is not None
    assert venue is not None
    assert venue.id is not None

    def person(member_id: int | None) -> NamedRef | None:
        if member_id is None:
            return None
        return NamedRef(id=member_id, name=members[member_id].name)

    return SheetEvent(
        id=event.id,
        title=event.title,
        kind=event.kind,
        kinds=[event.kind, *(kind for kind in roll.kinds if kind != event.kind)],
        organisation=org_refs[event.org_id],
        organisations=[org_refs[org_id] for org_id in roll.org_ids],
        venue=NamedRef(id=venue.id, name=venue.name),
        venue_accepts_uid_only_reads=venue.accept_uid_only_reads,
        start_at=event.start_at.astimezone(tz),
        end_at=event.end_at.astimezone(tz),
        checkin_opens_at=event.checkin_opens_at.astimezone(tz),
        checkin_closes_at=event.checkin_closes_at.astimezone(tz),
        late_after=event.late_after.astimezone(tz),
        chair=person(event.chair_member_id),
        recorder=person(event.recorder_member_id),
        topic=event.topic,
    )
