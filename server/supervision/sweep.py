"""The daily sweep: every rule family over the whole city, then the stored reminders updated."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlmodel import Session

from server.config import ServerSettings
from server.ledgers.cadence import CadencePolicy
from server.notify.service import queue_digests
from server.supervision.development_rules import find_development
from server.supervision.dues_rules import find_dues
from server.supervision.findings import Finding
from server.supervision.org_life import find_org_life
from server.supervision.org_setup import find_org_setup
from server.supervision.service import EscalationPolicy, SweepResult, apply_findings, digest_items
from server.transfers.calendar import make_calendar
from server.vocabulary import RuleFamily

FamilyCheck = Callable[[Session, datetime, tzinfo], list[Finding]]


@dataclass(frozen=True)
class RuleFamilyCheck:
    family: RuleFamily
    find: FamilyCheck


def rule_families(settings: ServerSettings) -> Sequence[RuleFamilyCheck]:
    """The families the sweep evaluates, each over the whole city."""
    policy = CadencePolicy(lecture=settings.lecture_cadence)
    return (
        RuleFamilyCheck(RuleFamily.ORG_SETUP, lambda s, now, tz: find_org_setup(s, now=now, tz=tz)),
        RuleFamilyCheck(
            RuleFamily.ORG_LIFE, lambda s, now, tz: find_org_life(s, now=now, tz=tz, policy=policy)
        ),
        RuleFamilyCheck(RuleFamily.DUES, lambda s, now, tz: find_dues(s, now=now, tz=tz)),
        RuleFamilyCheck(RuleFamily.DEVELOPMENT, lambda s, now, tz: find_development(s, now=now, tz=tz)),
    )


def escalation_policy(settings: ServerSettings) -> EscalationPolicy:
    return EscalationPolicy(
        calendar=make_calendar(settings.transfer_holidays, settings.transfer_makeup_workdays),
        after_working_days=settings.escalate_after_working_days,
    )


def run_sweep(session: Session, *, now: datetime, settings: ServerSettings) -> SweepResult:
    """Find, store, resolve and escalate, as of ``now``, then queue today's digests. Adds and
    flushes; the caller commits (the digests go out with ``deliver_due``, after the commit)."""
    tz = settings.tz
    families = rule_families(settings)
    findings = [finding for check in families for finding in check.find(session, now, tz)]
    result = apply_findings(
        session,
        findings,
        families={check.family for check in families},
        now=now,
        escalation=escalation_policy(settings),
        tz=tz,
    )
    result.digests = queue_digests(session, digest_items(session, now=now), now=now, tz=tz).queued
    return result
