"""The secretary's daily work on events, in the browser: find events by month and kind, plan a
monthly series, copy an event, name the chair and recorder, write the 会议记录 with a photo and
sign it off, and print the 签到表 with its signature lines."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Locator, Page, expect
from sqlmodel import Session, col, select

from server.caller import CLI_CALLER, Actor, Caller, Scope
from server.db import unit_of_work
from server.events.service import add_event
from server.meetings.attachments import MAX_ATTACHMENT_BYTES
from server.meetings.service import add_attachment, save_minutes
from server.records.events import Event
from server.records.meetings import MeetingAttachment, MeetingRecord
from server.vocabulary import EventKind, UserRole
from tests.web.conftest import LiveServer, Site, screenshot, sign_in
from tests.web.test_http import refusal_code
from tests.web.test_http import sign_in as sign_in_over_http
from tests.web.test_phone_and_access import axe_source, axe_violations, describe, overflow
from tests.web.world import CHEN_CARD, WebAccount

Login = Callable[[Page, WebAccount], None]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _png(width: int = 2, height: int = 2) -> bytes:
    """A real (tiny, red) PNG image, so the page's thumbnail actually decodes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xc0\x20\x20" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _add_event(
    live_server: LiveServer, title: str, start: datetime, kind: EventKind, *, branch: str = "a"
) -> int:
    world = live_server.world
    org_id = world.branch_a_id if branch == "a" else world.branch_b_id
    with unit_of_work(live_server.engine) as session:
        venue_id = world.venue_a_id
        if branch != "a":
            venue_id = session.exec(select(Event.venue_id).where(Event.id == world.event_b_id)).one()
        event = add_event(
            session,
            title=title,
            org_id=org_id,
            venue_id=venue_id,
            kind=kind,
            start_at=start,
            end_at=start + timedelta(hours=2),
            now=datetime.now(UTC),
            caller=CLI_CALLER,
        )
        assert event.id is not None
        return event.id


def _titles(page: Page) -> Locator:
    """The listed events' titles (asserted with expect, which waits for the filtered page)."""
    return page.locator("table.data tbody td:nth-child(2) a")


