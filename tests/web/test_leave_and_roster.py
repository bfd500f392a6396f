"""The daily member work on the web: 请假 asked and decided, 花名册 import with its row-by-row
report, and the member list as XLSX; and that branch B's secretary cannot reach branch A's leave."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from openpyxl import Workbook, load_workbook
from playwright.sync_api import Dialog, FilePayload, Page, expect
from sqlmodel import select

from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.events.service import add_event
from server.leave.service import request_leave
from server.records.leave import LeaveRequest
from server.records.orgs import Member
from server.vocabulary import EventKind, LeaveStatus
from tests.web.conftest import LiveServer, screenshot
from tests.web.world import BRANCH_A_MEMBERS, BRANCH_B_MEMBERS, CHEN_CARD, WebAccount

Login = Callable[[Page, WebAccount], None]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TOMORROW_TITLE = "十二月主题党日：重温入党誓词"
YANG = ("杨国庆", "男", "正式党员", "鹭江社区第一党支部")
CAI = ("蔡晓云", "女", "预备党员", "鹭江社区第一党支部")


def _event_tomorrow(live_server: LiveServer) -> int:
    """An event of branch A that has not started (the world's own starts within minutes)."""
    world = live_server.world
    start = datetime.now(UTC) + timedelta(days=1)
    with unit_of_work(live_server.engine) as session:
        event = add_event(
            session,
            title=TOMORROW_TITLE,
            org_id=world.branch_a_id,
            venue_id=world.venue_a_id,
            kind=EventKind.THEME_DAY,
            start_at=start,
            end_at=start + timedelta(hours=2),
            now=datetime.now(UTC),
            caller=CLI_CALLER,
        )
        assert event.id is not None
        return event.id


def _leave_status(live_server: LiveServer, leave_id: int) -> LeaveStatus:
    with unit_of_work(live_server.engine) as session:
        leave = session.get(LeaveRequest, leave_id)
        assert leave is not None
        return leave.status


def test_record_a_leave_request_approve_it_and_the_sheet_says_leave(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    world = live_server.world
    event_id = _event_tomorrow(live_server)
    login(page, world.accounts["secretary_a"])

    page.get_by_role("navigation", name="主导航").get_by_role("link", name="请假").click()
    expect(page.get_by_role("heading", name="请假", exact=True)).to_be_visible()
    page.get_by_role("link", name="登记请假").click()
    page.locator("select[name=event_id]").select_option(str(event_id))
    page.get_by_role("button", name="选择此活动").click()
    page.locator("select[name=member_id]").select_option(str(world.members["吴海峰"]))
    page.get_by_label("请假理由").fill("赴外地出差，无法到会")
    page.get_by_role("button", name="提交请假").click()

    page.wait_for_url(re.compile(r"/web/leave/\d+$"))
    expect(page.locator(".toast")).to_contain_text("已登记吴海峰的请假")
    expect(page.locator(".page-head .badge")).to_have_text("待审批")
    leave_id = int(page.url.rsplit("/", 1)[1])

    # The pending list shows it, with the way to decide it.
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="请假").click()
    pending = page.locator("section").filter(has_text="待审批").get_by_role("row").filter(has_text="吴海峰")
    expect(pending).to_contain_text("赴外地出差")
    pending.get_by_role("link", name="审批").click()

    # Approving asks first, naming the consequence.
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="批准请假").click()
    expect(page.locator(".page-head .badge")).to_have_text("已准假")
    assert len(asked) == 1
    assert "吴海峰" in asked[0]
    assert "请假" in asked[0]
    assert _leave_status(live_server, leave_id) == LeaveStatus.APPROVED
    screenshot(page, "leave-approved")

    page.get_by_role("link", name="查看签到表").click()
    page.wait_for_url(f"{live_server.url}/web/events/{event_id}")
    row = page.get_by_role("row").filter(has_text="吴海峰")
    expect(row).to_contain_text("请假")
    expect(row).to_contain_text("赴外地出差，无法到会")
    expect(page.locator(".stat.red .hint")).to_contain_text("请假 1")


