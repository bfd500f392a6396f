"""What ingest's seq and duplicate checks cost does not grow with a kiosk's history (#11 item 2).

A kiosk with thousands of earlier taps (statistics up to date, as autovacuum keeps them): the
queries that decide step 6 for a batch (``SeqClaims.queries``) must be answered from the unique
(kiosk_id, claimed_seq) index and the payload-digest index, never by reading the kiosk's taps or
the table. Checked in the database's own plan, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.sql import Select
from sqlmodel import Session

from server.db import unit_of_work
from server.kiosks.authentication import SeqClaims
from server.records.taps import NewTap, allocate_tap_ids, insert_new_taps
from server.vocabulary import TapOutcome
from tests.server.factories import EVENT_START, World

HISTORY = 5000


def _with_history(engine: Engine, world: World) -> None:
    with unit_of_work(engine) as session:
        ids = allocate_tap_ids(session, HISTORY)
        insert_new_taps(
            session,
            [
                NewTap(
                    id=tap_id,
                    received_at=EVENT_START,
                    kid=world.keys.kid,
                    kiosk_id=world.kiosk_id,
                    seq=seq,
                    claimed_seq=seq,
                    occurred_at=EVENT_START + timedelta(seconds=seq),
                    payload_digest=f"{seq:064x}",
                    outcome=TapOutcome.ACCEPTED,
                    display_message="签到成功",
                )
                for seq, tap_id in enumerate(ids, start=1)
            ],
        )
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()


def _plan(session: Session, query: Select[Any]) -> str:
    sql = str(query.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
    if session.get_bind().dialect.name == "postgresql":
        (plan,) = session.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).one()
        return json.dumps(plan if not isinstance(plan, str) else json.loads(plan))
    return " | ".join(str(row[-1]) for row in session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))


def test_the_seq_checks_of_a_batch_read_indexes_only(engine: Engine, world: World) -> None:
    _with_history(engine, world)
    wanted = {(world.kiosk_id, HISTORY + n, f"{HISTORY + n:064x}") for n in range(1, 51)}
    claimed, same_bytes = SeqClaims.queries(wanted)

    with Session(engine) as session:
        claimed_plan, digest_plan = _plan(session, claimed), _plan(session, same_bytes)

    # SQLite names the unique constraint's index sqlite_autoindex_tap_N: its columns say which.
    unique_index = ("uq_tap_kiosk_id_claimed_seq", "(kiosk_id=? AND claimed_seq=?)")
    assert any(name in claimed_plan for name in unique_index), claimed_plan
    assert "ix_tap_payload_digest" in digest_plan, digest_plan
    for plan in (claimed_plan, digest_plan):
        assert "Seq Scan" not in plan, plan  # PostgreSQL
        assert "SCAN tap" not in plan, plan  # SQLite reads the whole table
        assert 'ix_tap_kiosk_id"' not in plan, plan
