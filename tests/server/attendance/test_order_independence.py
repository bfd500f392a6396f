"""Attendance is a function of the records, not of arrival order (#10 item 2).

Random taps of three members over three kiosks at two venues, against four events (two with
overlapping windows held by different branches, so whose meeting a tap belongs to matters). The
same taps are uploaded twice, on two days: once in order with every event already scheduled, once
in a random order, split into random batches, with each event entered at a random point (before,
between or after the uploads). Every event's sheet must read the same.

Examples share one database (a fresh one per example would be too slow on PostgreSQL); each
example uses two days of its own, so they cannot see each other's taps.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from schemas.messages import EnrollRequest, SignedEnvelope
from server.attendance.derive import schedule_event
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.keyring import Keyring
from server.kiosks.service import add_kiosk, enroll_kiosk
from server.venues.service import add_venue
from server.vocabulary import EventKind
from tests.server.factories import LI_CARD, SHANGHAI, ZHANG_CARD, ZHAO_CARD, World, upload
from tests.server.ledgers.helpers import sheet
from tests.server.signing import KioskKeys, tap_payload

CARDS = (ZHANG_CARD, LI_CARD, ZHAO_CARD)
FIRST_DAY = datetime(2026, 1, 1, tzinfo=SHANGHAI)
DAYS = itertools.count()


@dataclass(frozen=True)
class Kiosk:
    kiosk_id: str
    keys: KioskKeys
    venue: str  # "A" or "B"


@dataclass
class Stage:
    world: World
    venues: dict[str, int]
    kiosks: list[Kiosk]
    seqs: dict[str, int]

    def next_seq(self, kiosk_id: str) -> int:
        self.seqs[kiosk_id] += 1
        return self.seqs[kiosk_id]


@dataclass(frozen=True)
class EventSpec:
    venue: str
    branch: str  # "branch" (张三明's, 李四's group is under it) or "other" (赵六's)
    start: timedelta  # from the day's midnight
    hours: float


EVENTS = (
    EventSpec("A", "branch", timedelta(hours=9), 2),
    EventSpec("A", "other", timedelta(hours=10, minutes=30), 1.5),  # window opens 10:00, inside A's first
    EventSpec("A", "branch", timedelta(hours=14), 2),
    EventSpec("B", "branch", timedelta(hours=9, minutes=30), 2),
)


def _enrolled_kiosk(
    engine: Engine, keyring: Keyring, *, name: str, venue: str, venue_id: int, now: datetime
) -> Kiosk:
    keys = KioskKeys()
    with unit_of_work(engine) as session:
        issued = add_kiosk(
            session,
            keyring=keyring,
            name=name,
            venue_id=venue_id,
            now=now,
            code_ttl=timedelta(hours=24),
            caller=CLI_CALLER,
        )
        enroll_kiosk(
            session,
            keyring=keyring,
            request=EnrollRequest(code=issued.code, public_key=keys.public_b64, agent_version="test"),
            now=now,
        )
    return Kiosk(issued.kiosk.id, keys, venue)


@pytest.fixture
def stage(engine: Engine, keyring: Keyring, world: World) -> Stage:
    now = FIRST_DAY - timedelta(days=1)
    with unit_of_work(engine) as session:
        hall = add_venue(session, name="社区党群服务中心", org_id=world.committee_id, now=now)
        assert hall.id is not None
        hall_id = hall.id
    second = _enrolled_kiosk(
        engine, keyring, name="活动室二号机", venue="A", venue_id=world.venue_id, now=now
    )
    third = _enrolled_kiosk(engine, keyring, name="服务中心一号机", venue="B", venue_id=hall_id, now=now)
    kiosks = [
        Kiosk(world.kiosk_id, world.keys, "A"),
        Kiosk(second.kiosk_id, second.keys, "A"),
        Kiosk(third.kiosk_id, third.keys, "B"),
    ]
    return Stage(
        world=world,
        venues={"A": world.venue_id, "B": hall_id},
        kiosks=kiosks,
        seqs={kiosk.kiosk_id: 1000 for kiosk in kiosks},
    )


def _schedule(engine: Engine, stage: Stage, spec: EventSpec, *, day: datetime, now: datetime) -> int:
    world = stage.world
    with unit_of_work(engine) as session:
        event = schedule_event(
            session,
            title="主题党日",
            org_id=world.branch_id if spec.branch == "branch" else world.other_branch_id,
            venue_id=stage.venues[spec.venue],
            kind=EventKind.THEME_DAY,
            start_at=day + spec.start,
            end_at=day + spec.start + timedelta(hours=spec.hours),
            now=now,
            caller=CLI_CALLER,
        )
        assert event.id is not None
        return event.id


TapSpec = tuple[int, int, int]  # card, kiosk, minute of the day

taps_strategy = st.lists(
    st.tuples(
        st.integers(0, len(CARDS) - 1),
        st.integers(0, 2),
        st.integers(8 * 12, 17 * 12).map(lambda five: five * 5),
    ),
    min_size=1,
    max_size=12,
)


def _envelopes(stage: Stage, taps: Sequence[TapSpec], day: datetime) -> list[SignedEnvelope]:
    """The taps as their kiosks sign them: each kiosk numbers its taps in the order they happen."""
    order = sorted(range(len(taps)), key=lambda i: (taps[i][2], i))
    envelopes: dict[int, SignedEnvelope] = {}
    for index in order:
        card_index, kiosk_index, minute = taps[index]
        kiosk = stage.kiosks[kiosk_index]
        payload = tap_payload(
            kiosk_id=kiosk.kiosk_id,
            seq=stage.next_seq(kiosk.kiosk_id),
            at=day + timedelta(minutes=minute),
            card_facts=CARDS[card_index],
        )
        envelopes[index] = kiosk.keys.seal(payload)
    return [envelopes[i] for i in range(len(taps))]


def _sheets(engine: Engine, event_ids: Sequence[int], day: datetime) -> list[dict[str, Any]]:
    """What each sheet says, with times relative to the day (the two runs use different days)."""
    found = []
    for event_id in event_ids:
        shown = sheet(engine, event_id)
        found.append(
            {
                "present": [
                    (
                        p.member_id,
                        p.first_tap_at - day,
                        p.last_tap_at - day,
                        p.checkout_at - day if p.checkout_at else None,
                        p.duration_minutes,
                        p.late,
                        p.tap_count,
                        p.guest,
                        p.card_check_label,
                    )
                    for p in shown.present
                ],
                "absent": [m.member_id for m in shown.absent],
                "counts": shown.counts.model_dump(),
            }
        )
    return found


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), taps=taps_strategy)
def test_sheets_do_not_depend_on_arrival_order(
    engine: Engine, keyring: Keyring, stage: Stage, data: st.DataObject, taps: list[TapSpec]
) -> None:
    number = next(DAYS)
    in_order_day = FIRST_DAY + timedelta(days=2 * number)
    shuffled_day = in_order_day + timedelta(days=1)
    evening = timedelta(hours=20)

    # In order: every event scheduled, then the taps in the order they happened, in one batch.
    expected_ids = [_schedule(engine, stage, spec, day=in_order_day, now=in_order_day) for spec in EVENTS]
    in_order = _envelopes(stage, taps, in_order_day)
    by_time = sorted(range(len(taps)), key=lambda i: (taps[i][2], i))
    upload(engine, keyring, [in_order[i] for i in by_time], received_at=in_order_day + evening)

    # Shuffled: a random order, random batches, each event entered before some batch (or after all).
    shuffled = _envelopes(stage, taps, shuffled_day)
    order = data.draw(st.permutations(range(len(taps))), label="upload order")
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(taps) - 1)), max_size=4), label="batch cuts"))
    batches = [list(order[a:b]) for a, b in itertools.pairwise([0, *cuts, len(taps)]) if order[a:b]]
    entered = data.draw(
        st.lists(st.integers(0, len(batches)), min_size=len(EVENTS), max_size=len(EVENTS)),
        label="event entered before batch",
    )
    actual_ids: dict[int, int] = {}
    for position in range(len(batches) + 1):
        for spec_index, spec in enumerate(EVENTS):
            if entered[spec_index] == position:
                now = shuffled_day + evening + timedelta(minutes=position)
                actual_ids[spec_index] = _schedule(engine, stage, spec, day=shuffled_day, now=now)
        if position < len(batches):
            batch = [shuffled[i] for i in batches[position]]
            upload(engine, keyring, batch, received_at=shuffled_day + evening + timedelta(minutes=position))

    expected = _sheets(engine, expected_ids, in_order_day)
    actual = _sheets(engine, [actual_ids[i] for i in range(len(EVENTS))], shuffled_day)
    assert actual == expected
