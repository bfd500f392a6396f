"""What ingest's per-kiosk reads cost does not grow with a kiosk's history (#11 item 2).

A kiosk with thousands of earlier taps and their evidence (statistics up to date, as autovacuum
keeps them): the queries that decide step 6 for a batch (``SeqClaims.queries``) must be answered
from the unique (kiosk_id, claimed_seq) index and the payload-digest index, and the read of the
kiosks' evidence chain heads from the (kiosk_id, tap_id) index, never by reading the kiosk's
history or the table. Checked in the database's own plan, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.sql import Select
from sqlmodel import Session

from server.db import bulk_insert, unit_of_work
from server.evidence.service import KIOSK_IDS, head_rows_query
from server.kiosks.authentication import SeqClaims
from server.records.evidence import TapEvidence
from server.records.kiosks import Kiosk
from server.records.taps import NewTap, allocate_tap_ids, insert_new_taps
from server.vocabulary import KioskStatus, TapOutcome
from tests.server.factories import EVENT_START, World

HISTORY = 5000
FLEET = 50


def _with_history(engine: Engine, world: World) -> list[int]:
    """HISTORY accepted taps of the world's kiosk, then as many again from a fleet of other
    kiosks (so the world's kiosk looks idle since), all with their evidence rows; the world
    kiosk's tap ids."""
    with unit_of_work(engine) as session:
        fleet = [f"fleet-{n:02d}" for n in range(FLEET)]
        session.add_all(
            Kiosk(
                id=kiosk_id,
                name=kiosk_id,
                venue_id=world.venue_id,
                status=KioskStatus.ACTIVE,
                created_at=EVENT_START,
            )
            for kiosk_id in fleet
        )
        ids = allocate_tap_ids(session, 2 * HISTORY)
        share = HISTORY // FLEET
        histories = [(world.kiosk_id, ids[:HISTORY], "")] + [
            (kiosk_id, ids[HISTORY + n * share : HISTORY + (n + 1) * share], "f")
            for n, kiosk_id in enumerate(fleet)
        ]
        insert_new_taps(
            session,
            [
                NewTap(
                    id=tap_id,
                    received_at=EVENT_START,
                    kid=world.keys.kid,
                    kiosk_id=kiosk_id,
                    seq=seq,
                    claimed_seq=seq,
                    occurred_at=EVENT_START + timedelta(seconds=seq),
                    payload_digest=f"{mark}{seq:0{64 - len(mark)}x}",
                    outcome=TapOutcome.ACCEPTED,
                    display_message="签到成功",
                )
                for kiosk_id, tap_ids, mark in histories
                for seq, tap_id in enumerate(tap_ids, start=1)
            ],
        )
        bulk_insert(
            session,
            TapEvidence.__table__,  # type: ignore[arg-type]
            [
                {
                    "tap_id": tap_id,
                    "kiosk_id": kiosk_id,
                    "signature": "sig",
                    "prev_hash": f"{tap_id - 1:064x}",
                    "chain_hash": f"{tap_id:064x}",
                }
                for kiosk_id, tap_ids, _mark in histories
                for tap_id in tap_ids
            ],
        )
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()
    return ids[:HISTORY]


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


def test_the_chain_heads_of_a_run_are_one_index_seek_per_kiosk(engine: Engine, world: World) -> None:
    ids = _with_history(engine, world)
    query = head_rows_query(some_kiosks=True).params({KIOSK_IDS: [world.kiosk_id]})

    with Session(engine) as session:
        plan = _plan(session, query)
        heads = session.exec(query).all()

    assert heads == [(world.kiosk_id, max(ids), f"{max(ids):064x}")]
    assert "ix_tap_evidence_kiosk_id_tap_id" in plan, plan
    assert "Seq Scan on tap_evidence" not in plan, plan  # PostgreSQL reading every row
    assert "SCAN tap_evidence" not in plan, plan  # SQLite reading every row
    # Grouping the kiosk's rows reads them all, even through the index.
    assert "GroupAggregate" not in plan, plan
    assert "GROUP BY" not in plan, plan
