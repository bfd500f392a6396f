"""A tap that matched nothing is decided again when something that could match it appears (#10
item 2): an earlier tap arriving late, an event entered afterwards, a card bound afterwards."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

from sqlalchemy import Engine, text
from sqlmodel import select

from schemas.messages import TapMode
from server.attendance.derive import bind_member_card_counting, schedule_event
from server.attendance.schemas import SheetPresence
from server.attendance.service import record_manual_attendance
from server.attendance.unmatched import assign_unmatched_tap, purge_unmatched_taps
from server.audit.service import list_entries
from server.caller import CLI_CALLER, UNSCOPED
from server.cards.tap_binding import start_enrol_session
from server.db import unit_of_work
from server.keyring import Keyring
from server.records.attendance import Attendance
from server.records.taps import Tap
from server.vocabulary import EventKind, RejectionCode, TapRedecision
from tests.server.factories import EVENT_START, STRANGER_CARD, ZHANG_CARD, World, upload
from tests.server.ledgers.helpers import at, sheet, tap


def presence(engine: Engine, event_id: int, member_id: int) -> SheetPresence:
    (found,) = [p for p in sheet(engine, event_id).present if p.member_id == member_id]
    return found


def stored_taps(engine: Engine) -> list[Tap]:
    with unit_of_work(engine) as session:
        return list(session.exec(select(Tap).order_by(Tap.id)).all())  # type: ignore[arg-type]


def schedule(engine: Engine, world: World, start_day: str, *, created: str) -> int:
    with unit_of_work(engine) as session:
        event = schedule_event(
            session,
            title="四月主题党日",
            org_id=world.branch_id,
            venue_id=world.venue_id,
            kind=EventKind.THEME_DAY,
            start_at=at(start_day, "09:00"),
            end_at=at(start_day, "11:00"),
            now=at(created, "10:00"),
            caller=CLI_CALLER,
        )
        assert event.id is not None
        return event.id


class TestLateEarlierTap:
    def test_a_sign_out_uploaded_before_the_sign_in_becomes_the_sign_out(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """K2 uploads 11:10 first (no event yet for him), K1's 09:20 later: the 11:10 tap is his 签退."""
        zhang = world.members["张三明"]
        sign_out = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START.replace(hour=11, minute=10)))
        first = upload(engine, keyring, [sign_out], received_at=EVENT_START.replace(hour=11, minute=10))
        assert first.receipts[0].code == "no_event"
        sign_in = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START.replace(minute=20)))
        upload(engine, keyring, [sign_in], received_at=EVENT_START.replace(hour=11, minute=30))

        shown = presence(engine, world.event_id, zhang)
        assert shown.first_tap_at == EVENT_START.replace(minute=20)
        assert shown.checkout_at == EVENT_START.replace(hour=11, minute=10)
        assert (shown.duration_minutes, shown.late, shown.tap_count) == (110, True, 2)

        late, _ = stored_taps(engine)
        # The receipt stays what the kiosk was told; what the tap counts as is recorded beside it.
        assert (late.code, late.display_message) == (RejectionCode.NO_EVENT, "当前没有可签到的活动")
        assert (late.event_id, late.member_id, late.redecision) == (
            world.event_id,
            zhang,
            TapRedecision.SYSTEM,
        )
        again = upload(engine, keyring, [sign_out], received_at=EVENT_START.replace(hour=12))
        assert (again.receipts[0].status, again.receipts[0].code) == ("duplicate", "no_event")
        with unit_of_work(engine) as session:
            entries = list_entries(session, scope=UNSCOPED, object_type="tap")
        assert [(e.action, e.actor, e.object_id) for e in entries] == [
            ("tap.redecide", "system", str(late.id))
        ]

    def test_out_of_order_equals_in_order(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """09:05 arriving after 09:40 and 10:55 gives the same row as arriving first."""
        times = [EVENT_START.replace(hour=10, minute=55), EVENT_START.replace(minute=40)]
        envelopes = [world.keys.seal(world.payload(ZHANG_CARD, at=when)) for when in times]
        upload(engine, keyring, envelopes, received_at=EVENT_START.replace(hour=11))
        early = world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START.replace(minute=5)))
        upload(engine, keyring, [early], received_at=EVENT_START.replace(hour=11, minute=5))
        shown = presence(engine, world.event_id, world.members["张三明"])
        assert (shown.first_tap_at, shown.checkout_at) == (
            EVENT_START.replace(minute=5),
            EVENT_START.replace(hour=10, minute=55),
        )
        assert (shown.late, shown.tap_count, shown.duration_minutes) == (True, 3, 110)


class TestEventEnteredAfterwards:
    def test_the_next_day_a_secretary_enters_the_theme_day_and_gets_its_taps(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        zhang = world.members["张三明"]
        assert tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "08:50")).code == "no_event"
        assert tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "11:20")).code == "no_event"
        event_id = schedule(engine, world, "2025-04-10", created="2025-04-11")

        shown = presence(engine, event_id, zhang)
        assert (shown.first_tap_at, shown.checkout_at) == (
            at("2025-04-10", "08:50"),
            at("2025-04-10", "11:20"),
        )
        assert (shown.late, shown.tap_count) == (False, 2)
        assert [(t.event_id, t.member_id) for t in stored_taps(engine)] == [(event_id, zhang)] * 2

    def test_a_tap_at_another_time_stays_unmatched_and_unnamed(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "15:00"))
        event_id = schedule(engine, world, "2025-04-10", created="2025-04-11")
        assert sheet(engine, event_id).present == []
        (row,) = stored_taps(engine)
        assert (row.event_id, row.member_id, row.redecision) == (None, None, None)


