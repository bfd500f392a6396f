"""The kiosk screen in real Chromium: a real ``ecard agent run`` process (scripted reader) serves
it on 127.0.0.1; a card tapped at the kiosk changes the page without a reload, and losing the
server shows the offline banner with the taps waiting."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect
from sqlmodel import select

from ecard_cli.stack import AgentProcess, enroll_agent, free_port, start_agent
from server.caller import CLI_CALLER
from server.clock import utc_now
from server.db import unit_of_work
from server.kiosks.service import add_kiosk
from server.records.venues import Venue
from tests.web.conftest import LiveServer, screenshot
from tests.web.world import CHEN_CARD

pytestmark = pytest.mark.e2e


class Kiosk:
    """An enrolled kiosk state directory and the scripted reader's card file."""

    def __init__(self, root: Path, server_url: str, code: str) -> None:
        self.state_dir = root / "kiosk-state"
        self.cards = root / "cards.jsonl"
        self.screen_port = free_port()
        enroll_agent(server_url, code, self.state_dir)

    def run(
        self, *, server_url: str, log: Path, reader: str | None = None, mode: str = "checkin"
    ) -> AgentProcess:
        """``ecard agent run`` as a process: by default with the scripted reader following
        :attr:`cards` (see :meth:`tap`)."""
        # A new process plays a script file from its start: begin each run with an empty one.
        self.cards.write_text("")
        # A member waits 1.5 s for the server's answer; on a CI machine also running Chromium and
        # the whole suite, the first answer of a fresh server can take longer, and these tests are
        # about what the screen shows for an answer, not about that budget.
        env = {
            "PATH": "/usr/bin:/bin",
            "ECARD_AGENT_UPLOAD_RETRY_MAX_S": "2",
            "ECARD_AGENT_RECEIPT_WAIT_S": "10",
        }
        return start_agent(
            reader or f"scripted:{self.cards}",
            self.state_dir,
            log_path=log,
            mode=mode,
            extra_args=["--server", server_url, "--screen-port", str(self.screen_port)],
            env=env,
        )

    def tap(self, card_json: str) -> None:
        with self.cards.open("a") as script:
            script.write(json.dumps({"card": json.loads(card_json)}) + "\n")

    @property
    def screen_url(self) -> str:
        return f"http://127.0.0.1:{self.screen_port}/"


def enrolled_kiosk(live_server: LiveServer, root: Path, name: str) -> Kiosk:
    """A new kiosk at branch A's venue (whose event is open for check-in now), enrolled by the
    real ``ecard agent enroll`` against the live server."""
    with unit_of_work(live_server.engine) as session:
        venue = session.exec(select(Venue).where(Venue.name == "鹭江社区党群服务中心")).one()
        assert venue.id is not None
        issued = add_kiosk(
            session,
            keyring=live_server.keyring,
            name=name,
            venue_id=venue.id,
            now=utc_now(),
            code_ttl=timedelta(minutes=10),
            caller=CLI_CALLER,
        )
    return Kiosk(root, live_server.url, issued.code)


@pytest.fixture
def kiosk(live_server: LiveServer, tmp_path: Path) -> Kiosk:
    return enrolled_kiosk(live_server, tmp_path, "大厅签到屏")


@pytest.fixture
def running(kiosk: Kiosk, live_server: LiveServer, tmp_path: Path) -> Iterator[AgentProcess]:
    agent = kiosk.run(server_url=live_server.url, log=tmp_path / "agent-online.log")
    try:
        yield agent
    finally:
        agent.stop()


def test_kiosk_screen_shows_each_tap_and_goes_offline(
    kiosk: Kiosk, running: AgentProcess, live_server: LiveServer, browser_page: Page, tmp_path: Path
) -> None:
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 800})
    _open_when_served(page, kiosk.screen_url)
    expect(page.locator("#prompt")).to_have_text("请刷卡签到")
    expect(page.locator("#kiosk")).to_contain_text("大厅签到屏")
    expect(page.locator("#net-text")).to_have_text("在线", timeout=10_000)
    screenshot(page, "kiosk-screen-idle")

    kiosk.tap(CHEN_CARD.model_dump_json())
    assert running.feedback(timeout=10)["status"] == "accepted"
    expect(page.locator("#headline")).to_have_text("签到成功")
    expect(page.locator("#member")).to_have_text("陈*国")
    expect(page.locator("#event")).to_contain_text("主题党日")
    expect(page.locator("#pending")).to_have_text("0")
    body = page.locator("body").inner_text()
    assert CHEN_CARD.uid not in body
    assert CHEN_CARD.card_no is not None
    assert CHEN_CARD.card_no[-4:] not in body  # not even a masked tail of the card
    screenshot(page, "kiosk-screen-accepted")

    # The server goes away: restart the agent against a port nobody listens on. The open page
    # notices the agent restarting, reconnects by itself, and shows the kiosk offline.
    running.stop()
    expect(page.locator("#gone")).to_be_visible(timeout=10_000)
    offline = kiosk.run(server_url=f"http://127.0.0.1:{free_port()}", log=tmp_path / "agent-offline.log")
    try:
        expect(page.locator("#gone")).to_be_hidden(timeout=15_000)
        kiosk.tap(CHEN_CARD.model_dump_json())
        assert offline.feedback(timeout=15)["status"] == "offline"
        expect(page.locator("#headline")).to_have_text("已离线记录")
        expect(page.locator("#offline")).to_be_visible(timeout=10_000)
        expect(page.locator("#offline")).to_contain_text("1 条刷卡记录待上传")
        expect(page.locator("#pending")).to_have_text("1")
        screenshot(page, "kiosk-screen-offline")
    finally:
        offline.stop()


def _open_when_served(page: Page, url: str) -> None:
    """The agent starts serving the screen a moment after it starts; retry until it answers."""
    deadline = time.monotonic() + 20
    while True:
        try:
            page.goto(url)
            return
        except PlaywrightError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
