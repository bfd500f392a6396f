"""Reminders for an organisation's subtree (docs/domain-rules.md §4), computed on demand with set-based
queries; nothing is stored and nothing is changed.

* Cadence gaps: for every organisation below (and including) the one asked about, each required
  meeting (``server.ledgers.cadence``) whose period ends within :data:`DUE_SOON` without it being
  held or planned (``cadence_due_soon``, notice), or whose period ended in the last
  :data:`LOOKBACK_MONTHS` months without it (``cadence_missed``, warning).
* The six-month rule (党章 第九条): active members whose last presence at any event (as a guest
  too) — or, if none, the start of their organisational life in the system
  (``Member.joined_org_at``: a move between organisations keeps it, a transfer in from outside
  sets it to the letter's date) — is 3 (notice), 5 (warning) or 6 (alert) or more calendar
  months ago. Approved leave is a reason but not participation, so it does not stop the clock;
  a current exemption is shown as ``excused``. Whether a member is regarded as having left the
  Party is for the 支部大会 to decide and the level above to approve: the system only warns.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, or_, select

from server.attendance.schemas import NamedRef
from server.caller import Caller
from server.dates import date_text
from server.labels import EVENT_KIND_LABELS, EXEMPTION_LABELS, REMINDER_LEVEL_LABELS
from server.ledgers.cadence import CadencePolicy, CadenceStatus, check_cadence
from server.ledgers.periods import months_before, months_between
from server.orgs.service import require_visible_organisation
from server.orgs.tree import subtree_cte
from server.records.attendance import Attendance
from server.records.idlists import one_of
from server.records.orgs import Member, MemberExemption, Organisation
from server.reminders.schemas import CadenceReminder, InactivityReminder, ReminderCounts, ReminderReport
from server.vocabulary import Cadence, MemberStatus, ReminderLevel

DUE_SOON: dict[Cadence, timedelta] = {
    Cadence.MONTHLY: timedelta(days=7),
    Cadence.QUARTERLY: timedelta(days=15),
    Cadence.YEARLY: timedelta(days=30),
}
LOOKBACK_MONTHS = 12
ALERT_NOTE = (
    "。按党章第九条，请支部核实情况；是否按自行脱党处理须经支部大会讨论决定并报上级批准，系统不作任何处理"
)
INACTIVITY_LEVELS: tuple[tuple[int, ReminderLevel], ...] = (
    (6, ReminderLevel.ALERT),
    (5, ReminderLevel.WARNING),
    (3, ReminderLevel.NOTICE),
)


def build_reminders(
    session: Session,
    *,
    org_id: int,
    caller: Caller,
    now: datetime,
    tz: tzinfo,
    policy: CadencePolicy,
) -> ReminderReport:
    """Reminders for ``org_id`` and everything below it, as of ``now``.

    Raises:
        OrganisationNotFound: no such organisation, or outside the caller's scope.
    """
    root = require_visible_organisation(session, org_id, caller=caller)
    tree = subtree_cte([org_id])
    organisations = list(
        session.exec(select(Organisation).where(col(Organisation.id).in_(select(tree.c.org_id)))).all()
    )
    names = {org.id: org.name for org in organisations if org.id is not None}
    cadence = _cadence_reminders(session, organisations, names, now=now, tz=tz, policy=policy)
    inactivity = _inactivity_reminders(session, org_id, names, now=now, tz=tz)
    levels = [r.level for r in cadence] + [r.level for r in inactivity]
    return ReminderReport(
        organisation=NamedRef(id=org_id, name=root.name),
        generated_at=now.astimezone(tz),
        cadence=cadence,
        inactivity=inactivity,
        counts=ReminderCounts(
            notice=levels.count(ReminderLevel.NOTICE),
            warning=levels.count(ReminderLevel.WARNING),
            alert=levels.count(ReminderLevel.ALERT),
        ),
    )


def _cadence_reminders(
    session: Session,
    organisations: list[Organisation],
    names: dict[int, str],
    *,
    now: datetime,
    tz: tzinfo,
    policy: CadencePolicy,
) -> list[CadenceReminder]:
    start = months_before(now, LOOKBACK_MONTHS, tz)
    checks = check_cadence(session, organisations, start=start, end=now, now=now, tz=tz, policy=policy)
    reminders = []
    for check in checks:
        period = check.period
        kind_label = EVENT_KIND_LABELS[check.kind]
        org_name = names[check.org_id]
        if check.status == CadenceStatus.MISSED and period.end > start:
            code, level = "cadence_missed", ReminderLevel.WARNING
            message = f"{org_name}{period.label}未召开{kind_label}"
        elif check.status == CadenceStatus.DUE and period.end - now <= DUE_SOON[check.cadence]:
            days = max((period.end - now).days, 0)
            code, level = "cadence_due_soon", ReminderLevel.NOTICE
            message = f"{org_name}{period.label}尚未召开{kind_label}，距期末还有{days}天"
        else:
            continue
        reminders.append(
            CadenceReminder(
                code=code,
                level=level,
                level_label=REMINDER_LEVEL_LABELS[level],
                organisation=NamedRef(id=check.org_id, name=org_name),
                kind=check.kind,
                kind_label=kind_label,
                cadence=check.cadence,
                period_key=period.key,
                period_label=period.label,
                period_end=period.end.astimezone(tz),
                message=message,
            )
        )
    order = {ReminderLevel.ALERT: 0, ReminderLevel.WARNING: 1, ReminderLevel.NOTICE: 2}
    reminders.sort(key=lambda r: (order[r.level], r.organisation.id, r.period_end, r.kind))
    return reminders


def _inactivity_reminders(
    session: Session, org_id: int, names: dict[int, str], *, now: datetime, tz: tzinfo
) -> list[InactivityReminder]:
    lowest = min(months for months, _ in INACTIVITY_LEVELS)
    # One day of slack: the exact whole-month count is taken below, in local time.
    threshold = months_before(now, lowest, tz) + timedelta(days=1)
    tree = subtree_cte([org_id])
    # Correlated max() over the (member_id, first_tap_at) index: one index probe per member.
    last_presence = (
        sa_select(func.max(col(Attendance.first_tap_at)))
        .where(col(Attendance.member_id) == col(Member.id))
        .correlate(Member)
        .scalar_subquery()
    )
    clock = func.coalesce(last_presence, col(Member.joined_org_at), col(Member.created_at))
    rows = (
        session.connection()
        .execute(
            sa_select(
                col(Member.id),
                col(Member.name),
                col(Member.org_id),
                col(Member.category),
                last_presence.label("last_presence"),
                clock.label("clock"),
            )
            .where(
                col(Member.org_id).in_(sa_select(tree.c.org_id)),
                col(Member.status) == MemberStatus.ACTIVE,
                clock < threshold,
            )
            .order_by(clock, col(Member.id))
        )
        .all()
    )
    excused = _current_exemptions(session, [row[0] for row in rows if row[0] is not None], now)
    reminders = []
    for member_id, name, member_org_id, category, last, clock_at in rows:
        assert member_id is not None
        months = months_between(clock_at, now, tz)
        level = next((lvl for need, lvl in INACTIVITY_LEVELS if months >= need), None)
        if level is None:
            continue
        if last is not None:
            since = date_text(last.astimezone(tz).date())
            message = f"{name}已连续{months}个月未参加组织生活（最近一次：{since}）"
        else:
            since = date_text(clock_at.astimezone(tz).date())
            message = f"{name}自{since}入册以来，已连续{months}个月未参加组织生活"
        if level == ReminderLevel.ALERT:
            message += ALERT_NOTE
        reminders.append(
            InactivityReminder(
                code="six_month_rule",
                level=level,
                level_label=REMINDER_LEVEL_LABELS[level],
                member_id=member_id,
                name=name,
                category=category,
                organisation=NamedRef(id=member_org_id, name=names.get(member_org_id, "")),
                last_org_life_at=last.astimezone(tz) if last else None,
                clock_started_at=clock_at.astimezone(tz),
                months=months,
                excused=excused.get(member_id),
                message=message,
            )
        )
    return reminders


def _current_exemptions(session: Session, member_ids: list[int], now: datetime) -> dict[int, str]:
    found: dict[int, str] = {}
    for condition in one_of(session, col(MemberExemption.member_id), member_ids):
        rows = session.connection().execute(
            sa_select(col(MemberExemption.member_id), col(MemberExemption.reason))
            .where(
                condition,
                col(MemberExemption.starts_at) <= now,
                or_(col(MemberExemption.ends_at).is_(None), col(MemberExemption.ends_at) > now),
            )
            .order_by(col(MemberExemption.id))
        )
        for member_id, reason in rows.all():
            found[member_id] = EXEMPTION_LABELS[reason]
    return found
