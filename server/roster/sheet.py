"""Reading a 花名册 workbook: find each sheet's header row, map columns by name, and turn every row
into typed values or problems. Nothing here touches the database: branches stay text until the
service resolves them.

Headers are compared after NFKC, without spaces, ``*`` marks and a trailing note in brackets
(``*姓名``, ``姓 名``, ``易通卡号（19位）`` all work), against :data:`HEADER_SYNONYMS`. A sheet is a
roster when one of its first :data:`HEADER_SEARCH_ROWS` rows has a 姓名 column, so a title row
above the header and an instructions sheet are both fine. Columns the import does not know
(序号, 民族, 身份证号 …) are ignored and never stored.

Card numbers must be text: Excel keeps 15 significant digits, so a 19-digit number typed into a
number cell has already lost its last digits and cannot be trusted.
"""

from __future__ import annotations

import re
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from io import BytesIO
from typing import Any, Protocol, TypeVar

from server.cards.identifiers import normalise_card_no, normalise_uid
from server.errors import InvalidCardIdentifier, InvalidText, RosterUnreadable
from server.inputs import check_text
from server.roster.schemas import ProblemCode, RosterProblem
from server.vocabulary import Gender, MemberCategory

_T = TypeVar("_T")

HEADER_SEARCH_ROWS = 10
NAME_MAX_LENGTH = 100  # the member.name column


class RosterField(StrEnum):
    """The columns the import uses; the value is the name shown in messages."""

    NAME = "姓名"
    GENDER = "性别"
    CATEGORY = "党员类别"
    BRANCH = "所在支部"
    CARD_NO = "易通卡号"
    UID = "UID"


HEADER_SYNONYMS: Mapping[RosterField, tuple[str, ...]] = {
    RosterField.NAME: ("姓名", "名字", "党员姓名"),
    RosterField.GENDER: ("性别",),
    RosterField.CATEGORY: ("党员类别", "类别", "党员类型", "人员类别", "政治面貌"),
    RosterField.BRANCH: (
        "所在支部",
        "所在党支部",
        "所属支部",
        "所属党支部",
        "支部",
        "党支部",
        "支部名称",
        "所在党组织",
        "所属党组织",
        "党组织",
    ),
    RosterField.CARD_NO: ("易通卡号", "易通卡", "e通卡号", "易通卡卡号", "卡号", "交通卡号"),
    RosterField.UID: ("uid", "卡uid", "卡片uid", "物理卡号"),
}
REQUIRED_FIELDS = (RosterField.NAME, RosterField.CATEGORY, RosterField.BRANCH)

GENDER_VALUES: Mapping[str, Gender] = {
    "男": Gender.MALE,
    "男性": Gender.MALE,
    "m": Gender.MALE,
    "male": Gender.MALE,
    "女": Gender.FEMALE,
    "女性": Gender.FEMALE,
    "f": Gender.FEMALE,
    "female": Gender.FEMALE,
}
CATEGORY_VALUES: Mapping[str, MemberCategory] = {
    "正式党员": MemberCategory.FULL,
    "正式": MemberCategory.FULL,
    "中共党员": MemberCategory.FULL,
    "党员": MemberCategory.FULL,
    "预备党员": MemberCategory.PROBATIONARY,
    "预备": MemberCategory.PROBATIONARY,
    "中共预备党员": MemberCategory.PROBATIONARY,
}

_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls (Excel 97–2003) and other compound files
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{_CJK}]) (?=[{_CJK}])")
_HEADER_NOISE = re.compile(r"[\s*]|\([^)]*\)$")
_PATH_SEPARATORS = re.compile(r"[/\\]")
# XML cannot hold NUL or most control characters: a workbook with one written raw into a cell
# does not parse at all, so it cannot be reported by row.
_NOT_WELL_FORMED = "无法读取花名册：文件已损坏，或单元格中含有不允许的字符（如空字符、控制字符）"


