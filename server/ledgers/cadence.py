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

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import StrEnum

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, exists, func, select

from server.db import in_chunks
from server.ledgers.periods import Period, periods_overlapping
from server.records.attendance import Attendance
from server.records.events import Event, EventKindTag, EventOrganisation
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
    wanted: list[tuple[Organisation, EventKind, Cadence, Period]] = []
    for org in organisations:
        assert org.id is not None
        for kind, cadence in policy.requirements(org.kind, has_committee=org.id in committees):
            for period in periods_overlapping(start, end, cadence, tz):
                if org.since < period.start + (period.end - period.start) / 2:
                    wanted.append((org, kind, cadence, period))
    if not wanted:
        return []
    window_start = min(item[3].start for item in wanted)
    window_end = max(item[3].end for item in wanted)
    events = _events_by_org_and_kind(
        session, [org.id for org in organisations if org.id is not None], window_start, window_end
    )
    checks = []
    for org, kind, cadence, period in wanted:
        assert org.id is not None
        in_period = [
            (event_id, at, held) for event_id, at, held in events[(org.id, kind)] if period.contains(at)
        ]
        # An early sign-in (the window opens before the start) does not make a meeting held: until it
        # starts it is planned, as in the ledger's event counts.
        held = [event_id for event_id, at, was_held in in_period if was_held and at <= now]
        planned = [event_id for event_id, at, _ in in_period if at > now]
        if held:
            status = CadenceStatus.MET
        elif period.start > now:
            status = CadenceStatus.UPCOMING
        elif period.end <= now:
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


def _events_by_org_and_kind(
    session: Session, org_ids: list[int], start: datetime, end: datetime
) -> dict[tuple[int, EventKind], list[tuple[int, datetime, bool]]]:
    """(org, kind) → [(event id, start, held)] for events starting in [start, end)."""
    held = exists().where(col(Attendance.event_id) == col(Event.id))
    found: dict[tuple[int, EventKind], list[tuple[int, datetime, bool]]] = defaultdict(list)
    for chunk in in_chunks(org_ids):
        # Plain SQL rows (five columns is past sqlmodel's typed select overloads).
        rows = (
            session.connection()
            .execute(
                sa_select(
                    col(EventOrganisation.org_id),
                    col(EventKindTag.kind),
                    col(Event.id),
                    col(Event.start_at),
                    held.label("held"),
                )
                .join(Event, col(Event.id) == col(EventOrganisation.event_id))
                .join(EventKindTag, col(EventKindTag.event_id) == col(Event.id))
                .where(
                    col(EventOrganisation.org_id).in_(chunk),
                    col(Event.start_at) >= start,
                    col(Event.start_at) < end,
                )
            )
            .all()
        )
        for org_id, kind, event_id, at, was_held in rows:
            assert event_id is not None
            found[(org_id, kind)].append((event_id, at, bool(was_held)))
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