def test_filter_events_by_month_and_kind(live_server: LiveServer, browser_page: Page, login: Login) -> None:
    page = browser_page
    local = SHANGHAI
    _add_event(live_server, "三月主题党日", datetime(2027, 3, 9, 9, 0, tzinfo=local), EventKind.THEME_DAY)
    _add_event(live_server, "三月支委会", datetime(2027, 3, 31, 19, 0, tzinfo=local), EventKind.COMMITTEE)
    _add_event(live_server, "四月支委会", datetime(2027, 4, 1, 9, 0, tzinfo=local), EventKind.COMMITTEE)
    _add_event(
        live_server,
        "第二支部三月党课",
        datetime(2027, 3, 9, 9, 0, tzinfo=local),
        EventKind.LECTURE,
        branch="b",
    )
    login(page, live_server.world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/events")

    page.get_by_label("月份").fill("2027-03")
    page.get_by_role("button", name="查找").click()
    expect(page.get_by_text("2027年3月的活动")).to_be_visible()
    expect(_titles(page)).to_have_text(["三月主题党日", "三月支委会"])  # in date order; branch B's stays out

    page.get_by_label("活动类型").select_option(label="支委会")
    page.get_by_role("button", name="查找").click()
    expect(_titles(page)).to_have_text(["三月支委会"])
    expect(page.get_by_label("月份")).to_have_value("2027-03")  # the filter stays filled in
    screenshot(page, "events-filtered")

    page.get_by_label("月份").fill("")
    page.get_by_role("button", name="查找").click()
    expect(_titles(page)).to_have_text(["三月支委会", "四月支委会"])

    page.get_by_label("搜索").fill("主题党日")
    page.get_by_label("活动类型").select_option(label="全部类型")
    page.get_by_role("button", name="查找").click()
    expect(_titles(page).filter(has_text="三月支委会")).to_have_count(0)
    expect(_titles(page).filter(has_text="三月主题党日")).to_have_count(1)

    response = page.goto(f"{live_server.url}/web/events?month=2027-13")
    assert response is not None
    assert response.status == 400
    expect(page.locator(".alert-error")).to_contain_text("月份格式不正确")
    expect(page.locator("table.data .empty")).to_have_text("没有符合条件的活动。")


def test_create_a_monthly_series(live_server: LiveServer, browser_page: Page, login: Login) -> None:
    page = browser_page
    login(page, live_server.world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/events/new")
    page.get_by_label("活动名称").fill("每月支委会")
    page.get_by_label("活动类型").select_option(label="支委会")
    page.get_by_label("开始时间").fill("2027-01-12T19:00")  # the second Tuesday of January
    page.get_by_label("结束时间").fill("2027-01-12T20:30")
    page.get_by_label("主持人").select_option(label="陈建国")
    page.get_by_label("记录人").select_option(label="周丽华")
    page.get_by_label("重复方式").select_option(label="每月同一周次的星期几（如第二个星期五）")
    page.get_by_label("共几次").fill("6")
    screenshot(page, "event-series-form")
    page.get_by_role("button", name="创建活动").click()
    expect(page.locator(".toast")).to_contain_text("已创建6次活动：每月支委会（2027年1月至2027年6月）")

    with Session(live_server.engine) as session:
        series = session.exec(
            select(Event).where(Event.title == "每月支委会").order_by(col(Event.start_at))
        ).all()
    local = [event.start_at.astimezone(SHANGHAI) for event in series]
    assert [(d.month, d.day) for d in local] == [(1, 12), (2, 9), (3, 9), (4, 13), (5, 11), (6, 8)]
    assert all(d.weekday() == 1 and (d.hour, d.minute) == (19, 0) for d in local)
    chen = live_server.world.members["陈建国"]
    assert all(event.chair_member_id == chen for event in series)

    page.goto(f"{live_server.url}/web/events?month=2027-05&kind=committee")
    expect(_titles(page)).to_have_text(["每月支委会"])
    page.get_by_role("link", name="每月支委会").click()
    expect(page.locator(".event-roles")).to_contain_text("主持人：陈建国 · 记录人：周丽华")


def test_a_series_that_cannot_repeat_is_refused_and_creates_nothing(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    login(page, live_server.world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/events/new")
    page.get_by_label("活动名称").fill("第五个星期二")
    page.get_by_label("开始时间").fill("2027-03-30T19:00")  # the fifth Tuesday of March 2027
    page.get_by_label("结束时间").fill("2027-03-30T20:00")
    page.get_by_label("重复方式").select_option(label="每月同一周次的星期几（如第二个星期五）")
    page.get_by_role("button", name="创建活动").click()
    expect(page.locator(".toast-error")).to_contain_text("并非每月都有")
    with Session(live_server.engine) as session:
        assert session.exec(select(Event).where(Event.title == "第五个星期二")).first() is None


def test_copy_an_event_to_next_month(live_server: LiveServer, browser_page: Page, login: Login) -> None:
    page = browser_page
    world = live_server.world
    login(page, world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/events/{world.event_a_id}/edit")
    page.get_by_label("主持人").select_option(label="陈建国")
    page.get_by_label("记录人").select_option(label="林晓燕")
    page.get_by_role("button", name="保存").click()
    expect(page.locator(".event-roles")).to_contain_text("主持人：陈建国 · 记录人：林晓燕")

    page.get_by_role("link", name="复制").click()
    expect(page.locator("h1")).to_have_text("新建活动")
    expect(page.get_by_label("活动名称")).to_have_value("主题党日：学习《中国共产党支部工作条例》")
    expect(page.get_by_label("活动类型")).to_have_value("theme_day")
    expect(page.get_by_label("主持人")).to_have_value(str(world.members["陈建国"]))
    with Session(live_server.engine) as session:
        original = session.get(Event, world.event_a_id)
        assert original is not None
    start = original.start_at.astimezone(SHANGHAI)
    copied_start = page.get_by_label("开始时间").input_value()
    copied = datetime.fromisoformat(copied_start).replace(tzinfo=SHANGHAI)
    assert copied > start + timedelta(days=27)  # moved on by a month
    assert copied < start + timedelta(days=32)
    assert (copied.hour, copied.minute) == (start.hour, start.minute)
    page.get_by_label("活动名称").fill("下月主题党日")
    page.get_by_role("button", name="创建活动").click()
    expect(page.locator("h1")).to_have_text("下月主题党日")
    expect(page.locator(".event-roles")).to_contain_text("主持人：陈建国 · 记录人：林晓燕")


def test_write_minutes_attach_a_photo_and_sign_off(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    started = datetime.now(UTC) - timedelta(hours=3)
    event_id = _add_event(live_server, "十一月支部党员大会", started, EventKind.BRANCH_GENERAL)
    login(page, live_server.world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/events/{event_id}")
    page.get_by_role("link", name="会议记录").click()
    expect(page.locator("h1")).to_have_text("会议记录")

    page.get_by_label("议程").fill("一、学习党章\n二、讨论发展对象")
    page.get_by_label("会议内容").fill("陈建国主持会议，应到8人，实到7人。\n会议学习了党章第一章。")
    page.get_by_label("决议").fill("同意吴海峰列为发展对象。")
    page.get_by_role("button", name="保存会议记录").click()
    expect(page.locator(".toast")).to_contain_text("会议记录已保存")
    expect(page.get_by_label("会议内容")).to_have_value(
        "陈建国主持会议，应到8人，实到7人。\n会议学习了党章第一章。"
    )

    upload = page.get_by_label(re.compile("上传照片或扫描件"))
    upload.set_input_files(files=[{"name": "会议合影.png", "mimeType": "image/png", "buffer": _png()}])
    page.get_by_role("button", name="上传附件").click()
    expect(page.locator(".toast")).to_contain_text("已上传附件：会议合影.png")
    expect(page.locator("table.attachments")).to_contain_text("PNG 图片")
    thumbnail = page.locator("img.attachment-thumb")
    expect(thumbnail).to_have_attribute("alt", "会议合影.png")
    page.wait_for_function("() => document.querySelector('img.attachment-thumb').naturalWidth === 2")

    # A text file named like a photo is refused by its content, and nothing is attached.
    upload = page.get_by_label(re.compile("上传照片或扫描件"))
    upload.set_input_files(
        files=[{"name": "照片.jpg", "mimeType": "image/jpeg", "buffer": b"not a photo at all"}]
    )
    page.get_by_role("button", name="上传附件").click()
    expect(page.locator(".toast-error")).to_contain_text("只能上传 JPEG、PNG 照片或 PDF 扫描件")
    expect(page.locator("table.attachments tbody tr")).to_have_count(1)

    # A photo over the limit is stopped on the page, with the reason at the field; nothing is sent.
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if request.method == "POST" else None)
    upload = page.get_by_label(re.compile("上传照片或扫描件"))
    big = b"\xff\xd8\xff" + b"\x00" * MAX_ATTACHMENT_BYTES
    upload.set_input_files(files=[{"name": "原图.jpg", "mimeType": "image/jpeg", "buffer": big}])
    page.get_by_role("button", name="上传附件").click()
    expect(page.locator(".upload-error")).to_contain_text("「原图.jpg」有 8.1 MB，每个附件不能超过 8 MB")
    expect(upload).to_have_attribute("aria-invalid", "true")
    page.wait_for_timeout(300)
    assert sent == []
    expect(page.locator("table.attachments tbody tr")).to_have_count(1)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="签发并锁定").click()
    expect(page.locator(".minutes-locked")).to_contain_text("签发并锁定")
    expect(page.locator(".minutes-locked")).to_contain_text("陈书记")
    expect(page.locator("#minutes-content")).to_contain_text("会议学习了党章第一章。")
    expect(page.get_by_label("会议内容")).to_have_count(0)  # no form to edit any more
    expect(page.get_by_role("button", name="上传附件")).to_have_count(0)
    expect(page.get_by_role("button", name="删除")).to_have_count(0)
    screenshot(page, "minutes-locked")

    # Posting anyway (an old tab, a script) is refused with the reason, and nothing changes.
    csrf = page.locator("body").get_attribute("hx-headers") or ""
    token = re.search(r'"X-CSRF-Token": "([^"]+)"', csrf)
    assert token is not None
    answer = page.request.post(
        f"{live_server.url}/web/events/{event_id}/minutes",
        form={"csrf_token": token.group(1), "agenda": "", "minutes": "改掉", "resolutions": ""},
    )
    assert answer.status == 409
    assert "会议记录已签发锁定，不能再修改" in answer.text()
    with Session(live_server.engine) as session:
        record = session.exec(select(MeetingRecord).where(MeetingRecord.event_id == event_id)).one()
        assert record.minutes.endswith("会议学习了党章第一章。")
        assert record.locked_at is not None
        assert len(session.exec(select(MeetingAttachment)).all()) == 1


def test_print_view_has_signature_lines_and_a_paper_sheet(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    world = live_server.world
    response = live_server.post_taps(world.tap_batch(CHEN_CARD, at=datetime.now(UTC)).model_dump_json())
    assert response.json()["receipts"][0]["status"] == "accepted"
    login(page, world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/events/{world.event_a_id}/edit")
    page.get_by_label("主持人").select_option(label="陈建国")
    page.get_by_role("button", name="保存").click()
    expect(page.locator(".event-roles")).to_contain_text("主持人：陈建国")

    page.get_by_role("link", name="打印签到表").click()
    expect(page.locator("h1").first).to_have_text("主题党日：学习《中国共产党支部工作条例》 签到表")
    facts = page.locator(".sheet-facts")
    expect(facts).to_contain_text("鹭江社区党群服务中心")
    expect(facts).to_contain_text("陈建国")
    main_rows = page.locator(".sheet-page").first.locator("tbody tr")
    expect(main_rows).to_have_count(8)  # every member of branch A
    chen = main_rows.filter(has_text="陈建国")
    expect(chen.locator(".col-time")).to_have_text(re.compile(r"^\d{2}:\d{2}$"))
    expect(chen.locator(".col-sign")).to_have_text("刷卡")
    # The seven who have not signed in have an empty signature line each.
    expect(page.locator(".sheet-page").first.locator("tbody .sign-line")).to_have_count(7)
    expect(main_rows.filter(has_text="吴海峰")).to_contain_text("（未领卡）")

    paper = page.locator(".paper-sheet")
    expect(paper.locator("h1")).to_contain_text("纸质签到表")
    paper_names = paper.locator("tbody tr .col-name").all_inner_texts()
    assert [name for name in paper_names if name] == ["林晓燕", "吴海峰", "郑秀英", "欧阳明娜", "许文博"]
    expect(paper.locator("tbody tr.blank-row")).to_have_count(8)
    screenshot(page, "sign-in-sheet-print")

    page.emulate_media(media="print")
    expect(page.get_by_role("button", name="打印")).to_be_hidden()
    assert page.evaluate("getComputedStyle(document.querySelector('.paper-sheet')).breakBefore") == "page"
    page.emulate_media(media="screen")
    expect(page.get_by_role("button", name="打印")).to_be_visible()


def test_the_new_pages_fit_a_phone_log_no_error_and_pass_axe(
    live_server: LiveServer, browser: Browser
) -> None:
    """The filtered list, a copied event's form, the 会议记录 page with a photo and the print view,
    on a 360 px phone and at 390 px: no sideways scrolling, no console error, no serious axe finding."""
    world = live_server.world
    started = datetime.now(UTC) - timedelta(hours=3)
    event_id = _add_event(live_server, "十一月支部党员大会", started, EventKind.BRANCH_GENERAL)
    secretary = Caller(
        actor=Actor("user:1", "陈书记"),
        role=UserRole.SECRETARY,
        org_id=world.branch_a_id,
        scope=Scope(frozenset({world.branch_a_id})),
        may_approve=False,
    )
    with unit_of_work(live_server.engine) as session:
        save_minutes(
            session,
            event_id=event_id,
            agenda="一、学习党章\n二、讨论发展对象",
            minutes="陈建国主持会议。" * 40,
            resolutions="同意吴海峰列为发展对象。",
            now=datetime.now(UTC),
            caller=secretary,
        )
        add_attachment(
            session,
            event_id=event_id,
            file_name="一个很长很长的文件名_第二党支部十一月支部党员大会会议合影_最终版.png",
            data=_png(),
            now=datetime.now(UTC),
            caller=secretary,
        )
    month = started.astimezone(SHANGHAI).strftime("%Y-%m")
    pages = {
        "events-filtered": (f"/web/events?month={month}&kind=branch_general&q=支部", "活动"),
        "event-copy": (f"/web/events/new?copy_from={world.event_a_id}", "新建活动"),
        "minutes": (f"/web/events/{event_id}/minutes", "会议记录"),
        "sheet-print": (f"/web/events/{world.event_a_id}/print", "签到表"),
    }
    axe = axe_source()
    for viewport in ({"width": 360, "height": 740}, {"width": 390, "height": 844}):
        problems = _page_problems(live_server, browser, viewport, pages, axe)
        assert not problems, f"at {viewport['width']} px: {problems}"


def _page_problems(
    live_server: LiveServer,
    browser: Browser,
    viewport: dict[str, int],
    pages: dict[str, tuple[str, str]],
    axe: str,
) -> dict[str, list[str]]:
    context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", viewport=viewport)  # type: ignore[arg-type]
    errors: list[str] = []
    problems: dict[str, list[str]] = {}
    try:
        page = context.new_page()
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(error.message))
        sign_in(page, live_server.url, live_server.world.accounts["secretary_a"])
        for name, (path, heading) in pages.items():
            response = page.goto(live_server.url + path)
            assert response is not None
            assert response.status == 200, (name, response.status)
            expect(page.locator("h1").first).to_contain_text(heading)
            page.wait_for_load_state("networkidle")
            found = []
            if (wider := overflow(page)) > 0:
                found.append(f"{wider} px wider than the window")
            if violations := axe_violations(page, axe):
                found.append(describe(violations))
            found.extend(errors)
            errors.clear()
            if found:
                problems[name] = found
            if viewport["width"] == 390:
                screenshot(page, f"phone-{name}")
    finally:
        context.close()
    return problems


class TestBadInputIsAClearRefusal:
    """Typed URLs and hand-made posts: a Chinese refusal with its code, never a server error."""

    def test_list_filters(self, web_client: TestClient, site: Site) -> None:
        sign_in_over_http(web_client, site.world.accounts["secretary_a"])
        for query, message in [
            ("month=2026-13", "月份格式不正确"),
            ("month=abc", "月份格式不正确"),
            ("month=0001-01", "月份格式不正确"),
            ("kind=meeting", "活动类型不正确"),
            ("q=" + "党" * 51, "搜索内容最长50个字符"),
        ]:
            response = web_client.get(f"/web/events?{query}")
            assert response.status_code == 400, query
            assert message in response.text, query
        assert web_client.get("/web/events?month=" + "9" * 30).status_code == 400
        assert web_client.get("/web/events?month=2026-12&kind=committee&q=50%25").status_code == 200

    def test_series_and_roles(self, web_client: TestClient, site: Site) -> None:
        token = sign_in_over_http(web_client, site.world.accounts["secretary_a"])
        world = site.world
        with Session(site.engine) as session:
            before = len(session.exec(select(Event)).all())
        base = {
            "csrf_token": token,
            "title": "坏数据",
            "org_id": str(world.branch_a_id),
            "venue_id": str(world.venue_a_id),
            "kind": "committee",
            "start_at": "2027-01-05T09:00",
            "end_at": "2027-01-05T10:00",
        }
        for extra, code in [
            ({"repeat": "weekly"}, "invalid_recurrence"),
            ({"repeat": "same_day", "repeat_count": "abc"}, "invalid_recurrence"),
            ({"repeat": "same_day", "repeat_count": "13"}, "invalid_recurrence"),
            ({"repeat": "same_day", "repeat_count": "9999999999"}, "invalid_recurrence"),
            ({"chair_member_id": "x"}, "invalid_input"),
            ({"chair_member_id": str(world.members["赵雪梅"])}, "member_not_found"),  # branch B's member
            ({"start_at": "下周二"}, "invalid_input"),
        ]:
            response = web_client.post("/web/events", data={**base, **extra}, follow_redirects=False)
            assert response.status_code in (400, 404), (extra, response.status_code)
            assert refusal_code(response) == code, extra
        with Session(site.engine) as session:
            assert len(session.exec(select(Event)).all()) == before

    def test_attachments_are_bounded_and_scoped(self, web_client: TestClient, site: Site) -> None:
        world = site.world
        token = sign_in_over_http(web_client, world.accounts["secretary_a"])
        upload = "/web/minutes/attachments"
        too_big = b"\xff\xd8\xff" + b"\x00" * MAX_ATTACHMENT_BYTES
        response = web_client.post(
            upload,
            data={"csrf_token": token, "event_id": str(world.event_a_id)},
            files={"file": ("合影.jpg", too_big, "image/jpeg")},
        )
        assert response.status_code == 413
        assert refusal_code(response) == "attachment_too_large"
        # Far past the limit: the body is refused before it is read.
        response = web_client.post(
            upload,
            data={"csrf_token": token, "event_id": str(world.event_a_id)},
            files={"file": ("合影.jpg", too_big + b"\x00" * (2 * 1024 * 1024), "image/jpeg")},
        )
        assert response.status_code == 413
        # Another branch's event cannot be written to, nor its files read.
        response = web_client.post(
            upload,
            data={"csrf_token": token, "event_id": str(world.event_b_id)},
            files={"file": ("合影.png", _png(), "image/png")},
        )
        assert response.status_code == 404
        assert refusal_code(response) == "event_not_found"
        response = web_client.post(
            upload,
            data={"csrf_token": token, "event_id": str(world.event_a_id)},
            files={"file": ("合影.png", _png(), "image/png")},
            follow_redirects=False,
        )
        assert response.status_code == 303
        with Session(site.engine) as session:
            attachment = session.exec(select(MeetingAttachment)).one()
        shown = web_client.get(f"/web/events/{world.event_a_id}/minutes/attachments/{attachment.id}")
        assert shown.status_code == 200
        assert shown.headers["content-type"] == "image/png"
        assert shown.headers["x-content-type-options"] == "nosniff"
        assert shown.content == _png()
        sign_in_over_http(web_client, world.accounts["secretary_b"])
        assert (
            web_client.get(f"/web/events/{world.event_a_id}/minutes/attachments/{attachment.id}").status_code
            == 404
        )
        assert web_client.get(f"/web/events/{world.event_a_id}/minutes").status_code == 404
        assert web_client.get(f"/web/events/{world.event_a_id}/print").status_code == 404
        assert web_client.get(f"/web/events/new?copy_from={world.event_a_id}").status_code == 404
