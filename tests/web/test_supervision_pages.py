"""督查督办 on the web: the committee's organiser sees a reminder its branch left unhandled in the
督办 queue and sends it down with a note; the branch secretary acknowledges it; the other branch
sees none of it, not even by a typed URL; and the page fits a phone."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from playwright.sync_api import Page, expect
from sqlmodel import select

from server.db import unit_of_work
from server.records.supervision import Reminder, ReminderHistory
from server.supervision.findings import Finding, org_subject
from server.supervision.service import EscalationPolicy, apply_findings
from server.transfers.calendar import make_calendar
from server.vocabulary import ReminderAction, ReminderLevel, ReminderState, RuleFamily
from tests.web.conftest import LiveServer, screenshot
from tests.web.world import WebAccount

Login = Callable[[Page, WebAccount], None]
MESSAGE = "鹭江社区第一党支部没有在任的支部书记，请尽快按程序选举。"


def _unhandled_reminder(live_server: LiveServer) -> int:
    """A reminder of branch A found three weeks ago and again today: escalated to the committee."""
    world = live_server.world
    finding = Finding(
        rule="org_setup.no_secretary",
        family=RuleFamily.ORG_SETUP,
        level=ReminderLevel.WARNING,
        org_id=world.branch_a_id,
        subject=org_subject(world.branch_a_id),
        period="",
        message=MESSAGE,
    )
    now = datetime.now(UTC)
    for when in (now - timedelta(days=21), now):
        with unit_of_work(live_server.engine) as session:
            apply_findings(
                session,
                [finding],
                families={RuleFamily.ORG_SETUP},
                now=when,
                escalation=EscalationPolicy(calendar=make_calendar()),
                tz=live_server.settings.tz,
            )
    with unit_of_work(live_server.engine) as session:
        row = session.exec(select(Reminder)).one()
        assert row.escalated_to == world.committee_id
        assert row.id is not None
        return row.id


def _reminder(live_server: LiveServer, reminder_id: int) -> Reminder:
    with unit_of_work(live_server.engine) as session:
        row = session.get(Reminder, reminder_id)
        assert row is not None
        return row


def test_the_committee_sends_it_down_and_the_branch_acknowledges(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    reminder_id = _unhandled_reminder(live_server)
    accounts = live_server.world.accounts
    page = browser_page

    login(page, accounts["organiser"])
    page.goto(f"{live_server.url}/web/supervision")
    queue = page.locator("#supervision-queue")
    expect(queue).to_contain_text(MESSAGE)
    expect(page.locator("#family-compliance")).to_contain_text("组织设置")
    expect(page.locator("#heatmap")).to_contain_text("鹭江社区第一党支部")
    screenshot(page, "supervision-committee")
    queue.get_by_label("督办意见").fill("请于本周内召开党员大会补选书记")
    queue.get_by_role("button", name="转回办理").click()
    expect(page.locator("#toasts")).to_contain_text("已转回")
    assert _reminder(live_server, reminder_id).escalated_to is None
    with unit_of_work(live_server.engine) as session:
        sent = session.exec(
            select(ReminderHistory).where(ReminderHistory.action == ReminderAction.SENT_DOWN)
        ).one()
    assert sent.note == "请于本周内召开党员大会补选书记"

    page.context.clear_cookies()
    login(page, accounts["secretary_a"])
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/web/supervision")
    row = page.locator("#reminders tr", has_text=MESSAGE)
    expect(row).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "phone-supervision")
    row.get_by_role("button", name="已知悉").click()
    expect(page.locator("#toasts")).to_contain_text("已知悉")
    assert _reminder(live_server, reminder_id).state == ReminderState.ACKNOWLEDGED


def test_the_other_branch_sees_nothing_of_it(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    reminder_id = _unhandled_reminder(live_server)
    page = browser_page
    login(page, live_server.world.accounts["secretary_b"])
    page.goto(f"{live_server.url}/web/supervision")
    expect(page.locator("#reminders")).not_to_contain_text(MESSAGE)
    expect(page.locator("#supervision-queue")).to_have_count(0)
    typed = page.goto(f"{live_server.url}/web/supervision?org={live_server.world.branch_a_id}")
    assert typed is not None
    assert typed.status == 404
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    headers = json.loads(page.evaluate("document.body.getAttribute('hx-headers')"))
    posted = httpx.post(
        f"{live_server.url}/web/supervision/reminders/{reminder_id}/acknowledge",
        cookies=cookies,
        headers=headers,
        follow_redirects=False,
    )
    assert posted.status_code == 404  # with a valid CSRF token (a bad one would be 403)
    assert _reminder(live_server, reminder_id).state == ReminderState.OPEN


def test_a_members_page_shows_the_years_points(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    world = live_server.world
    login(browser_page, world.accounts["secretary_a"])
    member_id = next(iter(world.members.values()))
    browser_page.goto(f"{live_server.url}/web/members/{member_id}")
    points = browser_page.locator("#member-points")
    expect(points).to_contain_text("分")
    expect(points).to_contain_text("按时交纳党费")
