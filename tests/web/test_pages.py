"""Members and cards, the audit log, and a tour of every main page (screenshots, no console errors)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from playwright.sync_api import ConsoleMessage, Page, expect

from tests.web.conftest import LiveServer, screenshot
from tests.web.world import CHEN_CARD, ZHOU_CARD, WebAccount, add_past_meetings

Login = Callable[[Page, WebAccount], None]


def test_search_a_member_bind_a_typed_card_and_report_it_lost(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    login(page, live_server.world.accounts["secretary_a"])
    page.get_by_role("link", name="党员与卡").click()
    screenshot(page, "members")
    page.get_by_role("searchbox", name="查找党员").fill("吴海")
    page.get_by_role("button", name="查找").click()
    rows = page.locator("table.data tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("未绑卡")
    page.get_by_role("link", name="吴海峰").click()

    page.get_by_label("易通卡卡号").fill("3104 3930 0000 0066 666")
    page.get_by_role("button", name="绑定", exact=True).click()
    expect(page.locator(".toast")).to_contain_text("已为吴海峰绑定卡 3104********6666")
    card_row = page.locator("table.cards tbody tr").first
    expect(card_row).to_contain_text("3104********6666")
    expect(card_row).to_contain_text("在用")
    expect(page.locator("body")).not_to_contain_text("3104393000000066666")
    screenshot(page, "member-detail")

    page.once("dialog", lambda dialog: dialog.accept())
    card_row.get_by_role("button", name="挂失").click()
    expect(page.locator(".toast")).to_contain_text("已挂失")
    expect(page.locator("table.cards tbody tr").first).to_contain_text("已挂失")


def test_a_card_bound_to_someone_else_is_refused_in_place(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    login(page, live_server.world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/members/{live_server.world.members['吴海峰']}")
    page.get_by_label("易通卡卡号").fill(CHEN_CARD.card_no or "")
    page.get_by_role("button", name="绑定", exact=True).click()
    expect(page.locator(".toast-error")).to_contain_text("该卡已绑定到其他党员")
    expect(page.get_by_label("易通卡卡号")).to_have_value(CHEN_CARD.card_no or "")


def test_the_audit_log_shows_sign_ins_and_changes(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    account = live_server.world.accounts["secretary_a"]
    page.goto(f"{live_server.url}/web/login")
    page.get_by_label("用户名").fill(account.username)
    page.get_by_label("密码").fill("not-my-password")
    page.get_by_role("button", name="登录").click()
    expect(page.locator(".alert-error")).to_have_text("用户名或密码错误")
    login(page, account)
    page.get_by_role("link", name="审计日志").click()
    table = page.locator("table.audit")
    expect(table).to_contain_text("登录失败")
    expect(table).to_contain_text("密码错误")
    expect(table).to_contain_text("陈书记")
    screenshot(page, "audit")


def test_every_main_page_renders_cleanly(live_server: LiveServer, browser_page: Page, login: Login) -> None:
    """A tour a secretary would take: every page loads, shows its heading, and the browser reports
    no error (a blocked script or style under the Content-Security-Policy would show here)."""
    page = browser_page
    world = live_server.world
    history = add_past_meetings(live_server.engine, world, now=datetime.now(UTC))
    for tapped, at in [*history, (CHEN_CARD, datetime.now(UTC)), (ZHOU_CARD, datetime.now(UTC))]:
        receipt = live_server.post_taps(world.tap_batch(tapped, at=at).model_dump_json()).json()
        assert receipt["receipts"][0]["status"] == "accepted", receipt
    problems: list[str] = []

    def note(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    page.on("console", note)
    page.on("pageerror", lambda error: problems.append(str(error)))
    login(page, world.accounts["secretary_a"])
    tour = {
        "dashboard": ("/web/", "仪表盘"),
        "events": ("/web/events", "活动"),
        "event-board": (f"/web/events/{world.event_a_id}/board", "主题党日：学习《中国共产党支部工作条例》"),
        "event-edit": (f"/web/events/{world.event_a_id}/edit", "编辑活动"),
        "ledger": ("/web/ledgers", "组织生活台账"),
        "members": ("/web/members", "党员与卡"),
        "audit": ("/web/audit", "审计日志"),
    }
    for name, (path, heading) in tour.items():
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None
        assert response.status == 200, path
        expect(page.locator("h1")).to_have_text(heading)
        screenshot(page, f"tour-{name}")
    assert problems == []
