"""Ledger periods: a year (``2026``), a quarter (``2026-Q3``) or a month (``2026-07``), as
half-open ranges of local time (the organisation's calendar, ``ECARD_TIMEZONE``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo

from server.errors import InvalidPeriod
from server.vocabulary import Cadence

_YEAR = re.compile(r"^(\d{4})$")
_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_QUARTER_NAMES = {1: "第一季度", 2: "第二季度", 3: "第三季度", 4: "第四季度"}


@dataclass(frozen=True)
class Period:
    cadence: Cadence  # how long it is: a month, a quarter or a year
    year: int
    index: int  # month 1-12, quarter 1-4, or 1 for a year
    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        if self.cadence == Cadence.MONTHLY:
            return f"{self.year}-{self.index:02d}"
        if self.cadence == Cadence.QUARTERLY:
            return f"{self.year}-Q{self.index}"
        return str(self.year)

    @property
    def label(self) -> str:
        if self.cadence == Cadence.MONTHLY:
            return f"{self.year}年{self.index}月"
        if self.cadence == Cadence.QUARTERLY:
            return f"{self.year}年{_QUARTER_NAMES[self.index]}"
        return f"{self.year}年"

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


def parse_period(text: str, tz: tzinfo) -> Period:
    """``2026``, ``2026-Q3`` or ``2026-07``. Raises InvalidPeriod."""
    value = text.strip()
    if match := _YEAR.match(value):
        return make_period(Cadence.YEARLY, int(match[1]), 1, tz)
    if match := _QUARTER.match(value):
        return make_period(Cadence.QUARTERLY, int(match[1]), int(match[2]), tz)
    if (match := _MONTH.match(value)) and 1 <= int(match[2]) <= 12:
        return make_period(Cadence.MONTHLY, int(match[1]), int(match[2]), tz)
    raise InvalidPeriod(f"期间 {text!r} 格式不正确：应为 2026（年）、2026-Q3（季度）或 2026-07（月）")


def make_period(cadence: Cadence, year: int, index: int, tz: tzinfo) -> Period:
    if not 1900 <= year <= 9998:
        raise InvalidPeriod("年份超出范围")
    first_month, months = {
        Cadence.MONTHLY: (index, 1),
        Cadence.QUARTERLY: (3 * index - 2, 3),
        Cadence.YEARLY: (1, 12),
    }[cadence]
    start = datetime(year, first_month, 1, tzinfo=tz)
    end_year, end_month = divmod(first_month - 1 + months, 12)
    end = datetime(year + end_year, end_month + 1, 1, tzinfo=tz)
    return Period(cadence=cadence, year=year, index=index, start=start, end=end)


def period_containing(at: datetime, cadence: Cadence, tz: tzinfo) -> Period:
    local = at.astimezone(tz)
    index = {Cadence.MONTHLY: local.month, Cadence.QUARTERLY: (local.month - 1) // 3 + 1, Cadence.YEARLY: 1}
    return make_period(cadence, local.year, index[cadence], tz)


def periods_overlapping(start: datetime, end: datetime, cadence: Cadence, tz: tzinfo) -> list[Period]:
    """The periods of one cadence that overlap [start, end), in order."""
    found = []
    period = period_containing(start, cadence, tz)
    while period.start < end:
        found.append(period)
        period = period_containing(period.end, cadence, tz)
    return found


def months_between(earlier: datetime, later: datetime, tz: tzinfo) -> int:
    """Whole calendar months from ``earlier`` to ``later`` (15 Jan → 14 Apr is 2, → 15 Apr is 3)."""
    a, b = earlier.astimezone(tz), later.astimezone(tz)
    months = (b.year - a.year) * 12 + (b.month - a.month)
    if (b.day, b.time()) < (a.day, a.time()):
        months -= 1
    return max(months, 0)


def months_before(at: datetime, months: int, tz: tzinfo) -> datetime:
    """The same local day and time ``months`` calendar months earlier (clamped to the month's end)."""
    local = at.astimezone(tz)
    year, month = divmod(local.year * 12 + local.month - 1 - months, 12)
    month += 1
    day = min(local.day, _days_in_month(year, month))
    return local.replace(year=year, month=month, day=day)


def _days_in_month(year: int, month: int) -> int:
    following = datetime(year + month // 12, month % 12 + 1, 1)
    return (following - datetime(year, month, 1)).days
