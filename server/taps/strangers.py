"""Tap traffic the server cannot attribute to a kiosk, counted per source in bounded memory.

An envelope that is not even an envelope, whose ``kid`` names no kiosk key, or whose signature
does not verify, could have come from anyone: storing it would let anyone grow the database (two
requests once added 400 rows). So it costs no row. It still gets its receipt, and it is counted
here, per source address, so an operator can see who is sending it:

* at most ``max_sources`` sources are kept; the one heard from least recently is forgotten first;
* one log line per source per ``log_every`` at most, and at most ``max_lines`` lines per
  ``log_every`` in all; a line says how many envelopes arrived since that source's last line, so
  nothing is lost from the count, only from the log's detail.

The tally lives in the process (``app.state.tap_strangers``) and is lost on restart: it is a
signal for the log, not evidence.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

log = logging.getLogger(__name__)

_MAX_SOURCE_CHARS = 64


@dataclass
class _Source:
    total: int = 0
    unlogged: int = 0
    last_logged_at: datetime | None = None
    last_code: str = ""


class StrangerTally:
    """How many unattributable envelopes each source sent, for the last ``max_sources`` sources."""

    def __init__(
        self, *, max_sources: int = 1024, log_every: timedelta = timedelta(minutes=1), max_lines: int = 20
    ) -> None:
        if max_sources < 1 or max_lines < 1:
            raise ValueError("max_sources and max_lines must be positive")
        self._max_sources = max_sources
        self._log_every = log_every
        self._max_lines = max_lines
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._lock = threading.Lock()
        self._window_start: datetime | None = None
        self._lines_in_window = 0
        self.forgotten = 0  # sources dropped to stay within max_sources

    def note(self, source: str, *, code: str, now: datetime, count: int = 1) -> None:
        """Count *count* envelopes from *source* refused with *code*; log it if the limits allow."""
        key = source[:_MAX_SOURCE_CHARS]
        with self._lock:
            entry = self._sources.pop(key, None) or _Source()
            entry.total += count
            entry.unlogged += count
            entry.last_code = code
            self._sources[key] = entry
            if len(self._sources) > self._max_sources:
                self._sources.popitem(last=False)
                self.forgotten += 1
            line = self._take_log_line(entry, now)
        if line is not None:
            since, total = line
            log.warning(
                "unattributable tap envelopes from %r: %d since the last note (%d counted), last code %s;"
                " no rows stored",
                key,
                since,
                total,
                code,
            )

    def count(self, source: str) -> int:
        """Envelopes counted for *source* (0 when unknown or forgotten)."""
        with self._lock:
            entry = self._sources.get(source[:_MAX_SOURCE_CHARS])
            return entry.total if entry is not None else 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._sources)

    def _take_log_line(self, entry: _Source, now: datetime) -> tuple[int, int] | None:
        if entry.last_logged_at is not None and now - entry.last_logged_at < self._log_every:
            return None
        if self._window_start is None or now - self._window_start >= self._log_every:
            self._window_start, self._lines_in_window = now, 0
        if self._lines_in_window >= self._max_lines:
            return None
        self._lines_in_window += 1
        entry.last_logged_at = now
        since, entry.unlogged = entry.unlogged, 0
        return since, entry.total
