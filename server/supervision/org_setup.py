"""组织设置: whether each 党支部 is set up as the 支部工作条例 asks (docs/supervision.md §1).

For every 党支部 and 联合党支部 (a 临时党支部 is set up for a task and exempt), as of ``now``:

* ``org_setup.too_few_full`` (warning): fewer than 3 正式党员 — a branch needs three, else it
  should form a 联合党支部 with neighbouring units (条例 第五条、第六条).
* ``org_setup.committee_missing`` (warning): 7 or more 正式党员 and fewer than 3 committee seats
  held — such a branch elects a 支部委员会 (第十八条).
* ``org_setup.too_large`` (notice): more than 50 members (正式 and 预备) — a branch normally has no
  more than 50 (第五条); consider dividing it.
* ``org_setup.no_secretary`` (warning): members but no 书记 seated.
* ``org_setup.committee_term`` (notice from 3 months before the term ends, warning once ended):
  the committee's term of 3 years (第十九条; 5 in villages and communities, not told apart here)
  counts from its election, taken as the earliest start among the seats held now (a 换届 ends
  the old seats and starts new ones; a by-election adds a later seat and keeps the term). Its
  period is the term's end, so the next term's reminder is a new one.

Everything is read with three queries, whatever the number of organisations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from datetime import date, datetime, tzinfo

from sqlmodel import Session, col, func, or_, select

from server.dates import add_months, date_text
from server.ledgers.cadence import COMMITTEE_MIN_FULL_MEMBERS, COMMITTEE_MIN_SEATS
from server.orgs.tree import group_branches
from server.records.orgs import CommitteeSeat, Member, Organisation
from server.supervision.findings import Finding, org_subject
from server.vocabulary import CommitteeRole, MemberCategory, MemberStatus, OrgKind, ReminderLevel, RuleFamily

SETUP_KINDS = (OrgKind.BRANCH, OrgKind.JOINT_BRANCH)
MIN_FULL_MEMBERS = 3
MAX_MEMBERS = 50
TERM_YEARS = 3
TERM_NOTICE_MONTHS = 3


def find_org_setup(
    session: Session, *, now: datetime, tz: tzinfo, org_ids: Collection[int] | None = None
) -> list[Finding]:
    """The 组织设置 findings for every branch (or those among ``org_ids``) as of ``now``.

    A 党小组's members count for the branch above it. The counts are read for the whole city in
    one grouped query each (cheaper than narrowing them, at any scale).
    """
    organisations = {
        org_id: (name, OrgKind(kind), parent_id)
        for org_id, name, kind, parent_id in session.exec(
            select(Organisation.id, Organisation.name, Organisation.kind, Organisation.parent_id)
        )
        if org_id is not None
    }
    branches = {
        org_id: name
        for org_id, (name, kind, _parent) in organisations.items()
        if kind in SETUP_KINDS and (org_ids is None or org_id in org_ids)
    }
    if not branches:
        return []
    members = _member_counts(
        session, group_branches({oid: (kind, parent) for oid, (_name, kind, parent) in organisations.items()})
    )
    seats = _current_seats(session, now=now)
    today = now.astimezone(tz).date()
    findings: list[Finding] = []
    for org_id, name in sorted(branches.items()):
        full = members[(org_id, MemberCategory.FULL)]
        everyone = full + members[(org_id, MemberCategory.PROBATIONARY)]
        findings.extend(
            _branch_findings(
                org_id, name, full=full, everyone=everyone, seats=seats.get(org_id, []), today=today, tz=tz
            )
        )
    return findings


def _branch_findings(
    org_id: int,
    name: str,
    *,
    full: int,
    everyone: int,
    seats: list[tuple[CommitteeRole, datetime]],
    today: date,
    tz: tzinfo,
) -> list[Finding]:
    subject = org_subject(org_id)

    def finding(
        rule: str, level: ReminderLevel, message: str, period: str = "", due: date | None = None
    ) -> Finding:
        return Finding(
            rule=f"org_setup.{rule}",
            family=RuleFamily.ORG_SETUP,
            level=level,
            org_id=org_id,
            subject=subject,
            period=period,
            message=message,
            due_on=due,
        )

    found: list[Finding] = []
    if everyone > 0 and full < MIN_FULL_MEMBERS:
        found.append(
            finding(
                "too_few_full",
                ReminderLevel.WARNING,
                f"{name}只有{full}名正式党员，不足3人。按《中国共产党支部工作条例（试行）》，"
                "正式党员不足3人的应与邻近单位成立联合党支部，请上级党组织研究调整。",
            )
        )
    if full >= COMMITTEE_MIN_FULL_MEMBERS and len(seats) < COMMITTEE_MIN_SEATS:
        found.append(
            finding(
                "committee_missing",
                ReminderLevel.WARNING,
                f"{name}有{full}名正式党员，应设立支部委员会（正式党员7人以上的党支部设支委会），"
                f"目前只有{len(seats)}名委员在任，请按程序选举产生支部委员会。",
            )
        )
    if everyone > MAX_MEMBERS:
        found.append(
            finding(
                "too_large",
                ReminderLevel.NOTICE,
                f"{name}共有党员{everyone}名，超过一般不超过50人的要求，请研究是否分设党支部。",
            )
        )
    if everyone > 0 and not any(role == CommitteeRole.SECRETARY for role, _ in seats):
        found.append(
            finding(
                "no_secretary",
                ReminderLevel.WARNING,
                f"{name}没有在任的支部书记，请尽快按程序选举或由上级党组织指定。",
            )
        )
    if seats:
        elected = min(started for _, started in seats).astimezone(tz).date()
        term_ends = add_months(elected, 12 * TERM_YEARS)
        if today >= term_ends:
            found.append(
                finding(
                    "committee_term",
                    ReminderLevel.WARNING,
                    f"{name}支部委员会任期已于{date_text(term_ends)}届满，请及时按程序换届选举。",
                    period=term_ends.isoformat(),
                    due=term_ends,
                )
            )
        elif today >= add_months(term_ends, -TERM_NOTICE_MONTHS):
            found.append(
                finding(
                    "committee_term",
                    ReminderLevel.NOTICE,
                    f"{name}支部委员会任期将于{date_text(term_ends)}届满，请提前做好换届准备。",
                    period=term_ends.isoformat(),
                    due=term_ends,
                )
            )
    return found


def _member_counts(session: Session, branch_of: dict[int, int]) -> Counter[tuple[int, MemberCategory]]:
    query = (
        select(Member.org_id, Member.category, func.count())
        .where(Member.status == MemberStatus.ACTIVE)
        .group_by(col(Member.org_id), col(Member.category))
    )
    counts: Counter[tuple[int, MemberCategory]] = Counter()
    for org_id, category, count in session.exec(query):
        counts[(branch_of.get(org_id, org_id), MemberCategory(category))] += count
    return counts


def _current_seats(session: Session, *, now: datetime) -> dict[int, list[tuple[CommitteeRole, datetime]]]:
    query = select(CommitteeSeat.org_id, CommitteeSeat.role, CommitteeSeat.started_at).where(
        col(CommitteeSeat.started_at) <= now,
        or_(col(CommitteeSeat.ended_at).is_(None), col(CommitteeSeat.ended_at) > now),
    )
    seats: dict[int, list[tuple[CommitteeRole, datetime]]] = {}
    for org_id, role, started_at in session.exec(query):
        seats.setdefault(org_id, []).append((CommitteeRole(role), started_at))
    return seats