class TestCardBoundAfterwards:
    def test_a_card_bound_after_its_tap_counts_it(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        wang = world.members["王五"]
        receipt = tap(engine, keyring, world, STRANGER_CARD, EVENT_START.replace(minute=10))
        assert receipt.code == "unknown_card"
        with unit_of_work(engine) as session:
            bind_member_card_counting(
                session,
                keyring=keyring,
                member_id=wang,
                card_no=STRANGER_CARD.card_no,
                uid=STRANGER_CARD.uid,
                now=EVENT_START.replace(hour=12),
                caller=CLI_CALLER,
            )
        shown = presence(engine, world.event_id, wang)
        assert (shown.first_tap_at, shown.tap_count, shown.late) == (EVENT_START.replace(minute=10), 1, True)
        (row,) = stored_taps(engine)
        assert (row.code, row.event_id, row.member_id) == (RejectionCode.UNKNOWN_CARD, world.event_id, wang)

    def test_a_card_bound_by_an_enrol_tap_counts_its_earlier_check_in(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """刷卡绑定 after the meeting started: the card's 09:10 tap (unknown then) is 王五's 签到."""
        wang = world.members["王五"]
        assert (
            tap(engine, keyring, world, STRANGER_CARD, EVENT_START.replace(minute=10)).code == "unknown_card"
        )
        with unit_of_work(engine) as session:
            start_enrol_session(
                session,
                member_id=wang,
                kiosk_id=None,
                caller=CLI_CALLER,
                now=EVENT_START.replace(minute=30),
                ttl=timedelta(minutes=5),
            )
        enrol = world.keys.seal(
            world.payload(STRANGER_CARD, at=EVENT_START.replace(minute=31), mode=TapMode.ENROL)
        )
        (receipt,) = upload(engine, keyring, [enrol], received_at=EVENT_START.replace(minute=31)).receipts
        assert receipt.display.message == "已绑定到 王*"
        shown = presence(engine, world.event_id, wang)
        assert (shown.first_tap_at, shown.tap_count) == (EVENT_START.replace(minute=10), 1)

    def test_a_tap_whose_digests_were_purged_stays_nobodys(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        tap(engine, keyring, world, STRANGER_CARD, EVENT_START.replace(minute=10))
        with unit_of_work(engine) as session:
            assert purge_unmatched_taps(
                session, now=EVENT_START + timedelta(days=31), retention=timedelta(days=30)
            )
            bind_member_card_counting(
                session,
                keyring=keyring,
                member_id=world.members["王五"],
                card_no=STRANGER_CARD.card_no,
                uid=STRANGER_CARD.uid,
                now=EVENT_START + timedelta(days=31),
                caller=CLI_CALLER,
            )
        assert sheet(engine, world.event_id).present == []


def test_a_tap_that_counts_now_keeps_its_digests_past_the_purge(
    engine: Engine, keyring: Keyring, world: World
) -> None:
    tap(engine, keyring, world, ZHANG_CARD, EVENT_START.replace(hour=11, minute=10))
    tap(engine, keyring, world, ZHANG_CARD, EVENT_START.replace(minute=20))
    with unit_of_work(engine) as session:
        purged = purge_unmatched_taps(
            session, now=EVENT_START + timedelta(days=31), retention=timedelta(days=30)
        )
        rows = session.exec(select(Attendance)).all()
    assert purged == 0
    assert [row.tap_count for row in rows] == [2]
    assert all(t.card_no_hmac is not None for t in stored_taps(engine))


def test_the_migration_marks_assigned_taps_and_keeps_manual_arrivals(
    engine: Engine, keyring: Keyring, world: World
) -> None:
    """Rows from before 0012: a tap a secretary assigned says so, a manual entry keeps its arrival."""
    event_id = schedule(engine, world, "2025-04-10", created="2025-04-01")
    tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "12:30"))
    (stray,) = stored_taps(engine)
    with unit_of_work(engine) as session:
        assign_unmatched_tap(
            session,
            tap_id=stray.id or 0,
            event_id=event_id,
            reason="会议延时",
            caller=CLI_CALLER,
            now=at("2025-04-11"),
        )
        record_manual_attendance(
            session,
            event_id=event_id,
            member_id=world.members["王五"],
            reason="忘带卡",
            at=at("2025-04-10", "08:45"),
            caller=CLI_CALLER,
            now=at("2025-04-11"),
        )
    # As 0011 left them (the columns are new), then 0012's backfill.
    with engine.begin() as connection:
        connection.execute(text("UPDATE tap SET event_id = NULL, member_id = NULL, redecision = NULL"))
        connection.execute(text("UPDATE attendance SET manual_at = NULL"))
        for statement in import_module("server.migrations.versions.0012_attendance_redecide").BACKFILL:
            connection.execute(text(statement))
        marked = connection.execute(text("SELECT event_id, member_id, redecision FROM tap")).all()
        manual = connection.execute(text("SELECT manual_at FROM attendance WHERE source = 'manual'")).one()
    assert [tuple(row) for row in marked] == [(event_id, world.members["张三明"], "assigned")]
    assert manual[0] is not None
