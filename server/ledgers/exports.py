"""Exported ledgers carry a verification code, and a code can be checked.

:func:`export_ledger` renders a CSV, XLSX or PDF file of a ledger, records the export
(``server.evidence.service.record_export``: the parameters to build it again, what it showed,
the chain heads then) and prints the code in the file (``server.ledgers.render``). JSON answers of
the API are not exports: they carry no code and are not recorded.

:func:`verify_export` (``ecard admin ledger verify FILE``, the web page 台账 › 核验) finds the
export by its code, builds the same ledger again now, with the same parameters and as of the same
time, and compares what it shows: ``match``, or ``changed`` with the rows that differ.
:func:`read_code` finds the code in a file.
"""

from __future__ import annotations

import difflib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlmodel import Session

from server.attendance.schemas import AttendanceSheet
from server.attendance.service import build_attendance_sheet
from server.caller import Caller
from server.errors import ExportCodeMissing, ExportCodeNotFound, InvalidExportCode
from server.evidence.service import (
    ExportRequest,
    canonical_json,
    content_digest,
    find_export,
    normalise_code,
    record_export,
)
from server.keyring import Keyring
from server.ledgers.cadence import CadencePolicy
from server.ledgers.documents import LedgerDocument
from server.ledgers.periods import parse_period
from server.ledgers.render import CODE_MARK, ExportFormat, Ledger, RenderedLedger, render_ledger, to_document
from server.ledgers.schemas import OrgLedger
from server.ledgers.service import build_member_history, build_org_ledger
from server.vocabulary import Cadence

_CODE = r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}"
_MARKED_CODE = re.compile(re.escape(CODE_MARK) + "(" + _CODE + ")")
MAX_CHANGES = 50


@dataclass(frozen=True)
class ExportContext:
    """Who exports, when, and the settings the ledger was built with."""

    keyring: Keyring
    caller: Caller
    now: datetime
    tz: ZoneInfo
    lecture_cadence: Cadence


def export_ledger(
    session: Session,
    ledger: Ledger,
    fmt: ExportFormat,
    *,
    context: ExportContext,
    as_of: datetime | None = None,
) -> RenderedLedger:
    """The ledger as a file; a CSV, XLSX or PDF file is recorded and carries its verification code.

    *as_of* is the time the ledger was built for (an organisation's ledger or a member's history
    depend on it; default ``context.now``).
    """
    if fmt == ExportFormat.JSON:
        return render_ledger(ledger, fmt)
    kind, org_id, parameters = _parameters(ledger, as_of or context.now, context)
    export = record_export(
        session,
        ExportRequest(
            kind=kind,
            fmt=fmt.value,
            org_id=org_id,
            parameters=parameters,
            content=document_content(to_document(ledger)),
        ),
        keyring=context.keyring,
        caller=context.caller,
        now=context.now,
    )
    return render_ledger(ledger, fmt, code=export.code)


def _parameters(ledger: Ledger, as_of: datetime, context: ExportContext) -> tuple[str, int, dict[str, Any]]:
    common = {
        "as_of": as_of.isoformat(),
        "tz": context.tz.key,
        "lecture_cadence": context.lecture_cadence.value,
    }
    if isinstance(ledger, AttendanceSheet):
        return "sheet", ledger.event.organisation.id, {"event_id": ledger.event.id, **common}
    if isinstance(ledger, OrgLedger):
        org = ledger.organisation.id
        return "org", org, {"org_id": org, "period": ledger.period.key, **common}
    period = ledger.period.key if ledger.period is not None else None
    return "member", ledger.organisation.id, {"member_id": ledger.member_id, "period": period, **common}


def document_content(document: LedgerDocument) -> dict[str, Any]:
    """What a ledger document shows, as JSON (the code and the file format aside)."""
    content: dict[str, Any] = json.loads(
        canonical_json(
            {
                "title": document.title,
                "facts": [list(fact) for fact in document.facts],
                "sections": [
                    {"title": section.title, "columns": section.columns, "rows": section.rows}
                    for section in document.sections
                ],
                "signatures": document.signatures,
            }
        )
    )
    return content


def rebuild_ledger(session: Session, kind: str, parameters: dict[str, Any], *, caller: Caller) -> Ledger:
    """The ledger an export showed, built again from the database now."""
    tz = ZoneInfo(parameters["tz"])
    as_of = datetime.fromisoformat(parameters["as_of"])
    if kind == "sheet":
        return build_attendance_sheet(session, event_id=parameters["event_id"], caller=caller, tz=tz)
    if kind == "org":
        return build_org_ledger(
            session,
            org_id=parameters["org_id"],
            period=parse_period(parameters["period"], tz),
            caller=caller,
            now=as_of,
            tz=tz,
            policy=CadencePolicy(lecture=Cadence(parameters["lecture_cadence"])),
        )
    period = parameters.get("period")
    return build_member_history(
        session,
        member_id=parameters["member_id"],
        period=parse_period(period, tz) if period else None,
        caller=caller,
        now=as_of,
        tz=tz,
    )


class ExportChange(BaseModel):
    """One difference between the export and the ledger now: a fact or a row of a section."""

    section: str
    change: str  # changed, added, removed
    before: list[Any] | None = None
    after: list[Any] | None = None


