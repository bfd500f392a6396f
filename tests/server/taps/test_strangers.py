"""The tally of unattributable tap envelopes: bounded memory, rate-limited log lines, exact counts."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from server.taps.strangers import StrangerTally

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


class TestStrangerTally:
    def test_counts_per_source(self) -> None:
        tally = StrangerTally()
        tally.note("203.0.113.7", code="unknown_kiosk", now=T0, count=200)
        tally.note("203.0.113.7", code="unknown_kiosk", now=T0, count=200)
        tally.note("198.51.100.1", code="malformed", now=T0)
        assert (tally.count("203.0.113.7"), tally.count("198.51.100.1"), tally.count("192.0.2.9")) == (
            400,
            1,
            0,
        )

    def test_memory_is_bounded_by_forgetting_the_quietest_source(self) -> None:
        """However many sources send, at most max_sources are kept; the least recent goes first."""
        tally = StrangerTally(max_sources=3)
        for n in range(10):
            tally.note(f"10.0.0.{n}", code="unknown_kiosk", now=T0)
        tally.note("10.0.0.7", code="unknown_kiosk", now=T0)  # heard again: kept
        tally.note("10.0.0.10", code="unknown_kiosk", now=T0)
        assert len(tally) == 3
        assert tally.forgotten == 8
        assert (tally.count("10.0.0.7"), tally.count("10.0.0.0"), tally.count("10.0.0.8")) == (2, 0, 0)

    def test_a_long_source_is_cut_to_its_key_length(self) -> None:
        tally = StrangerTally()
        tally.note("x" * 10_000, code="unknown_kiosk", now=T0)
        assert tally.count("x" * 64) == 1

    def test_one_line_per_source_per_interval(self, caplog: pytest.LogCaptureFixture) -> None:
        """A flood from one source is one log line a minute, each saying how many came since the last."""
        tally = StrangerTally(log_every=timedelta(minutes=1))
        with caplog.at_level(logging.WARNING, logger="server.taps.strangers"):
            for second in range(120):
                tally.note("203.0.113.7", code="unknown_kiosk", now=T0 + timedelta(seconds=second), count=200)
        lines = [record.getMessage() for record in caplog.records]
        assert len(lines) == 2
        assert "200 since the last note (200 counted)" in lines[0]
        assert "12000 since the last note (12200 counted)" in lines[1]
        assert "no rows stored" in lines[0]

    def test_many_sources_share_a_line_budget(self, caplog: pytest.LogCaptureFixture) -> None:
        """Many sources at once cannot flood the log either: max_lines per interval in all."""
        tally = StrangerTally(max_lines=5)
        with caplog.at_level(logging.WARNING, logger="server.taps.strangers"):
            for n in range(50):
                tally.note(f"10.0.{n}.1", code="unknown_kiosk", now=T0)
        assert len(caplog.records) == 5
        assert tally.count("10.0.49.1") == 1  # counted all the same
