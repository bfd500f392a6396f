"""Calendar arithmetic and the one way dates read in Chinese text (2026年3月15日).

Ground floor: rules, notices and reports of every domain use these, so no domain keeps its own
copy of month arithmetic or of the date wording.
"""

from __future__ import annotations

import calendar
from datetime import date


def add_months(day: date, months: int) -> date:
    """``day`` moved by ``months`` calendar months (negative: back); a day the target month lacks
    becomes its last (31 March + 1 month = 30 April; 29 February + 12 months = 28 February)."""
    year, month = divmod(day.year * 12 + day.month - 1 + months, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def date_text(day: date) -> str:
    """2026年3月15日: how a date reads in a message, a notice or a reminder."""
    return f"{day.year}年{day.month}月{day.day}日"


def month_key(day: date) -> str:
    """``YYYY-MM``, the key of the month ``day`` falls in."""
    return f"{day.year:04d}-{day.month:02d}"
