"""The live board, honest about itself: it says when the server is gone and comes back by itself,
explains a 已签到 count larger than 实到, goes full screen for a projector, and takes a 补签 for a
member who forgot the card (with a reason, audited, marked 补签 on the sign-in sheet)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import uvicorn
from playwright.sync_api import Page, expect
from sqlmodel import Session, col, select

from server.app import create_app
from server.cards.service import bind_card
from server.db import unit_of_work
from server.records.attendance import Attendance
from server.records.audit import AuditEntry
from server.vocabulary import AttendanceSource
from tests.server.signing import card
from tests.web.conftest import LiveServer, Site, screenshot, sign_in
from tests.web.world import CHEN_CARD, WebAccount

Login = Callable[[Page, WebAccount], None]

ZHAO_CARD = card("3104393000000066666", "04C4E2000066")  # 赵雪梅, a member of branch B


class StoppableServer:
    """The app served by uvicorn in a thread, like ``live_server``, but stopped and started again
    on the same port when a test says so."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = uvicorn.Config(
            create_app(self.site.settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="stoppable-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._thread = server, thread

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(15)
        self._server = self._thread = None


@pytest.fixture
def stoppable_server(site: Site) -> Iterator[StoppableServer]:
    server = StoppableServer(site)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_board_says_when_the_server_is_gone_and_comes_back(
    stoppable_server: StoppableServer, browser_page: Page
) -> None:
    page = browser_page
    world = stoppable_server.site.world
    sign_in(page, stoppable_server.url, world.accounts["secretary_a"])
    page.goto(f"{stoppable_server.url}/web/events/{world.event_a_id}/board")
    status = page.locator("#live-status")
    expect(status).to_have_text("实时更新")
    expect(page.locator("#board-offline")).to_be_hidden()

    stopped_at = time.monotonic()
    stoppable_server.stop()
    expect(status).to_contain_text("连接中断", timeout=5_000)
    assert time.monotonic() - stopped_at < 5
    expect(page.locator("#board-offline")).to_be_visible()
    expect(page.locator("#board-offline")).to_contain_text("人数可能不是最新的")
    screenshot(page, "live-board-offline")

    stoppable_server.start()  # the same port: the page reconnects by itself, no reload
    expect(status).to_have_text("实时更新", timeout=15_000)
    expect(page.locator("#board-offline")).to_be_hidden()


def test_the_counts_explain_guests(live_server: LiveServer, browser_page: Page, login: Login) -> None:
    world = live_server.world
    with unit_of_work(live_server.engine) as session:
        bind_card(
            session,
            keyring=live_server.keyring,
            member_id=world.members["赵雪梅"],
            card_no=ZHAO_CARD.card_no,
            uid=ZHAO_CARD.uid,
            now=datetime.now(UTC),
        )
    for tapped in (CHEN_CARD, ZHAO_CARD):  # a member of branch A, and one of branch B (列席)
        response = live_server.post_taps(world.tap_batch(tapped, at=datetime.now(UTC)).model_dump_json())
        assert response.json()["receipts"][0]["status"] == "accepted"

    page = browser_page
    login(page, world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/events/{world.event_a_id}/board")
    expect(page.locator("#count-present")).to_have_text("1")
    expect(page.locator(".present-list tbody tr")).to_have_count(2)
    expect(page.locator("#count-note")).to_have_text("已签到 2 人，其中列席 1 人不在应到之列，不计入实到。")
    expect(page.locator(".present-list tr", has_text="赵雪梅")).to_contain_text("列席")


def test_full_screen_for_a_projector(live_server: LiveServer, browser_page: Page, login: Login) -> None:
    page = browser_page
    world = live_server.world
    login(page, world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/events/{world.event_a_id}/board")
    page.get_by_role("button", name="全屏投影").click()
    page.wait_for_function("() => document.fullscreenElement?.id === 'live-board'")
    expect(page.locator("#live-board")).to_have_class("live-board is-fullscreen")
    expect(page.locator("#board-manual")).to_be_hidden()  # the projector shows the board alone
    size = page.locator("#count-expected").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 60
    screenshot(page, "live-board-fullscreen")
    page.get_by_role("button", name="退出全屏").click()
    page.wait_for_function("() => document.fullscreenElement === null")
    expect(page.locator("#board-manual")).to_be_visible()


def test_manual_checkin_is_marked_and_audited(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    world = live_server.world
    login(page, world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/events/{world.event_a_id}/board")
    expect(page.locator("#live-status")).to_have_text("实时更新")
    form = page.locator("#manual-checkin")
    form.get_by_label("党员").select_option(label="林晓燕（鹭江社区第一党支部）")
    form.get_by_label("补签理由").fill("忘带易通卡，本人到会")
    form.get_by_role("button", name="补签").click()

    expect(page.locator(".toast")).to_contain_text("已为林晓燕补签")
    expect(page.locator("#count-present")).to_have_text("1")
    row = page.locator(".present-list tr", has_text="林晓燕")
    expect(row).to_contain_text("补签")
    # Already present: no longer offered.
    expect(form.get_by_label("党员").locator("option", has_text="林晓燕")).to_have_count(0)

    # A board open elsewhere (the projector) shows it at once, as it shows a tap.
    projector = page.context.new_page()
    projector.goto(f"{live_server.url}/web/events/{world.event_a_id}/board")
    expect(projector.locator("#live-status")).to_have_text("实时更新")
    form.get_by_label("党员").select_option(label="吴海峰（鹭江社区第一党支部）")
    form.get_by_label("补签理由").fill("签到机故障")
    form.get_by_role("button", name="补签").click()
    expect(projector.locator("#count-present")).to_have_text("2")
    expect(projector.locator("#latest-tap .who")).to_have_text("吴海峰")
    expect(projector.locator("#latest-tap")).to_contain_text("补签")
    projector.close()
    # The recorder's own board reloads after 补签; let it finish before leaving.
    expect(page.locator(".toast")).to_contain_text("已为吴海峰补签")

    page.goto(f"{live_server.url}/web/events/{world.event_a_id}")
    sheet_row = page.locator("tr", has_text="林晓燕").first
    expect(sheet_row).to_contain_text("补签")
    expect(sheet_row).to_contain_text("忘带易通卡，本人到会")

    with Session(live_server.engine) as session:
        attendance = session.exec(
            select(Attendance).where(
                Attendance.event_id == world.event_a_id, Attendance.member_id == world.members["林晓燕"]
            )
        ).one()
        assert attendance.source == AttendanceSource.MANUAL
        assert attendance.note == "忘带易通卡，本人到会"
        entry = session.exec(
            select(AuditEntry).where(
                col(AuditEntry.action) == "attendance.manual", col(AuditEntry.object_id) == str(attendance.id)
            )
        ).one()
        assert entry.reason == "忘带易通卡，本人到会"


def test_manual_checkin_needs_a_reason_and_stays_in_scope(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    """The server refuses a blank reason (the field is required in the form too) and a member of
    another branch, whatever the page sent."""
    page = browser_page
    world = live_server.world
    login(page, world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/events/{world.event_a_id}/board")
    csrf = page.locator("#manual-checkin input[name=csrf_token]").input_value()
    url = f"{live_server.url}/web/events/{world.event_a_id}/board/manual"
    blank = page.request.post(
        url, form={"csrf_token": csrf, "member_id": str(world.members["林晓燕"]), "reason": "  "}
    )
    assert blank.status == 400
    assert "理由" in blank.text()
    elsewhere = page.request.post(
        url, form={"csrf_token": csrf, "member_id": str(world.members["赵雪梅"]), "reason": "忘带卡"}
    )
    assert elsewhere.status == 404
    with Session(live_server.engine) as session:
        assert session.exec(select(Attendance).where(Attendance.event_id == world.event_a_id)).all() == []
