"""Dues import: a 收缴表 keeps its good rows and reports the bad ones; a bank statement matches
names within the importer's organisations and never guesses."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import Engine
from sqlmodel import Session, select

from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.dues.service import import_dues
from server.errors import DuesUnreadable, OrganisationNotFound
from server.records.audit import AuditEntry
from server.records.dues import DuesMonth
from tests.server.dues.conftest import NOW, SHANGHAI, Tree, secretary_of


def workbook(rows: list[list[Any]], *, title_row: bool = True) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "党费收缴表"
    if title_row:
        sheet.append(["第一党支部2026年党费收缴表"])
    sheet.append(["序号", "姓名", "所在支部", "月份", "应交金额（元）", "实交金额（元）", "交纳日期"])
    for row in rows:
        sheet.append(row)
    out = BytesIO()
    book.save(out)
    return out.getvalue()


def months_of(session: Session, member_id: int) -> dict[str, tuple[int | None, int, str | None]]:
    rows = session.exec(select(DuesMonth).where(DuesMonth.member_id == member_id)).all()
    return {r.month: (r.standard_fen, r.paid_fen, r.paid_on.isoformat() if r.paid_on else None) for r in rows}


def test_workbook_keeps_good_rows_and_reports_the_bad_one(engine: Engine, tree: Tree) -> None:
    data = workbook(
        [
            [1, "张三明", "第一党支部", "2026-01", 12.5, 12.5, "2026-01-20"],
            [2, "张三明", "第一党支部", "2026年2月", 12.5, None, None],
            [3, "李四", "第一党支部", "2026-13", 5, 5, "2026-01-20"],  # no 13th month
            [4, "王五", "第一党支部", "2026-01", "-3", None, None],  # negative amount
            [5, "王五", "第一党支部", "2026-02", 8.123, None, None],  # three decimals
            [6, "李四", "第一党支部", "2026-01", 5, 5, None],  # paid without a date
        ]
    )
    with unit_of_work(engine) as session:
        report = import_dues(
            session, data=data, kind="xlsx", caller=CLI_CALLER, org_id=tree.committee, now=NOW, tz=SHANGHAI
        )
    assert (report.rows, report.accepted_rows, report.rejected_rows) == (6, 2, 4)
    assert report.created == 2
    found = {(p.row, p.column, p.code.value) for p in report.problems}
    assert found == {
        (5, "月份", "month_invalid"),
        (6, "应交金额（元）", "amount_invalid"),
        (7, "应交金额（元）", "amount_invalid"),
        (8, "交纳日期", "date_missing"),
    }
    assert all(p.sheet == "党费收缴表" and p.message for p in report.problems)
    with Session(engine) as session:
        assert months_of(session, tree.members["张三明"]) == {
            "2026-01": (1250, 1250, "2026-01-20"),
            "2026-02": (1250, 0, None),
        }
        assert months_of(session, tree.members["李四"]) == {}
        audits = session.exec(select(AuditEntry).where(AuditEntry.action == "dues.import")).all()
        assert len(audits) == 1


def test_workbook_again_changes_nothing_and_a_later_payment_updates(engine: Engine, tree: Tree) -> None:
    first = workbook([[1, "张三明", None, "2026-02", 12.5, None, None]])
    with unit_of_work(engine) as session:
        import_dues(session, data=first, kind="xlsx", caller=CLI_CALLER, org_id=None, now=NOW, tz=SHANGHAI)
    with unit_of_work(engine) as session:
        again = import_dues(
            session, data=first, kind="xlsx", caller=CLI_CALLER, org_id=None, now=NOW, tz=SHANGHAI
        )
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)
    paid = workbook([[1, "张三明", None, "2026-02", None, "12.50", "2026-02-28"]])
    with unit_of_work(engine) as session:
        later = import_dues(
            session, data=paid, kind="xlsx", caller=CLI_CALLER, org_id=None, now=NOW, tz=SHANGHAI
        )
    assert (later.created, later.updated) == (0, 1)
    with Session(engine) as session:
        assert months_of(session, tree.members["张三明"]) == {"2026-02": (1250, 1250, "2026-02-28")}


def test_same_name_in_two_branches_needs_the_branch_column(engine: Engine, tree: Tree) -> None:
    data = workbook(
        [
            [1, "王五", None, "2026-01", 10, None, None],
            [2, "王五", "第二党支部", "2026-01", 20, None, None],
            [3, "王五", "第一党支部", "2026-01", 30, None, None],
            [4, "张三明", "第二党支部", "2026-01", 30, None, None],
            [5, "李四", "思明区某街道党委/第一党支部", "2026-01", 5, None, None],  # in its 党小组
        ]
    )
    with unit_of_work(engine) as session:
        report = import_dues(
            session, data=data, kind="xlsx", caller=CLI_CALLER, org_id=tree.committee, now=NOW, tz=SHANGHAI
        )
    assert [(p.row, p.code.value) for p in report.problems] == [
        (3, "member_ambiguous"),
        (6, "branch_unknown"),
    ]
    with Session(engine) as session:
        assert months_of(session, tree.members["王五二支部"])["2026-01"][0] == 2000
        assert months_of(session, tree.members["王五"])["2026-01"][0] == 3000
        assert months_of(session, tree.members["李四"])["2026-01"][0] == 500


def test_bounds_on_months_dates_and_amounts(engine: Engine, tree: Tree) -> None:
    data = workbook(
        [
            [1, "张三明", None, "2027-03", 10, None, None],  # 12 months ahead: allowed (预交)
            [2, "张三明", None, "2027-04", 10, None, None],  # 13 months ahead
            [3, "张三明", None, "2026-03", 10, 10, "2026-03-03"],  # tomorrow
            [4, "张三明", None, "2026-01", 100000, None, None],  # 10万元: the most a month may be
            [5, "张三明", None, "2026-02", 100000.01, None, None],
        ]
    )
    with unit_of_work(engine) as session:
        report = import_dues(
            session, data=data, kind="xlsx", caller=CLI_CALLER, org_id=None, now=NOW, tz=SHANGHAI
        )
    assert [(p.row, p.code.value) for p in report.problems] == [
        (4, "month_out_of_range"),
        (5, "date_in_future"),
        (7, "amount_too_large"),
    ]
    assert report.created == 2


def bank_csv(lines: list[str], *, encoding: str = "utf-8") -> bytes:
    header = "交易日期,交易金额,对方户名,摘要"
    return ("\n".join(["某银行账户交易明细", header, *lines]) + "\n").encode(encoding)


def test_bank_statement_matches_names_and_reports_unknown_and_ambiguous(engine: Engine, tree: Tree) -> None:
    data = bank_csv(
        [
            "2026-02-10,30.00,张三明,2026年1-3月党费",
            "2026-02-11,12.00,钱七,2026年2月党费",  # nobody of that name
            "2026-02-12,12.00,王五,2026年2月党费",  # two members named 王五
            "2026-02-13,12.00,李四,党费",  # no month in the memo
            "2026-02-14,-12.00,李四,2026年2月党费退款",  # paying out
            "20260215,8.00,李 四,2026.02 党费",
        ],
        encoding="gb18030",
    )
    with unit_of_work(engine) as session:
        report = import_dues(
            session, data=data, kind="bank", caller=CLI_CALLER, org_id=tree.committee, now=NOW, tz=SHANGHAI
        )
    assert [(p.row, p.column, p.code.value) for p in report.problems] == [
        (4, "对方户名", "member_unknown"),
        (5, "对方户名", "member_ambiguous"),
        (6, "摘要", "month_missing"),
        (7, "交易金额", "not_incoming"),
    ]
    assert "钱七" in report.problems[0].message
    assert (report.rows, report.rejected_rows) == (6, 4)
    with Session(engine) as session:
        assert months_of(session, tree.members["张三明"]) == {
            "2026-01": (None, 1000, "2026-02-10"),
            "2026-02": (None, 1000, "2026-02-10"),
            "2026-03": (None, 1000, "2026-02-10"),
        }
        assert months_of(session, tree.members["李四"]) == {"2026-02": (None, 800, "2026-02-15")}
    with unit_of_work(engine) as session:
        again = import_dues(
            session, data=data, kind="bank", caller=CLI_CALLER, org_id=tree.committee, now=NOW, tz=SHANGHAI
        )
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)


def test_a_branch_secretary_cannot_import_for_another_branch(engine: Engine, tree: Tree) -> None:
    data = bank_csv(["2026-02-10,12.00,赵六,2026年2月党费", "2026-02-10,12.00,王五,2026年2月党费"])
    with unit_of_work(engine) as session:
        caller = secretary_of(session, tree.branch)
        with pytest.raises(OrganisationNotFound):
            import_dues(
                session, data=data, kind="bank", caller=caller, org_id=tree.second, now=NOW, tz=SHANGHAI
            )
        report = import_dues(
            session, data=data, kind="bank", caller=caller, org_id=None, now=NOW, tz=SHANGHAI
        )
    # 赵六 is in 第二党支部: not found from 第一党支部; 王五 is only the one in 第一党支部 here.
    assert [(p.row, p.code.value) for p in report.problems] == [(3, "member_unknown")]
    with Session(engine) as session:
        assert months_of(session, tree.members["赵六"]) == {}
        assert months_of(session, tree.members["王五二支部"]) == {}
        assert months_of(session, tree.members["王五"]) == {"2026-02": (None, 1200, "2026-02-10")}


def test_unreadable_files_are_refused_whole(engine: Engine, tree: Tree) -> None:
    with unit_of_work(engine) as session:
        with pytest.raises(DuesUnreadable):
            import_dues(
                session,
                data=b"not a workbook",
                kind="xlsx",
                caller=CLI_CALLER,
                org_id=None,
                now=NOW,
                tz=SHANGHAI,
            )
        with pytest.raises(DuesUnreadable, match="摘要"):
            import_dues(
                session,
                data="交易日期,金额,户名\n2026-02-10,12,张三明\n".encode(),
                kind="bank",
                caller=CLI_CALLER,
                org_id=None,
                now=NOW,
                tz=SHANGHAI,
            )


def test_dry_run_writes_nothing(engine: Engine, tree: Tree) -> None:
    data = workbook([[1, "张三明", None, "2026-02", 12.5, None, None]])
    with unit_of_work(engine) as session:
        report = import_dues(
            session,
            data=data,
            kind="xlsx",
            caller=CLI_CALLER,
            org_id=None,
            now=NOW,
            tz=SHANGHAI,
            dry_run=True,
        )
    assert report.created == 1
    assert report.dry_run
    with Session(engine) as session:
        assert months_of(session, tree.members["张三明"]) == {}
