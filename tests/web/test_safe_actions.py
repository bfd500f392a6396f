"""Safe actions: a double click creates one record, an irreversible step asks first (naming what
will happen, to whom), and a form sent twice with the same token is done once.

In Chromium through the real server, except the last group, which posts the same form twice over
HTTP (what a resend after a slow answer, or a second click that got through, looks like)."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import APIResponse, Dialog, Page, Route, expect
from playwright.sync_api import Error as PlaywrightError
from sqlmodel import Session, col, func, select

from schemas.messages import TapMode
from server.records.audit import AuditEntry
from server.records.events import Event
from server.records.form_tokens import FormSubmission
from server.records.kiosks import Kiosk
from server.records.leave import LeaveRequest
from server.records.transfers import TransferRequest, TransferState
from tests.server.transfers.factories import QIAN_CARD, build_elsewhere, release, requests
from tests.web.conftest import LiveServer, Site
from tests.web.test_http import sign_in as sign_in_over_http
from tests.web.test_leave_and_roster import _event_tomorrow as event_tomorrow
from tests.web.world import WebAccount

Login = Callable[[Page, WebAccount], None]


def count(live_server: LiveServer | Site, model: type, *conditions: object) -> int:
    with Session(live_server.engine) as session:
        return session.exec(select(func.count()).select_from(model).where(*conditions)).one()  # type: ignore[arg-type]


def double_click(page: Page, button_name: str, *, posts_to: str) -> list[str]:
    """Click the button twice, 300 ms apart, while the answer to the first click is slow to come
    (held back here until both clicks are done): an impatient hand on a slow line. Returns the
    URL of each post the page sent to the path ``posts_to``; each reached the server."""
    sent: list[str] = []
    held: list[tuple[Route, APIResponse]] = []

    def hold(route: Route) -> None:
        if route.request.method != "POST" or urlsplit(route.request.url).path != posts_to:
            route.continue_()
            return
        sent.append(route.request.url)
        held.append((route, route.fetch()))  # the server has done its work; the page waits

    page.route("**/*", hold)
    button = page.get_by_role("button", name=button_name)
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)  # a real click at the same spot, even on a disabled button
    page.wait_for_timeout(300)
    while held:
        route, response = held.pop(0)
        with contextlib.suppress(PlaywrightError):  # a navigation the second click replaced
            route.fulfill(response=response)
        page.wait_for_timeout(500)  # a queued second submit would leave now
    page.unroute("**/*", hold)
    return sent


class TestADoubleClickCreatesOneRecord:
    def test_new_event(self, live_server: LiveServer, browser_page: Page, login: Login) -> None:
        page = browser_page
        login(page, live_server.world.accounts["secretary_a"])
        page.goto(f"{live_server.url}/web/events/new")
        page.get_by_label("活动名称").fill("一月支部党员大会")
        page.get_by_label("活动类型").select_option(label="支部党员大会")
        page.get_by_label("开始时间").fill("2027-01-09T09:00")
        page.get_by_label("结束时间").fill("2027-01-09T11:00")
        sent = double_click(page, "创建活动", posts_to="/web/events")
        expect(page.locator("h1")).to_have_text("一月支部党员大会")
        assert len(sent) == 1
        assert count(live_server, Event, col(Event.title) == "一月支部党员大会") == 1

    def test_new_transfer(self, live_server: LiveServer, browser_page: Page, login: Login) -> None:
        page = browser_page
        login(page, live_server.world.accounts["secretary_a"])
        page.goto(f"{live_server.url}/web/transfers/new")
        page.locator("input[name=claimed_name]").fill("王新来")
        sent = double_click(page, "提交申请", posts_to="/web/transfers")
        page.wait_for_url(re.compile(r".*/web/transfers/\d+$"))
        assert len(sent) == 1
        assert count(live_server, TransferRequest, col(TransferRequest.claimed_name) == "王新来") == 1

    def test_new_kiosk(self, live_server: LiveServer, browser_page: Page, login: Login) -> None:
        page = browser_page
        login(page, live_server.world.accounts["admin"])
        page.goto(f"{live_server.url}/web/kiosks")
        page.locator("#add-kiosk input[name=name]").fill("二楼会议室签到机")
        sent = double_click(page, "添加并生成登记码", posts_to="/web/kiosks")
        expect(page.locator("h1")).to_contain_text("二楼会议室签到机")
        assert len(sent) == 1
        assert count(live_server, Kiosk, col(Kiosk.name) == "二楼会议室签到机") == 1

    def test_new_enrolment_code(self, live_server: LiveServer, browser_page: Page, login: Login) -> None:
        page = browser_page
        page.on("dialog", lambda dialog: dialog.accept())
        kiosk_id = live_server.world.kiosk_id
        issued = (col(AuditEntry.action) == "kiosk.enrollment_code", col(AuditEntry.object_id) == kiosk_id)
        before = count(live_server, AuditEntry, *issued)
        login(page, live_server.world.accounts["admin"])
        page.goto(f"{live_server.url}/web/kiosks/{kiosk_id}")
        sent = double_click(page, "生成登记码", posts_to=f"/web/kiosks/{kiosk_id}/code")
        expect(page.locator("h1")).to_have_text("新的登记码")
        assert len(sent) == 1
        assert count(live_server, AuditEntry, *issued) == before + 1

    def test_new_leave_request(self, live_server: LiveServer, browser_page: Page, login: Login) -> None:
        """A second copy would be refused (one request per member and meeting) with an error the
        secretary did not cause; only one may leave the page."""
        page = browser_page
        world = live_server.world
        event_id = event_tomorrow(live_server)
        login(page, world.accounts["secretary_a"])
        page.goto(f"{live_server.url}/web/leave/new")
        page.locator("select[name=event_id]").select_option(str(event_id))
        page.get_by_role("button", name="选择此活动").click()
        page.locator("select[name=member_id]").select_option(str(world.members["吴海峰"]))
        page.get_by_label("请假理由").fill("赴外地出差，无法到会")
        sent = double_click(page, "提交请假", posts_to="/web/leave")
        page.wait_for_url(re.compile(r".*/web/leave/\d+$"))
        assert len(sent) == 1
        expect(page.locator(".toast")).to_contain_text("已登记吴海峰的请假")
        expect(page.locator(".toast-error")).to_have_count(0)
        assert count(live_server, LeaveRequest, col(LeaveRequest.event_id) == event_id) == 1


def test_a_slow_answer_shows_progress_and_keeps_the_button_off(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    """While the answer is on its way the page says so (a bar at the top) and the button stays off.
    (A plain form's page is being replaced then, and the browser shows its own progress.)"""
    page = browser_page
    login(page, live_server.world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/transfers/new")
    page.locator("input[name=claimed_name]").fill("慢网络测试")
    held: list[Route] = []

    def hold(route: Route) -> None:
        if route.request.method == "POST" and urlsplit(route.request.url).path == "/web/transfers":
            held.append(route)
        else:
            route.continue_()

    page.route("**/*", hold)
    expect(page.locator("#loading-bar")).to_have_count(0)
    page.get_by_role("button", name="提交申请").click()
    expect(page.locator("#loading-bar")).to_be_visible()
    expect(page.get_by_role("button", name="提交申请")).to_be_disabled()
    assert len(held) == 1
    held[0].continue_()
    page.wait_for_url(re.compile(r".*/web/transfers/\d+$"))
    expect(page.locator("#loading-bar")).to_be_hidden()


def submitted_transfer(live_server: LiveServer) -> int:
    """钱七 asks to move to branch A and his own 基层党委 has let him go: branch A may now accept,
    return, refuse (不予接收) or record that he withdrew (本人撤回)."""
    now = datetime.now(UTC)
    elsewhere = build_elsewhere(live_server.engine, live_server.keyring, now=now - timedelta(days=30))
    response = live_server.post_taps(
        live_server.world.tap_batch(QIAN_CARD, at=now, mode=TapMode.TRANSFER_IN).model_dump_json()
    )
    assert response.json()["receipts"][0]["status"] == "accepted"
    (filed,) = requests(live_server.engine)
    assert filed.id is not None
    release(live_server.engine, elsewhere, filed.id, now=now)
    return filed.id


def transfer_state(live_server: LiveServer, transfer_id: int) -> TransferState:
    with Session(live_server.engine) as session:
        found = session.get(TransferRequest, transfer_id)
        assert found is not None
        return found.state


class TestIrreversibleStepsAskFirst:
    @pytest.mark.parametrize(
        ("button", "consequence", "final_state", "state_label"),
        [
            ("不予接收", "钱七的转入申请即告终止", TransferState.REJECTED, "不予接收"),
            ("本人撤回", "钱七的转入申请即告终止", TransferState.WITHDRAWN, "本人撤回"),
        ],
    )
    def test_dismissing_changes_nothing_and_accepting_proceeds(
        self,
        live_server: LiveServer,
        browser_page: Page,
        login: Login,
        button: str,
        consequence: str,
        final_state: TransferState,
        state_label: str,
    ) -> None:
        page = browser_page
        transfer_id = submitted_transfer(live_server)
        login(page, live_server.world.accounts["secretary_a"])
        page.goto(f"{live_server.url}/web/transfers/{transfer_id}")
        page.locator("#transfer-actions textarea[name=reason]").fill("经核实，本人已另行办理")
        actions = page.locator("#transfer-actions")

        questions: list[str] = []

        def dismiss(dialog: Dialog) -> None:
            questions.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", dismiss)
        actions.get_by_role("button", name=button, exact=True).click()
        page.wait_for_timeout(800)  # a request, had one been sent, would have come back by now
        assert len(questions) == 1
        assert consequence in questions[0], questions[0]
        assert "不能" in questions[0], questions[0]
        assert transfer_state(live_server, transfer_id) == TransferState.SUBMITTED
        expect(page.locator("#transfer-state")).to_have_text("待支部审核")
        expect(page.locator("#transfer-actions textarea[name=reason]")).to_have_value(
            "经核实，本人已另行办理"
        )

        def accept(dialog: Dialog) -> None:
            questions.append(dialog.message)
            dialog.accept()

        page.once("dialog", accept)
        actions.get_by_role("button", name=button, exact=True).click()
        expect(page.locator("#transfer-state")).to_contain_text(state_label.replace("本人撤回", "撤回"))
        assert len(questions) == 2
        assert transfer_state(live_server, transfer_id) == final_state

    def test_receiving_names_the_member_and_the_branch(
        self, live_server: LiveServer, browser_page: Page, login: Login
    ) -> None:
        """The step that moves a person into the roster says so before it happens."""
        page = browser_page
        transfer_id = submitted_transfer(live_server)
        login(page, live_server.world.accounts["secretary_a"])
        page.goto(f"{live_server.url}/web/transfers/{transfer_id}")
        question = page.locator("#transfer-actions button", has_text="不予接收").get_attribute("data-confirm")
        assert question is not None
        assert "钱七" in question
        # 接收入支部 is the committee's step; its question is on that button when offered.
        receive = page.locator("#transfer-actions button", has_text="接收入支部")
        if receive.count():
            receive_question = receive.get_attribute("data-confirm") or ""
            assert "钱七将转入本组织" in receive_question
            assert "不能撤销" in receive_question


class TestTheSameTokenTwiceIsDoneOnce:
    def test_a_repeated_post_creates_one_event_and_answers_like_the_first(
        self, web_client: TestClient, site: Site
    ) -> None:
        csrf = sign_in_over_http(web_client, site.world.accounts["secretary_a"])
        form = {
            "csrf_token": csrf,
            "form_token": str(uuid.uuid4()),
            "title": "二月支委会",
            "org_id": str(site.world.branch_a_id),
            "venue_id": str(site.world.venue_a_id),
            "kind": "committee",
            "start_at": "2027-02-06T09:00",
            "end_at": "2027-02-06T10:00",
        }
        first = web_client.post("/web/events", data=form, follow_redirects=False)
        second = web_client.post("/web/events", data=form, follow_redirects=False)
        assert first.status_code == second.status_code == 303, (first.text[:300], second.text[:300])
        assert re.fullmatch(r"/web/events/\d+", first.headers["location"])
        assert second.headers["location"] == first.headers["location"]
        assert count(site, Event, col(Event.title) == "二月支委会") == 1

        # A new token (a new visit to the form) is a new submission.
        again = web_client.post(
            "/web/events", data={**form, "form_token": str(uuid.uuid4())}, follow_redirects=False
        )
        assert again.status_code == 303
        assert again.headers["location"] != first.headers["location"]
        assert count(site, Event, col(Event.title) == "二月支委会") == 2

    def test_an_htmx_repeat_is_sent_to_the_same_page(self, web_client: TestClient, site: Site) -> None:
        csrf = sign_in_over_http(web_client, site.world.accounts["secretary_a"])
        form = {
            "form_token": str(uuid.uuid4()),
            "claimed_name": "李重复",
            "to_org_id": str(site.world.branch_a_id),
        }
        headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
        first = web_client.post("/web/transfers", data=form, headers=headers)
        second = web_client.post("/web/transfers", data=form, headers=headers)
        assert first.headers.get("HX-Redirect"), first.text[:300]
        assert second.headers.get("HX-Redirect") == first.headers["HX-Redirect"]
        assert count(site, TransferRequest, col(TransferRequest.claimed_name) == "李重复") == 1

    def test_a_refused_form_can_be_corrected_and_sent_with_its_token(
        self, web_client: TestClient, site: Site
    ) -> None:
        """Nothing is remembered of a refusal: the same form, corrected, goes through."""
        csrf = sign_in_over_http(web_client, site.world.accounts["secretary_a"])
        form = {
            "csrf_token": csrf,
            "form_token": str(uuid.uuid4()),
            "title": "三月主题党日",
            "org_id": str(site.world.branch_a_id),
            "venue_id": str(site.world.venue_a_id),
            "kind": "theme_day",
            "start_at": "2027-03-06T11:00",
            "end_at": "2027-03-06T09:00",  # ends before it starts
        }
        refused = web_client.post("/web/events", data=form, follow_redirects=False)
        assert refused.status_code == 400
        corrected = web_client.post(
            "/web/events", data={**form, "end_at": "2027-03-06T12:00"}, follow_redirects=False
        )
        assert corrected.status_code == 303
        assert count(site, Event, col(Event.title) == "三月主题党日") == 1

    def test_tokens_are_per_user_and_forgotten_after_a_day(self, web_client: TestClient, site: Site) -> None:
        csrf = sign_in_over_http(web_client, site.world.accounts["secretary_a"])
        token = str(uuid.uuid4())
        branch = str(site.world.branch_a_id)
        form = {"csrf_token": csrf, "form_token": token, "claimed_name": "周一次", "to_org_id": branch}
        assert web_client.post("/web/transfers", data=form, follow_redirects=False).status_code == 303
        with Session(site.engine) as session:
            stored = session.exec(select(FormSubmission).where(FormSubmission.token == token)).one()
            assert stored.redirect_to is not None
            assert stored.redirect_to.startswith("/web/transfers/")
            stored.created_at = datetime.now(UTC) - timedelta(days=2)
            session.add(stored)
            session.commit()
        # Any later form of anyone purges it.
        other = {
            "csrf_token": csrf,
            "form_token": str(uuid.uuid4()),
            "claimed_name": "周二次",
            "to_org_id": branch,
        }
        assert web_client.post("/web/transfers", data=other, follow_redirects=False).status_code == 303
        assert count(site, FormSubmission, col(FormSubmission.token) == token) == 0
