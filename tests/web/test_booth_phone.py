"""留言亭 end to end in Chromium: a signed message-mode tap answers a one-time link; on a phone
(390×844) the member writes to a 党代表; the representative replies in the web app; the member's
page shows the reply; the used link is refused in Chinese."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from io import BytesIO

import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Locator, Page, ViewportSize, expect

from schemas.messages import BatchReceipt, TapMode
from server.booth.service import PhotoUpload, add_representative
from server.caller import CLI_CALLER
from server.clock import utc_now
from server.db import unit_of_work
from server.users.service import add_user
from server.vocabulary import UserRole
from tests.web.conftest import LiveServer, screenshot
from tests.web.test_phone_and_access import (
    DOCS_SCREENSHOTS,
    axe_source,
    axe_violations,
    describe,
    small_targets,
    technical_text,
)
from tests.web.world import CHEN_CARD, WebAccount

REP_USERNAME = "linrep"
REP_PASSWORD = "representative-pass-1"
PHONE: ViewportSize = {"width": 390, "height": 844}


def _phone_context(browser: Browser) -> BrowserContext:
    context = browser.new_context(
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    context.set_default_timeout(10_000)
    return context


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    context = _phone_context(browser)
    try:
        yield context.new_page()
    finally:
        context.close()


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (120, 90)) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _loaded(image: Locator) -> int:
    """The image's natural width: 0 when the browser could not load or decode it."""
    expect(image).to_be_visible()
    width: int = image.evaluate("img => img.complete ? img.naturalWidth : 0")
    return width


def _configure_booth(live_server: LiveServer) -> None:
    world, now = live_server.world, utc_now()
    with unit_of_work(live_server.engine) as session:
        add_user(
            session,
            username=REP_USERNAME,
            display_name="林代表",
            password=REP_PASSWORD,
            role=UserRole.REPRESENTATIVE,
            org_id=world.committee_id,
            now=now,
            caller=CLI_CALLER,
        )
        add_representative(
            session,
            org_id=world.committee_id,
            name="林代表",
            constituency="软件园选区",
            username=REP_USERNAME,
            now=now,
            caller=CLI_CALLER,
            photo=PhotoUpload("林代表.png", _png((180, 20, 20), (96, 96))),
        )


def _message_tap(live_server: LiveServer) -> BatchReceipt:
    batch = live_server.world.tap_batch(CHEN_CARD, at=utc_now(), mode=TapMode.MESSAGE)
    response = live_server.post_taps(batch.model_dump_json())
    assert response.status_code == 200, response.text
    return BatchReceipt.model_validate(response.json())


def _member_view(page: Page, name: str) -> None:
    """A member's page passes what every secretary page passes on a phone (axe, no technical
    text, fingers-sized targets); saved for the README with ECARD_DOCS_SCREENSHOTS=1."""
    _fits_the_screen(page)
    problems = technical_text(page) + small_targets(page)
    violations = axe_violations(page, axe_source())
    if violations:
        problems.append("axe:\n" + describe(violations))
    assert problems == [], f"{name}: {problems}"
    screenshot(page, name)
    if os.environ.get("ECARD_DOCS_SCREENSHOTS") == "1":
        page.screenshot(path=str(DOCS_SCREENSHOTS / f"{name}.png"), full_page=True)


