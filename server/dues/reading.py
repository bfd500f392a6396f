"""Reading dues files: a 党费收缴表 workbook (.xlsx) and a bank statement CSV, row by row.

Nothing here touches the database: names stay text until the service matches them. Every cell is
bounded (names, months, amounts, dates); a bad cell rejects its row with a stable code and a
Chinese message, and the other rows go on. Headers are found in the first
:data:`HEADER_SEARCH_ROWS` rows and compared after NFKC, without spaces, ``*`` and a bracketed note
(``应交金额（元）`` is ``应交金额``).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from server.dues.schemas import DuesProblem, DuesProblemCode
from server.errors import DuesUnreadable
from server.inputs import has_refused_character
from server.roster.sheet import branch_path_keys, name_key

HEADER_SEARCH_ROWS = 10
NAME_MAX_LENGTH = 100
MAX_MONTH_FEN = 10_000_000  # 10万元 in one month: far above any rate, below any typo of a salary
MAX_MONTHS_PER_PAYMENT = 12
EARLIEST = date(2000, 1, 1)
ADVANCE_MONTHS = 12  # dues may be paid ahead, but not for years ahead

_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_HEADER_NOISE = re.compile(r"[\s*]|[(（][^)）]*[)）]$")
_MONTH_TEXT = re.compile(r"^(\d{4})\s*(?:[年\-./]\s*(\d{1,2})\s*月?|(\d{2}))$")
_MEMO_RANGE = re.compile(
    r"(\d{4})\s*年?\s*[\-./]?\s*(\d{1,2})\s*月?\s*(?:-|—|–|~|～|至|到)\s*(?:(\d{4})\s*[年\-./]\s*)?(\d{1,2})\s*月"
)
_MEMO_MONTH = re.compile(r"(\d{4})\s*(?:年|[\-./])\s*(\d{1,2})(?!\d)\s*月?")
_DATE_TEXT = re.compile(r"^(\d{4})\s*[\-./年]?\s*(\d{1,2})\s*[\-./月]?\s*(\d{1,2})\s*日?(?:[\sT].*)?$")


class DuesField(StrEnum):
    """The columns the import uses; the value is the name shown in messages."""

    NAME = "姓名"
    BRANCH = "所在支部"
    MONTH = "月份"
    STANDARD = "应交金额"
    PAID = "实交金额"
    PAID_ON = "交纳日期"
    # bank statement
    DATE = "交易日期"
    AMOUNT = "金额"
    MEMO = "摘要"


XLSX_HEADERS: Mapping[DuesField, tuple[str, ...]] = {
    DuesField.NAME: ("姓名", "党员姓名"),
    DuesField.BRANCH: ("所在支部", "所在党支部", "所属支部", "党支部", "支部"),
    DuesField.MONTH: ("月份", "所属月份", "交纳月份", "缴纳月份", "党费月份"),
    DuesField.STANDARD: ("应交金额", "应交党费", "应交", "应缴金额", "应缴党费", "应缴"),
    DuesField.PAID: ("实交金额", "实交党费", "实交", "实缴金额", "实缴党费", "实缴"),
    DuesField.PAID_ON: ("交纳日期", "缴纳日期", "交费日期", "缴费日期", "实交日期"),
}
BANK_HEADERS: Mapping[DuesField, tuple[str, ...]] = {
    DuesField.DATE: ("交易日期", "日期", "记账日期", "入账日期", "交易时间"),
    DuesField.AMOUNT: ("金额", "交易金额", "收入金额", "贷方金额", "入账金额", "收入"),
    DuesField.NAME: ("户名", "姓名", "对方户名", "付款人", "付款人姓名", "付款人户名", "对方名称"),
    DuesField.MEMO: ("摘要", "备注", "附言", "用途", "交易附言", "摘要/备注"),
}


def _header_key(text: str) -> str:
    return _HEADER_NOISE.sub("", unicodedata.normalize("NFKC", text)).casefold()


def _field_index(headers: Mapping[DuesField, tuple[str, ...]]) -> dict[str, DuesField]:
    return {_header_key(s): f for f, synonyms in headers.items() for s in synonyms}


_XLSX_FIELDS = _field_index(XLSX_HEADERS)
_BANK_FIELDS = _field_index(BANK_HEADERS)


@dataclass(frozen=True)
class SheetRow:
    """One 收缴表 line, every cell checked: a member-month with its standard and/or payment."""

    sheet: str
    row: int
    name: str
    branch_path: tuple[str, ...] | None
    month: str
    standard_fen: int | None
    paid_fen: int | None
    paid_on: date | None
    headers: Mapping[DuesField, str] = field(default_factory=dict, compare=False)

    def column(self, dues_field: DuesField) -> str:
        return self.headers.get(dues_field, dues_field.value)


@dataclass(frozen=True)
class BankLine:
    """One incoming payment of a bank statement, for one or more months."""

    row: int
    name: str
    paid_on: date
    amount_fen: int
    months: tuple[str, ...]
    headers: Mapping[DuesField, str] = field(default_factory=dict, compare=False)

    def column(self, dues_field: DuesField) -> str:
        return self.headers.get(dues_field, dues_field.value)


@dataclass
class Read:
    rows: int = 0
    sheet_rows: list[SheetRow] = field(default_factory=list)
    bank_lines: list[BankLine] = field(default_factory=list)
    problems: list[DuesProblem] = field(default_factory=list)


class _RowProblems:
    def __init__(self, sheet: str | None, row: int, headers: Mapping[DuesField, str]) -> None:
        self.sheet, self.row, self.headers = sheet, row, headers
        self.found: list[DuesProblem] = []

    def add(self, dues_field: DuesField, code: DuesProblemCode, message: str) -> None:
        self.found.append(
            DuesProblem(
                sheet=self.sheet,
                row=self.row,
                column=self.headers.get(dues_field, dues_field.value),
                code=code,
                message=message,
            )
        )


# --- 收缴表 (.xlsx) ---------------------------------------------------------------------------------


def read_workbook(data: bytes, *, today: date) -> Read:
    """Every dues sheet of the workbook. Raises DuesUnreadable (not an .xlsx; no 姓名/月份 header;
    neither 应交 nor 实交 column)."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    if data.startswith(_OLE2_MAGIC):
        raise DuesUnreadable("这是旧版 Excel（.xls）文件；请在 Excel 中“另存为” .xlsx 后再导入")
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError, SyntaxError) as exc:
        raise DuesUnreadable() from exc
    read = Read()
    found_sheet = False
    try:
        for worksheet in workbook.worksheets:
            found_sheet |= _read_sheet(worksheet, read, today)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, SyntaxError) as exc:
        raise DuesUnreadable() from exc
    finally:
        workbook.close()
    if not found_sheet:
        raise DuesUnreadable(
            f"未找到党费收缴表：各工作表前{HEADER_SEARCH_ROWS}行中没有同时含“姓名”“月份”和“应交金额”或“实交金额”的表头"
        )
    return read


