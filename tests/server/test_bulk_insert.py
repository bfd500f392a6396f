"""``server.db.bulk_insert``: the way ingest writes many rows (PostgreSQL ``COPY`` from
``COPY_MIN_ROWS`` rows on, executemany below and on SQLite) stores exactly what it was given, and a
row that breaks a unique key fails with SQLAlchemy's ``IntegrityError``, which the batch's
savepoint turns into deciding its envelopes one by one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from server.db import COPY_MIN_ROWS, unit_of_work
from server.records.taps import NEW_TAP_FIELDS, TAP_TABLE, NewTap, Tap, allocate_tap_ids, insert_new_taps
from server.vocabulary import RejectionCode, TapOutcome
from tests.server.factories import EVENT_START, World


def _rows(world: World, ids: list[int], first_seq: int) -> list[NewTap]:
    return [
        NewTap(
            id=tap_id,
            received_at=EVENT_START,
            kid=world.keys.kid,
            kiosk_id=world.kiosk_id,
            seq=first_seq + n,
            claimed_seq=first_seq + n,
            occurred_at=EVENT_START + timedelta(seconds=n),
            payload_digest=f"{first_seq + n:064x}",
            outcome=TapOutcome.REJECTED,
            code=RejectionCode.NO_EVENT,
            display_message="当前没有可签到的活动",
            display_member_name="张*明",
        )
        for n, tap_id in enumerate(ids)
    ]


@pytest.mark.parametrize("count", [1, COPY_MIN_ROWS])
def test_rows_are_stored_as_given(engine: Engine, world: World, count: int) -> None:
    with unit_of_work(engine) as session:
        ids = allocate_tap_ids(session, count)
        insert_new_taps(session, _rows(world, ids, 100))
    assert ids == sorted(ids)
    with Session(engine) as session:
        stored = session.exec(select(Tap).where(col(Tap.id).in_(ids)).order_by(col(Tap.id))).all()
    assert [(t.seq, t.code, t.outcome, t.occurred_at, t.display_member_name) for t in stored] == [
        (100 + n, RejectionCode.NO_EVENT, TapOutcome.REJECTED, EVENT_START + timedelta(seconds=n), "张*明")
        for n in range(count)
    ]


@pytest.mark.parametrize("count", [1, COPY_MIN_ROWS])
def test_a_taken_seq_fails_in_its_savepoint_only(engine: Engine, world: World, count: int) -> None:
    with unit_of_work(engine) as session:
        insert_new_taps(session, _rows(world, allocate_tap_ids(session, count), 200))
    with unit_of_work(engine) as session:
        with pytest.raises(IntegrityError), session.begin_nested():
            insert_new_taps(session, _rows(world, allocate_tap_ids(session, count), 200))
        later = allocate_tap_ids(session, 1)
        insert_new_taps(session, _rows(world, later, 300))
    with Session(engine) as session:
        seqs = session.exec(select(Tap.seq).where(col(Tap.seq) >= 200)).all()
    assert sorted(s for s in seqs if s is not None) == [*range(200, 200 + count), 300]


def test_a_new_tap_row_has_exactly_the_tap_tables_columns() -> None:
    """Ingest writes ``NewTap`` objects into the ``tap`` table column by column: a column added to
    one and not the other would be lost, or fail the insert."""
    assert sorted(NEW_TAP_FIELDS) == sorted(column.name for column in TAP_TABLE.columns)
