"""``ecard admin dues``: importing 党费 from a 收缴表 workbook or a bank statement."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, run_admin

dues_app = typer.Typer(no_args_is_help=True, help="Party dues (党费).")


class FileFormat(StrEnum):
    XLSX = "xlsx"
    BANK = "bank"


@dues_app.command("import")
def dues_import(
    path: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="A 收缴表 (.xlsx) or bank statement (.csv)."
        ),
    ],
    org: Annotated[
        int | None, typer.Option("--org", help="Match names only among this organisation's subtree.")
    ] = None,
    file_format: Annotated[
        FileFormat | None,
        typer.Option("--format", help="xlsx (收缴表) or bank (CSV statement); default from the file name."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and report; write nothing.")] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Import dues row by row: good rows are written, each bad row is listed with its code.

    A 收缴表 has 姓名, 月份, 应交金额 and/or 实交金额 (+ 交纳日期), optionally 所在支部. A bank
    statement CSV has 交易日期, 金额, 户名 and 摘要 naming the month(s) (``2026年9-11月党费``).
    """
    kind = file_format or (FileFormat.BANK if path.suffix.lower() == ".csv" else FileFormat.XLSX)
    data = path.read_bytes()

    def action(ctx: AdminContext) -> Outcome:
        from server.dues.service import import_dues

        report = import_dues(
            ctx.session,
            data=data,
            kind="bank" if kind == FileFormat.BANK else "xlsx",
            caller=ctx.caller,
            org_id=org,
            now=ctx.now,
            tz=ctx.settings.tz,
            dry_run=dry_run,
        )
        verb = "检查完成（未写入，--dry-run）" if report.dry_run else "导入完成"
        lines = [
            f"{verb}：{report.rows}行，采用{report.accepted_rows}行，退回{report.rejected_rows}行；"
            f"新增{report.created}个月，更新{report.updated}个月，无变化{report.unchanged}个月"
        ]
        for problem in report.problems:
            where = (f"[{problem.sheet}] " if problem.sheet else "") + f"第{problem.row}行"
            column = f"“{problem.column}”列" if problem.column else ""
            lines.append(f"  {where}{column}：{problem.message} [{problem.code.value}]")
        if report.problems_truncated:
            lines.append("  ……（仅列出前500处）")
        return Outcome(report.model_dump(mode="json"), "\n".join(lines))

    run_admin(action, db=db, json_output=json_output)
