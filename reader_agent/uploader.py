"""Background upload of pending taps, oldest first, with backoff and jitter.

How each answer to ``POST /api/v1/taps`` is treated:

======================================  ===================================================
200 with a BatchReceipt                 each receipt is final: the tap is marked sent with it
                                        (accepted, duplicate *and* rejected alike)
5xx, 408, timeout, no connection        transient: retry with exponential backoff + jitter;
                                        a new tap cuts the wait short
429                                     transient, but the server said how long to wait:
                                        at least ``Retry-After``, and new taps do not cut it
any other 4xx, an unreadable 200, or    something in the batch is refused: split it (below)
a receipt that cannot be matched
======================================  ===================================================

**Splitting.** Uploads go oldest first, so one tap the server will never take would hold up
every tap behind it, forever. A refused batch is therefore halved and each half sent on its own,
down to single taps; a tap whose own answer is still no receipt is the one refused (a 413 also
halves the batch size of later rounds). A tap without a usable receipt in a 200 is sent again on
its own, likewise. A tap refused alone is *quarantined* (``Outbox.quarantine``: set aside, kept,
never deleted, reported in the heartbeat) only when the same round shows the server taking other
taps: that is the evidence that the fault is in this tap and not in the server. When nothing gets
through, it is the agent and server that disagree about the contract: every tap is kept, an error
is logged, and the next try comes only after a long pause (new taps do not cut it short); the
split stops after :data:`MAX_UNPROVEN_REFUSALS` lone refusals, so such a server costs a few
requests per pause, not one per tap. A 5xx is never grounds for quarantine: it is the server's
trouble, and it passes.

A tap is never marked sent without its receipt and never deleted, so a crash or restart simply
resends what is pending; the server deduplicates by ``(kiosk_id, seq)``.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from pydantic import ValidationError

from reader_agent.outbox import Outbox, OutboxEntry, OutboxError
from reader_agent.server_call import retry_after_s
from schemas import MAX_BATCH_SIZE, BatchReceipt, TapBatch, TapReceipt

log = logging.getLogger(__name__)

TAPS_PATH = "/api/v1/taps"
TRANSIENT_CLIENT_STATUSES = frozenset({408, 429})
MAX_UNPROVEN_REFUSALS = 8
"""Lone taps refused, with nothing taken yet, after which a round stops splitting: the server
refuses everything, so it is the contract, not a tap."""


class Backoff:
    """Exponential delays with "equal jitter": half the delay is fixed, half random.

    The random half spreads a fleet of kiosks that lost the server at the same moment; the fixed
    half keeps one kiosk from retrying almost immediately by chance.
    """

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self._failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.initial_s * 2.0 ** min(self._failures, 32))
        self._failures += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self._failures = 0


class UploadOutcome(enum.Enum):
    IDLE = "idle"  # nothing pending
    DELIVERED = "delivered"  # receipts arrived (for some or all of the batch), or taps were quarantined
    RETRY = "retry"  # transient failure
    INCOMPATIBLE = "incompatible"  # the server refuses every batch as such


@dataclass(frozen=True, slots=True)
class UploadResult:
    outcome: UploadOutcome
    sent: int = 0
    missing: int = 0  # taps of the batch the server gave no usable receipt for (still pending)
    code: str | None = None  # why it failed: server_unreachable, server_timeout, http_422, ...
    detail: str = ""
    quarantined: int = 0  # taps set aside this round because the server refused them alone
    retry_after_s: float | None = None  # the server's Retry-After, when it gave one


@dataclass(frozen=True, slots=True)
class _Answer:
    """The server's answer to one POST of some taps: receipts, a refusal, or a transient failure."""

    receipts: list[TapReceipt] | None = None  # a 200 with a readable BatchReceipt
    transient: UploadResult | None = None
    refused: str = ""  # code: detail, when the batch as such was refused
    status: int = 0


