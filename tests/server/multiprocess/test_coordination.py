"""The pieces that make several processes one server, in one process: the job lock and the
LISTEN/NOTIFY relay of the live feed (two relays on one database stand for two processes)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter
from sqlmodel import Session

from server.db import make_engine
from server.jobs import claim_window, round_number, run_once_across_processes, seconds_until_next_round
from server.live import MAX_PAYLOAD_BYTES, AcceptedTap, PgTapRelay, TapFeed, encode_notice
from tests.server.test_live import notice, received_while, run_in_own_loop


@pytest.mark.pg
def test_a_job_held_by_one_process_is_skipped_by_another(pg_database_url: str) -> None:
    engine = make_engine(pg_database_url)
    holding, release = threading.Event(), threading.Event()

    def slow(_session: Session) -> str:
        holding.set()
        release.wait(10)
        return "first"

    try:
        first: list[str | None] = []
        worker = threading.Thread(target=lambda: first.append(run_once_across_processes(engine, "j", slow)))
        worker.start()
        assert holding.wait(10)
        assert run_once_across_processes(engine, "j", lambda _s: "second") is None
        assert run_once_across_processes(engine, "other job", lambda _s: "other") == "other"
        release.set()
        worker.join(10)
        assert first == ["first"]
        assert run_once_across_processes(engine, "j", lambda _s: "next round") == "next round"
    finally:
        release.set()
        engine.dispose()


@pytest.mark.pg
def test_the_winner_keeps_the_round_claimed_for_the_window(pg_database_url: str) -> None:
    engine = make_engine(pg_database_url)
    try:
        results: list[str | None] = []
        claim_until = time.monotonic() + 1.0
        worker = threading.Thread(
            target=lambda: results.append(
                run_once_across_processes(engine, "j", lambda _s: "won", claim_until=claim_until)
            )
        )
        worker.start()
        time.sleep(0.3)  # the winner has done its work by now, and still holds the round
        assert run_once_across_processes(engine, "j", lambda _s: "late") is None
        worker.join(10)
        assert results == ["won"]
    finally:
        engine.dispose()


def test_rounds_fall_on_wall_clock_boundaries() -> None:
    interval = timedelta(hours=24)
    at = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
    assert round_number(at, interval) == round_number(datetime(2026, 12, 6, tzinfo=UTC), interval)
    assert seconds_until_next_round(at, interval) == 3600
    assert claim_window(interval) == timedelta(seconds=30)
    assert claim_window(timedelta(seconds=2)) == timedelta(seconds=0.5)


@pytest.mark.pg
def test_a_notice_published_in_one_process_reaches_both_processes_boards_once(pg_database_url: str) -> None:
    here, there = TapFeed(), TapFeed()
    relays = [PgTapRelay(pg_database_url, here), PgTapRelay(pg_database_url, there)]
    for relay in relays:
        relay.start()
    try:
        assert all(relay.wait_listening(10) for relay in relays)

        async def scenario() -> tuple[list[AcceptedTap], list[AcceptedTap]]:
            async with here.subscribe(7) as mine, there.subscribe(7) as theirs:
                here.publish(notice(7, member_id=3))
                got: tuple[list[AcceptedTap], list[AcceptedTap]] = ([], [])
                for queue, into in ((mine, got[0]), (theirs, got[1])):
                    into.append(await _get(queue, 5))
                await asyncio.sleep(0.3)  # a second copy would have arrived by now
                for queue, into in ((mine, got[0]), (theirs, got[1])):
                    while not queue.empty():
                        into.append(queue.get_nowait())
                return got

        mine, theirs = run_in_own_loop(scenario)
        assert mine == theirs == [notice(7, member_id=3)]
    finally:
        for relay in relays:
            relay.stop()
    # Stopped: the feed delivers in its own process again.
    assert received_while(here, 7, lambda: here.publish(notice(7))) == [notice(7)]


async def _get(queue: asyncio.Queue[AcceptedTap], timeout: float) -> AcceptedTap:
    return await asyncio.wait_for(queue.get(), timeout)


def test_a_notice_fits_a_notify_payload() -> None:
    long = AcceptedTap(
        event_id=1, member_id=2, tap_id=3, member_name="名" * 5000, occurred_at=datetime.now(UTC), repeat=True
    )
    assert len(encode_notice(long).encode()) < MAX_PAYLOAD_BYTES
    assert '"member_name":"陈*国"' in encode_notice(notice(1))
    # Every field travels: what a board in another process decodes is the notice sent.
    assert TypeAdapter(AcceptedTap).validate_json(encode_notice(notice(1, member_id=9))) == notice(
        1, member_id=9
    )
