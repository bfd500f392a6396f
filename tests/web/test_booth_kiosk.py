"""留言亭 at the kiosk in Chromium: a virtual 易通卡 on vsmartcard-vpcd, read through the real pcscd
and pyscard by a real ``ecard agent run --reader pcsc --mode message``, which signs the tap; its
screen shows the server's one-time link as a QR code, which this test decodes from the rendered
pixels (zxing-cpp) and opens on a phone viewport; the next tap after a reply says
「您的留言有新回复」 with a new code."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, Page, expect
from sqlmodel import select

from ecard_cli.stack import AgentProcess
from firmware_sim.cards import TUnionCard
from firmware_sim.vpcd import VpcdSlot
from server.booth.service import add_representative, reply_to_message
from server.caller import CLI_CALLER, Caller, Scope
from server.clock import utc_now
from server.db import unit_of_work
from server.records.booth import BoothMessage
from server.users.service import add_user, user_actor
from server.vocabulary import UserRole
from tests.web.conftest import LiveServer, screenshot
from tests.web.test_kiosk_screen import Kiosk, _open_when_served, enrolled_kiosk
from tests.web.test_phone_and_access import DOCS_SCREENSHOTS
from tests.web.world import CHEN_CARD

pytestmark = [pytest.mark.e2e, pytest.mark.sim]


# The second vpcd slot, as the other end-to-end tests: never shared with the reader contract suite.
VPCD_PORT = 35964
READER_SPEC = "pcsc:Virtual PCD 00 01"
CHEN_TUNION = TUnionCard(uid=bytes.fromhex(CHEN_CARD.uid), card_no=CHEN_CARD.card_no or "")


@pytest.fixture
def booth_kiosk(live_server: LiveServer, tmp_path: Path) -> Iterator[tuple[Kiosk, AgentProcess]]:
    kiosk = enrolled_kiosk(live_server, tmp_path, "留言亭")
    agent = kiosk.run(
        server_url=live_server.url, log=tmp_path / "agent.log", reader=READER_SPEC, mode="message"
    )
    try:
        yield kiosk, agent
    finally:
        agent.stop()


@pytest.fixture
def slot() -> Iterator[VpcdSlot]:
    with VpcdSlot(port=VPCD_PORT) as slot:
        yield slot


def _decoded_qr(page: Page) -> str:
    """The text of the QR code as the screen draws it (from a screenshot of the image)."""
    png = page.locator("#qr").screenshot()
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(results) == 1, "no QR code readable on the kiosk screen"
    text: str = results[0].text
    return text


def _rep_user(live_server: LiveServer) -> tuple[int, int]:
    world, now = live_server.world, utc_now()
    with unit_of_work(live_server.engine) as session:
        user = add_user(
            session,
            username="linrep",
            display_name="林代表",
            password="representative-pass-1",
            role=UserRole.REPRESENTATIVE,
            org_id=world.committee_id,
            now=now,
            caller=CLI_CALLER,
        )
        representative = add_representative(
            session,
            org_id=world.committee_id,
            name="林代表",
            constituency="软件园选区",
            username="linrep",
            now=now,
            caller=CLI_CALLER,
        )
        assert user.id is not None
        assert representative.id is not None
        return user.id, representative.id


def test_kiosk_shows_a_qr_that_opens_the_booth_on_a_phone(
    booth_kiosk: tuple[Kiosk, AgentProcess],
    slot: VpcdSlot,
    live_server: LiveServer,
    browser_page: Page,
    browser: Browser,
) -> None:
    kiosk, agent = booth_kiosk
    user_id, _representative_id = _rep_user(live_server)
    screen = browser_page
    screen.set_viewport_size({"width": 1280, "height": 800})
    _open_when_served(screen, kiosk.screen_url)
    expect(screen.locator("#prompt")).to_have_text("请刷卡，用手机扫码留言")
    expect(screen.locator("#mode")).to_have_text("留言亭模式")

    slot.tap(CHEN_TUNION, wait_read=5.0)
    line = agent.feedback(timeout=30)
    assert line["status"] == "accepted"
    expect(screen.locator("#headline")).to_have_text("请用手机扫码留言")
    expect(screen.locator("#member")).to_have_text("陈*国")
    expect(screen.locator("#qr")).to_be_visible()
    expect(screen.locator("#qr-caption")).to_contain_text("请用手机扫码")
    link = _decoded_qr(screen)
    assert link == line["link"]
    assert link.startswith(f"{live_server.url}/web/m/open/")
    assert CHEN_CARD.uid not in screen.locator("body").inner_text()
    screenshot(screen, "kiosk-booth-qr")
    if os.environ.get("ECARD_DOCS_SCREENSHOTS") == "1":
        screen.screenshot(path=str(DOCS_SCREENSHOTS / "kiosk-booth-qr.png"))

    phone_context = browser.new_context(
        locale="zh-CN", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    try:
        phone = phone_context.new_page()
        phone.goto(link)
        expect(phone.get_by_role("heading", name="陈*国，您好")).to_be_visible()
        phone.get_by_label("林代表").check()
        phone.get_by_label("留言内容").fill("活动中心东门晚上照明不足，建议加装路灯。")
        phone.get_by_role("button", name="提交留言").click()
        expect(phone.get_by_role("status")).to_contain_text("留言已提交")
    finally:
        phone_context.close()

    with unit_of_work(live_server.engine) as session:
        message_id = session.exec(select(BoothMessage.id)).one()
        assert message_id is not None
        reply_to_message(
            session,
            message_id=message_id,
            body="已请物业加装两盏路灯。",
            caller=Caller(
                actor=user_actor(user_id, "林代表"),
                role=UserRole.REPRESENTATIVE,
                org_id=None,
                scope=Scope(frozenset()),
                may_approve=False,
            ),
            user_id=user_id,
            now=utc_now(),
        )

    # The next tap: the screen says there is a reply, with a new code.
    slot.tap(CHEN_TUNION, wait_read=5.0)
    second = agent.feedback(timeout=30)
    assert second["status"] == "accepted"
    expect(screen.locator("#headline")).to_have_text("您的留言有新回复")
    expect(screen.locator("#qr")).to_be_visible()
    new_link = second["link"]
    expect(screen.locator("#qr-box")).to_have_attribute("data-link", new_link)
    assert _decoded_qr(screen) == new_link != link
    screenshot(screen, "booth-kiosk-reply")
