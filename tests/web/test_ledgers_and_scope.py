"""Ledgers in the browser (view, download XLSX) and what a branch secretary may not see."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime

from openpyxl import load_workbook
from playwright.sync_api import Page, expect

from tests.web.conftest import LiveServer, screenshot, sign_out
from tests.web.world import CHEN_CARD, HUANG_CARD, WebAccount

Login = Callable[[Page, WebAccount], None]


def test_download_an_xlsx_sign_in_sheet_and_open_it(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    world = live_server.world
    for tapped in (CHEN_CARD, HUANG_CARD):
        live_server.post_taps(world.tap_batch(tapped, at=datetime.now(UTC)).model_dump_json())
    login(page, world.accounts["secretary_a"])
    page.get_by_role("link", name="活动", exact=True).click()
    page.get_by_role("link", name="签到表").first.click()
    expect(page.locator(".stat.green .value")).to_have_text("2")
    screenshot(page, "sign-in-sheet")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="下载 XLSX").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".xlsx")
    # Playwright keeps downloads under a name without extension, which openpyxl refuses.
    workbook = load_workbook(io.BytesIO(download.path().read_bytes()), read_only=True)
    cells = {
        str(cell)
        for sheet in workbook.worksheets
        for row in sheet.iter_rows(values_only=True)
        for cell in row
    }
    assert "陈建国" in cells
    assert "黄志强" in cells
    assert any("主题党日" in cell for cell in cells)


def test_the_org_ledger_page_and_its_download(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    world = live_server.world
    live_server.post_taps(world.tap_batch(CHEN_CARD, at=datetime.now(UTC)).model_dump_json())
    login(page, world.accounts["secretary_a"])
    page.get_by_role("link", name="台账").first.click()
    expect(page.locator(".page-head p")).to_contain_text("鹭江社区第一党支部")
    expect(page.get_by_role("cell", name="主题党日：学习《中国共产党支部工作条例》")).to_be_visible()
    screenshot(page, "ledger")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="下载 XLSX").click()
    workbook = load_workbook(io.BytesIO(download_info.value.path().read_bytes()), read_only=True)
    names = {
        str(cell)
        for sheet in workbook.worksheets
        for row in sheet.iter_rows(values_only=True)
        for cell in row
    }
    assert "陈建国" in names
    assert "赵雪梅" not in names  # branch B's member is not in branch A's ledger


def test_a_branch_secretary_cannot_see_another_branch(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    """Not in the lists, and not by typing the URL: the other branch's pages do not exist."""
    page = browser_page
    world = live_server.world
    base = live_server.url
    login(page, world.accounts["secretary_a"])

    page.goto(f"{base}/web/members")
    expect(page.locator("table.data")).to_contain_text("陈建国")
    expect(page.locator("table.data")).not_to_contain_text("赵雪梅")
    page.goto(f"{base}/web/ledgers")
    org_choices = page.locator("select[name=org] option").all_text_contents()
    assert org_choices == ["鹭江社区第一党支部"]

    typed = [
        f"/web/members/{world.members['赵雪梅']}",
        f"/web/events/{world.event_b_id}",
        f"/web/events/{world.event_b_id}/board",
        f"/web/ledgers?org={world.branch_b_id}",
        f"/web/ledgers/org/{world.branch_b_id}/2026.xlsx",
        f"/web/ledgers/events/{world.event_b_id}.xlsx",
        f"/web/ledgers/members/{world.members['赵雪梅']}.pdf",
    ]
    for path in typed:
        response = page.request.get(f"{base}{path}")
        assert response.status == 404, path
        assert "赵雪梅" not in response.text()
    response = page.goto(f"{base}/web/members/{world.members['赵雪梅']}")
    assert response is not None
    assert response.status == 404
    expect(page.locator("h1")).to_have_text(f"党员 {world.members['赵雪梅']} 不存在")
    screenshot(page, "not-found")

    # The committee's organiser sees both branches.
    sign_out(page, base)
    login(page, world.accounts["organiser"])
    page.goto(f"{base}/web/members/{world.members['赵雪梅']}")
    expect(page.locator("h1")).to_have_text("赵雪梅")
