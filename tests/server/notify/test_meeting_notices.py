"""会议通知: an upcoming event is announced to its organisations' group robots once, and again when
its time or place changes."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.notify.channels import Channels, WebhookChannel
from server.notify.service import DeliveryRun, Queued, deliver_due, queue_meeting_notices, set_org_webhook
from server.records.events import Event
from server.venues.service import add_venue
from tests.server.factories import EVENT_START, SHANGHAI, World
from tests.server.notify.conftest import Robot

LEAD = timedelta(days=2)
DAY_BEFORE = EVENT_START - timedelta(days=1)


def announce(engine: Engine) -> Queued:
    with unit_of_work(engine) as session:
        return queue_meeting_notices(session, now=DAY_BEFORE, tz=SHANGHAI, lead=LEAD)


def deliver(engine: Engine) -> DeliveryRun:
    with unit_of_work(engine) as session:
        return deliver_due(session, now=DAY_BEFORE, channels=Channels(webhook=WebhookChannel(timeout=5)))


def set_robot(engine: Engine, world: World, robot: Robot) -> None:
    with unit_of_work(engine) as session:
        set_org_webhook(
            session,
            org_id=world.branch_id,
            url=robot.url,
            secret=robot.secret,
            caller=CLI_CALLER,
            now=DAY_BEFORE,
        )


def test_an_upcoming_meeting_is_announced_once_with_time_place_and_topic(
    engine: Engine, world: World, robot: Robot
) -> None:
    set_robot(engine, world, robot)
    with unit_of_work(engine) as session:
        event = session.get(Event, world.event_id)
        assert event is not None
        event.topic = "学习党的二十届四中全会精神"
        session.add(event)

    assert announce(engine) == Queued(queued=1)
    assert announce(engine) == Queued(duplicates=1)
    assert deliver(engine) == DeliveryRun(sent=1)
    assert deliver(engine) == DeliveryRun()

    [notice] = robot.accepted()
    content = notice["markdown"]["content"]
    assert content.startswith("**会议通知**")
    assert "> 会议：三月主题党日" in content
    assert "> 类型：主题党日" in content
    assert "> 议题：学习党的二十届四中全会精神" in content
    assert "> 时间：2025年3月1日 09:00" in content
    assert "> 地点：党员活动室" in content


def test_only_events_within_the_lead_time_are_announced(engine: Engine, world: World, robot: Robot) -> None:
    set_robot(engine, world, robot)
    with unit_of_work(engine) as session:
        too_early = queue_meeting_notices(
            session, now=EVENT_START - LEAD - timedelta(minutes=1), tz=SHANGHAI, lead=LEAD
        )
        started = queue_meeting_notices(session, now=EVENT_START, tz=SHANGHAI, lead=LEAD)
    assert too_early == Queued()
    assert started == Queued()


def test_a_changed_time_or_place_is_announced_again_as_a_change(
    engine: Engine, world: World, robot: Robot
) -> None:
    set_robot(engine, world, robot)
    assert announce(engine).queued == 1

    with unit_of_work(engine) as session:
        event = session.get(Event, world.event_id)
        assert event is not None
        event.start_at = EVENT_START + timedelta(minutes=30)
        session.add(event)
    assert announce(engine) == Queued(queued=1)
    assert announce(engine) == Queued(duplicates=1)

    with unit_of_work(engine) as session:
        hall = add_venue(session, name="街道党群服务中心", org_id=world.committee_id, now=DAY_BEFORE)
        event = session.get(Event, world.event_id)
        assert event is not None
        assert hall.id is not None
        event.venue_id = hall.id
        session.add(event)
    assert announce(engine) == Queued(queued=1)

    assert deliver(engine).sent == 3
    first, moved, relocated = (body["markdown"]["content"] for body in robot.accepted())
    assert first.startswith("**会议通知**")
    assert "09:00" in first
    assert moved.startswith("**会议变更通知**")
    assert "> 时间：2025年3月1日 09:30" in moved
    assert "> 地点：街道党群服务中心" in relocated
    assert "以本通知为准" in relocated


def test_organisations_without_a_robot_get_nothing(engine: Engine, world: World) -> None:
    assert announce(engine) == Queued()