def _fits_the_screen(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a {PHONE['width']} px phone"


def test_member_leaves_a_message_on_the_phone_and_sees_the_reply(
    live_server: LiveServer, phone: Page, browser_page: Page, browser: Browser
) -> None:
    _configure_booth(live_server)
    [receipt] = _message_tap(live_server).receipts
    assert receipt.status == "accepted"
    assert receipt.display.message == "请用手机扫码留言"
    link = receipt.display.link
    assert link is not None
    assert link.startswith(f"{live_server.url}/web/m/open/")

    # The member scans the link: no password, a Chinese page on their own phone.
    phone.goto(link)
    expect(phone).to_have_url(f"{live_server.url}/web/m/")
    expect(phone.get_by_role("heading", name="陈*国，您好")).to_be_visible()
    expect(phone.get_by_text("软件园选区")).to_be_visible()
    assert _loaded(phone.get_by_role("img", name="林代表的照片")) == 96
    _member_view(phone, "phone-booth-write")
    phone.get_by_label("林代表").check()
    phone.get_by_label("意见建议").check()
    phone.get_by_label("留言内容").fill("建议早高峰时段调整东门、西门的通行方向，减少拥堵。")
    # A renamed text file is refused with what was typed kept; then the real photo goes through.
    photo_input = phone.get_by_label(re.compile("附一张照片"))
    photo_input.set_input_files({"name": "东门.png", "mimeType": "image/png", "buffer": "不是图片".encode()})
    phone.get_by_role("button", name="提交留言").click()
    expect(phone.locator(".m-error")).to_have_attribute("data-code", "attachment_type_refused")
    expect(phone.locator(".m-error")).to_contain_text("只能上传 JPEG、PNG 照片")
    expect(phone.get_by_label("留言内容")).to_have_value("建议早高峰时段调整东门、西门的通行方向，减少拥堵。")
    expect(phone.get_by_label("林代表")).to_be_checked()
    photo_input.set_input_files({"name": "东门.png", "mimeType": "image/png", "buffer": _png((20, 90, 200))})
    phone.get_by_role("button", name="提交留言").click()
    expect(phone.get_by_role("status")).to_have_text("留言已提交，党代表回复后会显示在这里")
    message = phone.locator("article.m-message").first
    expect(message).to_contain_text("建议早高峰时段调整东门、西门的通行方向")
    expect(message).to_contain_text("待阅")
    assert _loaded(message.get_by_role("img", name="留言所附照片")) == 120

    # The representative signs in and finds it in the 留言亭 inbox, with the member's name.
    rep = browser_page
    rep.goto(f"{live_server.url}/web/login")
    rep.get_by_label("用户名").fill(REP_USERNAME)
    rep.get_by_label("密码").fill(REP_PASSWORD)
    rep.get_by_role("button", name="登录").click()
    expect(rep).to_have_url(f"{live_server.url}/web/booth")
    row = rep.locator("table.booth-inbox tbody tr").first
    expect(row).to_contain_text("陈建国")
    expect(row).to_contain_text("待阅")
    expect(row).to_contain_text("意见建议")
    expect(row.locator(".booth-has-photo")).to_have_text("附照片")
    row.get_by_role("link", name="查看").click()
    expect(rep.get_by_role("heading", name="陈建国的留言")).to_be_visible()
    assert _loaded(rep.get_by_role("img", name="留言所附照片")) == 120
    rep.get_by_label("回复内容").fill("已转交园区物业研究，下周起早高峰东门只进不出。")
    rep.get_by_role("button", name="发送回复").click()
    expect(rep.locator(".booth-reply")).to_contain_text("已转交园区物业研究")
    expect(rep.locator(".page-head .badge")).to_have_text("已回复")
    screenshot(rep, "booth-inbox-replied")
    rep.get_by_role("link", name="留言亭", exact=True).first.click()
    summary = rep.locator(".booth-summary tbody tr").filter(has_text="林代表")
    expect(summary).to_contain_text("软件园选区")
    expect(summary.locator("td").nth(1)).to_have_text("1")  # one message this year
    screenshot(rep, "booth-inbox")

    # Back on the phone: the reply and the new status.
    phone.reload()
    expect(message).to_contain_text("已回复")
    expect(message.locator(".m-reply")).to_contain_text("已转交园区物业研究，下周起早高峰东门只进不出。")
    expect(message.locator(".m-badge")).to_have_text("新回复")
    _member_view(phone, "phone-booth-reply")

    # The link was for one opening only: scanned again, on another phone, it is refused.
    other = _phone_context(browser)
    try:
        again = other.new_page()
        response = again.goto(link)
        assert response is not None
        assert response.status == 410
        expect(again.get_by_role("heading")).to_have_text(re.compile("此链接已经使用过"))
        _member_view(again, "phone-booth-used-link")
    finally:
        other.close()

    # The member ends the session; the page no longer opens.
    phone.get_by_role("button", name="退出留言页").click()
    expect(phone.get_by_role("heading", name="已退出留言页")).to_be_visible()
    phone.goto(f"{live_server.url}/web/m/")
    expect(phone.get_by_role("heading")).to_have_text(re.compile("已关闭或已超时"))


def test_member_sees_their_organisational_life_and_asks_leave_on_the_phone(
    live_server: LiveServer, phone: Page, browser_page: Page, login: Callable[[Page, WebAccount], None]
) -> None:
    _configure_booth(live_server)
    [receipt] = _message_tap(live_server).receipts
    assert receipt.display.link is not None
    phone.goto(receipt.display.link)
    mine = phone.locator("section.m-mine")
    expect(mine.get_by_role("heading")).to_contain_text("我的组织生活")
    meeting = phone.locator("article.m-meeting").filter(has_text="主题党日：学习《中国共产党支部工作条例》")
    expect(meeting).to_be_visible()
    meeting.get_by_text("请假", exact=True).click()
    meeting.get_by_label("请假理由").fill("在外地出差，无法参加")
    meeting.get_by_role("button", name="提交请假").click()
    expect(phone.get_by_role("status")).to_have_text("请假已提交，请等待党支部审批")
    expect(meeting).to_contain_text("已请假，待党支部审批")
    _member_view(phone, "phone-booth-self-service")

    # The request waits in branch A's secretary's 请假 queue.
    login(browser_page, live_server.world.accounts["secretary_a"])
    browser_page.goto(f"{live_server.url}/web/leave")
    pending = browser_page.locator("section.card").filter(has_text="待审批")
    expect(pending.locator("tbody tr").filter(has_text="陈建国")).to_contain_text("在外地出差，无法参加")
