"""督查督办: the reminders of the caller's organisations, the 督办 queue, and the superior's view.

A secretary sees the branch's reminders and acknowledges them (已知悉，整改中); a 党委 sees, in
addition, the reminders escalated to it (and sends them down with a note), how its branches stand
per family, the months they missed meetings in, and their stars. Everything comes from
``server.supervision``; scope is the services'.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from server.errors import OrgRequired
from server.inputs import RowId
from server.labels import REMINDER_LEVEL_LABELS, REMINDER_STATE_LABELS, RULE_FAMILY_LABELS
from server.ledgers.cadence import CadencePolicy
from server.orgs.service import organisation_names, top_organisations
from server.supervision.overview import XLSX_MEDIA_TYPE, overview_xlsx, supervision_overview
from server.supervision.points import points_report
from server.supervision.service import acknowledge, reminders_of, send_down, supervision_queue
from server.vocabulary import ReminderLevel, RuleFamily
from server.web.deps import PageDep
from server.web.templating import redirect, render

router = APIRouter(prefix="/supervision")

LEVEL_BADGES = {ReminderLevel.NOTICE: "blue", ReminderLevel.WARNING: "amber", ReminderLevel.ALERT: "red"}
SHOWN = 200


def _org_of(ctx: PageDep, org: int | None) -> int | None:
    """The organisation asked for, else the caller's, else (an administrator) the only top one;
    None when an administrator must choose among several."""
    if org is not None:
        return org
    if ctx.caller.org_id is not None:
        return ctx.caller.org_id
    tops = top_organisations(ctx.session)
    return tops[0] if len(tops) == 1 else None


@router.get("")
def supervision_page(
    request: Request,
    ctx: PageDep,
    org: Annotated[RowId | None, Query()] = None,
    family: RuleFamily | None = None,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> HTMLResponse:
    org_id = _org_of(ctx, org)
    if org_id is None:
        tops = top_organisations(ctx.session)
        return render(
            request,
            "supervision/choose.html",
            {"nav": "supervision", "tops": organisation_names(ctx.session, tops)},
        )
    the_year = year or ctx.year
    overview = supervision_overview(
        ctx.session, org_id=org_id, caller=ctx.caller, year=the_year, now=ctx.now, tz=ctx.tz
    )
    reminders = reminders_of(ctx.session, org_id=org_id, caller=ctx.caller, family=family, limit=SHOWN)
    queue = supervision_queue(ctx.session, org_id=org_id, caller=ctx.caller)
    stars = points_report(
        ctx.session,
        org_id=org_id,
        caller=ctx.caller,
        year=the_year,
        now=ctx.now,
        tz=ctx.tz,
        rules=ctx.settings.points_rules,
        policy=CadencePolicy(lecture=ctx.settings.lecture_cadence),
    ).organisations
    names = organisation_names(ctx.session, {r.org_id for r in [*reminders, *queue]})
    return render(
        request,
        "supervision/index.html",
        {
            "nav": "supervision",
            "org_id": org_id,
            "family": family,
            "overview": overview,
            "reminders": reminders,
            "queue": queue,
            "stars": stars,
            "names": names,
            "families": list(RuleFamily),
            "family_labels": RULE_FAMILY_LABELS,
            "level_labels": REMINDER_LEVEL_LABELS,
            "level_badges": LEVEL_BADGES,
            "state_labels": REMINDER_STATE_LABELS,
            "shown": SHOWN,
        },
    )


@router.get("/export.xlsx")
def supervision_export(
    ctx: PageDep,
    org: Annotated[RowId | None, Query()] = None,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> Response:
    org_id = _org_of(ctx, org)
    if org_id is None:
        raise OrgRequired("请先选择党组织")
    overview = supervision_overview(
        ctx.session,
        org_id=org_id,
        caller=ctx.caller,
        year=year or ctx.year,
        now=ctx.now,
        tz=ctx.tz,
    )
    filename, content = overview_xlsx(overview)
    disposition = f"attachment; filename=\"overview.xlsx\"; filename*=UTF-8''{quote(filename)}"
    return Response(content, media_type=XLSX_MEDIA_TYPE, headers={"Content-Disposition": disposition})


@router.post("/reminders/{reminder_id}/acknowledge")
def acknowledge_reminder(
    reminder_id: RowId,
    request: Request,
    ctx: PageDep,
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    row = acknowledge(ctx.session, reminder_id, caller=ctx.caller, now=ctx.now, note=note)
    return redirect(request, f"/web/supervision?org={row.org_id}", toast="已知悉，请抓紧整改")


@router.post("/reminders/{reminder_id}/send-down")
def send_reminder_down(
    reminder_id: RowId,
    request: Request,
    ctx: PageDep,
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    send_down(ctx.session, reminder_id, caller=ctx.caller, now=ctx.now, note=note)
    return redirect(request, "/web/supervision", toast="已转回责任组织办理")
