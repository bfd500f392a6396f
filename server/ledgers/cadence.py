"""Cadence compliance (三会一课 frequencies): which meetings each organisation must hold in which
periods, and whether it did.

Rules (支部工作条例 第十一至十七条; docs/domain-rules.md §1.1, §1.2):

==================  ===========================  ==========================================
kind                cadence                      applies to
==================  ===========================  ==========================================
支部党员大会         quarterly                    支部 (branch, joint, temporary)
支委会              monthly                      支部 with a committee: 3 or more seats, or
                                                 7 or more full members (第十八条)
主题党日            monthly                      支部
党课                quarterly (configurable:     支部
                    ``ECARD_LECTURE_CADENCE``)
组织生活会          yearly                       支部
党小组会            monthly                      党小组
==================  ===========================  ==========================================

A period is *met* by an event held by the organisation (host or joint partner) that counts for the
kind, starts in the period and has someone present (a tap or a recorded presence: an event nobody
attended is not evidence of a meeting). A period is required only if the organisation existed
before its middle: since its founding date when one was given (``org add --founded``: a branch
entered after the fact owes the meetings of its real life), else since it was recorded.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import NamedTuple

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, exists, func, select

from server.ledgers.periods import Period, periods_overlapping
from server.records.attendance import Attendance
from server.records.events import Event, EventKindTag, EventOrganisation
from server.records.idlists import one_of
from server.records.orgs import CommitteeSeat, Member, Organisation
from server.vocabulary import Cadence, EventKind, MemberCategory, MemberStatus, OrgKind

BRANCH_KINDS = frozenset({OrgKind.BRANCH, OrgKind.JOINT_BRANCH, OrgKind.TEMPORARY_BRANCH})
COMMITTEE_MIN_SEATS = 3
COMMITTEE_MIN_FULL_MEMBERS = 7  # 支部工作条例 第十八条: 正式党员7人以上的党支部设立支部委员会


class CadenceStatus(StrEnum):
    MET = "met"  # held
    SCHEDULED = "scheduled"  # not yet held, but an event is planned later in the period
    DUE = "due"  # the period is running and nothing is held or planned yet
    MISSED = "missed"  # the period ended without one
    UPCOMING = "upcoming"  # the period has not started


CADENCE_STATUS_LABELS: dict[CadenceStatus, str] = {
    CadenceStatus.MET: "已召开",
    CadenceStatus.SCHEDULED: "已安排",
    CadenceStatus.DUE: "待召开",
    CadenceStatus.MISSED: "未召开",
    CadenceStatus.UPCOMING: "未开始",
}


@dataclass(frozen=True)
class CadencePolicy:
    lecture: Cadence = Cadence.QUARTERLY

    def requirements(self, kind: OrgKind, *, has_committee: bool) -> list[tuple[EventKind, Cadence]]:
        if kind == OrgKind.PARTY_GROUP:
            return [(EventKind.GROUP, Cadence.MONTHLY)]
        if kind not in BRANCH_KINDS:
            return []
        required = [(EventKind.BRANCH_GENERAL, Cadence.QUARTERLY)]
        if has_committee:
            required.append((EventKind.COMMITTEE, Cadence.MONTHLY))
        required += [
            (EventKind.THEME_DAY, Cadence.MONTHLY),
            (EventKind.LECTURE, self.lecture),
            (EventKind.REVIEW_MEETING, Cadence.YEARLY),
            (EventKind.APPRAISAL, Cadence.YEARLY),
        ]
        return required


@dataclass
class CadenceCheck:
    org_id: int
    kind: EventKind
    cadence: Cadence
    period: Period
    status: CadenceStatus
    held_event_ids: list[int] = field(default_factory=list)
    planned_event_ids: list[int] = field(default_factory=list)


def check_cadence(
    session: Session,
    organisations: Sequence[Organisation],
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    tz: tzinfo,
    policy: CadencePolicy,
) -> list[CadenceCheck]:
    """Every required (organisation, kind, period) whose period overlaps [start, end), with its status.

    A period is judged on its whole length even when it sticks out of [start, end): a quarter's
    党员大会 may fall in the month after the one a monthly ledger shows.
    """
    committees = _has_committee(session, organisations, at=min(now, end))
    # The periods depend only on the cadence; a 基层党委 subtree asks for them hundreds of times.
    # Their bounds are kept in UTC too: rows come back in UTC, and comparing datetimes of one
    # tzinfo skips the UTC offset lookups that dominated this loop.
    periods_of: dict[Cadence, list[_Bounds]] = {}
    wanted: list[tuple[Organisation, EventKind, Cadence, _Bounds]] = []
    for org in organisations:
        assert org.id is not None
        since = org.since.astimezone(UTC)
        for kind, cadence in policy.requirements(org.kind, has_committee=org.id in committees):
            if cadence not in periods_of:
                periods_of[cadence] = [_bounds(p) for p in periods_overlapping(start, end, cadence, tz)]
            for bounds in periods_of[cadence]:
                if since < bounds.middle:
                    wanted.append((org, kind, cadence, bounds))
    if not wanted:
        return []
    window_start = min(item[3].start for item in wanted)
    window_end = max(item[3].end for item in wanted)
    events = _events_by_org_and_kind(
        session, [org.id for org in organisations if org.id is not None], window_start, window_end
    )
    starts = {key: [at for _, at, _ in listed] for key, listed in events.items()}
    now_utc = now.astimezone(UTC)
    checks = []
    for org, kind, cadence, bounds in wanted:
        assert org.id is not None
        period = bounds.period
        # Each list is in order of start: the period's events are one slice of it.
        key = (org.id, kind)
        listed = events.get(key, [])
        key_starts = starts.get(key, [])
        in_period = listed[bisect_left(key_starts, bounds.start) : bisect_left(key_starts, bounds.end)]
        held = [event_id for event_id, at, was_held in in_period if was_held and at <= now_utc]
        planned = [event_id for event_id, at, _ in in_period if at > now_utc]
        if held:
            status = CadenceStatus.MET
        elif bounds.start > now_utc:
            status = CadenceStatus.UPCOMING
        elif bounds.end <= now_utc:
            status = CadenceStatus.MISSED
        elif planned:
            status = CadenceStatus.SCHEDULED
        else:
            status = CadenceStatus.DUE
        checks.append(
            CadenceCheck(
                org_id=org.id,
                kind=kind,
                cadence=cadence,
                period=period,
                status=status,
                held_event_ids=held,
                planned_event_ids=planned,
            )
        )
    return checks


class _Bounds(NamedTuple):
    """A period with its start, end and middle in UTC."""

    period: Period
    start: datetime
    end: datetime
    middle: datetime


def _bounds(period: Period) -> _Bounds:
    # The middle in local wall-clock time, as a secretary reads the period, then in UTC.
    middle = period.start + (period.end - period.start) / 2
    return _Bounds(period, period.start.astimezone(UTC), period.end.astimezone(UTC), middle.astimezone(UTC))


def _events_by_org_and_kind(
    session: Session, org_ids: list[int], start: datetime, end: datetime
) -> dict[tuple[int, EventKind], list[tuple[int, datetime, bool]]]:
    """(org, kind) → [(event id, start, held)] for events starting in [start, end), by start."""
    held = exists().where(col(Attendance.event_id) == col(Event.id))
    found: dict[tuple[int, EventKind], list[tuple[int, datetime, bool]]] = defaultdict(list)
    for condition in one_of(session, col(EventOrganisation.org_id), org_ids):
        # The organisations' events, then their kinds by event id. Joined with event_kind in one
        # statement, PostgreSQL misjudged how few events a 基层党委 subtree holds and hashed the
        # whole event_kind table (city scale: ~150 ms of a ~200 ms reminders call).
        events = (
            session.connection()
            .execute(
                sa_select(
                    col(EventOrganisation.org_id), col(Event.id), col(Event.start_at), held.label("held")
                )
                .join(Event, col(Event.id) == col(EventOrganisation.event_id))
                .where(condition, col(Event.start_at) >= start, col(Event.start_at) < end)
            )
            .all()
        )
        kinds: dict[int, list[EventKind]] = defaultdict(list)
        for kinds_condition in one_of(session, col(EventKindTag.event_id), {row[1] for row in events}):
            for tagged_id, kind in (
                session.connection()
                .execute(sa_select(col(EventKindTag.event_id), col(EventKindTag.kind)).where(kinds_condition))
                .all()
            ):
                kinds[tagged_id].append(kind)
        for org_id, event_id, at, was_held in events:
            assert event_id is not None
            for kind in kinds[event_id]:
                found[(org_id, kind)].append((event_id, at, bool(was_held)))
    for listed in found.values():
        listed.sort(key=lambda item: (item[1], item[0]))
    return found


def _has_committee(session: Session, organisations: Sequence[Organisation], *, at: datetime) -> set[int]:
    """Branches that have a committee at ``at``: enough seats, or enough full members to need one."""
    branch_ids = [org.id for org in organisations if org.kind in BRANCH_KINDS and org.id is not None]
    if not branch_ids:
        return set()
    found: set[int] = set()
    seat_counts = session.exec(
        select(CommitteeSeat.org_id, func.count())
        .where(
            col(CommitteeSeat.org_id).in_(branch_ids),
            col(CommitteeSeat.started_at) <= at,
            (col(CommitteeSeat.ended_at).is_(None)) | (col(CommitteeSeat.ended_at) > at),
        )
        .group_by(col(CommitteeSeat.org_id))
    ).all()
    found |= {org_id for org_id, seats in seat_counts if seats >= COMMITTEE_MIN_SEATS}
    # A branch's members include its party groups' members (one level down).
    groups = session.exec(
        select(Organisation.id, Organisation.parent_id).where(
            col(Organisation.parent_id).in_(branch_ids), Organisation.kind == OrgKind.PARTY_GROUP
        )
    ).all()
    branch_of = {org_id: org_id for org_id in branch_ids}
    branch_of |= {
        group_id: parent_id
        for group_id, parent_id in groups
        if group_id is not None and parent_id is not None
    }
    full_counts = session.exec(
        select(Member.org_id, func.count())
        .where(
            col(Member.org_id).in_(list(branch_of)),
            Member.status == MemberStatus.ACTIVE,
            Member.category == MemberCategory.FULL,
        )
        .group_by(col(Member.org_id))
    ).all()
    totals: dict[int, int] = defaultdict(int)
    for org_id, count in full_counts:
        totals[branch_of[org_id]] += count
    found |= {org_id for org_id, count in totals.items() if count >= COMMITTEE_MIN_FULL_MEMBERS}
    return found
