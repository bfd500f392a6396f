"""Clones at a real kiosk: nfcpy's PN532 driver or pcscd, the agent, the server and the card issuer.

Every program runs as its own process: ``ecard server run`` (with ``ECARD_ISSUER_URL``), the
simulated issuer (``python -m firmware_sim.issuer_cli``), ``ecard agent run`` reading through
nfcpy (the PN532 firmware emulator serves the pty) or through pyscard from pcscd (the
vsmartcard-vpcd driver, the virtual card connecting over TCP). A genuine 易通卡 reaches
``issuer-mac``; each kind of clone is refused, the magic-UID card of issue #9 as ``card_downgrade``
even at the default minimum (``uid``), and the sign-in sheet shows the level of each presence.
"""

from __future__ import annotations

import os
import secrets
import sys
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
from firmware_sim.vpcd import VpcdSlot

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
    assert magic_uid["code"] == "card_downgrade", magic_uid

    assert tap_rows(site.database_url) == [
        ("accepted", None, "issuer-mac"),
        ("rejected", "issuer_mac_invalid", None),
        ("rejected", "issuer_mac_invalid", None),
        ("rejected", "card_mismatch", None),
        ("rejected", "card_downgrade", "uid"),
    ]


# --- the issue's clone at a PC/SC kiosk, under the default minimum ---------------------------------

# The e2e tests use the second vpcd slot so they never share a reader with the contract suite.
VPCD_PORT = 35964
PCSC_READER = "pcsc:Virtual PCD 00 01"
ISSUE_CARD_NO = "3104390000000000009"
ISSUE_UID = bytes.fromhex("5A3C9E02")


@dataclass
class DefaultSite:
    url: str
    env: dict[str, str]
    database_url: str
    kiosk_code: str
    event_id: int
    venue_id: int
    token: str

    def sheet(self) -> dict[str, Any]:
        response = httpx.get(
            f"{self.url}/api/v1/events/{self.event_id}/attendance",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        sheet: dict[str, Any] = response.json()
        return sheet


@pytest.fixture
def default_site(tmp_path: Path) -> Iterator[DefaultSite]:
    """A server with an issuer and no ``ECARD_MIN_CARD_CHECK`` (so ``uid``), set up as the issue did."""
    issuer, issuer_url = start_issuer(tmp_path)
    database_url = f"sqlite:///{tmp_path / 'ecard.sqlite'}"
    env = server_env(database_url, tmp_path / "server-data", secrets.token_hex(32))
    env.update(ECARD_ISSUER_URL=issuer_url)
    env.pop("ECARD_MIN_CARD_CHECK", None)
    port = free_port()
    server = start_server(env, port, log_path=tmp_path / "server.log")
    try:
        org = admin(env, "org", "add", "湖里区某联合党委", "--kind", "basic_committee")
        member = admin(env, "member", "add", "王小明", "--org", str(org["id"]))
        bound = admin(
            env,
            "card",
            "bind",
            str(member["id"]),
            "--card-no",
            ISSUE_CARD_NO,
            "--uid",
            ISSUE_UID.hex().upper(),
            "--issuer-mac",
        )
        assert (bound["issuer_mac"], bound["verified_level"]) == (True, "issuer-mac")
        venue = admin(env, "venue", "add", "党群服务中心一楼", "--org", str(org["id"]))
        assert venue["accept_uid_only_reads"] is False
        now = datetime.now(UTC)
        event = admin(
            env,
            "event",
            "add",
            "十二月主题党日",
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
        token = admin(env, "token", "create", "--role", "admin")
        yield DefaultSite(
            url=f"http://127.0.0.1:{port}",
            env=env,
            database_url=database_url,
            kiosk_code=kiosk["enrollment_code"],
            event_id=event["id"],
            venue_id=venue["id"],
            token=token["token"],
        )
    finally:
        server.stop()
        issuer.stop()


@pytest.fixture
def pcsc_kiosk(default_site: DefaultSite, tmp_path: Path) -> Iterator[AgentProcess]:
    state_dir = tmp_path / "pcsc-kiosk-state"
    enroll_agent(default_site.url, default_site.kiosk_code, state_dir)
    agent = start_agent(PCSC_READER, state_dir, log_path=tmp_path / "pcsc-agent.log")
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def slot() -> Iterator[VpcdSlot]:
    with VpcdSlot(port=VPCD_PORT) as slot:
        yield slot


def tap_on(slot: VpcdSlot, kiosk: AgentProcess, card: VirtualCard) -> dict[str, object]:
    slot.tap(card, wait_read=5.0)
    return kiosk.feedback(timeout=30)


def test_magic_uid_clone_of_an_issuer_mac_card_is_refused_at_a_pcsc_kiosk(
    default_site: DefaultSite, pcsc_kiosk: AgentProcess, slot: VpcdSlot
) -> None:
    """Issue #9, failure 8: bound with ``--card-no … --uid 5A3C9E02 --issuer-mac``, default minimum."""
    magic = tap_on(slot, pcsc_kiosk, uid_only_card(ISSUE_UID))
    assert (magic["status"], magic["code"]) == ("rejected", "card_downgrade"), magic
    assert magic["member_name"] is None
    assert default_site.sheet()["present"] == []

    genuine = tap_on(slot, pcsc_kiosk, issued_card(ISSUE_CARD_NO, ISSUE_UID, MASTER_KEY))
    assert (genuine["status"], genuine["member_name"]) == ("accepted", "王*明"), genuine

    # The venue option opens serial kiosks only; this kiosk reads with pcsc.
    admin(default_site.env, "venue", "set", str(default_site.venue_id), "--accept-uid-only-reads")
    again = tap_on(slot, pcsc_kiosk, uid_only_card(ISSUE_UID))
    assert again["code"] == "card_downgrade", again

    (presence,) = default_site.sheet()["present"]
    assert (presence["name"], presence["card_check"], presence["card_check_label"]) == (
        "王小明",
        "issuer-mac",
        "发卡机构认证",
    )
    assert tap_rows(default_site.database_url) == [
        ("rejected", "card_downgrade", "uid"),
        ("accepted", None, "issuer-mac"),
        ("rejected", "card_downgrade", "uid"),
    ]
