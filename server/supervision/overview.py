"""The superior's view (督查督办总览): how the branches below a 党委 stand, family by family.

Read from the stored reminders, so it costs a few grouped queries whatever the size of the
subtree (a district has thousands of branches):

* **per family**, the share of branches without an open warning or alert of that family (a
  notice is advice, not a breach);
* **ranking** of the organisations directly below, by the share of their branches without any
  open warning or alert;
* a **heat map** of branches × months of the year: how many required meetings each branch missed
  in that month (``org_life.cadence_missed``, a quarter's and a year's misses counted in the
  period's last month);
* per branch, its open reminders by family and the worst level, for the drill-down and the XLSX.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from server.caller import Caller
from server.labels import REMINDER_LEVEL_LABELS, RULE_FAMILY_LABELS
from server.orgs.service import require_visible_organisation
from server.orgs.tree import group_branches, subtree_cte
from server.records.orgs import Organisation
from server.records.supervision import Reminder
from server.vocabulary import OrgKind, ReminderLevel, ReminderState, RuleFamily

BRANCH_KINDS = (OrgKind.BRANCH, OrgKind.JOINT_BRANCH, OrgKind.TEMPORARY_BRANCH)
SERIOUS = (ReminderLevel.WARNING, ReminderLevel.ALERT)
LIVE = (ReminderState.OPEN, ReminderState.ACKNOWLEDGED)
LEVEL_RANK = {ReminderLevel.NOTICE: 1, ReminderLevel.WARNING: 2, ReminderLevel.ALERT: 3}
QUARTER_END_MONTH = {"Q1": 3, "Q2": 6, "Q3": 9, "Q4": 12}


@dataclass(frozen=True)
class FamilyCompliance:
    family: RuleFamily
    label: str
    branches: int
    in_breach: int  # branches with an open warning or alert of this family

    @property
    def share(self) -> float:
        return 1.0 if self.branches == 0 else (self.branches - self.in_breach) / self.branches


@dataclass
class BranchStanding:
    org_id: int
    name: str
    unit_id: int  # the organisation directly below the one viewed that holds it (itself if direct)
    open_by_family: Counter[RuleFamily] = field(default_factory=Counter)
    worst: ReminderLevel | None = None
    in_breach: bool = False
    missed_by_month: list[int] = field(default_factory=lambda: [0] * 12)

    @property
    def worst_label(self) -> str:
        return REMINDER_LEVEL_LABELS[self.worst] if self.worst is not None else ""


@dataclass(frozen=True)
class UnitRank:
    org_id: int
    name: str
    branches: int
    compliant: int
    open_alerts: int

    @property
    def share(self) -> float:
        return 1.0 if self.branches == 0 else self.compliant / self.branches


@dataclass(frozen=True)
class SupervisionOverview:
    org_id: int
    name: str
    year: int
    generated_at: datetime
    families: list[FamilyCompliance]
    ranking: list[UnitRank]
    branches: list[BranchStanding]


def supervision_overview(
    session: Session, *, org_id: int, caller: Caller, year: int, now: datetime, tz: tzinfo
) -> SupervisionOverview:
    """The overview of ``org_id``'s subtree for ``year``.

    Raises:
        OrganisationNotFound: not the caller's to see.
    """
    root = require_visible_organisation(session, org_id, caller=caller)
    tree = subtree_cte([org_id])
    connection = session.connection()
    organisations: dict[int, tuple[str, OrgKind, int | None]] = {
        oid or 0: (name, OrgKind(kind), parent_id)
        for oid, name, kind, parent_id in connection.execute(
            sa_select(
                col(Organisation.id),
                col(Organisation.name),
                col(Organisation.kind),
                col(Organisation.parent_id),
            ).where(col(Organisation.id).in_(sa_select(tree.c.org_id)))
        )
    }
    branches = {
        oid: BranchStanding(org_id=oid, name=name, unit_id=_unit_of(oid, org_id, organisations))
        for oid, (name, kind, _parent) in organisations.items()
        if kind in BRANCH_KINDS
    }
    groups = group_branches({oid: (kind, parent) for oid, (_name, kind, parent) in organisations.items()})
    in_subtree = col(Reminder.org_id).in_(sa_select(tree.c.org_id))
    breach_by_family: dict[RuleFamily, set[int]] = defaultdict(set)
    alerts_by_unit: Counter[int] = Counter()
    open_counts = connection.execute(
        sa_select(col(Reminder.org_id), col(Reminder.family), col(Reminder.level), func.count())
        .where(in_subtree, col(Reminder.state).in_(LIVE))
        .group_by(col(Reminder.org_id), col(Reminder.family), col(Reminder.level))
    )
    for reminder_org, family_value, level_value, count in open_counts:
        family, level = RuleFamily(family_value), ReminderLevel(level_value)
        branch = branches.get(groups.get(reminder_org, reminder_org))
        if branch is None:
            continue  # a reminder of a committee itself, not of a branch or its 党小组
        branch.open_by_family[family] += count
        if branch.worst is None or LEVEL_RANK[level] > LEVEL_RANK[branch.worst]:
            branch.worst = level
        if level in SERIOUS:
            branch.in_breach = True
            breach_by_family[family].add(branch.org_id)
        if level == ReminderLevel.ALERT:
            alerts_by_unit[branch.unit_id] += count
    missed = connection.execute(
        sa_select(col(Reminder.org_id), col(Reminder.period), func.count())
        .where(
            in_subtree, col(Reminder.rule) == "org_life.cadence_missed", col(Reminder.period).like(f"{year}%")
        )
        .group_by(col(Reminder.org_id), col(Reminder.period))
    )
    for reminder_org, period, count in missed:
        month = _period_month(period)
        branch = branches.get(reminder_org)
        if branch is not None and month is not None:
            branch.missed_by_month[month - 1] += count
    families = [
        FamilyCompliance(
            family=f, label=RULE_FAMILY_LABELS[f], branches=len(branches), in_breach=len(breach_by_family[f])
        )
        for f in RuleFamily
    ]
    units: dict[int, list[BranchStanding]] = defaultdict(list)
    for branch in branches.values():
        units[branch.unit_id].append(branch)
    ranking = sorted(
        (
            UnitRank(
                org_id=unit_id,
                name=organisations[unit_id][0],
                branches=len(members),
                compliant=sum(not b.in_breach for b in members),
                open_alerts=alerts_by_unit[unit_id],
            )
            for unit_id, members in units.items()
        ),
        key=lambda rank: (-rank.share, rank.open_alerts, rank.name),
    )
    standings = sorted(
        branches.values(),
        key=lambda b: (
            -LEVEL_RANK.get(b.worst, 0) if b.worst else 0,
            -sum(b.open_by_family.values()),
            b.name,
        ),
    )
    return SupervisionOverview(
        org_id=org_id,
        name=root.name,
        year=year,
        generated_at=now.astimezone(tz),
        families=families,
        ranking=ranking,
        branches=standings,
    )


def _unit_of(org_id: int, root_id: int, organisations: dict[int, tuple[str, OrgKind, int | None]]) -> int:
    """The organisation directly below ``root_id`` on the way up from ``org_id`` (or ``org_id``)."""
    current = org_id
    for _ in range(64):
        parent = organisations[current][2]
        if parent is None or parent == root_id or parent not in organisations:
            return current
        current = parent
    return current


def _period_month(period: str) -> int | None:
    """The month a period key ends in: ``2026-11`` → 11, ``2026-Q2`` → 6, ``2026`` → 12."""
    _year, _, rest = period.partition("-")
    if not rest:
        return 12
    if rest in QUARTER_END_MONTH:
        return QUARTER_END_MONTH[rest]
    return int(rest) if rest.isdigit() and 1 <= int(rest) <= 12 else None


XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def overview_xlsx(overview: SupervisionOverview) -> tuple[str, bytes]:
    """The overview as a workbook: one sheet per view (families, ranking, branches × months)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook()
    families = workbook.active
    families.title = "分类达标情况"
    families.append(["类别", "支部数", "有警示或严重问题的支部", "达标率"])
    for family in overview.families:
        families.append([family.label, family.branches, family.in_breach, f"{family.share:.1%}"])
    ranking = workbook.create_sheet("下级排名")
    ranking.append(["名次", "党组织", "支部数", "达标支部", "达标率", "严重问题"])
    for place, unit in enumerate(overview.ranking, start=1):
        ranking.append(
            [place, unit.name, unit.branches, unit.compliant, f"{unit.share:.1%}", unit.open_alerts]
        )
    branches = workbook.create_sheet("支部明细")
    labels = [RULE_FAMILY_LABELS[f] for f in RuleFamily]
    months = [f"{m}月未开会" for m in range(1, 13)]
    branches.append(["党支部", "最重程度", *labels, *months])
    for branch in overview.branches:
        branches.append(
            [
                branch.name,
                branch.worst_label,
                *(branch.open_by_family[f] for f in RuleFamily),
                *branch.missed_by_month,
            ]
        )
    for sheet in workbook.worksheets:
        for cell in sheet[1]:
            cell.font = Font(bold=True)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return f"督查督办总览-{overview.name}-{overview.year}年.xlsx", buffer.getvalue()