def test_refusing_needs_a_reason(live_server: LiveServer, browser_page: Page, login: Login) -> None:
    page = browser_page
    world = live_server.world
    event_id = _event_tomorrow(live_server)
    with unit_of_work(live_server.engine) as session:
        leave = request_leave(
            session,
            event_id=event_id,
            member_id=world.members["郑秀英"],
            reason="家中有事",
            caller=CLI_CALLER,
            now=datetime.now(UTC),
        )
        leave_id = leave.id
    assert leave_id is not None
    login(page, world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/leave/{leave_id}")
    page.on("dialog", lambda dialog: dialog.accept())
    refusal = page.locator("form").filter(has=page.get_by_role("button", name="不批准"))
    refusal.get_by_label("不批准的理由").fill("本次支部党员大会须表决，请尽量安排时间参加")
    refusal.get_by_role("button", name="不批准").click()
    expect(page.locator(".page-head .badge")).to_have_text("不予准假")
    expect(page.get_by_text("本次支部党员大会须表决")).to_be_visible()
    assert _leave_status(live_server, leave_id) == LeaveStatus.REJECTED


def test_branch_b_cannot_see_or_decide_branch_a_leave(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    world = live_server.world
    event_id = _event_tomorrow(live_server)
    with unit_of_work(live_server.engine) as session:
        leave = request_leave(
            session,
            event_id=event_id,
            member_id=world.members["许文博"],
            reason="住院治疗",
            caller=CLI_CALLER,
            now=datetime.now(UTC),
        )
        leave_id = leave.id
    assert leave_id is not None

    login(page, world.accounts["secretary_b"])
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="请假").click()
    expect(page.get_by_text("没有待审批的请假")).to_be_visible()
    expect(page.get_by_text("许文博")).to_have_count(0)

    # Typed URLs: the request and A's event look like ids nobody has.
    response = page.goto(f"{live_server.url}/web/leave/{leave_id}")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_text("许文博")).to_have_count(0)
    page.goto(f"{live_server.url}/web/leave/new?event_id={event_id}")
    expect(page.get_by_text(TOMORROW_TITLE)).to_have_count(0)

    page.goto(f"{live_server.url}/web/leave")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    decided = page.request.post(
        f"{live_server.url}/web/leave/{leave_id}/decision",
        form={"csrf_token": token, "approve": "true", "note": ""},
        max_redirects=0,
    )
    assert decided.status == 404
    asked = page.request.post(
        f"{live_server.url}/web/leave",
        form={
            "csrf_token": token,
            "event_id": str(event_id),
            "member_id": str(world.members["吴海峰"]),
            "reason": "代为请假",
        },
        max_redirects=0,
    )
    assert asked.status == 404
    assert _leave_status(live_server, leave_id) == LeaveStatus.PENDING
    with unit_of_work(live_server.engine) as session:
        requests = session.exec(select(LeaveRequest).where(LeaveRequest.event_id == event_id)).all()
        assert [r.id for r in requests] == [leave_id]