@dataclass
class _Round:
    """What one upload round has established so far."""

    sent: int = 0
    taken: bool = False  # the server gave a usable receipt for at least one tap
    suspects: list[tuple[OutboxEntry, str]] = field(default_factory=list)
    first_refusal: tuple[str, str] | None = None  # (code, detail) of the first refusal
    stopped: UploadResult | None = None  # a transient failure ended the round


class Uploader:
    """Sends pending outbox taps to the server and stores the receipts.

    ``upload_once`` does one round synchronously (tests call it directly); ``start`` runs rounds
    on a daemon thread until ``stop``.
    """

    def __init__(
        self,
        client: httpx.Client,
        outbox: Outbox,
        *,
        now: Callable[[], datetime],
        batch_size: int = MAX_BATCH_SIZE,
        retry: Backoff | None = None,
        incompatible_retry_s: float = 600.0,
        idle_recheck_s: float = 30.0,
        on_result: Callable[[UploadResult], None] | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be within 1..{MAX_BATCH_SIZE}")
        self._client = client
        self._outbox = outbox
        self._now = now
        self._batch_size = batch_size
        # Halved by a 413 (the server's body limit is below a full batch), for later rounds.
        self._batch_limit = batch_size
        self._retry = retry or Backoff(1.0, 60.0)
        self._incompatible_retry_s = incompatible_retry_s
        self._idle_recheck_s = idle_recheck_s
        # Told about every background round (the kiosk screen's offline indicator listens).
        self._on_result = on_result

        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # Guards the attempt bookkeeping below and signals "an attempt finished" to waiters.
        self._attempt_done = threading.Condition()
        self._attempts_started = 0
        self._last_failed_attempt = 0
        self._incompatible = False
        self._last_result: UploadResult | None = None

    # -- one round -------------------------------------------------------------------------

    def upload_once(self) -> UploadResult:
        """Send the oldest pending batch and store its receipts, splitting it if it is refused.

        Raises:
            OutboxError: the outbox could not be read or written.
        """
        entries = self._outbox.pending_batch(self._batch_limit)
        if not entries:
            return UploadResult(UploadOutcome.IDLE)
        progress = _Round()
        self._deliver(entries, progress)
        if progress.stopped is not None:
            return UploadResult(
                UploadOutcome.RETRY,
                sent=progress.sent,
                code=progress.stopped.code,
                detail=progress.stopped.detail,
                retry_after_s=progress.stopped.retry_after_s,
            )
        if progress.suspects and not progress.taken:
            code, detail = progress.first_refusal or ("bad_receipt", "no receipts")
            return UploadResult(UploadOutcome.INCOMPATIBLE, missing=len(entries), code=code, detail=detail)
        quarantined = 0
        now = self._now()
        for entry, problem in progress.suspects:
            if self._outbox.quarantine(entry.seq, problem=problem, now=now):
                quarantined += 1
                log.error(
                    "tap %d QUARANTINED: the server refuses it while taking others (%s); it is kept "
                    "in the outbox and reported in the heartbeat",
                    entry.seq,
                    problem,
                )
        missing = len(entries) - progress.sent - quarantined
        return UploadResult(
            UploadOutcome.DELIVERED, sent=progress.sent, missing=missing, quarantined=quarantined
        )

    def _deliver(self, entries: list[OutboxEntry], progress: _Round) -> None:
        """Send *entries*; store what gets a receipt; split what is refused (module docstring)."""
        if progress.stopped is not None:
            return
        if not progress.taken and len(progress.suspects) >= MAX_UNPROVEN_REFUSALS:
            return
        answer = self._post(entries)
        if answer.transient is not None:
            progress.stopped = answer.transient
            return
        if answer.receipts is None:
            code, _, detail = answer.refused.partition(": ")
            progress.first_refusal = progress.first_refusal or (code, detail)
            if answer.status == 413 and len(entries) > 1:
                self._batch_limit = max(1, min(self._batch_limit, len(entries) // 2))
            self._split(entries, answer.refused, progress)
            return
        matched, problems = _match_receipts(entries, answer.receipts)
        for problem in problems:
            log.error("receipt ignored: %s", problem)
        if matched:
            self._outbox.mark_sent(matched, now=self._now())
            progress.sent += len(matched)
            progress.taken = True
        answered = {seq for seq, _ in matched}
        unmatched = [entry for entry in entries if entry.seq not in answered]
        if not unmatched:
            return
        refused = "bad_receipt: " + ("; ".join(problems)[:300] or "no receipt for this tap")
        progress.first_refusal = progress.first_refusal or ("bad_receipt", refused.partition(": ")[2])
        if len(unmatched) < len(entries):
            self._deliver(unmatched, progress)  # alone, or with the others that got none
        else:
            self._split(entries, refused, progress)

    def _split(self, entries: list[OutboxEntry], refused: str, progress: _Round) -> None:
        if len(entries) == 1:
            progress.suspects.append((entries[0], refused))
            return
        half = len(entries) // 2
        self._deliver(entries[:half], progress)
        self._deliver(entries[half:], progress)

    def _post(self, entries: list[OutboxEntry]) -> _Answer:
        body = TapBatch(envelopes=[entry.envelope for entry in entries]).model_dump_json().encode()
        try:
            response = self._client.post(
                TAPS_PATH, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TimeoutException as exc:
            return _Answer(
                transient=UploadResult(UploadOutcome.RETRY, code="server_timeout", detail=type(exc).__name__)
            )
        except httpx.TransportError as exc:
            detail = f"{type(exc).__name__}: {exc}"
            return _Answer(
                transient=UploadResult(UploadOutcome.RETRY, code="server_unreachable", detail=detail)
            )

        status = response.status_code
        if status >= 500 or status in TRANSIENT_CLIENT_STATUSES:
            wait = retry_after_s(response, now=self._now())
            transient = UploadResult(
                UploadOutcome.RETRY,
                code=f"http_{status}",
                detail=_error_summary(response),
                retry_after_s=wait,
            )
            return _Answer(transient=transient, status=status)
        if status != 200:
            return _Answer(refused=f"http_{status}: {_error_summary(response)}", status=status)
        try:
            receipt = BatchReceipt.model_validate_json(response.content)
        except ValidationError as exc:
            return _Answer(refused=f"bad_receipt: {exc.error_count()} validation error(s)", status=status)
        return _Answer(receipts=receipt.receipts, status=status)

    # -- background thread -----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("uploader already started")
        self._thread = threading.Thread(target=self._run, name="tap-uploader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the request in flight (if any); pending taps stay in the outbox."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("uploader still waiting for the server after %.1f s; leaving it behind", timeout)

    def wake(self) -> None:
        """A new tap is in the outbox: upload now instead of after the current wait."""
        self._wake.set()

    def wait_for_receipt(self, seq: int, timeout: float) -> TapReceipt | None:
        """Block until tap *seq* has a receipt, or it is clear none is coming soon.

        Returns None after *timeout*, or earlier once an upload attempt that began after this call
        failed (the server is down: no point keeping the member waiting), or at once while the
        server refuses our batches as incompatible, or once the tap is quarantined.
        """
        deadline = time.monotonic() + timeout
        with self._attempt_done:
            first_new_attempt = self._attempts_started + 1
            while True:
                receipt = self._outbox.receipt(seq)
                if receipt is not None:
                    return receipt
                if self._incompatible or self._last_failed_attempt >= first_new_attempt:
                    return None
                if self._outbox.is_quarantined(seq):
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._attempt_done.wait(remaining)

    @property
    def last_result(self) -> UploadResult | None:
        return self._last_result

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            result = self._attempt()
            if self._stop.is_set():
                break
            if result.outcome is UploadOutcome.IDLE:
                self._retry.reset()
                self._wake.wait(self._idle_recheck_s)
            elif result.outcome is UploadOutcome.DELIVERED:
                if result.missing:
                    # Some receipts were missing: back off rather than spin resending those taps.
                    self._wake.wait(self._retry.next_delay())
                else:
                    self._retry.reset()
            elif result.outcome is UploadOutcome.RETRY:
                delay = self._retry.next_delay()
                if result.retry_after_s is not None:
                    # The server said when: a new tap does not make it any sooner.
                    self._stop.wait(max(delay, result.retry_after_s))
                else:
                    self._wake.wait(delay)
            else:
                self._stop.wait(self._incompatible_retry_s)

    def _attempt(self) -> UploadResult:
        with self._attempt_done:
            self._attempts_started += 1
            attempt = self._attempts_started
        try:
            result = self.upload_once()
        except OutboxError as exc:
            result = UploadResult(UploadOutcome.RETRY, code=exc.code, detail=exc.message)
        except Exception as exc:
            # The thread must outlive a bug: if it died, taps would pile up unsent in silence.
            log.exception("uploader round crashed; retrying later")
            result = UploadResult(UploadOutcome.RETRY, code="uploader_crashed", detail=type(exc).__name__)
        self._report(result)
        if self._on_result is not None:
            self._on_result(result)
        with self._attempt_done:
            if result.outcome in (UploadOutcome.RETRY, UploadOutcome.INCOMPATIBLE):
                self._last_failed_attempt = attempt
            self._incompatible = result.outcome is UploadOutcome.INCOMPATIBLE
            self._last_result = result
            self._attempt_done.notify_all()
        return result

    def _report(self, result: UploadResult) -> None:
        if result.outcome is UploadOutcome.DELIVERED:
            log.info(
                "uploaded %d tap(s)%s%s",
                result.sent,
                f", {result.missing} without receipt" if result.missing else "",
                f", {result.quarantined} quarantined" if result.quarantined else "",
            )
        elif result.outcome is UploadOutcome.RETRY:
            log.warning("upload failed (%s: %s); taps kept, retrying", result.code, result.detail)
        elif result.outcome is UploadOutcome.INCOMPATIBLE:
            log.error(
                "SERVER REFUSED THE UPLOAD (%s: %s). Agent and server disagree about the protocol; "
                "taps are kept and retried every %.0f s. Check the agent and server versions.",
                result.code,
                result.detail,
                self._incompatible_retry_s,
            )


def _match_receipts(
    entries: list[OutboxEntry], receipts: list[TapReceipt]
) -> tuple[list[tuple[int, TapReceipt]], list[str]]:
    """Pair receipts with the batch's taps by index; a receipt whose seq disagrees is not trusted."""
    matched: dict[int, TapReceipt] = {}
    problems: list[str] = []
    for receipt in receipts:
        if not 0 <= receipt.index < len(entries):
            problems.append(f"receipt index {receipt.index} outside a batch of {len(entries)}")
            continue
        entry = entries[receipt.index]
        if receipt.seq is not None and receipt.seq != entry.seq:
            problems.append(
                f"receipt {receipt.index} names seq {receipt.seq}, the batch had {entry.seq} there"
            )
            continue
        matched.setdefault(entry.seq, receipt)
    return list(matched.items()), problems


def _error_summary(response: httpx.Response) -> str:
    """The server's error code and message, without echoing request data back into our logs.

    FastAPI's 422 bodies quote the offending ``input``, which here would be a signed payload
    holding a card number; only locations and messages are kept.
    """
    try:
        body: Any = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    parts: list[str] = []
    if isinstance(body.get("error"), str):
        parts.append(body["error"])
    detail = body.get("detail")
    if isinstance(detail, str):
        parts.append(detail[:300])
    elif isinstance(detail, list):
        for item in detail[:5]:
            if isinstance(item, dict):
                loc = ".".join(str(part) for part in item.get("loc", []))
                parts.append(f"{loc}: {item.get('msg', '')}")
    return "; ".join(parts) or f"HTTP {response.status_code}"
