"""What a rule family reports: one :class:`Finding` per thing that slipped, with its identity."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from server.vocabulary import ReminderLevel, RuleFamily

__all__ = ["Finding", "RuleFamily", "member_subject", "org_subject"]


@dataclass(frozen=True)
class Finding:
    """One thing a rule found wrong, as of the sweep's day.

    The identity is ``(rule, subject, period)``: a daily run that finds the same thing again
    updates the same reminder instead of raising a new one, and a reminder whose identity is no
    longer found resolves by itself. ``rule`` is a stable machine code (``org_setup.too_few_full``);
    ``subject`` names what it is about (``org:12``, ``member:345``); ``period`` is the period it
    concerns (``2026-11``, ``2026``) or ``""`` for a standing condition. ``org_id`` is the
    organisation responsible for acting on it (the branch, or for a branch's own set-up, its
    parent committee when the branch cannot fix it itself). ``message`` is plain Chinese for the
    secretary, naming the rule and what to do; ``due_on`` is the date by which it should be done,
    when the rule has one.
    """

    rule: str
    family: RuleFamily
    level: ReminderLevel
    org_id: int
    subject: str
    period: str
    message: str
    due_on: date | None = None

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.rule, self.subject, self.period)


def org_subject(org_id: int) -> str:
    return f"org:{org_id}"


def member_subject(member_id: int) -> str:
    return f"member:{member_id}"
