"""Stored reminders (督查督办): a subtree's reminders, the 督办 queue, acknowledge, send down."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Response

from server.deps import ReadRequestDep, RequestDep
from server.inputs import RowId
from server.ledgers.cadence import CadencePolicy
from server.supervision.overview import XLSX_MEDIA_TYPE, overview_xlsx, supervision_overview
from server.supervision.points import MemberPoints, PointsReport, member_points, points_report
from server.supervision.schemas import (
    ReminderHistoryOut,
    ReminderNote,
    ReminderOut,
    SendDownNote,
    SupervisionOverviewOut,
)
from server.supervision.service import acknowledge, history_of, reminders_of, send_down, supervision_queue
from server.vocabulary import ReminderState, RuleFamily

router = APIRouter(prefix="/api/v1", tags=["supervision"])


@router.get("/orgs/{org_id}/supervision/reminders")
def list_reminders(
    org_id: RowId,
    ctx: ReadRequestDep,
    state: Annotated[list[ReminderState] | None, Query(max_length=3)] = None,
    family: RuleFamily | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ReminderOut]:
    """The stored reminders of the organisation and everything below it (default: not resolved)."""
    rows = reminders_of(
        ctx.session,
        org_id=org_id,
        caller=ctx.caller,
        states=state or (ReminderState.OPEN, ReminderState.ACKNOWLEDGED),
        family=family,
        limit=limit,
        offset=offset,
    )
    return [ReminderOut.of(row, ctx.tz) for row in rows]


@router.get("/orgs/{org_id}/supervision/queue")
def list_queue(org_id: RowId, ctx: ReadRequestDep) -> list[ReminderOut]:
    """The 督办 queue: reminders escalated to this organisation or a committee below it."""
    return [
        ReminderOut.of(row, ctx.tz)
        for row in supervision_queue(ctx.session, org_id=org_id, caller=ctx.caller)
    ]


@router.get("/supervision/reminders/{reminder_id}/history")
def reminder_history(reminder_id: RowId, ctx: ReadRequestDep) -> list[ReminderHistoryOut]:
    return [
        ReminderHistoryOut.of(row, ctx.tz) for row in history_of(ctx.session, reminder_id, caller=ctx.caller)
    ]


@router.post("/supervision/reminders/{reminder_id}/acknowledge")
def acknowledge_reminder(reminder_id: RowId, body: ReminderNote, ctx: RequestDep) -> ReminderOut:
    """已知悉，整改中: the reminder stays until its condition clears, but is not escalated."""
    row = acknowledge(ctx.session, reminder_id, caller=ctx.caller, now=ctx.now, note=body.note)
    return ReminderOut.of(row, ctx.tz)


@router.post("/supervision/reminders/{reminder_id}/send-down")
def send_reminder_down(reminder_id: RowId, body: SendDownNote, ctx: RequestDep) -> ReminderOut:
    """The superior returns an escalated reminder to the organisation responsible, with a note."""
    row = send_down(ctx.session, reminder_id, caller=ctx.caller, now=ctx.now, note=body.note)
    return ReminderOut.of(row, ctx.tz)


@router.get("/orgs/{org_id}/supervision/overview", response_model=SupervisionOverviewOut)
def overview(
    org_id: RowId,
    ctx: ReadRequestDep,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    fmt: Annotated[Literal["json", "xlsx"], Query(alias="format")] = "json",
) -> Response:
    """The superior's view of the subtree: compliance per family, ranking of the organisations
    directly below, branches × months of missed meetings; ``format=xlsx`` for a workbook."""
    found = supervision_overview(
        ctx.session,
        org_id=org_id,
        caller=ctx.caller,
        year=year or ctx.year,
        now=ctx.now,
        tz=ctx.tz,
    )
    if fmt == "xlsx":
        filename, content = overview_xlsx(found)
        disposition = f"attachment; filename=\"overview.xlsx\"; filename*=UTF-8''{quote(filename)}"
        return Response(content, media_type=XLSX_MEDIA_TYPE, headers={"Content-Disposition": disposition})
    return Response(SupervisionOverviewOut.of(found).model_dump_json(), media_type="application/json")


@router.get("/orgs/{org_id}/points")
def organisation_points(
    org_id: RowId, ctx: ReadRequestDep, year: Annotated[int | None, Query(ge=2000, le=2100)] = None
) -> PointsReport:
    """积分 of every active member of the subtree and 星级 of every branch in it, for the year."""
    return points_report(
        ctx.session,
        org_id=org_id,
        caller=ctx.caller,
        year=year or ctx.year,
        now=ctx.now,
        tz=ctx.tz,
        rules=ctx.settings.points_rules,
        policy=CadencePolicy(lecture=ctx.settings.lecture_cadence),
    )


@router.get("/members/{member_id}/points")
def points_of_member(
    member_id: RowId, ctx: ReadRequestDep, year: Annotated[int | None, Query(ge=2000, le=2100)] = None
) -> MemberPoints:
    """One member's 积分 for the year, by what earned it."""
    return member_points(
        ctx.session,
        member_id=member_id,
        caller=ctx.caller,
        year=year or ctx.year,
        now=ctx.now,
        tz=ctx.tz,
        rules=ctx.settings.points_rules,
    )
