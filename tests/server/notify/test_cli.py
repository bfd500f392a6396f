"""``ecard admin notify``: an operator sets a robot and an address, opts out, and reads the outbox
with addresses masked and secrets never shown after the first time."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from server.audit.service import list_entries
from server.caller import CLI_CALLER, UNSCOPED
from server.cli import admin_app
from server.db import unit_of_work
from server.notify.service import DigestItem, queue_digests
from server.users.service import add_user
from server.vocabulary import UserRole
from tests.server.factories import SHANGHAI, World
from tests.server.notify.conftest import ROBOT_KEY, Robot


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for name in ("ECARD_DATABASE_URL", "ECARD_SECRET_KEY", "ECARD_TIMEZONE", "ECARD_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ECARD_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def admin(runner: CliRunner, database_url: str, *args: str, stdin: str | None = None) -> dict[str, Any]:
    result = runner.invoke(admin_app, ["notify", *args, "--json", "--db", database_url], input=stdin)
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_an_operator_sets_channels_and_reads_the_outbox_masked(
    runner: CliRunner, engine: Engine, database_url: str, world: World, robot: Robot
) -> None:
    with unit_of_work(engine) as session:
        user = add_user(
            session,
            username="zhang",
            display_name="张书记",
            password="correct horse battery",
            role=UserRole.SECRETARY,
            org_id=world.branch_id,
            now=datetime.now(SHANGHAI),
            caller=CLI_CALLER,
        )
    set_robot = admin(runner, database_url, "webhook-set", str(world.branch_id), "--url", robot.url, stdin="")
    generated = set_robot["secret"]
    assert len(generated) >= 32
    assert ROBOT_KEY not in set_robot["url"]
    # A secret piped in is used as given and not echoed back.
    again = admin(
        runner, database_url, "webhook-set", str(world.branch_id), "--url", robot.url, stdin=robot.secret
    )
    assert "secret" not in again
    admin(runner, database_url, "email-set", str(user.id), "--address", "Zhang.San@Branch.Example.CN")
    admin(runner, database_url, "opt-out", "email", "--user", str(user.id))

    with unit_of_work(engine) as session:
        queued = queue_digests(
            session,
            [
                DigestItem(
                    org_id=world.branch_id, level="提示", title="组织生活", message="请及时上传会议记录。"
                )
            ],
            now=datetime.now(SHANGHAI),
            tz=SHANGHAI,
        )
    assert (queued.queued, queued.opted_out) == (1, 1)

    sent = admin(runner, database_url, "deliver")
    assert sent == {"sent": 1, "retried": 0, "failed": 0, "held": 0}
    assert robot.answers == [200]  # signed with the piped-in secret the robot expects

    listed = admin(runner, database_url, "deliveries")["deliveries"]
    assert [(d["recipient"], d["state"], d["attempts"]) for d in listed] == [
        (f"org:{world.branch_id}", "sent", 1)
    ]
    targets = admin(runner, database_url, "targets")["targets"]
    shown = json.dumps(targets, ensure_ascii=False)
    assert ROBOT_KEY not in shown
    assert robot.secret not in shown
    assert generated not in shown
    assert {(t["recipient"], t["address"], t["opted_out"]) for t in targets} == {
        (f"org:{world.branch_id}", f"http://127.0.0.1:{robot.url.split(':')[2].split('/')[0]}/***", False),
        (f"user:{user.id}", "Z***@branch.example.cn", True),
    }

    removed = admin(runner, database_url, "webhook-remove", str(world.branch_id))
    assert removed["dropped"] == 0
    with unit_of_work(engine) as session:
        actions = [e.action for e in list_entries(session, scope=UNSCOPED) if e.action.startswith("notify.")]
    assert sorted(actions) == sorted(
        [
            "notify.webhook_set",
            "notify.webhook_set",
            "notify.email_set",
            "notify.opt_out",
            "notify.webhook_removed",
        ]
    )


def test_unknown_recipients_are_refused_with_a_code(
    runner: CliRunner, engine: Engine, database_url: str
) -> None:
    result = runner.invoke(
        admin_app, ["notify", "email-set", "999", "--address", "a@b.cn", "--json", "--db", database_url]
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == "user_not_found"
    result = runner.invoke(
        admin_app,
        ["notify", "webhook-set", "999", "--url", "https://x.example.cn/", "--json", "--db", database_url],
    )
    assert json.loads(result.stdout)["error"] == "organisation_not_found"
