"""Working days for the transfer SLA, and the policy knobs a deployment sets.

A working day is Monday to Friday, minus the configured public holidays, plus the configured
调休 make-up days (weekends that are working days). China publishes the holiday schedule each
December, so the lists come from settings (``ECARD_TRANSFER_HOLIDAYS`` /
``ECARD_TRANSFER_MAKEUP_WORKDAYS``) rather than from code; with none configured the calendar is
plain Monday to Friday, which over-counts working days around 春节 and 国庆 (documented limitation).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from server.config import ServerSettings

SATURDAY = 5


@dataclass(frozen=True)
class WorkCalendar:
    holidays: frozenset[date] = frozenset()
    makeup_workdays: frozenset[date] = frozenset()

    def is_working_day(self, day: date) -> bool:
        if day in self.makeup_workdays:
            return True
        return day.weekday() < SATURDAY and day not in self.holidays

    def add_working_days(self, start: date, count: int) -> date:
        """The ``count``-th working day after ``start`` (``start`` itself is not counted)."""
        day = start
        remaining = count
        while remaining > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                remaining -= 1
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in (start, end]: how many working days have passed since ``start``."""
        if end <= start:
            return 0
        return sum(self.is_working_day(start + timedelta(days=n)) for n in range(1, (end - start).days + 1))


@dataclass(frozen=True)
class TransferPolicy:
    """How long each waiting step may take, and in which time zone a "day" is counted.

    ``step_working_days`` is the SLA for a step where the organisation must act (branch review,
    committee review, receipt); the 回执 must go back within ``receipt_days`` calendar days of
    receiving the member (组通字〔2006〕45号: one month).
    """

    tz: tzinfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    step_working_days: int = 5
    receipt_days: int = 30
    calendar: WorkCalendar = field(default_factory=WorkCalendar)

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()


def make_calendar(holidays: Iterable[date] = (), makeup_workdays: Iterable[date] = ()) -> WorkCalendar:
    return WorkCalendar(holidays=frozenset(holidays), makeup_workdays=frozenset(makeup_workdays))


def transfer_policy(settings: ServerSettings) -> TransferPolicy:
    """The deployment's policy, from ``ECARD_TRANSFER_*`` and ``ECARD_TIMEZONE``."""
    return TransferPolicy(
        tz=settings.tz,
        step_working_days=settings.transfer_sla_working_days,
        calendar=make_calendar(settings.transfer_holidays, settings.transfer_makeup_workdays),
    )
