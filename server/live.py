"""In-process live feed of accepted check-ins, for the web app's live board.

Ingest calls :func:`announce_after_commit` for each accepted tap; the notice is delivered only
when the request's transaction commits (never for a rolled-back tap), to every board subscribed
to that event. Subscribers are asyncio consumers (SSE streams); ingest runs in a worker thread,
so delivery hops onto the subscriber's event loop with ``call_soon_threadsafe``.

Limits, by design of a small deployment: the feed lives in one process. With several server
workers (``uvicorn --workers N``, or several hosts) a tap committed by one worker would not reach
boards streamed by another; that setup needs a shared channel, e.g. PostgreSQL ``LISTEN/NOTIFY``
(``NOTIFY tap_accepted, '<event_id>'`` after commit, one listening connection per worker feeding
its :class:`TapFeed`). A board also re-reads the database whenever it (re)connects, so a notice
missed during a reconnect costs nothing but latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import event
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session

log = logging.getLogger(__name__)

_PENDING_KEY = "live.pending_notices"
_LISTENING_KEY = "live.listening"
# A board that stops reading (a stuck browser) must not grow memory without bound; it re-reads
# the database on its next notice anyway, so dropping surplus notices loses nothing.
_QUEUE_LIMIT = 100


@dataclass(frozen=True)
class AcceptedTap:
    """An accepted check-in. ``member_name`` is masked (张*明); boards look the rest up."""

    event_id: int
    member_id: int
    tap_id: int
    member_name: str
    occurred_at: datetime
    repeat: bool


@dataclass
class _Subscriber:
    event_id: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[AcceptedTap]


class TapFeed:
    """Fan-out of :class:`AcceptedTap` notices to subscribers, by event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[_Subscriber] = []

    def publish(self, notice: AcceptedTap) -> None:
        """Deliver to every subscriber of the notice's event; callable from any thread."""
        with self._lock:
            targets = [s for s in self._subscribers if s.event_id == notice.event_id]
        for subscriber in targets:
            # RuntimeError: that subscriber's loop has closed; it unsubscribes itself.
            with contextlib.suppress(RuntimeError):
                subscriber.loop.call_soon_threadsafe(_offer, subscriber.queue, notice)

    @asynccontextmanager
    async def subscribe(self, event_id: int) -> AsyncIterator[asyncio.Queue[AcceptedTap]]:
        """A queue receiving the event's notices while the context is open."""
        subscriber = _Subscriber(event_id, asyncio.get_running_loop(), asyncio.Queue(_QUEUE_LIMIT))
        with self._lock:
            self._subscribers.append(subscriber)
        try:
            yield subscriber.queue
        finally:
            with self._lock:
                self._subscribers.remove(subscriber)

    def subscriber_count(self, event_id: int | None = None) -> int:
        with self._lock:
            return sum(event_id is None or s.event_id == event_id for s in self._subscribers)


def _offer(queue: asyncio.Queue[AcceptedTap], notice: AcceptedTap) -> None:
    if not queue.full():
        queue.put_nowait(notice)


def announce_after_commit(
    session: Session, publish: Callable[[AcceptedTap], None], notice: AcceptedTap
) -> None:
    """Call ``publish(notice)`` once ``session``'s transaction commits; forget it on rollback.

    Savepoints (ingest retries a tap that lost a race) do not count: only the end of the
    outermost transaction delivers or drops the notices.
    """
    if not session.info.get(_LISTENING_KEY):
        # Listeners stay for the session's life (one request); they do nothing without notices.
        event.listen(session, "after_commit", _deliver_pending)
        event.listen(session, "after_transaction_end", _forget_pending)
        session.info[_LISTENING_KEY] = True
    session.info.setdefault(_PENDING_KEY, []).append((publish, notice))


def _deliver_pending(session: Session) -> None:
    # SQLAlchemy calls after_commit for the outermost transaction only.
    for publish, notice in session.info.pop(_PENDING_KEY, []):
        try:
            publish(notice)
        except Exception:  # a broken board must never fail an upload that already committed
            log.exception("live feed: could not publish a notice for event %d", notice.event_id)


def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return  # a savepoint or subtransaction ended; the outer transaction decides
    session.info.pop(_PENDING_KEY, None)  # still there only if it did not commit