def _map_header(values: Sequence[Any], fields: Mapping[str, DuesField]) -> dict[DuesField, tuple[int, str]]:
    found: dict[DuesField, tuple[int, str]] = {}
    for position, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            continue
        written = " ".join(value.split())
        dues_field = fields.get(_header_key(written))
        if dues_field is not None and dues_field not in found:
            found[dues_field] = (position, written)
    return found


def _read_sheet(worksheet: Any, read: Read, today: date) -> bool:
    title = str(worksheet.title)
    rows = worksheet.iter_rows(min_row=1, values_only=True)
    columns: dict[DuesField, tuple[int, str]] | None = None
    header_row = 0
    for row_number, values in enumerate(rows, start=1):
        mapped = _map_header(values, _XLSX_FIELDS)
        if {DuesField.NAME, DuesField.MONTH} <= mapped.keys() and (
            DuesField.STANDARD in mapped or DuesField.PAID in mapped
        ):
            columns, header_row = mapped, row_number
            break
        if row_number >= HEADER_SEARCH_ROWS:
            break
    if columns is None:
        return False
    headers = {f: written for f, (_, written) in columns.items()}
    for row_number, values in enumerate(rows, start=header_row + 1):
        if all(_blank(v) for v in values):
            continue
        read.rows += 1
        problems = _RowProblems(title, row_number, headers)
        parsed = _parse_sheet_row(title, row_number, values, columns, problems, today)
        if problems.found or parsed is None:
            read.problems.extend(problems.found)
        else:
            read.sheet_rows.append(parsed)
    return True


