"""Tap uploads that arrive together are decided together (group commit).

A run of ingest costs much the same for one tap as for fifty: the kiosk keys, the seq slots, the
card bindings, the open events and the attendance rows are read in a handful of statements, and the
savepoint and the commit are one each. At the 1 July 主题党日 most uploads hold a single tap (an
online kiosk sends each tap as it is read), and hundreds of them arrive each second. So the upload
route does not decide its batch itself: it hands it to this process's :class:`TapIntake` and waits.
The intake's worker takes every upload that is waiting when it is free, decides them in one run
and one transaction (:func:`server.taps.service.ingest_uploads`: in arrival order, as if one came
after another), commits, and answers each request with its own receipt. Under light load a run
holds one upload and nothing waits longer than before; under load the runs grow by themselves and
the cost per tap falls toward that of a large batch, while each kiosk still gets its answer in
the time of one run.

One worker per process by default (``ECARD_INGEST_WORKERS``): its runs never race each other for
a (kiosk, seq) slot or a member's attendance row, and on SQLite there is one writer anyway. Runs
of several workers or processes do race on PostgreSQL; ingest settles that as before (a lost race
decides again, one by one), and a run locks its kiosks in one statement, in id order, so two runs
wait for each other instead of deadlocking.

A run that fails as a whole (the database went away) is tried again upload by upload, each in its
own transaction, so one request's failure stays its own.

Before an upload joins the queue, its envelopes are read and their signatures checked where the
kiosk's key is known (:func:`server.taps.service.check_ahead`), in the request's own time and off
the worker's thread: ``cryptography`` verifies without holding the GIL, so the checks of the
uploads arriving run beside the run being decided, and the worker, the one thread every tap
passes through, no longer spends a fifth of its time verifying.

Each worker keeps one connection for its runs rather than taking one from the pool per run: the
pool checks a connection with a round trip before lending it, and at one-tap runs that was one
round trip in sixteen. A kept connection that died (the database restarted) fails the first
statement of a run; the run is then decided again at once on a new connection.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from schemas.messages import MAX_BATCH_SIZE, BatchReceipt
from server.cards.checks import CardCheckPolicy
from server.clock import Clock
from server.db import unit_of_work
from server.errors import ServiceUnavailable
from server.evidence.sealing import EvidenceSealer
from server.keyring import Keyring
from server.kiosks.authentication import PublicKeys
from server.live import AcceptedTap
from server.taps.service import Upload, check_ahead, ingest_uploads
from server.taps.strangers import StrangerTally

log = logging.getLogger(__name__)

MAX_RUN_ENVELOPES = 4 * MAX_BATCH_SIZE
"""A run stops taking uploads once it holds this many envelopes: its reads stay a few statements,
and the first upload in it waits for no more than a few batches' work."""

Decide = Callable[[Session, Sequence[Upload], datetime], list[BatchReceipt]]
"""Decide some uploads in the session's transaction at an instant: one receipt per upload."""

Prepare = Callable[[Upload], Upload]
"""Work on an upload before it is queued, outside any transaction (the same receipts after)."""

PREPARE_INLINE_ENVELOPES = 4
"""Uploads this small are prepared in the event loop; a thread hop would cost more than the work."""


class IntakeClosed(ServiceUnavailable):
    """The server is shutting down: the upload was not taken (503; the kiosk sends it again)."""

    code = "shutting_down"


@dataclass(frozen=True)
class _Waiting:
    upload: Upload
    answer: Future[BatchReceipt]


