"""What ingest's reads cost does not grow with a kiosk's history or an event's size (#11 item 2).

A kiosk with thousands of earlier taps and their evidence: the statement that decides step 6 for
a batch (``SeqClaims.query``) must be answered from the unique (kiosk_id, claimed_seq) index and
the payload-digest index, and the read of the kiosks' evidence chain heads from the (kiosk_id,
tap_id) index, never by reading the kiosk's history or the table. A flash event of 2,000 members:
the attendance rows a run reads and locks (``AttendanceRows.load``) must be seeks in the (event_id,
member_id) unique index, never a read of the event's rows. Checked in the database's own plan, on
SQLite and PostgreSQL (its custom and generic plans: a prepared statement may settle on either),
with statistics up to date, as autovacuum keeps them, and with none yet: a new deployment, or any
event at its start, is new to the statistics (PostgreSQL then read every row of the kiosk or the
event, 16,000 rows a run in ``make bench``).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any, cast

import psycopg
import pytest
from sqlalchemy import ClauseElement, Engine, Executable, text
from sqlmodel import Session, col, select

from server.attendance.service import ATTENDANCE_TABLE, AttendanceRows
from server.db import bulk_insert, unit_of_work
from server.evidence.service import KIOSK_IDS, head_rows_query
from server.kiosks.authentication import SeqClaims
from server.records.events import Event
from server.records.evidence import TapEvidence
from server.records.kiosks import Kiosk
from server.records.orgs import Member
from server.records.taps import NewTap, allocate_tap_ids, insert_new_taps
from server.vocabulary import (
    AttendanceSource,
    EventKind,
    KioskStatus,
    MemberCategory,
    MemberStatus,
    TapOutcome,
)
from tests.server.factories import EVENT_START, World

HISTORY = 5000
FLEET = 50


@pytest.fixture(params=["analysed", "no statistics"])
def analysed(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "analysed")


def _analyse(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()


def _with_history(engine: Engine, world: World, *, analysed: bool) -> list[int]:
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
    if analysed:
        _analyse(engine)
    return ids[:HISTORY]


def _plans(session: Session, statement: Executable, params: dict[str, Any] | None = None) -> list[str]:
    """The database's plans for *statement* with *params*: SQLite's, or PostgreSQL's custom plan
    (for these values) and its generic plan (what a statement prepared by psycopg, after its fifth
    run, may use for any values)."""
    bind, element = session.get_bind(), cast(ClauseElement, statement)
    if bind.dialect.name != "postgresql":
        bound = element.params(params or {})
        sql = str(bound.compile(bind, compile_kwargs={"literal_binds": True}))
        return [" | ".join(str(row[-1]) for row in session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))]
    # An expanding IN parameter becomes one parameter per value.
    expanded = element.compile(bind).construct_expanded_state(params)
    sql, values = expanded.statement, dict(expanded.parameters)
    names = list(values)
    numbered = re.sub(r"%\((\w+)\)s", lambda found: f"${names.index(found.group(1)) + 1}", sql)
    driver_connection = session.connection().connection.driver_connection
    assert isinstance(driver_connection, psycopg.Connection)
    plans = []
    with psycopg.ClientCursor(driver_connection) as cursor:
        for mode in ("force_custom_plan", "force_generic_plan"):
            cursor.execute(f"SET plan_cache_mode = {mode}")
            cursor.execute(f"PREPARE planned AS {numbered}")
            arguments = ", ".join(["%s"] * len(names))
            cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE planned({arguments})", [values[n] for n in names])
            (plan,) = cursor.fetchone() or (None,)
            plans.append(json.dumps(plan if not isinstance(plan, str) else json.loads(plan)))
            cursor.execute("DEALLOCATE planned")
        cursor.execute("RESET plan_cache_mode")
    return plans


def test_the_seq_checks_of_a_batch_read_indexes_only(engine: Engine, world: World, analysed: bool) -> None:
    _with_history(engine, world, analysed=analysed)
    wanted = {(world.kiosk_id, HISTORY + n, f"{HISTORY + n:064x}") for n in range(1, 51)}
    wanted |= {(world.kiosk_id, n, f"{n:064x}") for n in (1, 2)}  # two stored: a duplicate's slot and bytes

    with Session(engine) as session:
        statement, params = SeqClaims.query(engine.dialect, wanted)
        plans = _plans(session, statement, params)
        claims = SeqClaims.load(session, wanted)

    assert claims.taken(world.kiosk_id, 1)
    assert claims.taken(world.kiosk_id, 2)
    assert not claims.taken(world.kiosk_id, HISTORY + 1)
    assert claims.earlier_answer(world.kiosk_id, 2, f"{2:064x}") is not None
    # SQLite names the unique constraint's index sqlite_autoindex_tap_N: its columns say which.
    unique_index = ("uq_tap_kiosk_id_claimed_seq", "(kiosk_id=? AND claimed_seq=?)")
    for plan in plans:
        assert any(name in plan for name in unique_index), plan
        assert "ix_tap_payload_digest" in plan, plan
        assert "ix_tap_kiosk_occurred" not in plan, plan  # the kiosk's history, filtered by seq
        assert "Seq Scan on tap" not in plan, plan  # PostgreSQL
        assert "SCAN tap" not in plan, plan  # SQLite reads the whole table
        assert 'ix_tap_kiosk_id"' not in plan, plan


def test_the_chain_heads_of_a_run_are_one_index_seek_per_kiosk(
    engine: Engine, world: World, analysed: bool
) -> None:
    ids = _with_history(engine, world, analysed=analysed)
    query = head_rows_query(some_kiosks=True)

    with Session(engine) as session:
        plans = _plans(session, query, {KIOSK_IDS: [world.kiosk_id]})
        heads = session.exec(query.params({KIOSK_IDS: [world.kiosk_id]})).all()

    assert heads == [(world.kiosk_id, max(ids), f"{max(ids):064x}")]
    for plan in plans:
        assert "ix_tap_evidence_kiosk_id_tap_id" in plan, plan
        assert "Seq Scan on tap_evidence" not in plan, plan  # PostgreSQL reading every row
        assert "SCAN tap_evidence" not in plan, plan  # SQLite reading every row
        # Grouping the kiosk's rows reads them all, even through the index.
        assert "GroupAggregate" not in plan, plan
        assert "GROUP BY" not in plan, plan


FLASH_MOB = 2000
EARLIER_EVENTS = 40


def test_a_run_reads_a_flash_events_attendance_by_seeks(engine: Engine, world: World, analysed: bool) -> None:
    """2,000 members checked in to the world's event, after 40 earlier events of 250 each: the
    attendance rows of 50 of them are read (and locked) one index seek each."""
    with unit_of_work(engine) as session:
        session.add_all(
            Member(
                name=f"党员{n}",
                org_id=world.branch_id,
                category=MemberCategory.FULL,
                status=MemberStatus.ACTIVE,
                created_at=EVENT_START,
            )
            for n in range(FLASH_MOB)
        )
        session.add_all(
            Event(
                title=f"支部党员大会{n}",
                org_id=world.branch_id,
                venue_id=world.venue_id,
                kind=EventKind.BRANCH_GENERAL,
                start_at=EVENT_START - timedelta(days=n + 1),
                end_at=EVENT_START - timedelta(days=n + 1) + timedelta(hours=2),
                checkin_opens_at=EVENT_START - timedelta(days=n + 1),
                checkin_closes_at=EVENT_START - timedelta(days=n + 1) + timedelta(hours=1),
                late_after=EVENT_START - timedelta(days=n + 1),
                created_at=EVENT_START,
            )
            for n in range(EARLIER_EVENTS)
        )
        session.flush()
        member_ids = list(session.exec(select(Member.id).where(col(Member.name).startswith("党员"))))
        earlier_ids = list(session.exec(select(Event.id).where(Event.id != world.event_id)))

        def attendance(event_id: int | None, members: list[int | None]) -> list[dict[str, Any]]:
            return [
                {
                    "event_id": event_id,
                    "member_id": member_id,
                    "first_tap_at": EVENT_START,
                    "last_tap_at": EVENT_START,
                    "tap_count": 1,
                    "source": AttendanceSource.TAP,
                    "note": "",
                    "recorded_by": "",
                }
                for member_id in members
            ]

        # Each earlier event: 250 members, each member at five of them.
        for n, event_id in enumerate(earlier_ids):
            attended = [member_ids[(n * 50 + k) % FLASH_MOB] for k in range(250)]
            bulk_insert(session, ATTENDANCE_TABLE, attendance(event_id, attended))
    if analysed:
        _analyse(engine)
    with unit_of_work(engine) as session:  # the flash mob, after the statistics were taken
        bulk_insert(session, ATTENDANCE_TABLE, attendance(world.event_id, member_ids))
    wanted = [member_id for member_id in member_ids[::40] if member_id is not None]

    with unit_of_work(engine) as session:
        rows = AttendanceRows.load(session, event_ids=[world.event_id], member_ids=wanted)
        found = [rows.get(world.event_id, member_id) for member_id in wanted]
        ((statement, params),) = AttendanceRows.queries(engine.dialect, [world.event_id], wanted)
        plans = _plans(session, statement, params)

    assert all(row is not None and row.tap_count == 1 for row in found)
    unique_index = ("uq_attendance_event_id_member_id", "(event_id=? AND member_id=?)")
    for plan in plans:
        assert any(name in plan for name in unique_index), plan
        assert "ix_attendance_event_id" not in plan, plan  # the event's every row, filtered
        assert "Seq Scan on attendance" not in plan, plan
        assert "SCAN attendance" not in plan, plan