def _parse_sheet_row(
    sheet: str,
    row: int,
    values: Sequence[Any],
    columns: Mapping[DuesField, tuple[int, str]],
    problems: _RowProblems,
    today: date,
) -> SheetRow | None:
    def cell(dues_field: DuesField) -> Any:
        spot = columns.get(dues_field)
        if spot is None or spot[0] >= len(values):
            return None
        value = values[spot[0]]
        if isinstance(value, str) and has_refused_character(value):
            problems.add(dues_field, DuesProblemCode.TEXT_INVALID, "含有不允许的字符（空字符、控制字符）")
            return None
        return value

    name = _name(cell(DuesField.NAME), DuesField.NAME, problems)
    branch_text = _text(cell(DuesField.BRANCH))
    branch_path = branch_path_keys(branch_text) if branch_text else None
    month = _month_cell(cell(DuesField.MONTH), problems, today)
    standard = _amount_cell(cell(DuesField.STANDARD), DuesField.STANDARD, problems)
    paid = _amount_cell(cell(DuesField.PAID), DuesField.PAID, problems)
    paid_on = _date_cell(cell(DuesField.PAID_ON), DuesField.PAID_ON, problems, today)
    if standard is None and paid is None and not problems.found:
        problems.add(DuesField.STANDARD, DuesProblemCode.AMOUNT_MISSING, "应交金额和实交金额不能都为空")
    if paid and paid_on is None and not problems.found:
        problems.add(DuesField.PAID_ON, DuesProblemCode.DATE_MISSING, "填写了实交金额，须同时填写交纳日期")
    if problems.found or name is None or month is None:
        return None
    return SheetRow(
        sheet=sheet,
        row=row,
        name=name,
        branch_path=branch_path or None,
        month=month,
        standard_fen=standard,
        paid_fen=paid,
        paid_on=paid_on if paid else None,
        headers=problems.headers,
    )


# --- bank statement (.csv) ------------------------------------------------------------------------


def read_bank_csv(data: bytes, *, today: date) -> Read:
    """Every incoming payment of a bank statement (UTF-8 or GBK). Raises DuesUnreadable."""
    text = _decode(data)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DuesUnreadable("银行流水不是有效的 CSV 文件") from exc
    columns: dict[DuesField, tuple[int, str]] | None = None
    header_index = 0
    for index, values in enumerate(rows[:HEADER_SEARCH_ROWS]):
        mapped = _map_header(values, _BANK_FIELDS)
        if {DuesField.NAME, DuesField.AMOUNT, DuesField.DATE} <= mapped.keys():
            columns, header_index = mapped, index
            break
    if columns is None:
        raise DuesUnreadable(
            f"未找到银行流水表头：前{HEADER_SEARCH_ROWS}行中没有同时含“交易日期”“金额”和“户名（姓名）”的一行"
        )
    if DuesField.MEMO not in columns:
        raise DuesUnreadable("银行流水缺少“摘要”或“备注”列：需要从中读出党费所属月份")
    headers = {f: written for f, (_, written) in columns.items()}
    read = Read()
    for index in range(header_index + 1, len(rows)):
        values = rows[index]
        if all(_blank(v) for v in values):
            continue
        read.rows += 1
        problems = _RowProblems(None, index + 1, headers)
        line = _parse_bank_line(index + 1, values, columns, problems, today)
        if problems.found or line is None:
            read.problems.extend(problems.found)
        else:
            read.bank_lines.append(line)
    return read


def _decode(data: bytes) -> str:
    if b"\x00" in data:
        raise DuesUnreadable("银行流水含有空字符，不是文本 CSV 文件")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DuesUnreadable("无法识别银行流水的文字编码（应为 UTF-8 或 GBK）")


