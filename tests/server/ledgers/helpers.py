"""Helpers for ledger tests, on top of ``tests.server.factories.build_world``: more events,
taps through the real ingest pipeline, and the services' caller."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Engine

from schemas.messages import CardFacts, TapReceipt
from server.attendance.schemas import AttendanceSheet
from server.attendance.service import build_attendance_sheet
from server.auth.service import create_token
from server.caller import CLI_CALLER, Caller
from server.db import unit_of_work
from server.events.service import add_event
from server.keyring import Keyring
from server.orgs.service import add_member
from server.vocabulary import EventKind, MemberCategory, TokenRole
from tests.server.factories import SHANGHAI, World, upload

CALLER: Caller = CLI_CALLER


def at(day: str, hhmm: str = "09:00") -> datetime:
    """A local (Asia/Shanghai) time: ``at("2025-04-03", "09:30")``."""
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=SHANGHAI)


def meeting(
    engine: Engine,
    world: World,
    title: str,
    start: datetime,
    *,
    kinds: Sequence[EventKind] = (EventKind.THEME_DAY,),
    org_id: int | None = None,
    joint: Sequence[int] = (),
    hours: float = 2,
    chair: int | None = None,
    recorder: int | None = None,
    venue_id: int | None = None,
    created: datetime | None = None,
) -> int:
    with unit_of_work(engine) as session:
        event = add_event(
            session,
            title=title,
            org_id=org_id or world.branch_id,
            venue_id=venue_id or world.venue_id,
            kind=kinds[0],
            also_counts_as=kinds[1:],
            joint_org_ids=joint,
            start_at=start,
            end_at=start + timedelta(hours=hours),
            chair_member_id=chair,
            recorder_member_id=recorder,
            topic="学习党章",
            now=created or start - timedelta(days=7),
            caller=CLI_CALLER,
        )
        assert event.id is not None
        return event.id


def member(
    engine: Engine,
    name: str,
    org_id: int,
    *,
    category: MemberCategory = MemberCategory.FULL,
    joined: datetime | None = None,
    now: datetime | None = None,
) -> int:
    with unit_of_work(engine) as session:
        created = add_member(
            session,
            name=name,
            org_id=org_id,
            category=category,
            joined_org_at=joined,
            now=now or at("2025-01-01"),
        )
        assert created.id is not None
        return created.id


def tap(engine: Engine, keyring: Keyring, world: World, card: CardFacts, when: datetime) -> TapReceipt:
    """One tap at the world's kiosk, through the real ingest pipeline."""
    result = upload(engine, keyring, [world.keys.seal(world.payload(card, at=when))], received_at=when)
    (receipt,) = result.receipts
    return receipt


def sheet(engine: Engine, event_id: int) -> AttendanceSheet:
    with unit_of_work(engine) as session:
        return build_attendance_sheet(session, event_id=event_id, caller=CLI_CALLER, tz=SHANGHAI)


def token(engine: Engine, keyring: Keyring, *, org_id: int | None = None) -> dict[str, str]:
    """Authorization headers for an admin (no org) or a secretary of ``org_id``."""
    role = TokenRole.ADMIN if org_id is None else TokenRole.SECRETARY
    with unit_of_work(engine) as session:
        created = create_token(
            session,
            keyring=keyring,
            role=role,
            org_id=org_id,
            label="test",
            caller=CLI_CALLER,
            now=at("2025-01-01"),
        )
    return {"Authorization": f"Bearer {created.token}"}
