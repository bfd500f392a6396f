"""Digests reach people: e-mail through a real SMTP server, signed webhooks to a real receiver,
retries with backoff, giving up, opt-outs and deduplication across runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.notify.channels import EMAIL_DISABLED_REASON, Channels, EmailChannel, SmtpConfig, WebhookChannel
from server.notify.service import (
    MAX_ATTEMPTS,
    DeliveryRun,
    DigestItem,
    Queued,
    deliver_due,
    delivery_attempts,
    list_deliveries,
    queue_digests,
    retry_delay,
    set_opt_out,
    set_org_webhook,
    set_user_email,
)
from server.records.notify import AttemptOutcome, Delivery, DeliveryState, NotifyChannel
from server.users.service import add_user
from server.vocabulary import UserRole
from tests.server.factories import SHANGHAI, World
from tests.server.notify.conftest import ROBOT_KEY, Robot, SmtpServer

NOW = datetime(2026, 12, 6, 7, 0, tzinfo=SHANGHAI)


@dataclass
class People:
    secretary: int  # 第一党支部's secretary
    organiser: int  # the 党委's organiser: sees both branches
    other_secretary: int  # 第二党支部's secretary


def add_people(engine: Engine, world: World) -> People:
    with unit_of_work(engine) as session:

        def user(name: str, display: str, role: UserRole, org_id: int, email: str) -> int:
            created = add_user(
                session,
                username=name,
                display_name=display,
                password="correct horse battery",
                role=role,
                org_id=org_id,
                now=NOW,
                caller=CLI_CALLER,
            )
            assert created.id is not None
            set_user_email(session, user_id=created.id, address=email, caller=CLI_CALLER, now=NOW)
            return created.id

        return People(
            secretary=user("zhang", "张书记", UserRole.SECRETARY, world.branch_id, "zhang@branch.example.cn"),
            organiser=user(
                "wang", "王委员", UserRole.ORGANISER, world.committee_id, "wang@committee.example.cn"
            ),
            other_secretary=user(
                "zhao", "赵书记", UserRole.SECRETARY, world.other_branch_id, "zhao@other.example.cn"
            ),
        )


def items(world: World) -> list[DigestItem]:
    return [
        DigestItem(
            org_id=world.branch_id,
            level="警示",
            title="三会一课",
            message="本季度尚未召开党课，请在12月31日前安排。",
            link="https://djej.example.cn/reminders/1",
        ),
        DigestItem(
            org_id=world.other_branch_id,
            level="严重",
            title="党费收缴",
            message="赵六已连续6个月未交纳党费。",
        ),
    ]


def smtp_channels(smtp: SmtpServer) -> Channels:
    return Channels(
        webhook=WebhookChannel(timeout=5),
        email=EmailChannel(SmtpConfig(host=smtp.host, port=smtp.port, sender="noreply@djej.example.cn")),
    )


def queue(engine: Engine, world: World, *, now: datetime = NOW) -> Queued:
    with unit_of_work(engine) as session:
        return queue_digests(session, items(world), now=now, tz=SHANGHAI)


def deliver(engine: Engine, channels: Channels, *, now: datetime) -> DeliveryRun:
    with unit_of_work(engine) as session:
        return deliver_due(session, now=now, channels=channels)


def deliveries(engine: Engine) -> list[Delivery]:
    with Session(engine) as session:
        return list(session.exec(select(Delivery).order_by(col(Delivery.id))))


def test_each_person_gets_one_chinese_digest_of_their_scope_by_email(
    engine: Engine, world: World, smtp_server: SmtpServer
) -> None:
    people = add_people(engine, world)
    assert queue(engine, world) == Queued(queued=3)

    run = deliver(engine, smtp_channels(smtp_server), now=NOW)

    assert run == DeliveryRun(sent=3)
    by_recipient = {
        rcpt[0]: msg for rcpt, msg in zip(smtp_server.recipients(), smtp_server.messages, strict=True)
    }
    assert set(by_recipient) == {
        "zhang@branch.example.cn",
        "wang@committee.example.cn",
        "zhao@other.example.cn",
    }
    branch_mail = by_recipient["zhang@branch.example.cn"]
    assert branch_mail["Subject"] == "党组织工作提醒：1条待办（2026年12月6日）"
    assert branch_mail["From"] == "noreply@djej.example.cn"
    text = branch_mail.get_content()
    assert "张书记 同志" in text
    assert "【警示】三会一课" in text
    assert "本季度尚未召开党课" in text
    assert "https://djej.example.cn/reminders/1" in text
    assert "赵六" not in text  # the other branch's reminder is not the secretary's business
    committee_text = by_recipient["wang@committee.example.cn"].get_content()
    assert "2 条待办提醒" in committee_text
    assert "第一党支部" in committee_text
    assert "第二党支部" in committee_text
    assert "赵六已连续6个月未交纳党费" in committee_text
    rows = deliveries(engine)
    assert {r.recipient for r in rows} == {
        f"user:{people.secretary}",
        f"user:{people.organiser}",
        f"user:{people.other_secretary}",
    }
    assert all(r.state == DeliveryState.SENT and r.attempts == 1 and r.sent_at == NOW for r in rows)


def test_a_second_run_on_the_same_day_queues_nothing_and_the_next_day_does(
    engine: Engine, world: World, smtp_server: SmtpServer
) -> None:
    add_people(engine, world)
    assert queue(engine, world).queued == 3
    deliver(engine, smtp_channels(smtp_server), now=NOW)

    later_today = NOW + timedelta(hours=15)  # 22:00 the same day in Shanghai
    assert queue(engine, world, now=later_today) == Queued(queued=0, duplicates=3)
    assert deliver(engine, smtp_channels(smtp_server), now=later_today) == DeliveryRun()
    assert len(smtp_server.messages) == 3

    tomorrow = NOW + timedelta(days=1)
    assert queue(engine, world, now=tomorrow).queued == 3
    assert deliver(engine, smtp_channels(smtp_server), now=tomorrow).sent == 3
    assert len(smtp_server.messages) == 6
    assert "2026年12月7日" in str(smtp_server.messages[-1]["Subject"])


def test_without_an_smtp_server_email_stays_queued_with_the_reason(engine: Engine, world: World) -> None:
    add_people(engine, world)
    queue(engine, world)

    run = deliver(engine, Channels(webhook=WebhookChannel(timeout=5), email=None), now=NOW)

    assert run == DeliveryRun(held=3)
    rows = deliveries(engine)
    assert all(r.state == DeliveryState.QUEUED and r.attempts == 0 for r in rows)
    assert all(r.last_error == EMAIL_DISABLED_REASON for r in rows)


def test_an_unreachable_smtp_server_is_retried_with_a_reason(engine: Engine, world: World) -> None:
    add_people(engine, world)
    queue(engine, world)
    nobody = Channels(
        webhook=WebhookChannel(timeout=5),
        email=EmailChannel(SmtpConfig(host="127.0.0.1", port=1, sender="noreply@djej.example.cn", timeout=2)),
    )

    run = deliver(engine, nobody, now=NOW)

    assert run == DeliveryRun(retried=3)
    row = deliveries(engine)[0]
    assert row.state == DeliveryState.QUEUED
    assert row.next_attempt_at == NOW + timedelta(minutes=1)
    assert row.last_error.startswith("无法连接邮件服务器")


def set_robot(engine: Engine, world: World, robot: Robot, *, secret: str | None = None) -> None:
    with unit_of_work(engine) as session:
        set_org_webhook(
            session,
            org_id=world.branch_id,
            url=robot.url,
            secret=secret or robot.secret,
            caller=CLI_CALLER,
            now=NOW,
        )


def test_a_robot_that_fails_once_gets_the_digest_after_the_backoff(
    engine: Engine, world: World, robot: Robot
) -> None:
    set_robot(engine, world, robot)
    robot.fail_first = 1
    channels = Channels(webhook=WebhookChannel(timeout=5))
    assert queue(engine, world).queued == 1  # the branch's robot only: nobody has an e-mail

    assert deliver(engine, channels, now=NOW) == DeliveryRun(retried=1)
    assert deliver(engine, channels, now=NOW + timedelta(seconds=59)) == DeliveryRun()  # not due yet
    assert deliver(engine, channels, now=NOW + timedelta(minutes=1)) == DeliveryRun(sent=1)

    assert robot.answers == [500, 200]
    content = robot.accepted()[0]["markdown"]["content"]
    assert robot.accepted()[0]["msgtype"] == "markdown"
    assert "第一党支部 每日提醒（2026年12月6日）" in content
    assert "【警示】三会一课：本季度尚未召开党课" in content
    assert "赵六" not in content
    [row] = deliveries(engine)
    assert (row.state, row.attempts, row.sent_at) == (DeliveryState.SENT, 2, NOW + timedelta(minutes=1))
    with Session(engine) as session:
        attempts = delivery_attempts(session, row.id or 0)
    assert [(a.outcome, a.http_status) for a in attempts] == [
        (AttemptOutcome.RETRY, 500),
        (AttemptOutcome.SENT, 200),
    ]


def test_a_wrong_secret_is_refused_retried_and_finally_failed(
    engine: Engine, world: World, robot: Robot
) -> None:
    wrong = "not-the-robot-secret-but-long-enough"
    set_robot(engine, world, robot, secret=wrong)
    channels = Channels(webhook=WebhookChannel(timeout=5))
    queue(engine, world)

    now = NOW
    runs = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        runs.append(deliver(engine, channels, now=now))
        now += retry_delay(attempt)
    assert runs == [DeliveryRun(retried=1)] * (MAX_ATTEMPTS - 1) + [DeliveryRun(failed=1)]
    assert deliver(engine, channels, now=now + timedelta(days=1)) == DeliveryRun()  # given up

    assert robot.answers == [401] * MAX_ATTEMPTS
    [row] = deliveries(engine)
    assert (row.state, row.attempts) == (DeliveryState.FAILED, MAX_ATTEMPTS)
    assert "401" in row.last_error
    assert wrong not in row.last_error
    assert ROBOT_KEY not in row.last_error
    with Session(engine) as session:
        attempts = delivery_attempts(session, row.id or 0)
        shown = list_deliveries(session, caller=CLI_CALLER)
    assert [a.outcome for a in attempts] == [AttemptOutcome.RETRY] * (MAX_ATTEMPTS - 1) + [
        AttemptOutcome.FAILED
    ]
    assert [a.at - NOW for a in attempts] == [timedelta(minutes=m) for m in (0, 1, 3, 7, 15, 31)]
    assert ROBOT_KEY not in shown[0].address
    assert shown[0].address.startswith("http://127.0.0.1:")


def test_opted_out_channels_get_nothing_queued(engine: Engine, world: World, robot: Robot) -> None:
    people = add_people(engine, world)
    set_robot(engine, world, robot)
    with unit_of_work(engine) as session:
        for recipient, channel in [
            (f"org:{world.branch_id}", NotifyChannel.WEBHOOK),
            (f"user:{people.secretary}", NotifyChannel.EMAIL),
        ]:
            assert set_opt_out(
                session, recipient=recipient, channel=channel, opted_out=True, caller=CLI_CALLER, now=NOW
            )

    assert queue(engine, world) == Queued(queued=2, opted_out=2)
    assert {r.recipient for r in deliveries(engine)} == {
        f"user:{people.organiser}",
        f"user:{people.other_secretary}",
    }

    with unit_of_work(engine) as session:
        set_opt_out(
            session,
            recipient=f"org:{world.branch_id}",
            channel=NotifyChannel.WEBHOOK,
            opted_out=False,
            caller=CLI_CALLER,
            now=NOW,
        )
    assert queue(engine, world) == Queued(queued=1, duplicates=2, opted_out=1)
    assert f"org:{world.branch_id}" in {r.recipient for r in deliveries(engine)}


def test_opting_out_gives_up_what_was_queued(engine: Engine, world: World, robot: Robot) -> None:
    set_robot(engine, world, robot)
    queue(engine, world)
    with unit_of_work(engine) as session:
        set_opt_out(
            session,
            recipient=f"org:{world.branch_id}",
            channel=NotifyChannel.WEBHOOK,
            opted_out=True,
            caller=CLI_CALLER,
            now=NOW,
        )

    assert deliver(engine, Channels(webhook=WebhookChannel(timeout=5)), now=NOW) == DeliveryRun()
    assert robot.received == []
    [row] = deliveries(engine)
    assert row.state == DeliveryState.FAILED
    assert row.attempts == 0


@pytest.mark.parametrize("address", ["not-an-address", "a@b", "x@y.cn\nBcc: z@evil.example"])
def test_bad_email_addresses_are_refused(engine: Engine, world: World, address: str) -> None:
    from server.errors import InvalidNotifyAddress

    people = add_people(engine, world)
    with unit_of_work(engine) as session, pytest.raises(InvalidNotifyAddress):
        set_user_email(session, user_id=people.secretary, address=address, caller=CLI_CALLER, now=NOW)


@pytest.mark.pg
def test_two_processes_never_send_the_same_row(pg_migrated_database_url: str, robot: Robot) -> None:
    """While one delivery run holds its rows (sent, not yet committed), another run skips them
    instead of sending them again (PostgreSQL, FOR UPDATE SKIP LOCKED)."""
    from server.db import make_engine
    from server.keyring import Keyring
    from tests.server.conftest import TEST_SECRET
    from tests.server.factories import build_world

    engine = make_engine(pg_migrated_database_url)
    try:
        world = build_world(engine, Keyring(TEST_SECRET.encode()), now=NOW)
        set_robot(engine, world, robot)
        queue(engine, world)
        channels = Channels(webhook=WebhookChannel(timeout=5))
        with Session(engine) as first, first.begin():
            assert deliver_due(first, now=NOW, channels=channels) == DeliveryRun(sent=1)
            with Session(engine) as second, second.begin():
                # Waiting for the first run's rows would hang this test: fail fast instead.
                second.execute(text("SET LOCAL lock_timeout = '3s'"))
                assert deliver_due(second, now=NOW, channels=channels) == DeliveryRun()
        assert deliver(engine, channels, now=NOW) == DeliveryRun()
        assert robot.answers == [200]
        assert [r.state for r in deliveries(engine)] == [DeliveryState.SENT]
    finally:
        engine.dispose()