class Tracker(Protocol):
    """Wraps an iterable to show progress (the CLI passes a tqdm bar); must yield every item."""

    def __call__(self, items: Iterable[_T], *, label: str, total: int | None) -> Iterable[_T]: ...


class _Untracked:
    def __call__(self, items: Iterable[_T], *, label: str, total: int | None) -> Iterable[_T]:
        return items


untracked: Tracker = _Untracked()


@dataclass(frozen=True)
class SheetColumns:
    """Where each known field sits in one sheet, and its header as written there."""

    sheet: str
    header_row: int
    index: Mapping[RosterField, int]
    headers: Mapping[RosterField, str]

    def problem(
        self, row: int | None, roster_field: RosterField, code: ProblemCode, message: str
    ) -> RosterProblem:
        return RosterProblem(
            sheet=self.sheet,
            row=row,
            column=self.headers.get(roster_field, roster_field.value),
            code=code,
            message=message,
        )


@dataclass(frozen=True)
class RosterRow:
    """One member line, every cell checked. Card identifiers live only in memory (never logged)."""

    columns: SheetColumns
    row: int
    name: str  # normalised with name_key: also what a new member is stored as
    gender: Gender | None
    category: MemberCategory
    branch_text: str
    branch_path: tuple[str, ...]  # comparison keys, outermost first
    card_no: str | None = field(repr=False)
    uid: str | None = field(repr=False)

    @property
    def sheet(self) -> str:
        return self.columns.sheet

    def problem(self, roster_field: RosterField, code: ProblemCode, message: str) -> RosterProblem:
        return self.columns.problem(self.row, roster_field, code, message)


@dataclass
class RosterContent:
    sheets: list[str] = field(default_factory=list)
    ignored_sheets: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    rows: list[RosterRow] = field(default_factory=list)
    problems: list[RosterProblem] = field(default_factory=list)


def name_key(text: str) -> str:
    """A person's name for comparison: NFKC, single spaces, and no spaces between Chinese characters
    (rosters pad two-character names to line up with three: ``王　伟``)."""
    collapsed = " ".join(unicodedata.normalize("NFKC", text).split())
    return _SPACE_BETWEEN_CJK.sub("", collapsed)


