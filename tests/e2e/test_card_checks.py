"""Clones at a real kiosk: nfcpy's PN532 driver, the agent, the server and the card issuer.

Every program runs as its own process: ``ecard server run`` (with ``ECARD_ISSUER_URL`` and
``ECARD_MIN_CARD_CHECK=card-number``), the simulated issuer (``python -m firmware_sim.issuer_cli``),
``ecard agent run --reader nfc:…`` reading through nfcpy; the PN532 firmware emulator serves
the pty. A genuine 易通卡 reaches ``issuer-mac``; each kind of clone is refused.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ecard_cli.stack import (
    AgentProcess,
    Child,
    StackError,
    admin,
    enroll_agent,
    free_port,
    server_env,
    start_agent,
    start_server,
)
from firmware_sim.cards import VirtualCard, issued_card, uid_only_card, xiamen_card
from firmware_sim.pn532 import Pn532Sim

pytestmark = [pytest.mark.e2e, pytest.mark.sim]

MASTER_KEY = secrets.token_bytes(16)
CLONER_KEY = secrets.token_bytes(16)
CARD_NO = "3104390000000000001"
UID = bytes.fromhex("A1B2C301")


@dataclass
class Site:
    url: str
    database_url: str
    kiosk_code: str


def start_issuer(tmp_path: Path) -> tuple[Child, str]:
    env = dict(os.environ, ECARD_SIM_ISSUER_MASTER_KEY=MASTER_KEY.hex(), PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "firmware_sim.issuer_cli", "--port", str(free_port())]
    issuer = Child("issuer", argv, env, tmp_path / "issuer.log").start()
    line = issuer.next_line(timeout=30)
    if line is None or not line.startswith("issuer listening on "):
        issuer.stop()
        raise StackError(f"issuer did not start:\n{issuer.transcript()}")
    return issuer, line.split()[-1]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    issuer, issuer_url = start_issuer(tmp_path)
    database_url = f"sqlite:///{tmp_path / 'ecard.sqlite'}"
    env = server_env(database_url, tmp_path / "server-data", secrets.token_hex(32))
    env.update(ECARD_ISSUER_URL=issuer_url, ECARD_MIN_CARD_CHECK="card-number")
    port = free_port()
    server = start_server(env, port, log_path=tmp_path / "server.log")
    try:
        org = admin(env, "org", "add", "湖里区某联合党委", "--kind", "basic_committee")
        member = admin(env, "member", "add", "王小明", "--org", str(org["id"]))
        bound = admin(
            env, "card", "bind", str(member["id"]), "--card-no", CARD_NO, "--uid", UID.hex(), "--issuer-mac"
        )
        assert bound["issuer_mac"] is True
        venue = admin(env, "venue", "add", "党群服务中心一楼", "--org", str(org["id"]))
        now = datetime.now(UTC)
        admin(
            env,
            "event",
            "add",
            "十一月主题党日",
            "--org",
            str(org["id"]),
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
        yield Site(
            url=f"http://127.0.0.1:{port}", database_url=database_url, kiosk_code=kiosk["enrollment_code"]
        )
    finally:
        server.stop()
        issuer.stop()


@pytest.fixture
def reader() -> Iterator[Pn532Sim]:
    with Pn532Sim() as sim:
        yield sim


@pytest.fixture
def kiosk(site: Site, reader: Pn532Sim, tmp_path: Path) -> Iterator[AgentProcess]:
    state_dir = tmp_path / "kiosk-state"
    enroll_agent(site.url, site.kiosk_code, state_dir)
    agent = start_agent(reader.spec, state_dir, log_path=tmp_path / "agent.log")
    try:
        yield agent
    finally:
        agent.stop()


def present(reader: Pn532Sim, kiosk: AgentProcess, card: VirtualCard) -> dict[str, object]:
    """Lay *card* on the reader, take the kiosk's answer, take the card away."""
    reader.present(card)
    try:
        return kiosk.feedback(timeout=30)
    finally:
        reader.remove()


def tap_rows(database_url: str) -> list[tuple[str, str | None, str | None]]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT outcome, code, card_check FROM tap ORDER BY id")).all()
        return [(str(outcome), code, level) for outcome, code, level in rows]
    finally:
        engine.dispose()


def test_genuine_card_reaches_issuer_mac_and_clones_are_refused(
    site: Site, reader: Pn532Sim, kiosk: AgentProcess
) -> None:
    genuine = present(reader, kiosk, issued_card(CARD_NO, UID, MASTER_KEY))
    assert (genuine["status"], genuine["member_name"]) == ("accepted", "王*明"), genuine

    data_copy = present(reader, kiosk, xiamen_card(CARD_NO, UID))  # UID and files, no key
    assert (data_copy["status"], data_copy["code"]) == ("rejected", "issuer_mac_invalid"), data_copy
    assert data_copy["member_name"] is None

    own_key = present(reader, kiosk, issued_card(CARD_NO, UID, CLONER_KEY))
    assert own_key["code"] == "issuer_mac_invalid", own_key

    other_number = present(reader, kiosk, issued_card("3104390000000000002", UID, MASTER_KEY))
    assert other_number["code"] == "card_mismatch", other_number

    magic_uid = present(reader, kiosk, uid_only_card(UID))  # a UID-changeable card
    assert magic_uid["code"] == "weak_card_check", magic_uid

    assert tap_rows(site.database_url) == [
        ("accepted", None, "issuer-mac"),
        ("rejected", "issuer_mac_invalid", None),
        ("rejected", "issuer_mac_invalid", None),
        ("rejected", "card_mismatch", None),
        ("rejected", "weak_card_check", "uid"),
    ]
