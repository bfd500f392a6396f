"""The daily sweep reaches people: its reminders go out as one digest per recipient, to a real
SMTP server and a real group robot, through the scheduled jobs — and a second run the same day
sends nothing again."""

from __future__ import annotations

from sqlalchemy import Engine

from server.caller import CLI_CALLER
from server.clock import Clock
from server.config import ServerSettings
from server.db import unit_of_work
from server.notify.service import set_org_webhook, set_user_email
from server.schedule import find_job, run_job
from server.users.service import add_user
from server.vocabulary import UserRole
from tests.server.factories import World
from tests.server.ledgers.helpers import at
from tests.server.notify.conftest import Robot, SmtpServer

NOW = at("2026-12-01", "08:00")


def run(engine: Engine, name: str, settings: ServerSettings, clock: Clock) -> str:
    with unit_of_work(engine) as session:
        done = run_job(session, find_job(name), settings=settings, clock=clock, trigger="manual")
    assert done.ok, done.summary
    return done.summary


def test_the_sweeps_reminders_arrive_as_one_digest_each(
    engine: Engine, world: World, settings: ServerSettings, smtp_server: SmtpServer, robot: Robot
) -> None:
    with unit_of_work(engine) as session:
        set_org_webhook(
            session, org_id=world.branch_id, url=robot.url, secret=robot.secret, caller=CLI_CALLER, now=NOW
        )
        boss = add_user(
            session,
            username="zuzhibu",
            display_name="街道组织委员",
            password="a-long-password-42",
            role=UserRole.ORGANISER,
            org_id=world.committee_id,
            now=NOW,
            caller=CLI_CALLER,
        )
        assert boss.id is not None
        set_user_email(
            session, user_id=boss.id, address="zuzhi@jiedao.example.cn", caller=CLI_CALLER, now=NOW
        )
    mailing = settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_from": "noreply@djej.example.cn",
        }
    )

    assert "每日汇总2份" in run(engine, "supervision_sweep", mailing, lambda: NOW)
    assert "发出2条" in run(engine, "notify_delivery", mailing, lambda: NOW)

    (posted,) = robot.accepted()
    text = posted["markdown"]["content"]
    assert "第一党支部" in text
    assert "不足3人" in text  # the branch's own 组织设置 finding
    (mail,) = smtp_server.messages
    assert smtp_server.recipients() == [["zuzhi@jiedao.example.cn"]]
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    content = body.get_content()
    assert "第一党支部" in content  # the committee's whole subtree
    assert "第二党支部" in content

    later = at("2026-12-01", "20:00")
    assert "每日汇总0份" in run(engine, "supervision_sweep", mailing, lambda: later)
    assert "发出0条" in run(engine, "notify_delivery", mailing, lambda: later)
    assert len(robot.accepted()) == 1
