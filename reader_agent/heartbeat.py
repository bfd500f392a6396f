"""Signed heartbeats: the kiosk tells the server how it is, every ``interval_s`` seconds.

A heartbeat is a :class:`schemas.HeartbeatPayload` signed with the kiosk key, in the same
envelope form as taps, posted to ``POST /api/v1/kiosks/heartbeat``. It carries the outbox depth
and the age of its oldest tap, the taps set aside because the server kept refusing them (how many,
and the oldest one's seq: the kiosk health page shows them to the admin), the last seq allocated
(the server compares it with the seqs it received to find gaps), the reader's state, the mode and
the agent version.

Clock offset: the server computes it from the send time in the payload and half the round trip
this sender measured for its previous heartbeat (``previous_round_trip_ms``), and answers with
its estimate; a kiosk more than :data:`CLOCK_WARNING_MS` off logs a warning, because its taps
are stamped with that clock.

Heartbeats run on their own thread, so a slow server never delays taps or their upload. A failed
heartbeat is not retried: the next one is due soon and says the same, only fresher. A 429 is a
failure too, and the next heartbeat waits at least its ``Retry-After``.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx
from pydantic import ValidationError

from reader_agent.feedback import Feedback, FeedbackStatus
from reader_agent.outbox import OutboxError, OutboxStats
from reader_agent.server_call import refusal, retry_after_s
from schemas import HeartbeatAck, HeartbeatPayload, ReaderState, SignedEnvelope, TapMode
from schemas.messages import MAX_INT32

log = logging.getLogger(__name__)

HEARTBEAT_PATH = "/api/v1/kiosks/heartbeat"
MAX_PENDING_AGE_S = 200 * 365 * 86400.0  # the contract's bound on oldest_pending_age_s
CLOCK_WARNING_MS = 30_000

_READER_ERROR_STATES = {
    "reader_unavailable": ReaderState.UNAVAILABLE,
    "reader_disconnected": ReaderState.DISCONNECTED,
}


class Signer(Protocol):
    """Seals a heartbeat with the kiosk key (``reader_agent.signing.KioskKey`` is one)."""

    def seal(self, payload: HeartbeatPayload) -> SignedEnvelope: ...


class ReaderWatch:
    """The reader's state as the run loop's feedback lines tell it (fed from the CLI's ``emit``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = ReaderState.STARTING

    def observe(self, line: Feedback) -> None:
        with self._lock:
            if line.status is FeedbackStatus.READY or line.about_a_card:
                self._state = ReaderState.READY
            elif line.status is FeedbackStatus.READER_ERROR:
                self._state = _READER_ERROR_STATES.get(line.code or "", ReaderState.FAILED)

    @property
    def state(self) -> ReaderState:
        with self._lock:
            return self._state


class HeartbeatOutcome(enum.Enum):
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"  # no connection, timeout, 5xx: the server could not be asked
    REFUSED = "refused"  # the server answered and said no (revoked, unknown key, stale)


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    outcome: HeartbeatOutcome
    counter: int
    ack: HeartbeatAck | None = None
    round_trip_ms: int | None = None
    code: str | None = None  # server_unreachable, server_timeout, http_503, kiosk_revoked, ...
    detail: str = ""
    retry_after_s: float | None = None  # the server's Retry-After (a 429, a 503), when it gave one


class HeartbeatSender:
    """Builds, signs and posts heartbeats; ``beat_once`` for one (tests), ``start`` for the thread."""

    def __init__(
        self,
        client: httpx.Client,
        signer: Signer,
        *,
        kiosk_id: str,
        mode: TapMode,
        agent_version: str,
        interval_s: float,
        outbox_stats: Callable[[], OutboxStats],
        reader_state: Callable[[], ReaderState],
        reader_name: str,
        now: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        on_result: Callable[[HeartbeatResult], None] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._client = client
        self._signer = signer
        self._kiosk_id = kiosk_id
        self._mode = mode
        # The contract takes no control characters: a device name is shown, not parsed.
        self._agent_version = _printable(agent_version)[:64]
        self._interval_s = interval_s
        self._outbox_stats = outbox_stats
        self._reader_state = reader_state
        self._reader_name = _printable(reader_name)[:200]
        self._now = now
        self._monotonic = monotonic
        self._on_result = on_result
        # A fresh boot id per agent run: the server orders heartbeats by (boot_id, counter).
        self.boot_id = uuid.uuid4().hex
        self._counter = 0
        self._previous_round_trip_ms: int | None = None
        self._clock_warned = False
        self._last_outcome: HeartbeatOutcome | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat_once(self) -> HeartbeatResult:
        """Send one heartbeat and return what became of it (never raises for network trouble)."""
        self._counter += 1
        counter = self._counter
        try:
            envelope = self._envelope(counter)
        except OutboxError as exc:
            return HeartbeatResult(HeartbeatOutcome.FAILED, counter, code=exc.code, detail=exc.message)
        except ValidationError as exc:
            # A value outside the contract's bounds, e.g. a clock that has not been set since boot
            # (the contract takes times in 2000–2100 only): nothing the server could accept.
            problem = ", ".join(".".join(map(str, error["loc"])) for error in exc.errors())
            return HeartbeatResult(HeartbeatOutcome.FAILED, counter, code="heartbeat_invalid", detail=problem)
        started = self._monotonic()
        try:
            response = self._client.post(
                HEARTBEAT_PATH,
                content=envelope.model_dump_json().encode(),
                headers={"Content-Type": "application/json"},
            )
        except httpx.TimeoutException as exc:
            return HeartbeatResult(HeartbeatOutcome.FAILED, counter, code="server_timeout", detail=str(exc))
        except httpx.TransportError as exc:
            return HeartbeatResult(
                HeartbeatOutcome.FAILED, counter, code="server_unreachable", detail=type(exc).__name__
            )
        round_trip_ms = max(0, round((self._monotonic() - started) * 1000))
        if response.status_code != 200:
            code, detail = refusal(response)
            summary = f"HTTP {response.status_code}" if detail is None else detail[:300]
            if response.status_code >= 500 or response.status_code in (408, 429):
                return HeartbeatResult(
                    HeartbeatOutcome.FAILED,
                    counter,
                    code=f"http_{response.status_code}",
                    detail=summary,
                    retry_after_s=retry_after_s(response, now=self._now()),
                )
            return HeartbeatResult(HeartbeatOutcome.REFUSED, counter, code=code, detail=summary)
        try:
            ack = HeartbeatAck.model_validate_json(response.content)
        except ValidationError:
            return HeartbeatResult(
                HeartbeatOutcome.REFUSED, counter, code="bad_ack", detail="unreadable answer"
            )
        self._previous_round_trip_ms = round_trip_ms
        return HeartbeatResult(HeartbeatOutcome.ACKNOWLEDGED, counter, ack=ack, round_trip_ms=round_trip_ms)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("heartbeat sender already started")
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.beat_once()
            except Exception as exc:
                # The thread must outlive a bug, or the kiosk would fall silent while still working.
                log.exception("heartbeat crashed; trying again next interval")
                result = HeartbeatResult(
                    HeartbeatOutcome.FAILED,
                    self._counter,
                    code="heartbeat_crashed",
                    detail=type(exc).__name__,
                )
            self._report(result)
            if self._on_result is not None:
                self._on_result(result)
            self._stop.wait(max(self._interval_s, result.retry_after_s or 0.0))

    def _envelope(self, counter: int) -> SignedEnvelope:
        stats = self._outbox_stats()
        sent_at = self._now()
        oldest_age = (
            min(max(0.0, (sent_at - stats.oldest_pending_at).total_seconds()), MAX_PENDING_AGE_S)
            if stats.oldest_pending_at
            else None
        )
        payload = HeartbeatPayload(
            kiosk_id=self._kiosk_id,
            boot_id=self.boot_id,
            counter=counter,
            sent_at=sent_at,
            interval_s=self._interval_s,
            previous_round_trip_ms=self._previous_round_trip_ms,
            mode=self._mode,
            outbox_pending=min(stats.pending, MAX_INT32),
            oldest_pending_age_s=oldest_age,
            outbox_quarantined=min(stats.quarantined, MAX_INT32),
            oldest_quarantined_seq=stats.oldest_quarantined_seq,
            last_seq=stats.last_seq,
            agent_version=self._agent_version,
            reader_state=self._reader_state(),
            reader_name=self._reader_name,
        )
        return self._signer.seal(payload)

    def _report(self, result: HeartbeatResult) -> None:
        # One log line per change of outcome, not one per heartbeat of a long outage.
        if result.outcome is not self._last_outcome:
            if result.outcome is HeartbeatOutcome.ACKNOWLEDGED:
                log.info("heartbeats acknowledged by the server")
            elif result.outcome is HeartbeatOutcome.FAILED:
                log.warning("heartbeat not delivered (%s: %s); will keep trying", result.code, result.detail)
            else:
                log.error("server refused the heartbeat (%s: %s)", result.code, result.detail)
        self._last_outcome = result.outcome
        if result.ack is not None:
            off = abs(result.ack.clock_offset_ms) > CLOCK_WARNING_MS
            if off and not self._clock_warned:
                log.warning(
                    "this kiosk's clock is %+.1f s off the server's (server minus kiosk); "
                    "tap times are stamped with it: fix the time sync",
                    result.ack.clock_offset_ms / 1000,
                )
            self._clock_warned = off


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isprintable())
