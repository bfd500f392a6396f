"""A 易通卡 tapped on a PC/SC kiosk lands in the server's attendance ledger.

Every component is real and runs as its own process: pcscd with the vsmartcard-vpcd driver, the
virtual card connecting to it over TCP, ``ecard agent run --reader pcsc`` reading through pyscard,
``ecard server run`` over HTTP, the admin CLI, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from ecard_cli.stack import (
    AgentProcess,
    Child,
    admin,
    enroll_agent,
    free_port,
    server_env,
    start_agent,
    start_server,
)
from firmware_sim.cards import TUnionCard, uid_only_card
from firmware_sim.vpcd import VpcdSlot

pytestmark = [pytest.mark.e2e, pytest.mark.sim]

# The e2e tests use the second vpcd slot so they never share a reader with the contract suite.
VPCD_PORT = 35964
READER_SPEC = "pcsc:Virtual PCD 00 01"


@dataclass
class Deployment:
    server: Child
    url: str
    env: dict[str, str]
    database_url: str
    token: str
    event_id: int
    members: dict[str, dict[str, Any]]
    kiosk_code: str

    def attendance(self) -> dict[str, Any]:
        response = httpx.get(
            f"{self.url}/api/v1/events/{self.event_id}/attendance",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        sheet: dict[str, Any] = response.json()
        return sheet


def deploy(database_url: str, tmp_path: Path) -> Iterator[Deployment]:
    """Server on *database_url*, seeded through the admin CLI like an operator's script would."""
    env = server_env(database_url, tmp_path / "server-data", secrets.token_hex(32))
    port = free_port()
    server = start_server(env, port, log_path=tmp_path / "server.log")
    try:
        org = admin(env, "org", "add", "湖里区某联合党委", "--kind", "basic_committee")
        branch = admin(env, "org", "add", "第一党支部", "--parent", str(org["id"]), "--kind", "branch")
        members = {
            "wang": admin(env, "member", "add", "王小明", "--org", str(branch["id"]), "--category", "full"),
            "li": admin(
                env, "member", "add", "李华", "--org", str(branch["id"]), "--category", "probationary"
            ),
            "zhao": admin(env, "member", "add", "赵一二三", "--org", str(branch["id"])),
        }
        admin(
            env,
            "card",
            "bind",
            str(members["wang"]["id"]),
            "--card-no",
            "3104390000000000001",
            "--uid",
            "A1B2C301",
        )
        admin(env, "card", "bind", str(members["li"]["id"]), "--uid", "04A1B2C3")
        admin(env, "card", "bind", str(members["zhao"]["id"]), "--card-no", "3104390000000000003")
        venue = admin(env, "venue", "add", "党群服务中心一楼", "--org", str(branch["id"]))
        now = datetime.now(UTC)
        event = admin(
            env,
            "event",
            "add",
            "十一月主题党日",
            "--org",
            str(branch["id"]),
            "--venue",
            str(venue["id"]),
            "--kind",
            "theme_day",
            "--start",
            (now - timedelta(minutes=10)).isoformat(),
            "--end",
            (now + timedelta(hours=2)).isoformat(),
        )
        kiosk = admin(env, "kiosk", "add", "一楼签到机", "--venue", str(venue["id"]))
        token = admin(env, "token", "create", "--role", "admin")
        yield Deployment(
            server=server,
            url=f"http://127.0.0.1:{port}",
            env=env,
            database_url=database_url,
            token=token["token"],
            event_id=event["id"],
            members=members,
            kiosk_code=kiosk["enrollment_code"],
        )
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'ecard.sqlite'}"
    else:
        database_url = request.getfixturevalue("pg_database_url")
    yield from deploy(database_url, tmp_path)


@pytest.fixture
def kiosk(deployment: Deployment, tmp_path: Path) -> Iterator[AgentProcess]:
    state_dir = tmp_path / "kiosk-state"
    enroll_agent(deployment.url, deployment.kiosk_code, state_dir)
    agent = start_agent(READER_SPEC, state_dir, log_path=tmp_path / "agent.log")
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def slot() -> Iterator[VpcdSlot]:
    with VpcdSlot(port=VPCD_PORT) as slot:
        yield slot


def tap_rows(database_url: str) -> list[tuple[str, str | None]]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT outcome, code FROM tap ORDER BY id")).all()
        return [(str(status), code) for status, code in rows]
    finally:
        engine.dispose()


def test_tapped_member_is_present_and_unknown_card_is_rejected(
    deployment: Deployment, kiosk: AgentProcess, slot: VpcdSlot
) -> None:
    """A member's 易通卡 shows them present on the sign-in sheet; an unknown card is kept as rejected."""
    slot.tap(TUnionCard(uid=bytes.fromhex("A1B2C301"), card_no="3104390000000000001"), wait_read=5.0)
    accepted = kiosk.feedback(timeout=30)
    assert accepted["status"] == "accepted", accepted
    assert accepted["member_name"] == "王*明"
    assert accepted["event_title"] == "十一月主题党日"

    slot.tap(uid_only_card(bytes.fromhex("04A1B2C3")), wait_read=5.0)
    by_uid = kiosk.feedback(timeout=30)
    assert by_uid["status"] == "accepted", by_uid
    assert by_uid["member_name"] == "李*"

    slot.tap(TUnionCard(uid=bytes.fromhex("DEADBEEF"), card_no="3104399999999999999"), wait_read=5.0)
    unknown = kiosk.feedback(timeout=30)
    assert unknown["status"] == "rejected"
    assert unknown["code"] == "unknown_card"

    sheet = deployment.attendance()
    present = {p["member_id"] for p in sheet["present"]}
    absent = {a["member_id"] for a in sheet["absent"]}
    members = deployment.members
    assert present == {members["wang"]["id"], members["li"]["id"]}
    assert absent == {members["zhao"]["id"]}
    assert sheet["counts"]["expected"] == 3
    assert sheet["counts"]["present"] == 2

    assert tap_rows(deployment.database_url) == [
        ("accepted", None),
        ("accepted", None),
        ("rejected", "unknown_card"),
    ]
    assert [accepted["seq"], by_uid["seq"], unknown["seq"]] == [1, 2, 3]
