"""Live feed of accepted check-ins, for the web app's live board.

Ingest calls :func:`announce_after_commit` for each accepted tap; the notice is delivered only
when the request's transaction commits (never for a rolled-back tap), to every board subscribed
to that event. Subscribers are asyncio consumers (SSE streams); ingest runs in a worker thread,
so delivery hops onto the subscriber's event loop with ``call_soon_threadsafe``.

One process (SQLite): :meth:`TapFeed.publish` hands a notice straight to this process's boards.

Several processes (PostgreSQL, ``ecard server run --workers N`` or several hosts): the app's
lifespan attaches a :class:`PgTapRelay` to the feed. Publishing then sends the notice as
``NOTIFY ecard_tap_accepted, '<AcceptedTap as JSON>'`` (after the tap's commit, from a sender
thread, so a slow database never holds up the upload's answer), and every process, this one
included, has one connection ``LISTEN``-ing on that channel that feeds its own :class:`TapFeed`.
A process's own taps therefore reach its boards exactly once, through the same loop-back as
everyone else's. The listener reconnects with backoff when its connection is lost; notices sent
meanwhile are missed, which costs only latency: a board re-reads the database on its next notice
and whenever it (re)connects (streams end every minute, see ``server.web.pages.events``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import random
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import event, make_url
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session

if TYPE_CHECKING:
    import psycopg

    _Connection = psycopg.Connection[tuple[Any, ...]]

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
        self._relay: Callable[[AcceptedTap], None] | None = None

    def publish(self, notice: AcceptedTap) -> None:
        """Announce an accepted tap: through the relay to every process's boards when one is
        attached (this process's boards get it back from the relay), else to this process's
        boards. Callable from any thread."""
        relay = self._relay
        if relay is None:
            self.deliver(notice)
        else:
            relay(notice)

    def relay_through(self, send: Callable[[AcceptedTap], None] | None) -> None:
        """Send published notices through ``send`` instead of delivering them here (None: stop)."""
        self._relay = send

    def deliver(self, notice: AcceptedTap) -> None:
        """Deliver to this process's subscribers of the notice's event; callable from any thread."""
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


TAP_CHANNEL = "ecard_tap_accepted"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7900
# Notices waiting for the sender thread; beyond this (the database unreachable for long) new ones
# are dropped: boards catch up on their next notice or reconnect.
_OUTBOX_LIMIT = 10_000
_SEND_BATCH = 500
_POLL_SECONDS = 0.5
_CONNECT_TIMEOUT_SECONDS = 5
_BACKOFF_FIRST_SECONDS = 0.5
_BACKOFF_MAX_SECONDS = 30.0


class PgTapRelay:
    """Carries :class:`AcceptedTap` notices between server processes through PostgreSQL
    ``LISTEN/NOTIFY``, each process's listener feeding its own :class:`TapFeed`.

    Two threads, each with a connection of its own outside the engine's pool: a listener (always
    connected, reconnecting with backoff) and a sender (batches queued notices into one
    ``pg_notify`` statement). :meth:`start` and :meth:`stop` belong to the app's lifespan.
    """

    def __init__(self, database_url: str, feed: TapFeed, *, channel: str = TAP_CHANNEL) -> None:
        self._conninfo = libpq_conninfo(database_url)
        self._feed = feed
        self._channel = channel
        self._outbox: queue.Queue[AcceptedTap] = queue.Queue(_OUTBOX_LIMIT)
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start listening and sending; then route the feed's notices through the relay."""
        self._threads = [
            threading.Thread(target=self._listen_forever, name="tap-relay-listener", daemon=True),
            threading.Thread(target=self._send_forever, name="tap-relay-sender", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._feed.relay_through(self.send)

    def wait_listening(self, timeout: float) -> bool:
        """Whether the listener is connected (waits up to ``timeout`` seconds for it)."""
        return self._listening.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Hand the feed back to local delivery, flush queued notices and close the connections."""
        self._feed.relay_through(None)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def send(self, notice: AcceptedTap) -> None:
        """Queue a notice for every process (called after the tap's commit; never blocks)."""
        try:
            self._outbox.put_nowait(notice)
        except queue.Full:
            log.warning("live feed: %d notices wait for the database; dropping one", _OUTBOX_LIMIT)

    def _listen_forever(self) -> None:
        backoff = _BACKOFF_FIRST_SECONDS
        while not self._stop.is_set():
            try:
                with _connect(self._conninfo) as conn:
                    conn.execute(f'LISTEN "{self._channel}"')
                    self._listening.set()
                    backoff = _BACKOFF_FIRST_SECONDS
                    log.debug("live feed: listening on %s", self._channel)
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=_POLL_SECONDS):
                            self._receive(notify.payload)
            except Exception as exc:  # psycopg.Error; whatever it is, the listener must come back
                self._listening.clear()
                if self._stop.is_set():
                    return
                log.warning(
                    "live feed: listener connection lost (%s); reconnecting in %.1f s",
                    exc.__class__.__name__,
                    backoff,
                )
                self._stop.wait(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, _BACKOFF_MAX_SECONDS)
        self._listening.clear()

    def _receive(self, payload: str) -> None:
        # Every process hears every accepted tap; most of the time no board here is open, and
        # decoding each notice only to drop it cost a busy server a few per cent of its CPU.
        if not self._feed.subscriber_count():
            return
        try:
            notice = _notice_adapter().validate_json(payload)
        except ValidationError:
            log.warning("live feed: ignored a malformed notice on %s", self._channel)
            return
        self._feed.deliver(notice)

    def _send_forever(self) -> None:
        conn: _Connection | None = None
        try:
            while not (self._stop.is_set() and self._outbox.empty()):
                batch = self._next_batch()
                if batch:
                    conn = self._notify(conn, [encode_notice(notice) for notice in batch])
        finally:
            if conn is not None:
                conn.close()

    def _next_batch(self) -> list[AcceptedTap]:
        try:
            batch = [self._outbox.get(timeout=_POLL_SECONDS)]
        except queue.Empty:
            return []
        while len(batch) < _SEND_BATCH:
            try:
                batch.append(self._outbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _notify(
        self, conn: psycopg.Connection[Any] | None, payloads: list[str]
    ) -> psycopg.Connection[Any] | None:
        """Send the payloads (one statement, so one transaction); returns the connection to reuse."""
        for attempt in (1, 2):  # the kept connection may have died since the last batch
            try:
                if conn is None or conn.closed:
                    conn = _connect(self._conninfo)
                # One JSON array, not a text[]: psycopg escapes each element of a text array with
                # a regular expression, which cost more than encoding the notices.
                conn.execute(
                    "SELECT pg_notify(%s, payload) FROM json_array_elements_text(%s::json) AS payload",
                    (self._channel, json.dumps(payloads, ensure_ascii=False)),
                )
                return conn
            except Exception as exc:  # psycopg.Error
                if conn is not None:
                    conn.close()
                conn = None
                if attempt == 2:
                    log.warning(
                        "live feed: could not notify other processes (%s); %d notices dropped",
                        exc.__class__.__name__,
                        len(payloads),
                    )
        return None


def encode_notice(notice: AcceptedTap) -> str:
    """The NOTIFY payload: the notice as JSON, under PostgreSQL's payload limit (encoded by the
    adapter that decodes it: no field list of its own, and no deep copy as ``asdict`` makes)."""
    payload = _notice_adapter().dump_json(notice).decode()
    if len(payload.encode()) >= MAX_PAYLOAD_BYTES:
        # Only the (masked) name can be long; boards look the member up anyway.
        payload = _notice_adapter().dump_json(replace(notice, member_name="")).decode()
    return payload


def libpq_conninfo(database_url: str) -> str:
    """The libpq URL psycopg connects with, from a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def is_postgresql(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "postgresql"


@cache
def _notice_adapter() -> TypeAdapter[AcceptedTap]:
    return TypeAdapter(AcceptedTap)


def _connect(conninfo: str) -> _Connection:
    import psycopg  # only servers on PostgreSQL need the driver loaded

    return psycopg.connect(conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_SECONDS)
