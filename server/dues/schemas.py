"""What a dues import reports: row problems with stable codes, and the counts of what it wrote."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

MAX_LISTED_PROBLEMS = 500  # a wholly wrong file would otherwise list every cell


class DuesProblemCode(StrEnum):
    """Why one row of a dues file was not taken; stable codes for scripts and the web UI."""

    TEXT_INVALID = "text_invalid"
    NAME_MISSING = "name_missing"
    NAME_TOO_LONG = "name_too_long"
    MONTH_MISSING = "month_missing"
    MONTH_INVALID = "month_invalid"
    MONTH_OUT_OF_RANGE = "month_out_of_range"
    AMOUNT_MISSING = "amount_missing"
    AMOUNT_INVALID = "amount_invalid"
    AMOUNT_TOO_LARGE = "amount_too_large"
    NOT_INCOMING = "not_incoming"  # a bank line paying out, or of zero
    DATE_MISSING = "date_missing"
    DATE_INVALID = "date_invalid"
    DATE_IN_FUTURE = "date_in_future"
    BRANCH_UNKNOWN = "branch_unknown"
    MEMBER_UNKNOWN = "member_unknown"
    MEMBER_AMBIGUOUS = "member_ambiguous"
    ROW_REPEATED = "row_repeated"  # the same member and month twice in one 收缴表


class DuesProblem(BaseModel):
    """One rejected row (or cell), located as the secretary sees it in Excel or the bank file."""

    sheet: str | None  # None for a CSV
    row: int
    column: str | None
    code: DuesProblemCode
    message: str


class DuesImportReport(BaseModel):
    """What an import did (or, with ``dry_run``, would do). Good rows are kept; each rejected row is
    listed. ``created`` + ``updated`` + ``unchanged`` count member-months; ``rows`` counts lines."""

    dry_run: bool
    source: str  # "xlsx" | "bank"
    rows: int
    accepted_rows: int
    rejected_rows: int
    created: int
    updated: int
    unchanged: int
    problems: list[DuesProblem]
    problems_truncated: bool = False
