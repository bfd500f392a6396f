"""The audit log: appended in the caller's transaction, hash-chained, scoped by organisation."""

from __future__ import annotations

from sqlalchemy import Engine, text

from server.audit.service import list_entries, record, verify_chain
from server.caller import CLI_ACTOR, UNSCOPED, Actor, Scope
from server.db import unit_of_work
from tests.server.conftest import FakeClock
from tests.server.factories import World


def _record_three(engine: Engine, world: World, clock: FakeClock) -> None:
    secretary = Actor("user:1", "张书记")
    with unit_of_work(engine) as session:
        record(
            session,
            actor=secretary,
            action="attendance.manual",
            object_type="event",
            object_id=world.event_id,
            org_id=world.branch_id,
            at=clock.now,
            reason="忘带卡，现场核实",
            detail={"member_id": world.members["张三明"]},
        )
        record(
            session,
            actor=CLI_ACTOR,
            action="kiosk.revoke",
            object_type="kiosk",
            object_id=world.kiosk_id,
            org_id=world.other_branch_id,
            at=clock.advance(minutes=1),
        )
        record(
            session,
            actor=secretary,
            action="leave.approve",
            object_type="event",
            object_id=world.event_id,
            org_id=world.branch_id,
            at=clock.advance(minutes=1),
        )


class TestAuditLog:
    def test_entries_are_listed_newest_first_and_scoped(
        self, engine: Engine, world: World, clock: FakeClock
    ) -> None:
        """A secretary sees only their organisations' entries; an administrator sees all."""
        with unit_of_work(engine) as session:
            before = len(list_entries(session, scope=UNSCOPED))
        _record_three(engine, world, clock)
        with unit_of_work(engine) as session:
            mine = list_entries(session, scope=Scope(frozenset({world.branch_id})), limit=2)
            other = list_entries(
                session, scope=Scope(frozenset({world.other_branch_id})), object_type="kiosk"
            )
            everything = list_entries(session, scope=UNSCOPED)
        assert [e.action for e in mine] == ["leave.approve", "attendance.manual"]
        assert mine[1].reason == "忘带卡，现场核实"
        assert [e.action for e in other] == ["kiosk.revoke"]
        assert len(everything) == before + 3

    def test_an_entry_rolled_back_with_its_change_leaves_no_trace(
        self, engine: Engine, world: World, clock: FakeClock
    ) -> None:
        """Audit and action share one transaction: a failed request audits nothing."""
        with unit_of_work(engine) as session:
            before = len(list_entries(session, scope=UNSCOPED))
        try:
            with unit_of_work(engine) as session:
                record(
                    session,
                    actor=CLI_ACTOR,
                    action="kiosk.revoke",
                    object_type="kiosk",
                    object_id=world.kiosk_id,
                    org_id=None,
                    at=clock.now,
                )
                raise RuntimeError("the change itself failed")
        except RuntimeError:
            pass
        with unit_of_work(engine) as session:
            assert len(list_entries(session, scope=UNSCOPED)) == before

    def test_intact_chain_verifies(self, engine: Engine, world: World, clock: FakeClock) -> None:
        """An untouched log verifies."""
        _record_three(engine, world, clock)
        with unit_of_work(engine) as session:
            assert verify_chain(session) is None

    def test_rewritten_history_is_detected(self, engine: Engine, world: World, clock: FakeClock) -> None:
        """Editing an old entry's reason directly in the database breaks the chain at that entry."""
        _record_three(engine, world, clock)
        with engine.begin() as conn:
            first_id = conn.execute(
                text("SELECT min(id) FROM audit_entry WHERE action = 'attendance.manual'")
            ).scalar_one()
            conn.execute(text("UPDATE audit_entry SET reason = '已补签' WHERE id = :id"), {"id": first_id})
        with unit_of_work(engine) as session:
            assert verify_chain(session) == first_id

    def test_deleted_entry_is_detected(self, engine: Engine, world: World, clock: FakeClock) -> None:
        """Removing an entry from the middle breaks the chain at its successor."""
        _record_three(engine, world, clock)
        with engine.begin() as conn:
            ids = conn.execute(text("SELECT id FROM audit_entry ORDER BY id")).scalars().all()
            conn.execute(text("DELETE FROM audit_entry WHERE id = :id"), {"id": ids[-2]})
        with unit_of_work(engine) as session:
            assert verify_chain(session) == ids[-1]

    def test_times_round_trip_as_aware_utc(self, engine: Engine, world: World, clock: FakeClock) -> None:
        """Stored times come back timezone-aware and equal to what was recorded."""
        _record_three(engine, world, clock)
        with unit_of_work(engine) as session:
            newest = list_entries(session, scope=UNSCOPED, limit=1)[0]
        assert newest.at == clock.now
        assert newest.at.tzinfo is not None
