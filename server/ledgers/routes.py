"""Ledger endpoints: an event's sign-in sheet (签到表), an organisation's ledger for a period and a
member's history, each as JSON or a file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from server.attendance.schemas import AttendanceSheet
from server.attendance.service import build_attendance_sheet
from server.deps import (
    BearerDep,
    KeyringDep,
    RequestContext,
    RequestDep,
    open_request_context,
    sqlite_write_turn,
)
from server.inputs import RowId
from server.keyring import Keyring
from server.ledgers.cadence import CadencePolicy
from server.ledgers.exports import ExportContext, ExportVerification, verify_export
from server.ledgers.http import FormatQuery, ledger_response
from server.ledgers.periods import parse_period
from server.ledgers.render import ExportFormat
from server.ledgers.schemas import MemberHistory, OrgLedger
from server.ledgers.service import build_member_history, build_org_ledger

router = APIRouter(prefix="/api/v1", tags=["ledgers"])

PeriodQuery = Annotated[str, Query(description="2026 (year), 2026-Q3 (quarter) or 2026-07 (month)")]


async def export_write_turn(request: Request, fmt: FormatQuery = ExportFormat.JSON) -> AsyncIterator[None]:
    """:func:`~server.deps.write_turn` for a file, which is registered for verification (a write)."""
    if fmt == ExportFormat.JSON:
        yield
        return
    async with sqlite_write_turn(request):
        yield


def ledger_request_context(
    request: Request,
    credentials: BearerDep,
    _turn: Annotated[None, Depends(export_write_turn, scope="function")],
    fmt: FormatQuery = ExportFormat.JSON,
) -> Iterator[RequestContext]:
    # JSON only reads; a file is registered for verification (a ledger_export row), a write.
    yield from open_request_context(request, credentials, reads_only=fmt == ExportFormat.JSON)


LedgerRequestDep = Annotated[RequestContext, Depends(ledger_request_context, scope="function")]


@router.get("/events/{event_id}/attendance", response_model=AttendanceSheet)
def event_attendance(
    event_id: RowId, ctx: LedgerRequestDep, keyring: KeyringDep, fmt: FormatQuery = ExportFormat.JSON
) -> Response:
    """The event's sign-in sheet: 应到/实到/请假/缺席 (正式/预备), 签到/签退 times, quorum."""
    sheet = build_attendance_sheet(ctx.session, event_id=event_id, caller=ctx.caller, tz=ctx.tz)
    return ledger_response(ctx.session, sheet, fmt, context=export_context(ctx, keyring))


@router.get("/orgs/{org_id}/ledger", response_model=OrgLedger)
def org_ledger(
    org_id: RowId,
    period: PeriodQuery,
    ctx: LedgerRequestDep,
    keyring: KeyringDep,
    fmt: FormatQuery = ExportFormat.JSON,
) -> Response:
    """The organisation's ledger: events with counts and rates, 三会一课 compliance, participation."""
    ledger = build_org_ledger(
        ctx.session,
        org_id=org_id,
        period=parse_period(period, ctx.tz),
        caller=ctx.caller,
        now=ctx.now,
        tz=ctx.tz,
        policy=CadencePolicy(lecture=ctx.settings.lecture_cadence),
    )
    return ledger_response(ctx.session, ledger, fmt, context=export_context(ctx, keyring))


@router.get("/members/{member_id}/history", response_model=MemberHistory)
def member_history(
    member_id: RowId,
    ctx: LedgerRequestDep,
    keyring: KeyringDep,
    period: Annotated[str | None, Query(description="Optional: 2026, 2026-Q3 or 2026-07")] = None,
    fmt: FormatQuery = ExportFormat.JSON,
) -> Response:
    """A member's history: memberships, cards, events (present, absent, leave), exemptions."""
    history = build_member_history(
        ctx.session,
        member_id=member_id,
        period=parse_period(period, ctx.tz) if period else None,
        caller=ctx.caller,
        now=ctx.now,
        tz=ctx.tz,
    )
    return ledger_response(ctx.session, history, fmt, context=export_context(ctx, keyring))


@router.get("/ledger-exports/{code}", response_model=ExportVerification)
def verify_ledger_export(code: str, ctx: RequestDep) -> ExportVerification:
    """Check an exported ledger by its verification code: ``match``, or ``changed`` with the rows."""
    return verify_export(ctx.session, code, caller=ctx.caller)


def export_context(ctx: RequestContext, keyring: Keyring) -> ExportContext:
    """Who exports and when, for the code printed on a CSV, XLSX or PDF export."""
    return ExportContext(
        keyring=keyring,
        caller=ctx.caller,
        now=ctx.now,
        tz=ctx.settings.tz,
        lecture_cadence=ctx.settings.lecture_cadence,
    )
