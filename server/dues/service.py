"""Importing dues: a 党费收缴表 (.xlsx) or a bank statement (.csv), row by row.

Rules (what the secretary can rely on):

* **Good rows are kept.** Each bad row is reported with its row number, column, a stable code and a
  Chinese message; the other rows are written. Nothing is written on a dry run.
* **Names, never guesses.** A row names a member; it is matched among the *active* members of the
  importing organisation's subtree (``org_id``, else the caller's own organisation; the caller must
  see it). A name found nowhere there is ``member_unknown``, a name two members share is
  ``member_ambiguous`` (a 收缴表 may add 所在支部 to tell them apart); neither is guessed.
* **One row per member and month.** A 收缴表 row sets that month's 应交 and/or 实交 and 交纳日期
  (blank cells keep what is recorded). A bank line pays the months its 摘要 names (``2026年11月党费``,
  ``2026年9-11月党费``), split evenly, the odd fen on the first month; several lines for one
  member and month add up. The bank's total for a month *replaces* the recorded 实交, so importing
  the same statement again changes nothing.
* Audited as one entry per import; the service never commits.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Literal

from sqlalchemy import insert, update
from sqlmodel import Session, col, select

from server.audit.service import record
from server.caller import Caller
from server.db import in_chunks
from server.dues.reading import BankLine, DuesField, SheetRow, read_bank_csv, read_workbook
from server.dues.schemas import MAX_LISTED_PROBLEMS, DuesImportReport, DuesProblem, DuesProblemCode
from server.orgs.service import organisation_subtree_ids, require_visible_organisation
from server.records.dues import DuesMonth, DuesSource
from server.records.orgs import Member, Organisation
from server.roster.sheet import name_key, org_name_key
from server.vocabulary import MemberStatus, OrgKind

log = logging.getLogger(__name__)

DuesFileKind = Literal["xlsx", "bank"]


@dataclass(frozen=True)
class _Candidate:
    member_id: int
    org_id: int
    branch_keys: frozenset[str]  # its organisation's name, and for a 党小组 its branch's name


@dataclass
class _MonthChange:
    standard_fen: int | None
    paid_fen: int | None
    paid_on: date | None
    row: int


def import_dues(
    session: Session,
    *,
    data: bytes,
    kind: DuesFileKind,
    caller: Caller,
    org_id: int | None,
    now: datetime,
    tz: tzinfo,
    dry_run: bool = False,
) -> DuesImportReport:
    """Read a dues file and, unless ``dry_run``, write its good rows.

    Raises:
        DuesUnreadable: not a workbook / CSV, or its header cannot be found.
        OrganisationNotFound: ``org_id`` does not exist or is outside the caller's scope.
    """
    if org_id is not None:
        require_visible_organisation(session, org_id, caller=caller)
    root = org_id if org_id is not None else caller.org_id
    today = now.astimezone(tz).date()
    read = read_workbook(data, today=today) if kind == "xlsx" else read_bank_csv(data, today=today)
    in_scope = organisation_subtree_ids(session, root) if root is not None else None
    problems = list(read.problems)
    lines: Sequence[SheetRow | BankLine] = read.sheet_rows if kind == "xlsx" else read.bank_lines
    candidates = _candidates(session, {line.name for line in lines}, in_scope)
    sheet_rows: list[tuple[SheetRow, int]] = []
    bank_lines: list[tuple[BankLine, int]] = []
    for line in lines:
        member_id = _match(line, candidates.get(line.name, []), problems)
        if member_id is None:
            continue
        if isinstance(line, SheetRow):
            sheet_rows.append((line, member_id))
        else:
            bank_lines.append((line, member_id))
    changes = _sheet_changes(sheet_rows, problems) if kind == "xlsx" else _bank_changes(bank_lines)
    existing = _existing(session, changes.keys())
    inserts, updates, unchanged = _diff(changes, existing)
    problems.sort(key=lambda p: (p.sheet or "", p.row))
    rejected = len({(p.sheet, p.row) for p in problems})
    report = DuesImportReport(
        dry_run=dry_run,
        source=kind,
        rows=read.rows,
        accepted_rows=read.rows - rejected,
        rejected_rows=rejected,
        created=len(inserts),
        updated=len(updates),
        unchanged=unchanged,
        problems=problems[:MAX_LISTED_PROBLEMS],
        problems_truncated=len(problems) > MAX_LISTED_PROBLEMS,
    )
    if dry_run or not (inserts or updates):
        return report
    source = DuesSource.XLSX if kind == "xlsx" else DuesSource.BANK
    for chunk in in_chunks(inserts, 2000):
        session.exec(
            insert(DuesMonth), params=[{**row, "source": source, "updated_at": now} for row in chunk]
        )
    for chunk in in_chunks(updates, 2000):
        session.exec(
            update(DuesMonth), params=[{**row, "source": source, "updated_at": now} for row in chunk]
        )
    file_id = hashlib.sha256(data).hexdigest()[:16]
    record(
        session,
        actor=caller.actor,
        action="dues.import",
        object_type="dues_file",
        object_id=file_id,
        org_id=root,
        at=now,
        detail={
            "source": kind,
            "rows": report.rows,
            "rejected_rows": report.rejected_rows,
            "created": report.created,
            "updated": report.updated,
        },
    )
    session.flush()
    log.info(
        "dues imported (%s): %d rows, %d rejected, %d months written",
        kind,
        report.rows,
        rejected,
        len(inserts) + len(updates),
    )
    return report


# --- matching -------------------------------------------------------------------------------------


def _candidates(session: Session, names: set[str], in_scope: set[int] | None) -> dict[str, list[_Candidate]]:
    """Active members with these names inside the scope, by name."""
    rows: list[tuple[int, str, int]] = []
    for chunk in in_chunks(sorted(names), 2000):
        for member_id, name, org_id in session.exec(
            select(Member.id, Member.name, Member.org_id).where(
                col(Member.name).in_(chunk), Member.status == MemberStatus.ACTIVE
            )
        ).all():
            assert member_id is not None
            if in_scope is None or org_id in in_scope:
                rows.append((member_id, name, org_id))
    orgs = _org_names(session, {org_id for _, _, org_id in rows})
    found: dict[str, list[_Candidate]] = defaultdict(list)
    for member_id, name, org_id in sorted(rows):
        name_text, kind, parent_name = orgs.get(org_id, ("", OrgKind.BRANCH, None))
        keys = {org_name_key(name_text)}
        if kind == OrgKind.PARTY_GROUP and parent_name is not None:
            keys.add(org_name_key(parent_name))
        found[name_key(name)].append(
            _Candidate(member_id=member_id, org_id=org_id, branch_keys=frozenset(keys))
        )
    return found


def _org_names(session: Session, org_ids: set[int]) -> dict[int, tuple[str, OrgKind, str | None]]:
    found: dict[int, tuple[str, OrgKind, int | None]] = {}
    for chunk in in_chunks(sorted(org_ids)):
        for org_id, name, kind, parent_id in session.exec(
            select(Organisation.id, Organisation.name, Organisation.kind, Organisation.parent_id).where(
                col(Organisation.id).in_(chunk)
            )
        ).all():
            assert org_id is not None
            found[org_id] = (name, OrgKind(kind), parent_id)
    parents: dict[int, str] = {}
    parent_ids = {p for _, kind, p in found.values() if kind == OrgKind.PARTY_GROUP and p is not None}
    for chunk in in_chunks(sorted(parent_ids)):
        for org_id, name in session.exec(
            select(Organisation.id, Organisation.name).where(col(Organisation.id).in_(chunk))
        ).all():
            assert org_id is not None
            parents[org_id] = name
    return {
        org_id: (name, kind, parents.get(parent_id) if parent_id is not None else None)
        for org_id, (name, kind, parent_id) in found.items()
    }


def _match(
    line: SheetRow | BankLine, candidates: list[_Candidate], problems: list[DuesProblem]
) -> int | None:
    sheet = line.sheet if isinstance(line, SheetRow) else None
    column = line.column(DuesField.NAME)
    if isinstance(line, SheetRow) and line.branch_path is not None:
        branch_key = line.branch_path[-1]
        narrowed = [c for c in candidates if branch_key in c.branch_keys]
        if candidates and not narrowed:
            problems.append(
                DuesProblem(
                    sheet=sheet,
                    row=line.row,
                    column=line.column(DuesField.BRANCH),
                    code=DuesProblemCode.BRANCH_UNKNOWN,
                    message=f"“{line.name}”不在所填的支部中；请核对所在支部",
                )
            )
            return None
        candidates = narrowed
    if not candidates:
        problems.append(
            DuesProblem(
                sheet=sheet,
                row=line.row,
                column=column,
                code=DuesProblemCode.MEMBER_UNKNOWN,
                message=f"在您管理的党组织中没有名为“{line.name}”的在册党员；请核对姓名（银行户名须与党员姓名一致）",
            )
        )
        return None
    if len(candidates) > 1:
        hint = (
            "请在收缴表中填写“所在支部”以区分"
            if isinstance(line, SheetRow)
            else "请改用党费收缴表（可填写所在支部）录入"
        )
        problems.append(
            DuesProblem(
                sheet=sheet,
                row=line.row,
                column=column,
                code=DuesProblemCode.MEMBER_AMBIGUOUS,
                message=f"有{len(candidates)}名党员都叫“{line.name}”，无法确定是哪一位；{hint}",
            )
        )
        return None
    return candidates[0].member_id


# --- planning -------------------------------------------------------------------------------------


def _sheet_changes(
    matched: Iterable[tuple[SheetRow, int]], problems: list[DuesProblem]
) -> dict[tuple[int, str], _MonthChange]:
    changes: dict[tuple[int, str], _MonthChange] = {}
    first_row: dict[tuple[int, str], SheetRow] = {}
    for line, member_id in matched:
        key = (member_id, line.month)
        if key in first_row:
            earlier = first_row[key]
            where = (
                f"第{earlier.row}行"
                if earlier.sheet == line.sheet
                else f"工作表“{earlier.sheet}”第{earlier.row}行"
            )
            problems.append(
                DuesProblem(
                    sheet=line.sheet,
                    row=line.row,
                    column=line.column(DuesField.MONTH),
                    code=DuesProblemCode.ROW_REPEATED,
                    message=f"与{where}是同一名党员同一月份的党费；每人每月只填一行",
                )
            )
            continue
        first_row[key] = line
        changes[key] = _MonthChange(
            standard_fen=line.standard_fen, paid_fen=line.paid_fen, paid_on=line.paid_on, row=line.row
        )
    return changes


def _bank_changes(matched: Iterable[tuple[BankLine, int]]) -> dict[tuple[int, str], _MonthChange]:
    changes: dict[tuple[int, str], _MonthChange] = {}
    for line, member_id in matched:
        share, odd = divmod(line.amount_fen, len(line.months))
        for index, month in enumerate(line.months):
            amount = share + (odd if index == 0 else 0)
            key = (member_id, month)
            before = changes.get(key)
            if before is None:
                changes[key] = _MonthChange(
                    standard_fen=None, paid_fen=amount, paid_on=line.paid_on, row=line.row
                )
            else:
                before.paid_fen = (before.paid_fen or 0) + amount
                before.paid_on = max(before.paid_on or line.paid_on, line.paid_on)
    return changes


@dataclass(frozen=True)
class _Existing:
    id: int
    standard_fen: int | None
    paid_fen: int
    paid_on: date | None


def _existing(session: Session, keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], _Existing]:
    wanted = set(keys)
    found: dict[tuple[int, str], _Existing] = {}
    for chunk in in_chunks(sorted({member_id for member_id, _ in wanted})):
        for row in session.exec(select(DuesMonth).where(col(DuesMonth.member_id).in_(chunk))).all():
            key = (row.member_id, row.month)
            if key in wanted:
                assert row.id is not None
                found[key] = _Existing(row.id, row.standard_fen, row.paid_fen, row.paid_on)
    return found


def _diff(
    changes: dict[tuple[int, str], _MonthChange], existing: dict[tuple[int, str], _Existing]
) -> tuple[list[dict[str, object]], list[dict[str, object]], int]:
    inserts: list[dict[str, object]] = []
    updates: list[dict[str, object]] = []
    unchanged = 0
    for (member_id, month), change in sorted(changes.items()):
        before = existing.get((member_id, month))
        if before is None:
            inserts.append(
                {
                    "member_id": member_id,
                    "month": month,
                    "standard_fen": change.standard_fen,
                    "paid_fen": change.paid_fen or 0,
                    "paid_on": change.paid_on if change.paid_fen else None,
                }
            )
            continue
        standard = change.standard_fen if change.standard_fen is not None else before.standard_fen
        paid = change.paid_fen if change.paid_fen is not None else before.paid_fen
        paid_on = (
            (change.paid_on if change.paid_fen else None) if change.paid_fen is not None else before.paid_on
        )
        if (standard, paid, paid_on) == (before.standard_fen, before.paid_fen, before.paid_on):
            unchanged += 1
        else:
            updates.append({"id": before.id, "standard_fen": standard, "paid_fen": paid, "paid_on": paid_on})
    return inserts, updates, unchanged
