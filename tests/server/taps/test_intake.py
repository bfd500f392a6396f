"""Uploads that arrive together are decided together (``server.taps.intake``, issue #11).

Two layers: the service deciding several uploads in one run (each keeps its own receipts, its
own indexes and its own source), on SQLite and PostgreSQL; and the intake's worker, which takes
every upload waiting when it is free, answers each request separately, and keeps one request's
failure its own."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from schemas.messages import BatchReceipt, TapStatus
from server.db import unit_of_work
from server.keyring import Keyring
from server.records.attendance import Attendance
from server.taps.intake import IntakeClosed, TapIntake
from server.taps.service import Upload, ingest_uploads
from server.taps.strangers import StrangerTally
from tests.server.factories import EVENT_START, LI_CARD, ZHANG_CARD, World, enrol_second_kiosk
from tests.server.signing import KioskKeys, tap_payload

RECEIVED = EVENT_START + timedelta(minutes=5)


def _decide_together(engine: Engine, keyring: Keyring, uploads: Sequence[Upload]) -> list[BatchReceipt]:
    with unit_of_work(engine) as session:
        return _ingest(session, keyring, uploads)


class TestUploadsInOneRun:
    def test_each_upload_gets_its_own_receipts_as_if_sent_one_after_another(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Three requests decided in one run: local indexes, a malformed item refused in its own
        request, a replay of another request's tap answered as a duplicate with that tap's answer,
        a sign-out counted after the sign-in sent by another request. (That a run decides like
        envelopes one by one is ``test_batch_equivalence``'s: a run is the uploads' envelopes in
        arrival order.)"""
        at = EVENT_START - timedelta(minutes=5)
        zhang_in = world.keys.seal(world.payload(ZHANG_CARD, at=at))
        li_in = world.keys.seal(world.payload(LI_CARD, at=at))
        zhang_out = world.keys.seal(world.payload(ZHANG_CARD, at=at + timedelta(minutes=12)))
        first = Upload(envelopes=[zhang_in.model_dump(), {"kid": "x"}], source="10.0.0.1")
        second = Upload(envelopes=[li_in, zhang_in], source="10.0.0.2")
        third = Upload(envelopes=[zhang_out], source="10.0.0.3")

        answers = _decide_together(engine, keyring, [first, second, third])

        assert [[(r.index, r.status, r.code) for r in a.receipts] for a in answers] == [
            [(0, TapStatus.ACCEPTED, None), (1, TapStatus.REJECTED, "malformed")],
            [(0, TapStatus.ACCEPTED, None), (1, TapStatus.DUPLICATE, None)],
            [(0, TapStatus.ACCEPTED, None)],
        ]
        assert answers[1].receipts[1].display == answers[0].receipts[0].display
        assert answers[2].receipts[0].display.message == "签退成功"

    def test_strangers_are_counted_against_their_own_source(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        at = EVENT_START - timedelta(minutes=5)
        stranger = KioskKeys()  # a key nobody enrolled
        strangers = StrangerTally()
        with unit_of_work(engine) as session:
            ingest_uploads(
                session,
                [
                    Upload(envelopes=[world.keys.seal(world.payload(ZHANG_CARD, at=at))], source="10.0.0.1"),
                    Upload(
                        envelopes=[stranger.seal(world.payload(LI_CARD, at=at)), {"kid": 1}],
                        source="10.0.0.2",
                    ),
                ],
                keyring=keyring,
                received_at=RECEIVED,
                max_clock_skew=timedelta(minutes=10),
                strangers=strangers,
            )
        assert (strangers.count("10.0.0.1"), strangers.count("10.0.0.2")) == (0, 2)


class TestLostRace:
    def test_a_run_that_loses_a_race_decides_again_and_both_taps_count(
        self, engine: Engine, keyring: Keyring, world: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One member's first taps at two kiosks, decided by two transactions at once: both want
        to create the member's attendance row. On PostgreSQL the second waits on the unique key,
        fails when the first commits, and decides its envelope again (its transaction rolled back
        whole, being nothing but the run); on SQLite it waits for the one writer. Either way both
        taps are accepted and counted in one row, as if they had come one after another."""
        caplog.set_level(logging.INFO, logger="server.taps.service")
        other_kiosk, other_keys = enrol_second_kiosk(engine, keyring, world, now=EVENT_START)
        at = EVENT_START - timedelta(minutes=5)
        first = Upload(envelopes=[world.keys.seal(world.payload(ZHANG_CARD, at=at))], source="10.0.0.1")
        second_payload = tap_payload(
            kiosk_id=other_kiosk, seq=1, at=at + timedelta(seconds=20), card_facts=ZHANG_CARD
        )
        second = Upload(envelopes=[other_keys.seal(second_payload)], source="10.0.0.2")
        answers: list[BatchReceipt] = []

        with unit_of_work(engine) as session:
            (first_answer,) = _ingest(session, keyring, [first])
            racer = threading.Thread(
                target=lambda: answers.extend(_decide_together(engine, keyring, [second]))
            )
            racer.start()
            _wait_until_blocked(engine, racer)
        racer.join(timeout=30)

        assert not racer.is_alive()
        assert [r.status for r in first_answer.receipts + answers[0].receipts] == [TapStatus.ACCEPTED] * 2
        with Session(engine) as session:
            (row,) = session.exec(select(Attendance).where(Attendance.event_id == world.event_id)).all()
        assert row.tap_count == 2
        if engine.dialect.name == "postgresql":
            assert "lost a race" in caplog.text


def _ingest(session: Session, keyring: Keyring, uploads: Sequence[Upload]) -> list[BatchReceipt]:
    return ingest_uploads(
        session,
        uploads,
        keyring=keyring,
        received_at=RECEIVED,
        max_clock_skew=timedelta(minutes=10),
        strangers=StrangerTally(),
    )


def _wait_until_blocked(engine: Engine, racer: threading.Thread) -> None:
    """Until *racer*'s transaction waits for a lock (PostgreSQL says so; on SQLite, give it time
    to reach the writer's lock)."""
    if engine.dialect.name != "postgresql":
        racer.join(timeout=0.5)
        return
    deadline = time.monotonic() + 20
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).scalar_one()
            connection.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the second transaction never waited for the first")


def _answer(uploads: Sequence[Upload], now: datetime) -> list[BatchReceipt]:
    return [BatchReceipt(server_time=now, receipts=[]) for _upload in uploads]


class _RecordingDecider:
    """Decides nothing (this layer only groups and answers): records each run's uploads, can hold
    the first run until released, and fails any run holding a poisoned upload."""

    def __init__(self, *, hold_first: bool = False) -> None:
        self.runs: list[list[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, _session: Session, uploads: Sequence[Upload], now: datetime) -> list[BatchReceipt]:
        self.runs.append([u.source for u in uploads])
        self.started.set()
        self.release.wait(10)
        if any(u.source == "poison" for u in uploads):
            raise RuntimeError("the database went away")
        return _answer(uploads, now)


def _intake(engine: Engine, decide: _RecordingDecider, **options: int) -> TapIntake:
    intake = TapIntake(engine, decide, clock=lambda: RECEIVED, **options)
    intake.start()
    return intake


class TestIntakeWorker:
    def test_uploads_waiting_while_a_run_works_are_decided_in_the_next_run(self, engine: Engine) -> None:
        decide = _RecordingDecider(hold_first=True)
        intake = _intake(engine, decide)

        async def scenario() -> list[BatchReceipt]:
            first = asyncio.ensure_future(intake.submit(Upload(envelopes=[{}], source="a")))
            assert await asyncio.to_thread(decide.started.wait, 10)
            rest = [asyncio.ensure_future(intake.submit(Upload(envelopes=[{}], source=s))) for s in "bcd"]
            await asyncio.sleep(0.05)
            decide.release.set()
            return await asyncio.gather(first, *rest)

        try:
            answers = asyncio.run(scenario())
        finally:
            intake.stop()
        assert decide.runs == [["a"], ["b", "c", "d"]]
        assert [a.server_time for a in answers] == [RECEIVED] * 4

    def test_a_run_stops_taking_uploads_at_its_size(self, engine: Engine) -> None:
        decide = _RecordingDecider(hold_first=True)
        intake = _intake(engine, decide, max_envelopes=3)

        async def scenario() -> None:
            first = asyncio.ensure_future(intake.submit(Upload(envelopes=[{}], source="a")))
            assert await asyncio.to_thread(decide.started.wait, 10)
            rest = [asyncio.ensure_future(intake.submit(Upload(envelopes=[{}, {}], source=s))) for s in "bcd"]
            await asyncio.sleep(0.05)
            decide.release.set()
            await asyncio.gather(first, *rest)

        try:
            asyncio.run(scenario())
        finally:
            intake.stop()
        # b and c make four envelopes, past the size of three: d waits for the next run.
        assert decide.runs == [["a"], ["b", "c"], ["d"]]

    def test_a_failing_upload_fails_only_its_own_request(self, engine: Engine) -> None:
        decide = _RecordingDecider(hold_first=True)
        intake = _intake(engine, decide)

        async def scenario() -> list[BatchReceipt | BaseException]:
            first = asyncio.ensure_future(intake.submit(Upload(envelopes=[{}], source="a")))
            assert await asyncio.to_thread(decide.started.wait, 10)
            rest = [
                asyncio.ensure_future(intake.submit(Upload(envelopes=[{}], source=s)))
                for s in ("b", "poison", "c")
            ]
            await asyncio.sleep(0.05)
            decide.release.set()
            return await asyncio.gather(first, *rest, return_exceptions=True)

        try:
            answers = asyncio.run(scenario())
        finally:
            intake.stop()
        assert [type(a).__name__ for a in answers] == [
            "BatchReceipt",
            "BatchReceipt",
            "RuntimeError",
            "BatchReceipt",
        ]
        assert decide.runs == [["a"], ["b", "poison", "c"], ["b"], ["poison"], ["c"]]

    def test_after_stop_an_upload_is_refused_not_left_waiting(self, engine: Engine) -> None:
        intake = _intake(engine, _RecordingDecider())
        intake.stop()
        with pytest.raises(IntakeClosed):
            asyncio.run(intake.submit(Upload(envelopes=[{}])))

    def test_a_lost_database_connection_costs_the_next_run_nothing(
        self, engine: Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The worker keeps its connection between runs; when the database dropped it meanwhile
        (a restart: here its server process is ended, or on SQLite the file handle closed), the
        next run is decided again at once on a new connection, and its request never sees it."""
        connections: list[Any] = []

        def decide(session: Session, uploads: Sequence[Upload], now: datetime) -> list[BatchReceipt]:
            session.execute(text("SELECT 1"))
            connections.append(session.connection().connection.driver_connection)
            return _answer(uploads, now)

        intake = TapIntake(engine, decide, clock=lambda: RECEIVED)
        intake.start()
        try:
            asyncio.run(intake.submit(Upload(envelopes=[{}], source="a")))
            asyncio.run(intake.submit(Upload(envelopes=[{}], source="b")))
            _drop(engine, connections[-1])
            answer = asyncio.run(intake.submit(Upload(envelopes=[{}], source="c")))
        finally:
            intake.stop()

        assert answer.server_time == RECEIVED
        assert connections[0] is connections[1]  # kept between runs
        assert connections[2] is not connections[1]
        assert "connection was lost" in caplog.text


def _drop(engine: Engine, driver_connection: Any) -> None:
    """End a connection from the database's side (PostgreSQL), or close its handle (SQLite)."""
    if engine.dialect.name != "postgresql":
        driver_connection.close()
        return
    with engine.connect() as connection:
        connection.execute(
            text("SELECT pg_terminate_backend(:pid)"), {"pid": driver_connection.info.backend_pid}
        )
        connection.commit()