def _parse_bank_line(
    row: int,
    values: Sequence[str],
    columns: Mapping[DuesField, tuple[int, str]],
    problems: _RowProblems,
    today: date,
) -> BankLine | None:
    def cell(dues_field: DuesField) -> str:
        position = columns[dues_field][0]
        value = values[position] if position < len(values) else ""
        if has_refused_character(value):
            problems.add(dues_field, DuesProblemCode.TEXT_INVALID, "含有不允许的字符（空字符、控制字符）")
            return ""
        return value

    name = _name(cell(DuesField.NAME), DuesField.NAME, problems)
    paid_on = _date_cell(cell(DuesField.DATE), DuesField.DATE, problems, today)
    if paid_on is None and not any(p.column == problems.headers[DuesField.DATE] for p in problems.found):
        problems.add(DuesField.DATE, DuesProblemCode.DATE_MISSING, "交易日期不能为空")
    amount = _amount_cell(cell(DuesField.AMOUNT), DuesField.AMOUNT, problems, allow_negative=True)
    if amount is not None and amount <= 0:
        problems.add(DuesField.AMOUNT, DuesProblemCode.NOT_INCOMING, "不是收入（金额为零或支出），不计为党费")
        amount = None
    elif amount is None and not problems.found:
        problems.add(DuesField.AMOUNT, DuesProblemCode.AMOUNT_MISSING, "金额不能为空")
    months = _memo_months(cell(DuesField.MEMO), problems, today)
    if amount is not None and months and amount > MAX_MONTH_FEN * len(months):
        problems.add(DuesField.AMOUNT, DuesProblemCode.AMOUNT_TOO_LARGE, "金额超出党费的合理范围")
    if problems.found or name is None or paid_on is None or amount is None or not months:
        return None
    return BankLine(
        row=row, name=name, paid_on=paid_on, amount_fen=amount, months=months, headers=problems.headers
    )


def _memo_months(text: str, problems: _RowProblems, today: date) -> tuple[str, ...]:
    memo = unicodedata.normalize("NFKC", text)
    found = _MEMO_RANGE.search(memo)
    if found:
        first_year, first_month = int(found.group(1)), int(found.group(2))
        last_year = int(found.group(3)) if found.group(3) else first_year
        last_month = int(found.group(4))
        if not (1 <= first_month <= 12 and 1 <= last_month <= 12):
            problems.add(DuesField.MEMO, DuesProblemCode.MONTH_INVALID, "摘要中的月份不正确")
            return ()
        count = (last_year - first_year) * 12 + last_month - first_month + 1
        if not 1 <= count <= MAX_MONTHS_PER_PAYMENT:
            problems.add(
                DuesField.MEMO,
                DuesProblemCode.MONTH_INVALID,
                f"摘要中的月份区间不正确（一笔最多{MAX_MONTHS_PER_PAYMENT}个月）",
            )
            return ()
        months = tuple(_add_months(first_year, first_month, i) for i in range(count))
    else:
        single = _MEMO_MONTH.search(memo)
        if not single:
            problems.add(
                DuesField.MEMO,
                DuesProblemCode.MONTH_MISSING,
                "摘要（备注）中没有党费所属月份；请写明如“2026年11月党费”或“2026年9-11月党费”",
            )
            return ()
        year, month = int(single.group(1)), int(single.group(2))
        if not 1 <= month <= 12:
            problems.add(DuesField.MEMO, DuesProblemCode.MONTH_INVALID, "摘要中的月份不正确")
            return ()
        months = (f"{year:04d}-{month:02d}",)
    if not all(_month_in_range(m, today) for m in months):
        problems.add(DuesField.MEMO, DuesProblemCode.MONTH_OUT_OF_RANGE, _month_range_message(today))
        return ()
    return months


# --- cells ----------------------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return " ".join(unicodedata.normalize("NFKC", str(value)).split())


def _name(value: Any, dues_field: DuesField, problems: _RowProblems) -> str | None:
    name = name_key(_text(value)) if not _blank(value) else ""
    if not name:
        problems.add(dues_field, DuesProblemCode.NAME_MISSING, "姓名（户名）不能为空")
        return None
    if len(name) > NAME_MAX_LENGTH:
        problems.add(dues_field, DuesProblemCode.NAME_TOO_LONG, f"姓名最长{NAME_MAX_LENGTH}个字符")
        return None
    return name


