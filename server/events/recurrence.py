"""Dates of a monthly series (每月主题党日, 每月支委会) and of a copied event: pure date arithmetic.

A series repeats the first meeting's date in the following months by one of three rules:

* 每月同一日 (:attr:`RepeatRule.SAME_DAY`): the same day of the month; a day the month does not
  have (the 31st in a 30-day month, the 29th–31st in February) becomes the month's last day.
* 每月第N个星期X (:attr:`RepeatRule.NTH_WEEKDAY`): e.g. the second Friday. A first date that is
  the fifth such weekday of its month is refused: most months have none, so the secretary picks
  「每月最后一个星期X」 instead.
* 每月最后一个星期X (:attr:`RepeatRule.LAST_WEEKDAY`): the first date must be the last such
  weekday of its month.

Times of day are kept in the organisation's local time, whatever the offsets in between.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum

from server.dates import add_months
from server.errors import InvalidRecurrence

MIN_OCCURRENCES = 2
MAX_OCCURRENCES = 12
"""A series is at most a year of monthly meetings; a longer plan is made again next year."""

WEEKDAY_NAMES = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")
ORDINALS = ("一", "二", "三", "四", "五")


class RepeatRule(StrEnum):
    SAME_DAY = "same_day"
    NTH_WEEKDAY = "nth_weekday"
    LAST_WEEKDAY = "last_weekday"


REPEAT_RULE_LABELS: dict[RepeatRule, str] = {
    RepeatRule.SAME_DAY: "每月同一日（如31日，小月取月末）",
    RepeatRule.NTH_WEEKDAY: "每月同一周次的星期几（如第二个星期五）",
    RepeatRule.LAST_WEEKDAY: "每月最后一个星期几",
}


def nth_weekday(year: int, month: int, weekday: int, n: int) -> date | None:
    """The ``n``-th (1-based) ``weekday`` (Monday 0) of the month, or None when it has none."""
    first = date(year, month, 1)
    day = first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    return day if day.month == month else None


def last_weekday(year: int, month: int, weekday: int) -> date:
    """The last ``weekday`` (Monday 0) of the month."""
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def describe_rule(first: date, rule: RepeatRule) -> str:
    """How the rule reads for this first date, e.g. 「每月第二个星期五」."""
    weekday = WEEKDAY_NAMES[first.weekday()]
    if rule is RepeatRule.SAME_DAY:
        return f"每月{first.day}日"
    if rule is RepeatRule.NTH_WEEKDAY:
        return f"每月第{ORDINALS[(first.day - 1) // 7]}个{weekday}"
    return f"每月最后一个{weekday}"


def monthly_dates(first: date, rule: RepeatRule, count: int) -> list[date]:
    """``count`` dates, one a month from ``first``'s month on, ``first`` itself the first of them.

    Raises:
        InvalidRecurrence: a count outside [MIN_OCCURRENCES, MAX_OCCURRENCES], or a first date the
            rule cannot repeat (a fifth weekday; not the last weekday of its month).
    """
    if not MIN_OCCURRENCES <= count <= MAX_OCCURRENCES:
        raise InvalidRecurrence(f"重复次数须在{MIN_OCCURRENCES}到{MAX_OCCURRENCES}次之间")
    weekday = first.weekday()
    n = (first.day - 1) // 7 + 1
    if rule is RepeatRule.NTH_WEEKDAY and n == 5:
        raise InvalidRecurrence(
            f"开始日期是当月第五个{WEEKDAY_NAMES[weekday]}，并非每月都有；请改选「每月最后一个星期几」"
        )
    if rule is RepeatRule.LAST_WEEKDAY and first != last_weekday(first.year, first.month, weekday):
        raise InvalidRecurrence(f"开始日期不是当月最后一个{WEEKDAY_NAMES[weekday]}，请改选其他重复方式")
    dates: list[date] = []
    for offset in range(count):
        month_start = add_months(first.replace(day=1), offset)
        if rule is RepeatRule.SAME_DAY:
            dates.append(add_months(first, offset))
        elif rule is RepeatRule.NTH_WEEKDAY:
            found = nth_weekday(month_start.year, month_start.month, weekday, n)
            assert found is not None  # n <= 4: every month has four of each weekday
            dates.append(found)
        else:
            dates.append(last_weekday(month_start.year, month_start.month, weekday))
    return dates


def on_date(moment: datetime, day: date, tz: tzinfo) -> datetime:
    """``moment``'s local time of day on ``day`` (local to ``tz``)."""
    local = moment.astimezone(tz)
    return datetime.combine(day, local.time(), tzinfo=tz)


def next_month_after(moment: datetime, now: datetime, tz: tzinfo) -> datetime:
    """``moment`` moved forward by whole months (at least one) until it is after ``now``: where a
    copied monthly meeting falls next (same day of the month, same local time)."""
    local_day = moment.astimezone(tz).date()
    today = now.astimezone(tz).date()
    months = max(1, (today.year - local_day.year) * 12 + today.month - local_day.month)
    while True:
        moved = on_date(moment, add_months(local_day, months), tz)
        if moved > now:
            return moved
        months += 1
