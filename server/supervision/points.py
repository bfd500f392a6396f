"""积分 and 星级: a member's points for a year and an organisation's stars (docs/supervision.md).

Points (:class:`~server.config.PointsRules`, configurable per deployment) come from what the
records already hold: each meeting attended (a 组织生活会 or 民主评议 more, an activity outside
三会一课 less), each meeting chaired or minuted (主持人/记录人), each month's dues settled.
A 补签 (manual presence) counts like a tap: it is a recorded presence.

An organisation's score (0–100) weighs three shares for the year so far: the 三会一课 it held of
those it owed (closed periods only), its members who took part at least once, and its members
with no dues arrears of three months or more; the thresholds turn the score into 1–5 stars.
Everything is computed on demand from grouped queries over the subtree asked for.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from sqlalchemy import and_, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from server.caller import Caller
from server.config import PointsRules
from server.dates import add_months, month_key
from server.errors import MemberNotFound
from server.ledgers.cadence import BRANCH_KINDS, CadencePolicy, CadenceStatus, check_cadence
from server.orgs.service import require_visible_organisation
from server.orgs.tree import group_branches, subtree_cte
from server.records.attendance import Attendance
from server.records.dues import DuesMonth
from server.records.events import Event
from server.records.orgs import Member, Organisation
from server.vocabulary import EventKind, MemberStatus, OrgKind

CORE_KINDS = frozenset(
    {EventKind.BRANCH_GENERAL, EventKind.COMMITTEE, EventKind.GROUP, EventKind.LECTURE, EventKind.THEME_DAY}
)
REVIEW_KINDS = frozenset({EventKind.REVIEW_MEETING, EventKind.APPRAISAL})
ARREARS_MONTHS = 3


@dataclass
class MemberPoints:
    member_id: int
    name: str
    org_id: int
    core_meetings: int = 0
    review_meetings: int = 0
    other_activities: int = 0
    duties: int = 0
    dues_months: int = 0
    points: int = 0


@dataclass(frozen=True)
class OrgStars:
    org_id: int
    name: str
    cadence_share: float
    participation_share: float
    dues_share: float
    score: float
    stars: int


@dataclass(frozen=True)
class PointsReport:
    org_id: int
    name: str
    year: int
    members: list[MemberPoints]
    organisations: list[OrgStars] = field(default_factory=list)


def points_report(
    session: Session,
    *,
    org_id: int,
    caller: Caller,
    year: int,
    now: datetime,
    tz: tzinfo,
    rules: PointsRules,
    policy: CadencePolicy,
) -> PointsReport:
    """Members' points and the stars of every branch in ``org_id``'s subtree, for ``year``.

    Raises:
        OrganisationNotFound: not the caller's to see.
    """
    root = require_visible_organisation(session, org_id, caller=caller)
    tree = subtree_cte([org_id])
    in_tree = col(Member.org_id).in_(sa_select(tree.c.org_id))
    start, end = _year_bounds(year, tz)
    members: dict[int, MemberPoints] = {
        member_id or 0: MemberPoints(member_id=member_id or 0, name=name, org_id=member_org)
        for member_id, name, member_org in session.connection().execute(
            sa_select(col(Member.id), col(Member.name), col(Member.org_id))
            .where(in_tree, col(Member.status) == MemberStatus.ACTIVE)
            .order_by(col(Member.org_id), col(Member.id))
        )
    }
    _count_points(session, members, in_tree, start=start, end=min(end, now), year=year, rules=rules)
    branches = list(
        session.exec(
            sa_select(Organisation).where(  # type: ignore[call-overload]
                col(Organisation.id).in_(sa_select(tree.c.org_id)), col(Organisation.kind).in_(BRANCH_KINDS)
            )
        ).scalars()
    )
    groups = group_branches(
        {
            oid or 0: (OrgKind(kind), parent)
            for oid, kind, parent in session.connection().execute(
                sa_select(col(Organisation.id), col(Organisation.kind), col(Organisation.parent_id)).where(
                    col(Organisation.id).in_(sa_select(tree.c.org_id))
                )
            )
        }
    )
    stars = _stars(
        session,
        branches,
        groups,
        members,
        start=start,
        end=min(end, now),
        now=now,
        tz=tz,
        rules=rules,
        policy=policy,
    )
    ranked = sorted(members.values(), key=lambda m: (-m.points, m.org_id, m.member_id))
    return PointsReport(org_id=org_id, name=root.name, year=year, members=ranked, organisations=stars)


def member_points(
    session: Session,
    *,
    member_id: int,
    caller: Caller,
    year: int,
    now: datetime,
    tz: tzinfo,
    rules: PointsRules,
) -> MemberPoints:
    """One member's points for ``year`` (their history page).

    Raises:
        MemberNotFound: no such member, or not the caller's to see.
    """
    member = session.get(Member, member_id)
    if member is None or member.id is None or not caller.sees_org(member.org_id):
        raise MemberNotFound()
    start, end = _year_bounds(year, tz)
    found = {member.id: MemberPoints(member_id=member.id, name=member.name, org_id=member.org_id)}
    _count_points(
        session, found, col(Member.id) == member.id, start=start, end=min(end, now), year=year, rules=rules
    )
    return found[member.id]


def _count_points(
    session: Session,
    members: dict[int, MemberPoints],
    who: object,
    *,
    start: datetime,
    end: datetime,
    year: int,
    rules: PointsRules,
) -> None:
    connection = session.connection()
    attended = connection.execute(
        sa_select(col(Attendance.member_id), col(Event.kind), func.count())
        .join(Event, col(Event.id) == col(Attendance.event_id))
        .join(Member, col(Member.id) == col(Attendance.member_id))
        .where(who, col(Event.start_at) >= start, col(Event.start_at) < end)  # type: ignore[arg-type]
        .group_by(col(Attendance.member_id), col(Event.kind))
    )
    for member_id, kind, count in attended:
        member = members.get(member_id)
        if member is None:
            continue
        if kind in CORE_KINDS:
            member.core_meetings += count
        elif kind in REVIEW_KINDS:
            member.review_meetings += count
        else:
            member.other_activities += count
    duties: Counter[int] = Counter()
    for chair, recorder in connection.execute(
        sa_select(col(Event.chair_member_id), col(Event.recorder_member_id)).where(
            col(Event.start_at) >= start,
            col(Event.start_at) < end,
            or_(col(Event.chair_member_id).is_not(None), col(Event.recorder_member_id).is_not(None)),
        )
    ):
        for person in (chair, recorder):
            if person is not None:
                duties[person] += 1
    settled = connection.execute(
        sa_select(col(DuesMonth.member_id), func.count())
        .join(Member, col(Member.id) == col(DuesMonth.member_id))
        .where(who, col(DuesMonth.month).like(f"{year}-%"), _settled())  # type: ignore[arg-type]
        .group_by(col(DuesMonth.member_id))
    )
    for member_id, count in settled:
        if member_id in members:
            members[member_id].dues_months = count
    for member in members.values():
        member.duties = duties[member.member_id]
        member.points = (
            member.core_meetings * rules.core_meeting
            + member.review_meetings * rules.review_meeting
            + member.other_activities * rules.other_activity
            + member.duties * rules.duty
            + member.dues_months * rules.dues_month
        )


def _settled() -> object:
    """A month is settled when exempt (应交 0) or paid at least the standard (or paid, standard unknown)."""
    return or_(
        col(DuesMonth.standard_fen) == 0,
        and_(
            col(DuesMonth.paid_fen) > 0,
            or_(
                col(DuesMonth.standard_fen).is_(None), col(DuesMonth.paid_fen) >= col(DuesMonth.standard_fen)
            ),
        ),
    )


def _stars(
    session: Session,
    branches: list[Organisation],
    groups: dict[int, int],
    members: dict[int, MemberPoints],
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    tz: tzinfo,
    rules: PointsRules,
    policy: CadencePolicy,
) -> list[OrgStars]:
    if not branches:
        return []
    met: Counter[int] = Counter()
    owed: Counter[int] = Counter()
    for check in check_cadence(session, branches, start=start, end=end, now=now, tz=tz, policy=policy):
        if check.status in (CadenceStatus.MET, CadenceStatus.MISSED):  # closed periods only
            owed[check.org_id] += 1
            met[check.org_id] += check.status == CadenceStatus.MET
    branch_ids = {b.id for b in branches}
    per_branch: dict[int, list[MemberPoints]] = {}
    for member in members.values():
        holder = groups.get(member.org_id, member.org_id)  # a 党小组's members count for its branch
        if holder in branch_ids:
            per_branch.setdefault(holder, []).append(member)
    in_arrears = _members_in_arrears(session, [m.member_id for m in members.values()], now=now, tz=tz)
    thresholds = rules.star_thresholds
    weights = rules.cadence_weight + rules.participation_weight + rules.dues_weight or 1
    found: list[OrgStars] = []
    for branch in branches:
        assert branch.id is not None
        people = per_branch.get(branch.id, [])
        cadence = met[branch.id] / owed[branch.id] if owed[branch.id] else 1.0
        took_part = (
            sum(1 for m in people if m.core_meetings + m.review_meetings + m.other_activities) / len(people)
            if people
            else 0.0
        )
        dues = sum(1 for m in people if m.member_id not in in_arrears) / len(people) if people else 1.0
        score = (
            100
            * (
                rules.cadence_weight * cadence
                + rules.participation_weight * took_part
                + rules.dues_weight * dues
            )
            / weights
        )
        stars = 1 + sum(score >= threshold for threshold in thresholds)
        found.append(
            OrgStars(
                org_id=branch.id,
                name=branch.name,
                cadence_share=cadence,
                participation_share=took_part,
                dues_share=dues,
                score=round(score, 1),
                stars=stars,
            )
        )
    found.sort(key=lambda o: (-o.score, o.name))
    return found


def _members_in_arrears(session: Session, member_ids: list[int], *, now: datetime, tz: tzinfo) -> set[int]:
    """Members whose last :data:`ARREARS_MONTHS` closed months are all unsettled (with records)."""
    today = now.astimezone(tz).date()
    months = [month_key(add_months(today, -back)) for back in range(1, ARREARS_MONTHS + 1)]
    unsettled: Counter[int] = Counter()
    for (member_id,) in session.connection().execute(
        sa_select(col(DuesMonth.member_id)).where(
            col(DuesMonth.month).in_(months),
            ~_settled(),  # type: ignore[operator]
        )
    ):
        unsettled[member_id] += 1
    wanted = set(member_ids)
    return {m for m, count in unsettled.items() if count >= ARREARS_MONTHS and m in wanted}


def _year_bounds(year: int, tz: tzinfo) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=tz), datetime(year + 1, 1, 1, tzinfo=tz)
