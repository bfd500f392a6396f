"""刷卡绑定 end to end: a secretary clicks the button in Chromium, the member taps an 易通卡 on a
real reader stack (nfcpy's PN532 driver over a pty to the PN532 emulator) at a kiosk running
``ecard agent run --mode enrol``, and the member's page shows the new card."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from firmware_sim.cards import xiamen_card
from firmware_sim.pn532 import Pn532Sim
from tests.web.conftest import LiveServer, screenshot
from tests.web.test_kiosk_screen import enrolled_kiosk
from tests.web.world import WebAccount

pytestmark = [pytest.mark.e2e, pytest.mark.sim]

Login = Callable[[Page, WebAccount], None]
CARD_NO = "3104393000000077777"
UID = bytes.fromhex("04C4E2000077")


def test_bind_a_card_by_tapping_it_at_a_kiosk_in_enrol_mode(
    live_server: LiveServer, browser_page: Page, login: Login, tmp_path: Path
) -> None:
    kiosk = enrolled_kiosk(live_server, tmp_path, "绑卡专用机")
    page = browser_page
    member_id = live_server.world.members["林晓燕"]
    with Pn532Sim() as reader:
        agent = kiosk.run(
            server_url=live_server.url, log=tmp_path / "agent.log", reader=reader.direct_spec, mode="enrol"
        )
        try:
            login(page, live_server.world.accounts["secretary_a"])
            page.goto(f"{live_server.url}/web/members/{member_id}")
            expect(page.locator("table.cards")).to_contain_text("尚未绑定易通卡")
            page.get_by_role("button", name="刷卡绑定").click()
            waiting = page.locator("#enrol-wait")
            expect(waiting).to_contain_text("请在绑卡模式的签到机上刷林晓燕的易通卡")
            screenshot(page, "member-enrol-waiting")

            reader.present(xiamen_card(CARD_NO, UID))
            line = agent.feedback(timeout=15)
            assert (line["status"], line["message"]) == ("accepted", "已绑定到 林*燕")

            # The waiting box polls; once bound the page reloads with the card in its table.
            expect(page.locator("table.cards")).to_contain_text("3104********7777", timeout=10_000)
            expect(page.locator("#toasts")).to_contain_text("已绑定卡 3104********7777")
            screenshot(page, "member-enrol-bound")
            screen = httpx.get(f"{kiosk.screen_url}state", timeout=5).json()
            assert (screen["mode_label"], screen["result"]["headline"]) == ("绑卡", "已绑定到 林*燕")
            assert CARD_NO[-4:] not in str(screen)
        finally:
            agent.stop()
