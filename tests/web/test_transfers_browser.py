"""Transfer-in in the browser: a card tapped in transfer-in mode becomes a request; once the
member's own organisation has released them, the branch secretary records the letter and accepts,
the committee's organiser approves and receives, and the member is then on the branch's roster.
Another branch's secretary cannot open it, even by URL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from schemas.messages import TapMode
from tests.server.transfers.factories import QIAN_CARD, build_elsewhere, release, requests
from tests.web.conftest import LiveServer, screenshot, sign_out
from tests.web.world import WebAccount

Login = Callable[[Page, WebAccount], None]


def test_approve_a_transfer_and_find_the_member_in_the_roster(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept())  # the 接收 button asks "确定接收？"
    world = live_server.world
    now = datetime.now(UTC)
    elsewhere = build_elsewhere(live_server.engine, live_server.keyring, now=now - timedelta(days=30))

    # 钱七, a member of a committee elsewhere, taps at branch A's kiosk in transfer-in mode.
    response = live_server.post_taps(
        world.tap_batch(QIAN_CARD, at=now, mode=TapMode.TRANSFER_IN).model_dump_json()
    )
    receipt = response.json()["receipts"][0]
    assert (receipt["status"], receipt["display"]["message"]) == (
        "accepted",
        "已提交组织关系转入申请，请等待组织委员联系",
    )

    # 钱七's own 基层党委 releases him (its pages are tested in tests/security/test_transfer_takeover.py).
    (filed,) = requests(live_server.engine)
    assert filed.id is not None
    release(live_server.engine, elsewhere, filed.id, now=now)

    # Branch A's secretary finds it in the queue, records the letter, ticks the ID card, accepts.
    login(page, world.accounts["secretary_a"])
    page.get_by_role("link", name="转入申请").first.click()
    row = page.locator("table.transfer-queue tbody tr", has_text="钱七")
    expect(row).to_contain_text("待支部审核")
    expect(row).to_contain_text("缺介绍信")
    screenshot(page, "transfers-queue")
    row.get_by_role("link", name="办理").click()
    transfer_url = page.url

    letter = page.locator("#transfer-letter")
    letter.get_by_label("介绍信编号").fill("闽湖组〔2025〕017号")
    letter.get_by_label("开具单位", exact=False).first.fill("中共湖里区某社区委员会")
    letter.get_by_label("转出单位").fill("湖里第三党支部")
    letter.get_by_label("去向单位").fill("鹭江社区第一党支部")
    letter.get_by_label("开具日期").fill((now - timedelta(days=3)).date().isoformat())
    letter.get_by_label("党费已交到").fill(now.strftime("%Y-%m"))
    letter.get_by_role("button", name="保存介绍信").click()
    expect(page.locator("#transfer-checks")).to_contain_text("开具单位为基层党委")
    expect(page.locator("#toasts")).to_contain_text("介绍信已录入")

    page.get_by_role("button", name="已核对原件：居民身份证（与介绍信身份证号一致）").click()
    # Wait for the reloaded page (the button's own text says 已核对原件 before the click too).
    expect(page.locator("#transfer-documents tr", has_text="居民身份证")).to_contain_text("陈书记")
    page.locator("#transfer-actions").get_by_label("理由或意见").fill("经核对，同意接收")
    page.locator("#transfer-actions").get_by_role("button", name="支部同意").click()
    expect(page.locator("#transfer-state")).to_have_text("待党委审批")
    expect(page.locator("#transfer-actions")).to_contain_text("由接收党委")
    expect(page.locator("#transfer-history")).to_contain_text("经核对，同意接收")
    screenshot(page, "transfer-detail")
    sign_out(page, live_server.url)

    # Branch B's secretary cannot open it, not even by typing its address.
    login(page, world.accounts["secretary_b"])
    typed = page.goto(transfer_url)
    assert typed is not None
    assert typed.status == 404
    page.goto(f"{live_server.url}/web/transfers")
    expect(page.locator("table.transfer-queue")).not_to_contain_text("钱七")
    sign_out(page, live_server.url)

    # The committee's organiser approves and receives the member into branch A.
    login(page, world.accounts["organiser"])
    page.goto(transfer_url)
    page.locator("#transfer-actions").get_by_role("button", name="党委审批通过").click()
    expect(page.locator("#transfer-state")).to_have_text("待接收")
    page.locator("#transfer-actions").get_by_role("button", name="接收入支部").click()
    expect(page.locator("#transfer-state")).to_have_text("已接收，待寄回回执")
    expect(page.locator("#transfer-history")).to_contain_text("接收入支部")
    sign_out(page, live_server.url)

    # Back as branch A's secretary: 钱七 is on the roster.
    login(page, world.accounts["secretary_a"])
    page.get_by_role("link", name="党员与卡").first.click()
    page.get_by_role("searchbox").fill("钱七")
    page.get_by_role("searchbox").press("Enter")
    member_row = page.locator("table tbody tr", has_text="钱七")
    expect(member_row).to_contain_text("鹭江社区第一党支部")
    member_row.get_by_role("link", name="钱七").click()
    expect(page.locator("dl.facts")).to_contain_text(now.astimezone().strftime("%Y-%m-%d")[:4])
    screenshot(page, "transfer-member-in-roster")
