"""Events in the browser: create one, and watch the live board as a kiosk uploads a tap."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from playwright.sync_api import Page, expect

from tests.web.conftest import LiveServer, screenshot
from tests.web.world import CHEN_CARD, ZHOU_CARD, WebAccount

Login = Callable[[Page, WebAccount], None]


def test_live_board_shows_a_tap_within_a_second(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    """A signed tap batch posted to the real server appears on the open board without a reload."""
    page = browser_page
    world = live_server.world
    login(page, world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/events/{world.event_a_id}/board")
    expect(page.locator("#count-present")).to_have_text("0")
    _wait_for_subscriber(live_server, world.event_a_id)
    page.evaluate(
        """() => {
            window.__tapSeenAt = null;
            const seen = () => {
                const shown = document.querySelector('#latest-tap .who')?.textContent;
                if (!window.__tapSeenAt && shown === '陈建国') { window.__tapSeenAt = Date.now(); }
            };
            new MutationObserver(seen).observe(document.body, {subtree: true, childList: true});
        }"""
    )

    posted_at_ms = time.time() * 1000
    response = live_server.post_taps(world.tap_batch(CHEN_CARD, at=datetime.now(UTC)).model_dump_json())
    assert response.status_code == 200
    assert response.json()["receipts"][0]["status"] == "accepted"

    page.wait_for_function("() => window.__tapSeenAt !== null", timeout=5_000)
    seen_after_ms = page.evaluate("() => window.__tapSeenAt") - posted_at_ms
    assert seen_after_ms < 1000, f"the tap showed after {seen_after_ms:.0f} ms"
    expect(page.locator("#count-present")).to_have_text("1")
    expect(page.locator(".present-list")).to_contain_text("陈建国")

    live_server.post_taps(world.tap_batch(ZHOU_CARD, at=datetime.now(UTC)).model_dump_json())
    expect(page.locator("#count-present")).to_have_text("2")
    expect(page.locator("#latest-tap .who")).to_have_text("周丽华")
    screenshot(page, "live-board")


def test_secretary_creates_an_event(live_server: LiveServer, browser_page: Page, login: Login) -> None:
    page = browser_page
    login(page, live_server.world.accounts["secretary_a"])
    page.get_by_role("link", name="活动").first.click()
    page.get_by_role("link", name="＋ 新建活动").click()
    page.get_by_label("活动名称").fill("十二月支部党员大会")
    page.get_by_label("活动类型").select_option(label="支部党员大会")
    page.get_by_label("开始时间").fill("2026-12-05T09:00")
    page.get_by_label("结束时间").fill("2026-12-05T11:00")
    page.get_by_label("议题 / 主题").fill("讨论发展对象；民主评议党员")
    screenshot(page, "event-form")
    page.get_by_role("button", name="创建活动").click()
    expect(page.locator("h1")).to_have_text("十二月支部党员大会")
    expect(page.locator(".toast")).to_contain_text("已创建活动")
    expect(page.locator(".page-head p")).to_contain_text("2026年12月5日 09:00–11:00")


def test_an_impossible_time_range_is_refused_in_place(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    login(page, live_server.world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/events/new")
    page.get_by_label("活动名称").fill("时间填反了")
    page.get_by_label("开始时间").fill("2026-12-05T11:00")
    page.get_by_label("结束时间").fill("2026-12-05T09:00")
    page.get_by_role("button", name="创建活动").click()
    expect(page.locator(".toast-error")).to_contain_text("结束时间须晚于开始时间")
    expect(page.get_by_label("活动名称")).to_have_value("时间填反了")  # the form keeps what was typed


def _wait_for_subscriber(live_server: LiveServer, event_id: int) -> None:
    feed = live_server.app.state.tap_feed
    deadline = time.monotonic() + 10
    while feed.subscriber_count(event_id) == 0:
        assert time.monotonic() < deadline, "the board never opened its live stream"
        time.sleep(0.02)
