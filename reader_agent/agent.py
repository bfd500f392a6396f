"""The kiosk run loop: read a card, commit the signed tap, then tell the member.

Order matters. A tap is committed to the outbox (durable, signed, numbered) *before* any
feedback line is printed, so a member who saw "成功" or "已离线记录" has a tap that survives a
power cut. Only then does the loop give the uploader a short moment (``receipt_wait_s``) to
bring back the server's verdict; otherwise the member is told the tap was recorded offline.

Reader failures never stop the loop:

* ``ReaderUnavailable`` / ``ReaderDisconnected`` (or any other ``ReaderError`` outside a card
  read): print one line, close the reader, reopen it with backoff, print "ready" when it is back.
* ``CardReadError``: "读卡失败，请重新刷卡"; the reader stays open.

The loop is single-threaded; the uploader runs on its own thread and is owned by the caller.

Every reader that can (pcsc, nfc) is told to challenge T-Union cards on this kiosk's behalf
(``reader_agent.cardapp.CardChallenger``): the card's answer travels in the signed tap and the
server has the issuer check it. Serial UID readers cannot, and their taps carry no answer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from pydantic import ValidationError

from reader_agent import feedback
from reader_agent.cardapp import CardChallenger, ChallengesCards
from reader_agent.feedback import Feedback, FeedbackStatus
from reader_agent.outbox import Outbox, OutboxError, Sealer
from reader_agent.readers.base import CardRead, CardReadError, Reader, ReaderError
from reader_agent.uploader import Backoff
from schemas import ReaderInfo, TapMode, TapPayload, TapReceipt

log = logging.getLogger(__name__)

READER_NAME_MAX = 200  # ReaderInfo.name limit in the wire contract

_READER_MESSAGES = {
    "reader_unavailable": "读卡器不可用，正在重试 (reader unavailable, retrying)",
    "reader_disconnected": "读卡器已断开，正在重新连接 (reader disconnected, reconnecting)",
}
_READER_MESSAGE_DEFAULT = "读卡器故障，正在重新连接 (reader failed, reconnecting)"
READ_FAILED_MESSAGE = "读卡失败，请重新刷卡 (card read failed, please tap again)"
NOT_RECORDED_MESSAGE = "本次刷卡未能记录，请联系管理员 (tap NOT recorded, please call staff)"


class ReceiptSource(Protocol):
    """What the loop needs from the uploader (``reader_agent.uploader.Uploader`` is one)."""

    def wake(self) -> None: ...

    def wait_for_receipt(self, seq: int, timeout: float) -> TapReceipt | None: ...


class Agent:
    def __init__(
        self,
        *,
        open_reader: Callable[[], Reader],
        outbox: Outbox,
        uploader: ReceiptSource,
        sealer: Sealer,
        kiosk_id: str,
        mode: TapMode,
        emit: Callable[[Feedback], None],
        now: Callable[[], datetime],
        poll_timeout_s: float = 0.5,
        receipt_wait_s: float = 1.5,
        reader_retry: Backoff | None = None,
    ) -> None:
        self._open_reader = open_reader
        self._outbox = outbox
        self._uploader = uploader
        self._sealer = sealer
        self._kiosk_id = kiosk_id
        self._mode = mode
        self._emit = emit
        self._now = now
        self._poll_timeout_s = poll_timeout_s
        self._receipt_wait_s = receipt_wait_s
        self._reader_retry = reader_retry or Backoff(0.5, 10.0)

    def run(self, stop: threading.Event) -> None:
        """Serve card taps until *stop* is set; the reader is closed on the way out."""
        reader: Reader | None = None
        reported_failure: str | None = None  # one line per outage, not one per retry
        try:
            while not stop.is_set():
                if reader is None:
                    try:
                        reader = self._open_reader()
                    except ReaderError as exc:
                        reported_failure = self._reader_failed(exc, reported_failure)
                        stop.wait(self._reader_retry.next_delay())
                        continue
                    reported_failure = None
                    if isinstance(reader, ChallengesCards):
                        reader.use_card_challenges(CardChallenger(self._kiosk_id))
                    self._emit(Feedback(FeedbackStatus.READY, f"请刷卡 (ready: {reader.name})"))
                try:
                    read = reader.poll(self._poll_timeout_s)
                except CardReadError as exc:
                    log.warning("card read failed: %s", exc.code)
                    self._emit(Feedback(FeedbackStatus.READ_FAILED, READ_FAILED_MESSAGE, code=exc.code))
                    continue
                except ReaderError as exc:
                    reported_failure = self._reader_failed(exc, reported_failure)
                    _close_quietly(reader)
                    reader = None
                    stop.wait(self._reader_retry.next_delay())
                    continue
                self._reader_retry.reset()
                if read is not None:
                    self._emit(self.handle_read(read))
        finally:
            if reader is not None:
                _close_quietly(reader)
        pending = self._pending_or_none()
        message = (
            "已停止 (stopped)"
            if pending is None
            else f"已停止，{pending} 条待上传 (stopped, {pending} waiting)"
        )
        self._emit(Feedback(FeedbackStatus.STOPPED, message, pending=pending))

    def handle_read(self, read: CardRead) -> Feedback:
        """Commit one card presentation as a signed tap and say what became of it."""
        occurred_at = self._now()
        reader_info = ReaderInfo(backend=read.backend, name=read.reader_name[:READER_NAME_MAX])
        card = feedback.mask_card(read.card)

        def make_payload(seq: int) -> TapPayload:
            return TapPayload(
                kiosk_id=self._kiosk_id,
                seq=seq,
                occurred_at=occurred_at,
                card=read.card,
                mode=self._mode,
                reader=reader_info,
            )

        try:
            entry = self._outbox.append(make_payload, self._sealer)
        except OutboxError as exc:
            log.error("tap NOT recorded (card %s): %s", card, exc.message)
            return Feedback(FeedbackStatus.NOT_RECORDED, NOT_RECORDED_MESSAGE, code=exc.code, card=card)
        except ValidationError:
            # A payload the contract refuses (e.g. a kiosk id too long) is a bug, but the member
            # must still hear that nothing was recorded.
            log.exception("tap NOT recorded (card %s): payload invalid", card)
            return Feedback(
                FeedbackStatus.NOT_RECORDED, NOT_RECORDED_MESSAGE, code="payload_invalid", card=card
            )
        log.info("tap #%d recorded (card %s)", entry.seq, card)

        self._uploader.wake()
        try:
            receipt = self._uploader.wait_for_receipt(entry.seq, self._receipt_wait_s)
        except OutboxError as exc:
            log.error("cannot read receipt of tap #%d: %s", entry.seq, exc.message)
            receipt = None
        pending = self._pending_or_none()
        if receipt is None:
            return feedback.offline(entry.seq, pending=pending, card=card)
        return feedback.from_receipt(entry.seq, receipt, pending=pending, card=card)

    def _reader_failed(self, exc: ReaderError, reported: str | None) -> str:
        # The backend's message names the device and the cause, which is what the operator needs;
        # backends never put card identifiers in ReaderUnavailable/Disconnected messages.
        log.warning("reader error %s: %s", exc.code, exc)
        if exc.code != reported:
            message = _READER_MESSAGES.get(exc.code, _READER_MESSAGE_DEFAULT)
            self._emit(Feedback(FeedbackStatus.READER_ERROR, message, code=exc.code))
        return exc.code

    def _pending_or_none(self) -> int | None:
        try:
            return self._outbox.pending_count()
        except OutboxError as exc:
            log.error("cannot count pending taps: %s", exc.message)
            return None


def _close_quietly(reader: Reader) -> None:
    with contextlib.suppress(ReaderError):
        reader.close()
