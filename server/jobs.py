"""Scheduled work that runs once per deployment, however many server processes it has.

Every server process runs the same schedule. Rounds start on wall-clock boundaries (whole
multiples of the interval since the Unix epoch), so the processes of a deployment reach each
round together and contend for it. On PostgreSQL a round goes to the process that takes the job's
transaction-level advisory lock (``pg_try_advisory_xact_lock``); the others skip it. The winner
keeps the lock for a claim window after the boundary (a quarter of the interval, at most
:data:`MAX_CLAIM_WINDOW`) even when its work is quicker, so that a process whose timer fires a
little late still finds the round taken.

What this does not promise, and why jobs must be idempotent: a process that starts, or stalls,
after the claim window has passed runs its round again (start-up runs a round at once, so a
rolling restart of N processes may run N extra rounds), unless ``fn`` knows its round is done and
returns False: ``server.schedule``'s jobs look at their recorded runs, so a restart repeats none.
A transaction-level lock also ends with the transaction: a process that dies mid-round hands
nothing over, the next round simply runs.

On SQLite a deployment has one server process (``ecard server run`` refuses ``--workers`` there),
so every round runs, without a lock.

This module stands on SQLAlchemy alone: each round is one transaction of its own, committed here
(a job's function, like a service, only adds and flushes).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_CLAIM_WINDOW = timedelta(seconds=30)
"""Longest a round's winner holds the lock without working; it keeps a connection idle in a
transaction meanwhile, so keep it well under any ``idle_in_transaction_session_timeout``."""


def job_lock_key(name: str) -> int:
    """The advisory lock key of job ``name``: a signed 64-bit number every process derives alike."""
    return int.from_bytes(hashlib.sha256(f"ecard.job:{name}".encode()).digest()[:8], "big", signed=True)


def round_number(at: datetime, interval: timedelta) -> int:
    """Which round of ``interval`` the instant ``at`` falls in (round 0 began at the Unix epoch)."""
    return math.floor(at.timestamp() / interval.total_seconds())


def seconds_until_next_round(at: datetime, interval: timedelta) -> float:
    period = interval.total_seconds()
    return period - (at.timestamp() % period)


def claim_window(interval: timedelta) -> timedelta:
    """How long after a round's boundary its winner keeps the round claimed."""
    return min(interval / 4, MAX_CLAIM_WINDOW)


def run_once_across_processes(
    engine: Engine,
    name: str,
    fn: Callable[[Session], T],
    *,
    claim_until: float | None = None,
    stop: threading.Event | None = None,
) -> T | None:
    """Run ``fn`` in a transaction of its own unless another process is running job ``name``.

    Returns ``fn``'s result once committed, or None when the round was skipped: another process
    holds the job's lock (PostgreSQL), or ``stop`` was set while waiting. ``claim_until`` is a
    :func:`time.monotonic` instant until which the lock is kept before ``fn`` runs (the claim
    window; the wait holds no row locks). Blocking: call it from a worker thread.
    """
    with Session(engine, expire_on_commit=False) as session:
        try:
            if engine.dialect.name == "postgresql":
                taken = (
                    session.connection()
                    .execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": job_lock_key(name)})
                    .scalar_one()
                )
                if not taken:
                    session.rollback()
                    return None
                wait = claim_until - time.monotonic() if claim_until is not None else 0.0
                if wait > 0 and (stop or threading.Event()).wait(wait):
                    session.rollback()  # shutting down: the next start runs the round
                    return None
            result = fn(session)
            session.commit()
        except BaseException:
            session.rollback()
            raise
    return result


async def run_every_round(
    engine: Engine,
    name: str,
    fn: Callable[[Session], object],
    *,
    interval: timedelta,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Run ``fn`` at start-up and then at every round boundary of ``interval``, forever (cancel the
    task to stop); on PostgreSQL one process of the deployment runs each round.

    ``fn`` returns False when it finds its round already done (a job that records its runs, so a
    restart or a late process does not do the round again); anything else means it ran. A failing
    round is logged and the schedule goes on: the next round tries again.
    """
    stop = threading.Event()
    window = claim_window(interval).total_seconds()

    def ran(session: Session) -> bool:
        return fn(session) is not False  # None from run_once_across_processes means "skipped"

    current, claim_until, note = round_number(clock(), interval), None, " (start-up)"
    try:
        while True:
            try:
                result = await asyncio.to_thread(
                    run_once_across_processes, engine, name, ran, claim_until=claim_until, stop=stop
                )
            except SQLAlchemyError as exc:
                # The class only: a driver message may quote statement parameters.
                log.warning("job %s: round %d failed: %s", name, current, exc.__class__.__name__)
            except Exception:
                log.exception("job %s: round %d failed", name, current)
            else:
                if result is None:
                    log.info("job %s: skipped round %d, another process has it", name, current)
                elif result is False:
                    log.info("job %s: skipped round %d, already done", name, current)
                else:
                    log.info("job %s: ran round %d%s", name, current, note)
            await asyncio.sleep(seconds_until_next_round(clock(), interval))
            # The round is the one slept towards, even if the timer fired a hair early.
            current, claim_until, note = current + 1, time.monotonic() + window, ""
            current = max(current, round_number(clock(), interval))
    finally:
        stop.set()  # a worker thread waiting out a claim window returns at once