class TapIntake:
    """This process's one tap writer: uploads queue here and are decided in runs (see the module
    docstring). :meth:`start` before the first :meth:`submit`, :meth:`stop` at shutdown."""

    def __init__(
        self,
        engine: Engine,
        decide: Decide,
        *,
        clock: Clock,
        workers: int = 1,
        max_envelopes: int = MAX_RUN_ENVELOPES,
        prepare: Prepare | None = None,
    ) -> None:
        self._engine = engine
        self._decide = decide
        self._prepare = prepare
        self._clock = clock
        self._max_envelopes = max_envelopes
        self._waiting: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self._closed = False
        self._workers = [
            threading.Thread(target=self._work, name=f"tap-intake-{n}", daemon=True) for n in range(workers)
        ]

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Decide what is already waiting, then stop the workers."""
        self._closed = True
        for _worker in self._workers:
            self._waiting.put(None)
        for worker in self._workers:
            worker.join(timeout)
        # Whatever was queued while stopping gets an answer rather than a request left hanging.
        while True:
            try:
                late = self._waiting.get_nowait()
            except queue.Empty:
                return
            if late is not None and late.answer.set_running_or_notify_cancel():
                late.answer.set_exception(IntakeClosed("the server is shutting down"))

    async def submit(self, upload: Upload) -> BatchReceipt:
        """Queue *upload* and wait for its receipt; raises what deciding it raised, or
        :class:`IntakeClosed` once :meth:`stop` was called."""
        if self._closed:
            raise IntakeClosed("the server is shutting down")
        if self._prepare is not None:
            upload = await self._prepared(self._prepare, upload)
        answer: Future[BatchReceipt] = Future()
        self._waiting.put(_Waiting(upload, answer))
        return await asyncio.wrap_future(answer)

    @staticmethod
    async def _prepared(prepare: Prepare, upload: Upload) -> Upload:
        try:
            if len(upload.envelopes) <= PREPARE_INLINE_ENVELOPES:
                return prepare(upload)
            return await asyncio.to_thread(prepare, upload)
        except Exception:  # preparing is only a head start: the run does it all anyway
            log.exception("tap intake: could not prepare an upload of %d envelopes", len(upload.envelopes))
            return upload

    def _work(self) -> None:
        connection = _KeptConnection(self._engine)
        try:
            while True:
                first = self._waiting.get()
                if first is None:
                    break
                run, stopping = self._take_run(first)
                self._run(run, connection)
                if stopping:
                    break
        finally:
            connection.close()

    def _take_run(self, first: _Waiting) -> tuple[list[_Waiting], bool]:
        """*first* and the uploads waiting behind it, up to the run's size; and whether the stop
        marker was among them."""
        run, envelopes = [first], len(first.upload.envelopes)
        while envelopes < self._max_envelopes:
            try:
                waiting = self._waiting.get_nowait()
            except queue.Empty:
                return run, False
            if waiting is None:
                return run, True
            run.append(waiting)
            envelopes += len(waiting.upload.envelopes)
        return run, False

    def _run(self, run: list[_Waiting], connection: _KeptConnection) -> None:
        # A request that went away before its turn is not decided: its kiosk sends it again.
        run = [waiting for waiting in run if waiting.answer.set_running_or_notify_cancel()]
        if not run:
            return
        try:
            receipts = self._decide_in_one_transaction(connection, [waiting.upload for waiting in run])
        except Exception as exc:
            if len(run) == 1:
                run[0].answer.set_exception(exc)
                return
            log.warning("a run of %d uploads failed (%s); deciding them one by one", len(run), exc)
            for waiting in run:
                try:
                    (receipt,) = self._decide_in_one_transaction(connection, [waiting.upload])
                except Exception as alone:
                    waiting.answer.set_exception(alone)
                else:
                    waiting.answer.set_result(receipt)
            return
        for waiting, receipt in zip(run, receipts, strict=True):
            waiting.answer.set_result(receipt)

    def _decide_in_one_transaction(
        self, connection: _KeptConnection, uploads: list[Upload]
    ) -> list[BatchReceipt]:
        try:
            with unit_of_work(connection.get()) as session:
                return self._decide(session, uploads, self._clock())
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            log.warning("tap intake: the database connection was lost (%s); reconnecting", exc.orig)
        # The connection reconnects on its next use; nothing of the failed attempt was kept.
        with unit_of_work(connection.get()) as session:
            return self._decide(session, uploads, self._clock())


class _KeptConnection:
    """A worker's connection to the database, opened when first needed (and again once closed)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    def get(self) -> Connection:
        if self._connection is None or self._connection.closed:
            self._connection = self._engine.connect()
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def tap_intake(
    engine: Engine,
    *,
    keyring: Keyring,
    clock: Clock,
    max_clock_skew: timedelta,
    on_accepted: Callable[[AcceptedTap], None],
    card_policy: CardCheckPolicy,
    strangers: StrangerTally,
    sealer: EvidenceSealer,
    workers: int = 1,
) -> TapIntake:
    """The server's intake, deciding with the deployment's keys, policies and live feed, and
    checking signatures ahead with the kiosk keys its runs have found."""
    public_keys = PublicKeys()

    def prepare(upload: Upload) -> Upload:
        return check_ahead(upload, public_keys)

    def decide(session: Session, uploads: Sequence[Upload], now: datetime) -> list[BatchReceipt]:
        return ingest_uploads(
            session,
            uploads,
            keyring=keyring,
            received_at=now,
            max_clock_skew=max_clock_skew,
            on_accepted=on_accepted,
            card_policy=card_policy,
            strangers=strangers,
            sealer=sealer,
            public_keys=public_keys,
        )

    return TapIntake(engine, decide, clock=clock, workers=workers, prepare=prepare)
