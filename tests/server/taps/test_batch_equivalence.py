"""Ingest by the batch decides exactly as ingest one envelope at a time (#11 item 1).

A random stream of envelopes from one kiosk — first taps, repeats and sign-outs of three members,
a stranger's card, resent envelopes, a seq reused with other bytes, taps from the future, taps
outside the meeting — is uploaded twice, on two days that each have the same meetings: once one
envelope per request, once all in one batch. Every receipt (status, code and what the kiosk
shows) and every attendance row must be the same. The batch has its signatures checked ahead, as
the server's tap intake does. Both databases (SQLite and PostgreSQL).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.messages import CardFacts, SignedEnvelope, TapReceipt
from server.attendance.derive import schedule_event
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.keyring import Keyring
from server.records.attendance import Attendance
from server.vocabulary import EventKind
from tests.server.factories import (
    LI_CARD,
    SHANGHAI,
    STRANGER_CARD,
    ZHANG_CARD,
    ZHAO_CARD,
    World,
    known_keys,
    upload,
)

CARDS = (ZHANG_CARD, LI_CARD, ZHAO_CARD, STRANGER_CARD)
FIRST_DAY = datetime(2027, 3, 1, tzinfo=SHANGHAI)
DAYS = itertools.count()
EVENING = timedelta(hours=20)

# What each envelope is: a new tap (card, minute of the day), the same bytes sent again, the seq of
# an earlier envelope with other bytes, or a tap stamped an hour after the upload (clock skew).
Step = tuple[str, int, int]
steps = st.lists(
    st.tuples(
        st.sampled_from(["new", "new", "new", "again", "conflict", "future"]),
        st.integers(0, len(CARDS) - 1),
        st.integers(8 * 12, 13 * 12).map(lambda five: five * 5),
    ),
    min_size=1,
    max_size=16,
)


def _schedule(engine: Engine, world: World, day: datetime) -> list[int]:
    """The day's meetings at the world's venue: the branch's 09:00–11:00, and the other branch's
    10:30–12:00 whose window opens inside the first."""
    ids: list[int] = []
    with unit_of_work(engine) as session:
        for org_id, start, hours in (
            (world.branch_id, timedelta(hours=9), 2.0),
            (world.other_branch_id, timedelta(hours=10, minutes=30), 1.5),
        ):
            event = schedule_event(
                session,
                title="主题党日",
                org_id=org_id,
                venue_id=world.venue_id,
                kind=EventKind.THEME_DAY,
                start_at=day + start,
                end_at=day + start + timedelta(hours=hours),
                now=day,
                caller=CLI_CALLER,
            )
            assert event.id is not None
            ids.append(event.id)
    return ids


def _envelopes(world: World, chosen: Sequence[Step], day: datetime) -> list[SignedEnvelope]:
    sent: list[tuple[SignedEnvelope, int]] = []
    envelopes: list[SignedEnvelope] = []
    for kind, card_index, minute in chosen:
        card: CardFacts = CARDS[card_index]
        at = day + timedelta(minutes=minute)
        if kind == "again" and sent:
            envelopes.append(sent[card_index % len(sent)][0])
            continue
        if kind == "conflict" and sent:
            seq = sent[card_index % len(sent)][1]
            payload = world.payload(card, at=at + timedelta(seconds=1), seq=seq)
        elif kind == "future":
            payload = world.payload(card, at=day + EVENING + timedelta(hours=1))
        else:
            payload = world.payload(card, at=at)
        envelope = world.keys.seal(payload)
        sent.append((envelope, payload.seq))
        envelopes.append(envelope)
    return envelopes


def _shown(receipt: TapReceipt) -> tuple[Any, ...]:
    display = receipt.display
    return (
        receipt.index,
        receipt.status,
        receipt.code,
        display.message,
        display.member_name,
        display.event_title,
    )


def _attendance(engine: Engine, event_ids: Sequence[int], day: datetime) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        rows = session.exec(select(Attendance).where(col(Attendance.event_id).in_(event_ids))).all()
        position = {event_id: n for n, event_id in enumerate(event_ids)}
        return sorted(
            (position[r.event_id], r.member_id, r.first_tap_at - day, r.last_tap_at - day, r.tap_count)
            for r in rows
        )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(chosen=steps)
def test_a_batch_is_decided_as_its_envelopes_one_by_one(
    engine: Engine, keyring: Keyring, world: World, chosen: list[Step]
) -> None:
    number = next(DAYS)
    one_by_one_day = FIRST_DAY + timedelta(days=2 * number)
    batch_day = one_by_one_day + timedelta(days=1)
    one_by_one_events = _schedule(engine, world, one_by_one_day)
    batch_events = _schedule(engine, world, batch_day)

    singles = _envelopes(world, chosen, one_by_one_day)
    one_by_one = [
        upload(engine, keyring, [envelope], received_at=one_by_one_day + EVENING).receipts[0]
        for envelope in singles
    ]
    # As the server's intake does it: the batch's signatures checked ahead with the kiosk's key.
    batched = upload(
        engine,
        keyring,
        _envelopes(world, chosen, batch_day),
        received_at=batch_day + EVENING,
        public_keys=known_keys(world),
    ).receipts

    expected = [_shown(receipt.model_copy(update={"index": n})) for n, receipt in enumerate(one_by_one)]
    assert [_shown(receipt) for receipt in batched] == expected
    assert _attendance(engine, batch_events, batch_day) == _attendance(
        engine, one_by_one_events, one_by_one_day
    )