def _roster(rows: list[tuple[str, str, str, str]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "花名册"
    sheet.append(["序号", "姓名", "性别", "党员类别", "所在支部"])
    for number, row in enumerate(rows, start=1):
        sheet.append([number, *row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _xlsx(name: str, content: bytes) -> FilePayload:
    return {"name": name, "mimeType": XLSX, "buffer": content}


def _member_names(live_server: LiveServer) -> set[str]:
    with unit_of_work(live_server.engine) as session:
        return set(session.exec(select(Member.name)).all())


def test_roster_import_reports_the_bad_row_then_imports_the_corrected_file(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    world = live_server.world
    good = [YANG, CAI]
    bad = ("马俊杰", "男", "正式党员", "鹭江社区第九党支部")
    login(page, world.accounts["secretary_a"])
    page.get_by_role("link", name="党员与卡").click()
    page.get_by_role("link", name="导入花名册").click()

    upload = page.get_by_label("花名册文件（.xlsx）")
    upload.set_input_files(files=[_xlsx("花名册.xlsx", _roster([good[0], bad, good[1]]))])
    page.get_by_role("button", name="检查花名册").click()
    report = page.locator("#roster-report")
    expect(report.get_by_role("alert")).to_contain_text("未导入任何数据")
    problem = report.get_by_role("row").filter(has_text="第3行")
    expect(problem).to_contain_text("所在支部")
    expect(problem).to_contain_text("“鹭江社区第九党支部”不存在")
    expect(report.get_by_role("row")).to_have_count(2)  # the header and the one bad row
    expect(report.get_by_role("button", name="确认导入")).to_have_count(0)
    screenshot(page, "roster-refused")
    # All or nothing: the good rows of a refused file are not in yet either.
    assert not {"杨国庆", "蔡晓云", "马俊杰"} & _member_names(live_server)

    upload.set_input_files(files=[_xlsx("花名册（改）.xlsx", _roster(good))])
    page.get_by_role("button", name="检查花名册").click()
    expect(report.get_by_role("status")).to_contain_text("检查通过（尚未导入）")
    expect(report.get_by_role("status")).to_contain_text("将新增 2 人")
    expect(
        report.locator("table.roster-created").get_by_role("row").filter(has_text="第3行")
    ).to_contain_text("蔡晓云")
    assert not {"杨国庆", "蔡晓云"} & _member_names(live_server)  # a check writes nothing
    report.get_by_role("button", name="确认导入").click()
    expect(report.get_by_role("status")).to_contain_text("导入完成")
    expect(report.get_by_role("status")).to_contain_text("新增 2 人")
    screenshot(page, "roster-imported")

    report.get_by_role("link", name="查看党员名单").click()
    for name, category in (("杨国庆", "正式"), ("蔡晓云", "预备")):
        row = page.get_by_role("row").filter(has_text=name)
        expect(row).to_contain_text("鹭江社区第一党支部")
        expect(row).to_contain_text(category)


def test_a_file_swapped_after_the_check_is_checked_again_not_imported(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    login(page, live_server.world.accounts["secretary_a"])
    page.goto(f"{live_server.url}/web/roster")
    upload = page.get_by_label("花名册文件（.xlsx）")
    upload.set_input_files(files=[_xlsx("a.xlsx", _roster([YANG]))])
    page.get_by_role("button", name="检查花名册").click()
    report = page.locator("#roster-report")
    expect(report.get_by_role("button", name="确认导入")).to_be_visible()
    upload.set_input_files(files=[_xlsx("b.xlsx", _roster([CAI]))])
    report.get_by_role("button", name="确认导入").click()
    expect(report.get_by_role("alert")).to_contain_text("已重新检查，尚未导入")
    expect(report.locator("table.roster-created")).to_contain_text("蔡晓云")
    assert not {"杨国庆", "蔡晓云"} & _member_names(live_server)


def test_export_the_member_list_and_import_it_back_unchanged(
    live_server: LiveServer, browser_page: Page, login: Login
) -> None:
    page = browser_page
    login(page, live_server.world.accounts["secretary_a"])
    page.get_by_role("link", name="党员与卡").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="导出名单（XLSX）").click()
    download = download_info.value
    assert download.suggested_filename.startswith("党员名单-鹭江社区第一党支部-")
    assert download.suggested_filename.endswith(".xlsx")
    exported = download.path().read_bytes()

    sheet = load_workbook(io.BytesIO(exported), read_only=True).worksheets[0]
    rows = [tuple(row) for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == ("序号", "姓名", "性别", "党员类别", "所在支部", "绑卡情况")
    by_name = {row[1]: row for row in rows[1:]}
    assert set(by_name) == {name for name, _ in BRANCH_A_MEMBERS}  # nobody of branch B
    assert not {name for name, _ in BRANCH_B_MEMBERS} & set(by_name)
    assert by_name["陈建国"][3:] == ("正式党员", "鹭江社区第一党支部", "已绑定")
    assert by_name["林晓燕"][3:] == ("预备党员", "鹭江社区第一党支部", "未绑定")
    assert sum(row[5] == "已绑定" for row in rows[1:]) == 3  # the world binds three cards
    cells = " ".join(str(cell) for row in rows for cell in row)
    assert CHEN_CARD.card_no is not None
    assert CHEN_CARD.card_no not in cells
    assert CHEN_CARD.card_no[-4:] not in cells

    # The export speaks the import's columns: importing it back changes nobody.
    page.get_by_role("link", name="导入花名册").click()
    page.get_by_label("花名册文件（.xlsx）").set_input_files(
        files=[_xlsx(download.suggested_filename, exported)]
    )
    page.get_by_role("button", name="检查花名册").click()
    report = page.locator("#roster-report")
    expect(report.get_by_role("status")).to_contain_text(f"无变化 {len(BRANCH_A_MEMBERS)} 人")
    expect(report.get_by_text("无需导入")).to_be_visible()