class ExportVerification(BaseModel):
    code: str
    status: str  # match | changed
    kind: str
    fmt: str
    title: str
    parameters: dict[str, Any]
    exported_at: datetime
    exported_by: str
    exported_by_name: str
    content_digest: str
    content_digest_now: str
    changes: list[ExportChange]
    more_changes: int = 0

    @property
    def matches(self) -> bool:
        return self.status == "match"


def verify_export(session: Session, code: str, *, caller: Caller) -> ExportVerification:
    """Check an export by its code: the same ledger built again now, compared with what it showed.

    Raises:
        InvalidExportCode: *code* is not a code's shape.
        ExportCodeNotFound: no export has it, or the caller may not see its organisation.
    """
    if normalise_code(code) is None:
        raise InvalidExportCode()
    export = find_export(session, code, caller=caller)
    if export is None:
        raise ExportCodeNotFound()
    parameters = json.loads(export.parameters)
    then = json.loads(export.content)
    now = document_content(to_document(rebuild_ledger(session, export.kind, parameters, caller=caller)))
    digest_now = content_digest(now)
    changes = [] if digest_now == export.content_digest else diff_content(then, now)
    parameters.pop("salt", None)
    return ExportVerification(
        code=export.code,
        status="match" if digest_now == export.content_digest else "changed",
        kind=export.kind,
        fmt=export.fmt,
        title=str(then.get("title", "")),
        parameters=parameters,
        exported_at=export.exported_at,
        exported_by=export.exported_by,
        exported_by_name=export.exported_by_name,
        content_digest=export.content_digest,
        content_digest_now=digest_now,
        changes=changes[:MAX_CHANGES],
        more_changes=max(0, len(changes) - MAX_CHANGES),
    )


def diff_content(then: dict[str, Any], now: dict[str, Any]) -> list[ExportChange]:
    """The facts and rows that differ, section by section (sections matched by title)."""
    facts_now = {str(name): value for name, value in now.get("facts", [])}
    changes = [
        ExportChange(
            section="概况",
            change="changed" if str(name) in facts_now else "removed",
            before=[name, value],
            after=[name, facts_now[str(name)]] if str(name) in facts_now else None,
        )
        for name, value in then.get("facts", [])
        if facts_now.get(str(name)) != value
    ]
    if then.get("title") != now.get("title"):
        changes.insert(
            0,
            ExportChange(
                section="标题", change="changed", before=[then.get("title")], after=[now.get("title")]
            ),
        )
    sections_now = {s["title"]: s for s in now.get("sections", [])}
    seen = set()
    for section in then.get("sections", []):
        seen.add(section["title"])
        current = sections_now.get(section["title"], {"rows": []})
        changes += _diff_rows(section["title"], section["rows"], current["rows"])
    for title, section in sections_now.items():
        if title not in seen:
            changes += _diff_rows(title, [], section["rows"])
    return changes


def _diff_rows(section: str, before: list[list[Any]], after: list[list[Any]]) -> list[ExportChange]:
    """Rows matched by their key (the first two text cells: a name, a date and title), so that a
    row that moved or was renumbered is one change, not two; in order otherwise."""
    keys_before, keys_after = [_row_key(row) for row in before], [_row_key(row) for row in after]
    if len(set(keys_before)) == len(keys_before) and len(set(keys_after)) == len(keys_after):
        now = dict(zip(keys_after, after, strict=True))
        changes: list[ExportChange] = []
        for key, row in zip(keys_before, before, strict=True):
            if key not in now:
                changes.append(ExportChange(section=section, change="removed", before=row))
            elif _row_body(now[key]) != _row_body(row):
                changes.append(ExportChange(section=section, change="changed", before=row, after=now[key]))
        known = set(keys_before)
        changes += [
            ExportChange(section=section, change="added", after=row)
            for key, row in zip(keys_after, after, strict=True)
            if key not in known
        ]
        return changes
    return _diff_in_order(section, before, after)


def _row_key(row: list[Any]) -> tuple[str, ...]:
    return tuple(cell for cell in row if isinstance(cell, str))[:2]


def _row_body(row: list[Any]) -> list[Any]:
    # A leading number is the row's 编号 (or an id): it follows the order, not the facts.
    return row[1:] if row and isinstance(row[0], int) else row


def _diff_in_order(section: str, before: list[list[Any]], after: list[list[Any]]) -> list[ExportChange]:
    keys_before = [canonical_json(row) for row in before]
    keys_after = [canonical_json(row) for row in after]
    changes: list[ExportChange] = []
    matcher = difflib.SequenceMatcher(a=keys_before, b=keys_after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        old, new = before[i1:i2], after[j1:j2]
        for index in range(max(len(old), len(new))):
            a = old[index] if index < len(old) else None
            b = new[index] if index < len(new) else None
            kind = "changed" if a is not None and b is not None else ("removed" if b is None else "added")
            changes.append(ExportChange(section=section, change=kind, before=a, after=b))
    return changes


def read_code(data: bytes) -> str:
    """The verification code in an exported PDF (document info, else the page text), XLSX
    (document properties) or CSV (last line) file.

    Raises:
        ExportCodeMissing: none found.
    """
    text = ""
    if data.startswith(b"%PDF"):
        text = data.decode("latin-1")
    elif data.startswith(b"PK"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                text = archive.read("docProps/core.xml").decode("utf-8", "replace")
        except (zipfile.BadZipFile, KeyError):
            text = ""
    else:
        text = data.decode("utf-8-sig", "replace")
    found = _MARKED_CODE.findall(text)
    if not found:
        raise ExportCodeMissing()
    return str(found[-1])
