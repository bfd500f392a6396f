"""组织生活: the 三会一课 cadence and the six-month rule of ``server.reminders`` as findings.

The on-demand report (``ecard admin reminders``, the reminders API) and the stored reminders
read the same computation; this module only gives each gap its identity:

* ``org_life.cadence_missed`` / ``org_life.cadence_due_soon``: per organisation, meeting kind and
  period (``org:12/theme_day``, ``2026-11``). The due-soon notice and the missed warning are two
  rules, so a missed meeting is a new reminder, not the notice changing level.
* ``org_life.six_month``: per member, with the day the member's clock started as the period, so
  a presence (which restarts the clock) resolves it and a later lapse is a new reminder; its level
  rises from notice (3 months) to warning (5) and alert (6) in place.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, tzinfo

from sqlmodel import Session

from server.caller import UNSCOPED, Actor, Caller
from server.ledgers.cadence import CadencePolicy
from server.orgs.service import top_organisations
from server.reminders.service import build_reminders
from server.supervision.findings import Finding, member_subject, org_subject
from server.vocabulary import RuleFamily, UserRole

SYSTEM_CALLER = Caller(
    actor=Actor("system", "系统"), role=UserRole.ADMIN, org_id=None, scope=UNSCOPED, may_approve=False
)
CADENCE_NEXT_STEP = {
    "cadence_missed": "，请按规定补开并如实记录，不能补开的请说明原因。",
    "cadence_due_soon": "，请在期末前安排召开。",
}


def find_org_life(
    session: Session,
    *,
    now: datetime,
    tz: tzinfo,
    policy: CadencePolicy,
    org_ids: Collection[int] | None = None,
) -> list[Finding]:
    """The 组织生活 findings below the top organisations (or below each of ``org_ids``)."""
    roots = sorted(org_ids) if org_ids is not None else top_organisations(session)
    found: dict[tuple[str, str, str], Finding] = {}
    for root in roots:
        report = build_reminders(session, org_id=root, caller=SYSTEM_CALLER, now=now, tz=tz, policy=policy)
        for gap in report.cadence:
            finding = Finding(
                rule=f"org_life.{gap.code}",
                family=RuleFamily.ORG_LIFE,
                level=gap.level,
                org_id=gap.organisation.id,
                subject=f"{org_subject(gap.organisation.id)}/{gap.kind.value}",
                period=gap.period_key,
                message=gap.message + CADENCE_NEXT_STEP.get(gap.code, "。"),
                due_on=gap.period_end.date(),
            )
            found[finding.identity] = finding
        for lapse in report.inactivity:
            excused = f"（{lapse.excused}，时钟照常计算）" if lapse.excused else ""
            finding = Finding(
                rule="org_life.six_month",
                family=RuleFamily.ORG_LIFE,
                level=lapse.level,
                org_id=lapse.organisation.id,
                subject=member_subject(lapse.member_id),
                period=lapse.clock_started_at.date().isoformat(),
                message=lapse.message + excused,
            )
            found[finding.identity] = finding
    return list(found.values())
