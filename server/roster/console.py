"""How ``ecard admin import`` shows a roster import to a person: a progress bar on stderr for
large files, the report as a few lines, and refusals row by row."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sized
from typing import TextIO, TypeVar

from server.errors import RosterInvalid
from server.roster.schemas import RosterReport
from server.roster.sheet import Tracker

_T = TypeVar("_T")

PROGRESS_MIN_ROWS = 1000  # below this an import takes about a second: a bar would only flicker


class ProgressBars:
    """A :class:`~server.roster.sheet.Tracker` drawing one tqdm bar per stage on ``stream``."""

    def __init__(
        self, stream: TextIO | None = None, *, min_items: int = PROGRESS_MIN_ROWS, unit: str = "行"
    ) -> None:
        self.stream = stream or sys.stderr
        self.min_items = min_items
        self.unit = unit

    def __call__(self, items: Iterable[_T], *, label: str, total: int | None) -> Iterable[_T]:
        from tqdm import tqdm

        size = total if total is not None else (len(items) if isinstance(items, Sized) else None)
        if size is not None and size < self.min_items:
            return items
        return tqdm(
            items, desc=label, total=size, file=self.stream, leave=False, unit=self.unit, dynamic_ncols=True
        )


def progress_bars(stream: TextIO | None = None) -> Tracker:
    return ProgressBars(stream)


def report_text(report: RosterReport) -> str:
    verb = "检查通过（未写入，--dry-run）" if report.dry_run else "导入完成"
    lines = [
        f"{verb}：{report.rows}行 — 新增{report.created}人，更新{report.updated}人，"
        f"无变化{report.unchanged}人，绑定卡片{report.cards_bound}张",
        f"工作表：{'、'.join(report.sheets)}",
    ]
    if report.ignored_sheets:
        lines.append(f"未识别为花名册的工作表（已跳过）：{'、'.join(report.ignored_sheets)}")
    if report.ignored_columns:
        lines.append(f"未使用的列（不导入、不保存）：{'、'.join(report.ignored_columns)}")
    for update in report.updates:
        changed = "、".join(update.changed)
        lines.append(f"  {_place(update.sheet, update.row)}党员 {update.member_id}：更新 {changed}")
    return "\n".join(lines)


def problems_text(error: RosterInvalid) -> str:
    """The refusal as the secretary reads it: a summary, then one line per problem."""
    lines = [f"错误 ({error.code}): {error.message}"]
    for problem in error.problems:
        where = _place(problem.get("sheet"), problem.get("row"))
        column = f"“{problem['column']}”列" if problem.get("column") else ""
        lines.append(f"  {where}{column}：{problem['message']} [{problem['code']}]")
    return "\n".join(lines)


def _place(sheet: object, row: object) -> str:
    parts = []
    if sheet:
        parts.append(f"[{sheet}]")
    if row is not None:
        parts.append(f"第{row}行")
    return " ".join(parts) + (" " if parts else "")