def _add_months(year: int, month: int, count: int) -> str:
    index = year * 12 + month - 1 + count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _month_in_range(month: str, today: date) -> bool:
    latest = _add_months(today.year, today.month, ADVANCE_MONTHS)
    return f"{EARLIEST.year:04d}-{EARLIEST.month:02d}" <= month <= latest


def _month_range_message(today: date) -> str:
    latest = _add_months(today.year, today.month, ADVANCE_MONTHS)
    return f"月份须在2000年1月至{latest[:4]}年{int(latest[5:])}月之间（最多预交{ADVANCE_MONTHS}个月）"


def _month_cell(value: Any, problems: _RowProblems, today: date) -> str | None:
    if _blank(value):
        problems.add(DuesField.MONTH, DuesProblemCode.MONTH_MISSING, "月份不能为空")
        return None
    month: str | None = None
    if isinstance(value, datetime | date):
        month = f"{value.year:04d}-{value.month:02d}"
    elif isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer():
        digits = str(int(value))
        found = _MONTH_TEXT.match(digits) if len(digits) == 6 else None
        if found:
            month = f"{found.group(1)}-{found.group(3)}"
    else:
        found = _MONTH_TEXT.match(_text(value))
        if found:
            number = int(found.group(2) or found.group(3))
            if 1 <= number <= 12:
                month = f"{found.group(1)}-{number:02d}"
    if month is None or not 1 <= int(month[5:]) <= 12:
        problems.add(
            DuesField.MONTH, DuesProblemCode.MONTH_INVALID, "月份格式不正确；请写成“2026-11”或“2026年11月”"
        )
        return None
    if not _month_in_range(month, today):
        problems.add(DuesField.MONTH, DuesProblemCode.MONTH_OUT_OF_RANGE, _month_range_message(today))
        return None
    return month


def _amount_cell(
    value: Any, dues_field: DuesField, problems: _RowProblems, *, allow_negative: bool = False
) -> int | None:
    """Yuan (元) with at most two decimals, as fen; None when blank or refused."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        value = None
    try:
        if isinstance(value, int):
            amount = Decimal(value)
        elif isinstance(value, float):
            amount = Decimal(repr(value))
        else:
            text = _text(value).replace(",", "").replace("¥", "").replace("￥", "").removesuffix("元").strip()
            amount = Decimal(text)
    except (InvalidOperation, ValueError, TypeError):
        problems.add(dues_field, DuesProblemCode.AMOUNT_INVALID, "金额须为数字（单位：元，最多两位小数）")
        return None
    if not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        problems.add(dues_field, DuesProblemCode.AMOUNT_INVALID, "金额须为数字（单位：元，最多两位小数）")
        return None
    if amount < 0 and not allow_negative:
        problems.add(dues_field, DuesProblemCode.AMOUNT_INVALID, "金额不能为负数")
        return None
    fen = int(amount * 100)
    if abs(fen) > MAX_MONTH_FEN * MAX_MONTHS_PER_PAYMENT or (not allow_negative and fen > MAX_MONTH_FEN):
        problems.add(
            dues_field,
            DuesProblemCode.AMOUNT_TOO_LARGE,
            f"金额超出党费的合理范围（每月不超过{MAX_MONTH_FEN // 100}元）",
        )
        return None
    return fen


def _date_cell(value: Any, dues_field: DuesField, problems: _RowProblems, today: date) -> date | None:
    if _blank(value):
        return None
    found: date | None = None
    if isinstance(value, datetime):
        found = value.date()
    elif isinstance(value, date):
        found = value
    else:
        text = _text(value)
        match = _DATE_TEXT.match(text)
        if match is None and re.fullmatch(r"\d{8}", text):
            match = _DATE_TEXT.match(f"{text[:4]}-{text[4:6]}-{text[6:]}")
        if match:
            try:
                found = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            except ValueError:
                found = None
    if found is None:
        problems.add(dues_field, DuesProblemCode.DATE_INVALID, "日期格式不正确；请写成“2026-11-05”")
        return None
    if found > today:
        problems.add(dues_field, DuesProblemCode.DATE_IN_FUTURE, "日期不能晚于今天")
        return None
    if found < EARLIEST:
        problems.add(dues_field, DuesProblemCode.DATE_INVALID, "日期不能早于2000年")
        return None
    return found