def org_name_key(text: str) -> str:
    """An organisation name for comparison: NFKC (full-width brackets) and no spaces at all."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def branch_path_keys(text: str) -> tuple[str, ...]:
    """``某党委 / 第一党支部`` → ("某党委", "第一党支部"); ``／`` and ``\\`` also separate."""
    parts = _PATH_SEPARATORS.split(unicodedata.normalize("NFKC", text))
    return tuple(key for key in (org_name_key(part) for part in parts) if key)


def read_roster(data: bytes, *, track: Tracker = untracked) -> RosterContent:
    """Every roster sheet of the workbook, row by row.

    Raises:
        RosterUnreadable: not an .xlsx workbook (an .xls, a CSV, a damaged file).
    """
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    if data.startswith(_OLE2_MAGIC):
        raise RosterUnreadable("这是旧版 Excel（.xls）文件；请在 Excel 中“另存为” .xlsx 后再导入")
    try:
        workbook = load_workbook(BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise RosterUnreadable() from exc
    except SyntaxError as exc:  # xml's ParseError: a part of the file is not well-formed XML
        raise RosterUnreadable(_NOT_WELL_FORMED) from exc
    content = RosterContent()
    try:
        for worksheet in workbook.worksheets:
            _read_sheet(worksheet, content, track)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        # read-only mode parses lazily, so a damaged sheet only shows up while iterating
        raise RosterUnreadable() from exc
    except SyntaxError as exc:
        raise RosterUnreadable(_NOT_WELL_FORMED) from exc
    finally:
        workbook.close()
    if not content.sheets:
        content.problems.append(
            RosterProblem(
                sheet=None,
                row=None,
                column=RosterField.NAME.value,
                code=ProblemCode.HEADER_NOT_FOUND,
                message=f"未找到表头：各工作表前{HEADER_SEARCH_ROWS}行中都没有“姓名”列",
            )
        )
    elif not content.rows and not content.problems:
        content.problems.append(
            RosterProblem(
                sheet=content.sheets[0],
                row=None,
                column=None,
                code=ProblemCode.ROSTER_EMPTY,
                message="花名册中没有党员数据",
            )
        )
    return content


def _read_sheet(worksheet: Any, content: RosterContent, track: Tracker) -> None:
    title = str(worksheet.title)
    rows: Iterator[tuple[Any, ...]] = worksheet.iter_rows(min_row=1, values_only=True)
    header_row = 0
    for row_number, values in enumerate(rows, start=1):
        if _find_name_column(values) is not None:
            header_row = row_number
            columns = _map_header(title, row_number, values, content)
            break
        if row_number >= HEADER_SEARCH_ROWS:
            break
    if not header_row:
        content.ignored_sheets.append(title)
        return
    content.sheets.append(title)
    if columns is None:  # required columns missing or repeated: the rows cannot be read
        return
    total = worksheet.max_row - header_row if isinstance(worksheet.max_row, int) else None
    for data_row, values in enumerate(track(rows, label=f"读取 {title}", total=total), start=header_row + 1):
        if all(_is_blank(value) for value in values):
            continue
        parsed = _parse_row(columns, data_row, values, content.problems)
        if parsed is not None:
            content.rows.append(parsed)


def _find_name_column(values: tuple[Any, ...]) -> int | None:
    names = {_header_key(s) for s in HEADER_SYNONYMS[RosterField.NAME]}
    for index, value in enumerate(values):
        if isinstance(value, str) and _header_key(value) in names:
            return index
    return None


def _header_key(text: str) -> str:
    return _HEADER_NOISE.sub("", unicodedata.normalize("NFKC", text)).casefold()


_FIELD_BY_HEADER: dict[str, RosterField] = {
    _header_key(synonym): roster_field
    for roster_field, synonyms in HEADER_SYNONYMS.items()
    for synonym in synonyms
}


def _map_header(
    sheet: str, header_row: int, values: tuple[Any, ...], content: RosterContent
) -> SheetColumns | None:
    index: dict[RosterField, int] = {}
    headers: dict[RosterField, str] = {}
    ok = True
    for position, value in enumerate(values):
        if _is_blank(value):
            continue
        written = " ".join(str(value).split())
        roster_field = _FIELD_BY_HEADER.get(_header_key(written))
        if roster_field is None:
            if written not in content.ignored_columns:
                content.ignored_columns.append(written)
            continue
        if roster_field in index:
            ok = False
            content.problems.append(
                RosterProblem(
                    sheet=sheet,
                    row=header_row,
                    column=written,
                    code=ProblemCode.COLUMN_REPEATED,
                    message=f"“{headers[roster_field]}”和“{written}”都表示{roster_field.value}，请只保留一列",
                )
            )
            continue
        index[roster_field] = position
        headers[roster_field] = written
    for required in REQUIRED_FIELDS:
        if required not in index:
            ok = False
            others = "、".join(HEADER_SYNONYMS[required][1:4])
            content.problems.append(
                RosterProblem(
                    sheet=sheet,
                    row=header_row,
                    column=required.value,
                    code=ProblemCode.COLUMN_MISSING,
                    message=f"缺少“{required.value}”列（也可写作：{others}）",
                )
            )
    return SheetColumns(sheet=sheet, header_row=header_row, index=index, headers=headers) if ok else None


def _parse_row(
    columns: SheetColumns, row: int, values: tuple[Any, ...], problems: list[RosterProblem]
) -> RosterRow | None:
    found: list[RosterProblem] = []
    refused: set[RosterField] = set()  # cells with a refused character: reported once, then blank

    def cell(roster_field: RosterField) -> Any:
        position = columns.index.get(roster_field)
        if position is None or position >= len(values) or roster_field in refused:
            return None
        return values[position]

    def problem(roster_field: RosterField, code: ProblemCode, message: str) -> None:
        if roster_field not in refused:
            found.append(columns.problem(row, roster_field, code, message))

    for roster_field in columns.index:
        value = cell(roster_field)
        if isinstance(value, str):
            try:
                check_text(value, field=columns.headers.get(roster_field, roster_field.value))
            except InvalidText as exc:
                problem(roster_field, ProblemCode.TEXT_INVALID, exc.message)
                refused.add(roster_field)

    name = name_key(_as_text(cell(RosterField.NAME)))
    if not name:
        problem(RosterField.NAME, ProblemCode.NAME_MISSING, "姓名不能为空")
    elif len(name) > NAME_MAX_LENGTH:
        problem(RosterField.NAME, ProblemCode.NAME_TOO_LONG, f"姓名最长{NAME_MAX_LENGTH}个字符")

    gender_text = _choice_key(cell(RosterField.GENDER))
    gender = GENDER_VALUES.get(gender_text) if gender_text else None
    if gender_text and gender is None:
        problem(RosterField.GENDER, ProblemCode.GENDER_INVALID, "性别须填“男”或“女”")

    category_text = _choice_key(cell(RosterField.CATEGORY))
    category = CATEGORY_VALUES.get(category_text)
    if not category_text:
        problem(RosterField.CATEGORY, ProblemCode.CATEGORY_MISSING, "党员类别不能为空（正式党员或预备党员）")
    elif category is None:
        problem(RosterField.CATEGORY, ProblemCode.CATEGORY_INVALID, "党员类别须填“正式党员”或“预备党员”")

    branch_text = " ".join(_as_text(cell(RosterField.BRANCH)).split())
    branch_path = branch_path_keys(branch_text)
    if not branch_path:
        problem(RosterField.BRANCH, ProblemCode.BRANCH_MISSING, "所在支部不能为空")

    card_no = _card_no(cell(RosterField.CARD_NO), problem)
    uid = _uid(cell(RosterField.UID), problem)

    if found or category is None:
        problems.extend(found)
        return None
    return RosterRow(
        columns=columns,
        row=row,
        name=name,
        gender=gender,
        category=category,
        branch_text=branch_text,
        branch_path=branch_path,
        card_no=card_no,
        uid=uid,
    )


class _Report(Protocol):
    def __call__(self, roster_field: RosterField, code: ProblemCode, message: str) -> None: ...


def _card_no(value: Any, problem: _Report) -> str | None:
    if _is_blank(value):
        return None
    if isinstance(value, int | float):
        problem(
            RosterField.CARD_NO,
            ProblemCode.CARD_NO_NOT_TEXT,
            "易通卡号被 Excel 存成了数字，19位卡号的末几位已丢失；请把该列设为“文本”格式后重新填写",
        )
        return None
    try:
        return normalise_card_no(unicodedata.normalize("NFKC", _as_text(value)))
    except InvalidCardIdentifier:
        problem(RosterField.CARD_NO, ProblemCode.CARD_NO_INVALID, "易通卡号须为19位数字（可含空格）")
        return None


def _uid(value: Any, problem: _Report) -> str | None:
    if _is_blank(value):
        return None
    if isinstance(value, int | float):
        problem(
            RosterField.UID,
            ProblemCode.UID_NOT_TEXT,
            "UID 被 Excel 存成了数字（开头的0会丢失）；请把该列设为“文本”格式后重新填写",
        )
        return None
    try:
        return normalise_uid(unicodedata.normalize("NFKC", _as_text(value)))
    except InvalidCardIdentifier:
        problem(RosterField.UID, ProblemCode.UID_INVALID, "UID 须为6至20位十六进制字符")
        return None


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _choice_key(value: Any) -> str:
    return "".join(unicodedata.normalize("NFKC", _as_text(value)).split()).casefold()
