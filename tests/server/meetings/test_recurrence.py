"""Dates of monthly series and copied events, at the month boundaries people actually hit."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from server.errors import InvalidRecurrence
from server.events.recurrence import (
    RepeatRule,
    add_months,
    describe_rule,
    last_weekday,
    monthly_dates,
    next_month_after,
    nth_weekday,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_the_31st_becomes_the_last_day_of_shorter_months() -> None:
    dates = monthly_dates(date(2026, 1, 31), RepeatRule.SAME_DAY, 6)
    assert dates == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
        date(2026, 5, 31),
        date(2026, 6, 30),
    ]


def test_february_29th_in_a_leap_year_and_the_year_boundary() -> None:
    assert monthly_dates(date(2027, 12, 29), RepeatRule.SAME_DAY, 3) == [
        date(2027, 12, 29),
        date(2028, 1, 29),
        date(2028, 2, 29),
    ]
    assert add_months(date(2028, 2, 29), 12) == date(2029, 2, 28)


def test_the_second_friday_of_each_month() -> None:
    first = date(2026, 12, 11)  # the second Friday of December 2026
    dates = monthly_dates(first, RepeatRule.NTH_WEEKDAY, 12)
    assert len(dates) == 12
    assert all(day.weekday() == 4 and 8 <= day.day <= 14 for day in dates)
    assert dates[1] == date(2027, 1, 8)
    assert describe_rule(first, RepeatRule.NTH_WEEKDAY) == "每月第二个星期五"


def test_a_fifth_weekday_cannot_repeat_by_its_number() -> None:
    with pytest.raises(InvalidRecurrence) as refused:
        monthly_dates(date(2026, 12, 29), RepeatRule.NTH_WEEKDAY, 3)  # the fifth Tuesday
    assert "最后一个星期几" in refused.value.message
    assert refused.value.code == "invalid_recurrence"


def test_the_last_weekday_of_each_month() -> None:
    first = date(2026, 12, 29)  # the last Tuesday of December 2026
    dates = monthly_dates(first, RepeatRule.LAST_WEEKDAY, 4)
    assert dates == [date(2026, 12, 29), date(2027, 1, 26), date(2027, 2, 23), date(2027, 3, 30)]
    assert describe_rule(first, RepeatRule.LAST_WEEKDAY) == "每月最后一个星期二"


def test_the_last_weekday_rule_needs_a_last_weekday_to_start_from() -> None:
    with pytest.raises(InvalidRecurrence):
        monthly_dates(date(2026, 12, 22), RepeatRule.LAST_WEEKDAY, 3)  # a week before the last Tuesday


@pytest.mark.parametrize("count", [0, 1, 13, 100])
def test_the_number_of_occurrences_is_bounded(count: int) -> None:
    with pytest.raises(InvalidRecurrence):
        monthly_dates(date(2026, 12, 1), RepeatRule.SAME_DAY, count)


def test_weekday_helpers_at_the_edges_of_a_month() -> None:
    assert nth_weekday(2027, 2, 0, 4) == date(2027, 2, 22)  # February 2027 has four Mondays
    assert nth_weekday(2027, 2, 0, 5) is None
    assert last_weekday(2027, 2, 6) == date(2027, 2, 28)  # the last day is itself a Sunday


def test_a_copy_moves_to_the_first_month_after_now_keeping_the_local_time() -> None:
    original = datetime(2026, 10, 31, 14, 30, tzinfo=SHANGHAI)
    now = datetime(2026, 12, 6, 9, 0, tzinfo=SHANGHAI)
    moved = next_month_after(original, now, SHANGHAI)
    assert moved == datetime(2026, 12, 31, 14, 30, tzinfo=SHANGHAI)
    # A meeting later this month moves only one month on, even from long ago.
    assert next_month_after(datetime(2025, 12, 20, 9, 0, tzinfo=SHANGHAI), now, SHANGHAI) == datetime(
        2026, 12, 20, 9, 0, tzinfo=SHANGHAI
    )
    # The day of the month is kept where the month has it.
    assert next_month_after(datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI), now, SHANGHAI) == datetime(
        2026, 12, 30, 9, 0, tzinfo=SHANGHAI
    )
