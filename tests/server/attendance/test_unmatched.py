"""Taps outside every window (#4 item 3): stored under the card digest only, listed masked,
assignable by a secretary (audited), purged after the retention period unless assigned."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from server.app import create_app
from server.attendance.unmatched import assign_unmatched_tap, list_unmatched_taps, purge_unmatched_taps
from server.audit.service import list_entries
from server.caller import CLI_CALLER, UNSCOPED
from server.config import ServerSettings
from server.db import unit_of_work
from server.errors import DomainError
from server.keyring import Keyring
from server.records.taps import Tap
from server.vocabulary import AttendanceSource
from tests.server.conftest import FakeClock
from tests.server.factories import SHANGHAI, STRANGER_CARD, ZHANG_CARD, ZHAO_CARD, World
from tests.server.ledgers.helpers import CALLER, at, meeting, sheet, tap, token

RETENTION = timedelta(days=30)


def taps_by_id(engine: Engine) -> dict[int, Tap]:
    with unit_of_work(engine) as session:
        return {t.id: t for t in session.exec(select(Tap)).all() if t.id is not None}


def unmatched(engine: Engine, world: World) -> list[int]:
    with unit_of_work(engine) as session:
        rows = list_unmatched_taps(
            session,
            caller=CLI_CALLER,
            org_id=world.committee_id,
            since=at("2025-01-01"),
            until=at("2026-01-01"),
            retention=RETENTION,
            tz=SHANGHAI,
        )
    return [row.tap_id for row in rows]


def test_a_tap_outside_every_window_names_no_member(engine: Engine, keyring: Keyring, world: World) -> None:
    receipt = tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "14:00"))
    assert receipt.code == "no_event"
    (row,) = taps_by_id(engine).values()
    assert (row.member_id, row.event_id) == (None, None)
    assert row.card_no_hmac is not None
    with unit_of_work(engine) as session:
        (listed,) = list_unmatched_taps(
            session,
            caller=CLI_CALLER,
            org_id=world.committee_id,
            since=at("2025-04-01"),
            until=at("2025-05-01"),
            retention=RETENTION,
            tz=SHANGHAI,
        )
    assert (listed.member_name, listed.card_ref, listed.purge_after) == (
        "张*明",
        row.card_no_hmac[:8],
        at("2025-05-10", "14:00"),
    )


def test_a_secretary_assigns_an_out_of_window_tap(engine: Engine, keyring: Keyring, world: World) -> None:
    """The meeting overran its window: the tap becomes 张三明's presence, audited, kept from the purge."""
    event = meeting(engine, world, "四月主题党日", at("2025-04-10"))
    tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "12:00"))
    (tap_id,) = unmatched(engine, world)
    with unit_of_work(engine) as session:
        assign_unmatched_tap(
            session,
            tap_id=tap_id,
            event_id=event,
            reason="会议延时，签到机窗口已关闭",
            caller=CALLER,
            now=at("2025-04-11"),
        )
    (present,) = sheet(engine, event).present
    assert (present.name, present.source, present.first_tap_at) == (
        "张三明",
        AttendanceSource.ASSIGNED,
        at("2025-04-10", "12:00"),
    )
    with unit_of_work(engine) as session:
        (entry,) = list_entries(session, scope=UNSCOPED, object_type="tap")
        assert (entry.action, entry.object_id) == ("tap.assign", str(tap_id))
        assert purge_unmatched_taps(session, now=at("2025-12-31"), retention=RETENTION) == 0
    assert taps_by_id(engine)[tap_id].card_no_hmac is not None


def test_purge_erases_old_unmatched_taps_only(engine: Engine, keyring: Keyring, world: World) -> None:
    meeting(engine, world, "四月主题党日", at("2025-04-10"))
    old = tap(engine, keyring, world, ZHANG_CARD, at("2025-04-01", "14:00"))  # no_event
    stranger = tap(engine, keyring, world, STRANGER_CARD, at("2025-04-01", "14:01"))  # unknown_card
    checked_in = tap(engine, keyring, world, ZHAO_CARD, at("2025-04-10", "08:55"))  # attendance
    recent = tap(engine, keyring, world, ZHANG_CARD, at("2025-05-05", "14:00"))  # no_event, recent
    assert [r.code for r in (old, stranger, checked_in, recent)] == [
        "no_event",
        "unknown_card",
        None,
        "no_event",
    ]

    with unit_of_work(engine) as session:
        assert purge_unmatched_taps(session, now=at("2025-05-06"), retention=RETENTION) == 2
    rows = sorted(taps_by_id(engine).values(), key=lambda t: t.seq or 0)
    assert [(t.card_no_hmac is None, t.display_member_name) for t in rows] == [
        (True, None),
        (True, None),
        (False, "赵*"),
        (False, "张*明"),
    ]
    with unit_of_work(engine) as session:
        assert purge_unmatched_taps(session, now=at("2025-05-06"), retention=RETENTION) == 0

    purged_id = rows[0].id
    assert purged_id is not None
    event = meeting(engine, world, "补录", at("2025-05-20"))
    with pytest.raises(DomainError) as excinfo, unit_of_work(engine) as session:
        assign_unmatched_tap(
            session,
            tap_id=purged_id,
            event_id=event,
            reason="x",
            caller=CALLER,
            now=at("2025-05-20"),
        )
    assert excinfo.value.code == "tap_purged"


def test_api_lists_and_assigns_within_the_secretarys_scope(
    engine: Engine, keyring: Keyring, world: World, client: TestClient
) -> None:
    event = world.event_id  # 三月主题党日, 1 March 09:00; its window opens at 08:30
    tap(engine, keyring, world, ZHANG_CARD, at("2025-03-01", "08:10"))
    committee = token(engine, keyring, org_id=world.committee_id)
    other = token(engine, keyring, org_id=world.other_branch_id)
    # The venue belongs to the committee, so the second branch's secretary sees nothing.
    listed = client.get("/api/v1/taps/unmatched", params={"days": 7}, headers=committee).json()
    assert [row["member_name"] for row in listed] == ["张*明"]
    assert client.get("/api/v1/taps/unmatched", headers=other).json() == []
    tap_id = listed[0]["tap_id"]
    refused = client.post(
        f"/api/v1/taps/{tap_id}/assign", json={"event_id": event, "reason": "延时"}, headers=other
    )
    assert refused.status_code == 404
    assert refused.json()["error"] == "tap_not_found"  # a tap at a venue outside the scope looks missing
    assigned = client.post(
        f"/api/v1/taps/{tap_id}/assign", json={"event_id": event, "reason": "延时"}, headers=committee
    )
    assert assigned.status_code == 201, assigned.text
    assert assigned.json()["source"] == "assigned"


def test_the_server_purges_at_start_up(
    engine: Engine, keyring: Keyring, world: World, settings: ServerSettings
) -> None:
    tap(engine, keyring, world, ZHANG_CARD, at("2025-02-27", "14:00"))
    (tap_id,) = taps_by_id(engine)
    months_later = FakeClock(at("2025-06-01"))
    with TestClient(create_app(settings.model_copy(update={"scheduler": True}), clock=months_later)):
        deadline = time.monotonic() + 10
        while taps_by_id(engine)[tap_id].card_no_hmac is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert taps_by_id(engine)[tap_id].card_no_hmac is None
