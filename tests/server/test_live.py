"""The live feed: a notice reaches subscribers of its event only after the transaction commits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from server.db import unit_of_work
from server.live import AcceptedTap, TapFeed, announce_after_commit

AT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
T = TypeVar("T")


def notice(event_id: int, member_id: int = 1) -> AcceptedTap:
    return AcceptedTap(
        event_id=event_id,
        member_id=member_id,
        tap_id=member_id,
        member_name="陈*国",
        occurred_at=AT,
        repeat=False,
    )


def received_while(feed: TapFeed, event_id: int, work: Callable[[], None]) -> list[AcceptedTap]:
    """Subscribe to ``event_id``, run ``work`` in a worker thread (as ingest runs), collect notices."""

    async def scenario() -> list[AcceptedTap]:
        async with feed.subscribe(event_id) as queue:
            await asyncio.to_thread(work)
            got: list[AcceptedTap] = []
            while True:
                try:
                    got.append(await asyncio.wait_for(queue.get(), timeout=0.2))
                except TimeoutError:
                    return got

    return run_in_own_loop(scenario)


def run_in_own_loop(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a fresh event loop in its own thread: Playwright's sync API (the browser
    tests, in the same pytest process) leaves an event loop running in the main thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(scenario())).result(timeout=30)


def test_a_committed_notice_reaches_its_events_subscribers_only(engine: Engine) -> None:
    feed = TapFeed()

    def work() -> None:
        with unit_of_work(engine) as session:
            announce_after_commit(session, feed.publish, notice(7, member_id=1))
            announce_after_commit(session, feed.publish, notice(8, member_id=2))

    assert received_while(feed, 7, work) == [notice(7, member_id=1)]


def test_nothing_is_announced_before_the_commit(engine: Engine) -> None:
    feed = TapFeed()
    seen_before_commit: list[int] = []

    def work() -> None:
        with unit_of_work(engine) as session:
            announce_after_commit(session, lambda n: seen_before_commit.append(n.event_id), notice(7))
            session.connection().exec_driver_sql("SELECT 1")
            assert seen_before_commit == []
        assert seen_before_commit == [7]

    received_while(feed, 7, work)


def test_a_rolled_back_transaction_announces_nothing(engine: Engine) -> None:
    feed = TapFeed()

    def work() -> None:
        try:
            with unit_of_work(engine) as session:
                announce_after_commit(session, feed.publish, notice(7))
                raise RuntimeError("the request failed after ingest")
        except RuntimeError:
            pass
        with unit_of_work(engine):
            pass  # a later transaction on a new session must not deliver the dropped notice

    assert received_while(feed, 7, work) == []


def test_a_savepoint_rolling_back_keeps_the_outer_transactions_notices(engine: Engine) -> None:
    """Ingest retries a tap in a savepoint after a lost race; earlier taps of the batch still count."""
    feed = TapFeed()

    def work() -> None:
        with unit_of_work(engine) as session:
            announce_after_commit(session, feed.publish, notice(7, member_id=1))
            nested = session.begin_nested()
            nested.rollback()
            announce_after_commit(session, feed.publish, notice(7, member_id=2))

    assert received_while(feed, 7, work) == [notice(7, member_id=1), notice(7, member_id=2)]


def test_a_session_used_for_two_transactions_delivers_each_once(engine: Engine) -> None:
    feed = TapFeed()

    def work() -> None:
        with Session(engine) as session:
            announce_after_commit(session, feed.publish, notice(7, member_id=1))
            session.commit()
            announce_after_commit(session, feed.publish, notice(7, member_id=2))
            session.commit()

    assert received_while(feed, 7, work) == [notice(7, member_id=1), notice(7, member_id=2)]


def test_subscribers_leave_when_their_stream_ends() -> None:
    feed = TapFeed()

    async def scenario() -> None:
        async with feed.subscribe(7):
            assert feed.subscriber_count(7) == 1
        assert feed.subscriber_count(7) == 0

    run_in_own_loop(scenario)
    feed.publish(notice(7))  # nobody listening: nothing to do, no error
