"""Ledger endpoints: an organisation's ledger for a period and a member's history, as JSON or a file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from server.deps import ClockDep, PrincipalDep, SessionDep, SettingsDep
from server.ledgers.cadence import CadencePolicy
from server.ledgers.http import FormatQuery, ledger_response
from server.ledgers.models import MemberHistory, OrgLedger
from server.ledgers.periods import parse_period
from server.ledgers.render import ExportFormat
from server.ledgers.service import build_member_history, build_org_ledger

router = APIRouter(prefix="/api/v1", tags=["ledgers"])

PeriodQuery = Annotated[str, Query(description="2026 (year), 2026-Q3 (quarter) or 2026-07 (month)")]


@router.get("/orgs/{org_id}/ledger", response_model=OrgLedger)
def org_ledger(
    org_id: int,
    period: PeriodQuery,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    clock: ClockDep,
    fmt: FormatQuery = ExportFormat.JSON,
) -> Response:
    """The organisation's ledger: events with counts and rates, 三会一课 compliance, participation."""
    ledger = build_org_ledger(
        session,
        org_id=org_id,
        period=parse_period(period, settings.tz),
        viewer=principal,
        now=clock(),
        tz=settings.tz,
        policy=CadencePolicy(lecture=settings.lecture_cadence),
    )
    return ledger_response(ledger, fmt)


@router.get("/members/{member_id}/history", response_model=MemberHistory)
def member_history(
    member_id: int,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    clock: ClockDep,
    period: Annotated[str | None, Query(description="Optional: 2026, 2026-Q3 or 2026-07")] = None,
    fmt: FormatQuery = ExportFormat.JSON,
) -> Response:
    """A member's history: memberships, cards, events (present, absent, leave), exemptions."""
    history = build_member_history(
        session,
        member_id=member_id,
        period=parse_period(period, settings.tz) if period else None,
        viewer=principal,
        now=clock(),
        tz=settings.tz,
    )
    return ledger_response(history, fmt)
