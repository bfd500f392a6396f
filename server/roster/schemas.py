"""What a roster import reports: the problem codes, and the report returned by the API and the CLI."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from server.vocabulary import MemberCategory

MAX_LISTED_NEW_MEMBERS = 2000  # a city roster adds 250,000: the counts say how many, the list shows a start


class ProblemCode(StrEnum):
    """Why a roster (or one of its rows) was refused; stable codes for scripts and the web UI."""

    # the workbook as a whole
    HEADER_NOT_FOUND = "header_not_found"
    COLUMN_MISSING = "column_missing"
    COLUMN_REPEATED = "column_repeated"
    ROSTER_EMPTY = "roster_empty"
    # one cell
    NAME_MISSING = "name_missing"
    NAME_TOO_LONG = "name_too_long"
    GENDER_INVALID = "gender_invalid"
    CATEGORY_MISSING = "category_missing"
    CATEGORY_INVALID = "category_invalid"
    BRANCH_MISSING = "branch_missing"
    BRANCH_UNKNOWN = "branch_unknown"
    BRANCH_AMBIGUOUS = "branch_ambiguous"
    BRANCH_NOT_A_BRANCH = "branch_not_a_branch"
    CARD_NO_NOT_TEXT = "card_no_not_text"
    CARD_NO_INVALID = "card_no_invalid"
    UID_NOT_TEXT = "uid_not_text"
    UID_INVALID = "uid_invalid"
    TEXT_INVALID = "text_invalid"  # a character no text may hold (NUL, a control character)
    # a row against other rows, or against the database
    CARD_REPEATED = "card_repeated"
    MEMBER_REPEATED = "member_repeated"
    CARD_BOUND_ELSEWHERE = "card_bound_elsewhere"
    MEMBER_IN_OTHER_BRANCH = "member_in_other_branch"
    MEMBER_AMBIGUOUS = "member_ambiguous"
    MEMBER_INACTIVE = "member_inactive"


class RosterProblem(BaseModel):
    """One error, located as the secretary sees it in Excel: sheet, row number and column header."""

    sheet: str | None
    row: int | None  # None: about the workbook or a whole column
    column: str | None  # the header as written in the file (or the expected name, when missing)
    code: ProblemCode
    message: str


class NewMember(BaseModel):
    """A row that adds a member: where it is in the file, and who it adds where."""

    sheet: str
    row: int
    name: str
    branch: str  # the organisation's name as the system has it
    category: MemberCategory


class MemberUpdate(BaseModel):
    """An existing member the import changes: which row, and the fields that change."""

    sheet: str
    row: int
    member_id: int
    name: str
    changed: list[str]  # "gender", "category", "card"


class RosterReport(BaseModel):
    """What an import did (or, with ``dry_run``, would do). Rows = created + updated + unchanged."""

    dry_run: bool
    sheets: list[str]
    ignored_sheets: list[str]  # no 姓名 header in their first rows (instructions, statistics)
    ignored_columns: list[str]  # headers the import does not use (序号, 民族, 身份证号 …): never stored
    rows: int
    created: int
    updated: int
    unchanged: int
    cards_bound: int
    updates: list[MemberUpdate]
    # The rows that add members, in file order (the first MAX_LISTED_NEW_MEMBERS; ``created`` counts all).
    new_members: list[NewMember] = []
