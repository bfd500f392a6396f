"""台账: an organisation's ledger for a year, quarter or month (events, cadence, participation),
and downloads (CSV/XLSX/PDF) of it, of an event's sign-in sheet and of a member's history, all
made by :func:`server.ledgers.render.render_ledger`, the same function the API and CLI use."""

from __future__ import annotations

from datetime import datetime, tzinfo
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from server.attendance.service import build_attendance_sheet
from server.config import ServerSettings
from server.deps import KeyringDep
from server.errors import ExportCodeNotFound, InvalidExportCode, OrganisationNotFound
from server.inputs import RowId
from server.ledgers.cadence import CadencePolicy
from server.ledgers.exports import export_ledger, verify_export
from server.ledgers.periods import Period, make_period, parse_period, period_containing
from server.ledgers.render import ExportFormat, RenderedLedger
from server.ledgers.routes import export_context
from server.ledgers.service import build_member_history, build_org_ledger
from server.records.orgs import Organisation
from server.vocabulary import Cadence
from server.web.deps import PageDep
from server.web.lookups import organisations_in_scope
from server.web.templating import render

router = APIRouter(prefix="/ledgers")

DOWNLOADS = (ExportFormat.XLSX, ExportFormat.PDF, ExportFormat.CSV)


def cadence_policy(settings: ServerSettings) -> CadencePolicy:
    return CadencePolicy(lecture=settings.lecture_cadence)


@router.get("")
def ledger_page(request: Request, ctx: PageDep, org: RowId | None = None, period: str = "") -> HTMLResponse:
    now, tz, caller = ctx.now, ctx.tz, ctx.caller
    organisations = organisations_in_scope(ctx.session, caller)
    org_id = (
        org if org is not None else caller.org_id if caller.org_id is not None else _first_id(organisations)
    )
    chosen = parse_period(period, tz) if period else period_containing(now, Cadence.YEARLY, tz)
    ledger = None
    if org_id is not None:
        ledger = build_org_ledger(
            ctx.session,
            org_id=org_id,
            period=chosen,
            caller=caller,
            now=now,
            tz=tz,
            policy=cadence_policy(ctx.settings),
        )
    return render(
        request,
        "ledgers/org.html",
        {
            "nav": "ledgers",
            "ledger": ledger,
            "organisations": organisations,
            "org_id": org_id,
            "period": chosen,
            "period_choices": _period_choices(now, tz),
            "downloads": DOWNLOADS,
        },
    )


@router.get("/verify")
def verify_page(request: Request, ctx: PageDep, code: str = "") -> HTMLResponse:
    """台账核验: type the code printed on an exported ledger; it is checked against the records
    (only exports of the caller's organisations are found)."""
    result, error, status = None, None, 200
    if code.strip():
        try:
            result = verify_export(ctx.session, code, caller=ctx.caller)
        except (ExportCodeNotFound, InvalidExportCode) as exc:
            # Shown on the page, beside the code typed, rather than as an error page.
            error, status = exc, exc.http_status
    context = {"nav": "ledgers", "code": code, "result": result, "error": error}
    return render(request, "ledgers/verify.html", context, status_code=status)


@router.get("/org/{org_id}/{period_key}.{fmt}")
def download_org_ledger(
    org_id: RowId, period_key: str, fmt: ExportFormat, ctx: PageDep, keyring: KeyringDep
) -> Response:
    ledger = build_org_ledger(
        ctx.session,
        org_id=org_id,
        period=parse_period(period_key, ctx.tz),
        caller=ctx.caller,
        now=ctx.now,
        tz=ctx.tz,
        policy=cadence_policy(ctx.settings),
    )
    return _download(export_ledger(ctx.session, ledger, fmt, context=export_context(ctx, keyring)))


@router.get("/events/{event_id}.{fmt}")
def download_sign_in_sheet(event_id: RowId, fmt: ExportFormat, ctx: PageDep, keyring: KeyringDep) -> Response:
    sheet = build_attendance_sheet(ctx.session, event_id=event_id, caller=ctx.caller, tz=ctx.tz)
    return _download(export_ledger(ctx.session, sheet, fmt, context=export_context(ctx, keyring)))


@router.get("/members/{member_id}.{fmt}")
def download_member_history(
    member_id: RowId, fmt: ExportFormat, ctx: PageDep, keyring: KeyringDep
) -> Response:
    history = build_member_history(
        ctx.session, member_id=member_id, period=None, caller=ctx.caller, now=ctx.now, tz=ctx.tz
    )
    return _download(export_ledger(ctx.session, history, fmt, context=export_context(ctx, keyring)))


def _download(rendered: RenderedLedger) -> Response:
    # RFC 6266/5987: browsers take the UTF-8 name; the ASCII one is for very old clients.
    ascii_name = rendered.filename.encode("ascii", "replace").decode().replace("?", "_")
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(rendered.filename)}"
    return Response(
        rendered.content, media_type=rendered.media_type, headers={"Content-Disposition": disposition}
    )


def _period_choices(now: datetime, tz: tzinfo) -> list[tuple[str, list[Period]]]:
    """This year and last, each as the year, its quarters and its months."""
    year = now.astimezone(tz).year
    groups: list[tuple[str, list[Period]]] = []
    for y in (year, year - 1):
        periods = [make_period(Cadence.YEARLY, y, 1, tz)]
        periods += [make_period(Cadence.QUARTERLY, y, q, tz) for q in range(1, 5)]
        periods += [make_period(Cadence.MONTHLY, y, m, tz) for m in range(1, 13)]
        groups.append((f"{y}年", periods))
    return groups


def _first_id(organisations: list[Organisation]) -> int:
    if not organisations or organisations[0].id is None:
        raise OrganisationNotFound("没有可查看的党组织")
    return organisations[0].id
