"""Signing in and out in a real browser."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.web.conftest import LiveServer, screenshot
from tests.web.world import WebAccount


def test_login_shows_the_dashboard_with_the_users_organisation(
    live_server: LiveServer, browser_page: Page, login: Callable[[Page, WebAccount], None]
) -> None:
    page = browser_page
    page.goto(f"{live_server.url}/web/")
    expect(page).to_have_url(f"{live_server.url}/web/login?next=/web/")
    screenshot(page, "login")
    login(page, live_server.world.accounts["secretary_a"])
    expect(page.locator(".topbar-org")).to_have_text("鹭江社区第一党支部")
    expect(page.get_by_role("link", name="仪表盘")).to_have_attribute("aria-current", "page")
    screenshot(page, "dashboard")
