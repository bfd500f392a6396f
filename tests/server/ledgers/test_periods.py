"""Ledger periods and calendar months (pure functions: no database)."""

from __future__ import annotations

from datetime import datetime

import pytest

from server.errors import InvalidPeriod
from server.ledgers.periods import months_before, months_between, parse_period, periods_overlapping
from server.vocabulary import Cadence
from tests.server.factories import SHANGHAI


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("text", "key", "label", "start", "end"),
    [
        ("2026", "2026", "2026年", "2026-01-01", "2027-01-01"),
        ("2026-Q3", "2026-Q3", "2026年第三季度", "2026-07-01", "2026-10-01"),
        ("2026q4", "2026-Q4", "2026年第四季度", "2026-10-01", "2027-01-01"),
        ("2026-07", "2026-07", "2026年7月", "2026-07-01", "2026-08-01"),
        ("2026-12", "2026-12", "2026年12月", "2026-12-01", "2027-01-01"),
    ],
)
def test_parse_period(text: str, key: str, label: str, start: str, end: str) -> None:
    period = parse_period(text, SHANGHAI)
    assert (period.key, period.label, period.start, period.end) == (key, label, local(start), local(end))


@pytest.mark.parametrize("text", ["", "26", "2026-13", "2026-Q5", "2026-W3", "Q3-2026", "2026-07-01"])
def test_invalid_periods_are_refused(text: str) -> None:
    with pytest.raises(InvalidPeriod) as excinfo:
        parse_period(text, SHANGHAI)
    assert excinfo.value.code == "invalid_period"


def test_periods_overlapping_a_range() -> None:
    quarters = periods_overlapping(local("2026-02-15"), local("2026-07-02"), Cadence.QUARTERLY, SHANGHAI)
    assert [q.key for q in quarters] == ["2026-Q1", "2026-Q2", "2026-Q3"]


@pytest.mark.parametrize(
    ("earlier", "later", "months"),
    [
        ("2026-01-15T10:00", "2026-04-15T09:59", 2),
        ("2026-01-15T10:00", "2026-04-15T10:00", 3),
        ("2026-01-31T00:00", "2026-02-28T23:00", 0),
        ("2025-12-01T00:00", "2026-06-01T00:00", 6),
    ],
)
def test_months_between(earlier: str, later: str, months: int) -> None:
    assert months_between(local(earlier), local(later), SHANGHAI) == months


def test_months_before_clamps_to_the_end_of_the_month() -> None:
    assert months_before(local("2026-05-31T12:00"), 3, SHANGHAI) == local("2026-02-28T12:00")
