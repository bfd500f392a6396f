"""签到机 pages in Chromium: an administrator reads the health table, adds a kiosk and gets its
enrollment code as text and QR code, and opens a kiosk's detail page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
from playwright.sync_api import Page, expect

from schemas.messages import ReaderState
from server.clock import utc_now
from tests.server.kiosks.messages import heartbeat
from tests.web.conftest import LiveServer, screenshot
from tests.web.world import WebAccount

Login = Callable[[Page, WebAccount], None]


def test_admin_manages_kiosks(live_server: LiveServer, browser_page: Page, login: Login) -> None:
    world = live_server.world
    slow_and_behind = heartbeat(
        world.keys,
        kiosk_id=world.kiosk_id,
        sent_at=utc_now() - timedelta(minutes=2),
        pending=4,
        oldest_pending_age_s=1500,
        last_seq=4,
        reader_state=ReaderState.DISCONNECTED,
    )
    response = httpx.post(
        f"{live_server.url}/api/v1/kiosks/heartbeat",
        content=slow_and_behind.model_dump_json(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text

    page = browser_page
    login(page, world.accounts["admin"])
    page.get_by_role("link", name="签到机").first.click()
    row = page.locator(f'tr[data-kiosk="{world.kiosk_id}"]')
    expect(row).to_contain_text("终端时钟慢了2分钟")
    expect(row).to_contain_text("4条刷卡记录未上传，最早的已等待25分钟")
    expect(row).to_contain_text("已断开")
    expect(page.locator("#kiosks-troubled")).to_have_text("1")

    page.get_by_label("名称").fill("二楼会议室签到机")
    page.get_by_role("button", name="添加并生成登记码").click()
    expect(page.locator("h1")).to_contain_text("已添加签到机「二楼会议室签到机」")
    code = page.locator("#enrollment-code").inner_text()
    assert len(code) == 14
    expect(page.locator("#enroll-command")).to_contain_text(f"--code {code}")
    expect(page.locator("img.enrol-qr")).to_be_visible()
    assert page.locator("img.enrol-qr").evaluate("img => img.naturalWidth") > 0
    screenshot(page, "kiosk-enrollment-code")

    page.get_by_role("link", name="签到机").first.click()
    expect(page.locator("table.kiosks")).to_contain_text("二楼会议室签到机")
    expect(page.locator("table.kiosks")).to_contain_text("等待登记")
    screenshot(page, "kiosk-list")

    row.get_by_role("link", name="详情").click()
    expect(page.locator("#kiosk-problems")).to_contain_text("读卡器已断开")
    expect(page.locator("body")).to_contain_text("ecard agent rotate-key")
    screenshot(page, "kiosk-detail")
