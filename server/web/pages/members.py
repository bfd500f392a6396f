"""党员与卡: search members, see a member's cards, bind a card by its number, report one lost;
download the member list (XLSX)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from server.attendance.derive import bind_member_card_counting
from server.cards.lifecycle import card_history, report_card_lost, require_binding
from server.deps import KeyringDep
from server.errors import CardBindingNotFound
from server.inputs import RowId
from server.labels import CATEGORY_LABELS, STATUS_LABELS
from server.limits import limit_card_lookup
from server.orgs.membership import in_organisation_since
from server.orgs.service import organisation_names, require_visible_member
from server.records.cards import CardBinding
from server.roster.export import XLSX_MEDIA_TYPE, export_member_list
from server.supervision.points import member_points
from server.vocabulary import BindingStatus
from server.web.deps import PageDep
from server.web.lookups import members_in_scope
from server.web.templating import redirect, render

router = APIRouter(prefix="/members")

BINDING_LABELS = {
    BindingStatus.ACTIVE: ("在用", "green"),
    BindingStatus.LOST: ("已挂失", "red"),
    BindingStatus.REPLACED: ("已补换", ""),
    BindingStatus.REVOKED: ("已注销", ""),
}


@router.get("")
def member_list(request: Request, ctx: PageDep, q: str = "") -> HTMLResponse:
    members = members_in_scope(ctx.session, ctx.caller, search=q[:50])
    ids = [m.id for m in members if m.id is not None]
    return render(
        request,
        "members/list.html",
        {
            "nav": "members",
            "members": members,
            "q": q[:50],
            "cards": _active_cards(ctx.session, ids),
            "org_names": organisation_names(ctx.session, {m.org_id for m in members}),
            "category_labels": CATEGORY_LABELS,
            "status_labels": STATUS_LABELS,
        },
    )


@router.get("/export.xlsx")
def member_list_download(ctx: PageDep) -> Response:
    """The caller's members as 党员名单-<organisation>-<date>.xlsx (no card identifiers)."""
    exported = export_member_list(ctx.session, caller=ctx.caller, now=ctx.now, tz=ctx.tz)
    # RFC 6266/5987: browsers take the UTF-8 name; the ASCII one is for very old clients.
    disposition = f"attachment; filename=\"members.xlsx\"; filename*=UTF-8''{quote(exported.filename)}"
    return Response(
        exported.content, media_type=XLSX_MEDIA_TYPE, headers={"Content-Disposition": disposition}
    )


@router.get("/{member_id}")
def member_detail(member_id: RowId, request: Request, ctx: PageDep) -> HTMLResponse:
    member = require_visible_member(ctx.session, member_id, caller=ctx.caller)
    year = ctx.year
    return render(
        request,
        "members/detail.html",
        {
            "nav": "members",
            "member": member,
            "org_name": organisation_names(ctx.session, {member.org_id}).get(member.org_id, ""),
            "in_org_since": in_organisation_since(ctx.session, member),
            "history": card_history(ctx.session, member_id=member_id, caller=ctx.caller),
            "points_year": year,
            "points": member_points(
                ctx.session,
                member_id=member_id,
                caller=ctx.caller,
                year=year,
                now=ctx.now,
                tz=ctx.tz,
                rules=ctx.settings.points_rules,
            ),
            "binding_labels": BINDING_LABELS,
            "category_labels": CATEGORY_LABELS,
            "status_labels": STATUS_LABELS,
        },
    )


@router.post("/{member_id}/cards")
def bind_member_card_page(
    member_id: RowId,
    request: Request,
    ctx: PageDep,
    keyring: KeyringDep,
    card_no: Annotated[str, Form(max_length=40)] = "",
    uid: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    # card_already_bound says a number is someone's card: a lookup, limited like the others.
    limit_card_lookup(request, ctx.caller)
    binding = bind_member_card_counting(
        ctx.session,
        keyring=keyring,
        member_id=member_id,
        card_no=card_no or None,
        uid=uid or None,
        now=ctx.now,
        caller=ctx.caller,
    )
    member = require_visible_member(ctx.session, member_id, caller=ctx.caller)
    shown = binding.card_no_masked or binding.uid_masked or ""
    return redirect(request, f"/web/members/{member_id}", toast=f"已为{member.name}绑定卡 {shown}")


@router.post("/{member_id}/cards/{binding_id}/lost")
def report_lost(
    member_id: RowId,
    binding_id: RowId,
    request: Request,
    ctx: PageDep,
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    member = require_visible_member(ctx.session, member_id, caller=ctx.caller)
    binding = require_binding(ctx.session, binding_id, caller=ctx.caller)
    if binding.member_id != member_id:  # the URL names another member's card
        raise CardBindingNotFound(f"卡绑定 {binding_id} 不存在")
    report_card_lost(ctx.session, binding_id=binding_id, caller=ctx.caller, now=ctx.now, reason=reason)
    shown = binding.card_no_masked or binding.uid_masked or ""
    return redirect(
        request, f"/web/members/{member_id}", toast=f"已挂失{member.name}的卡 {shown}，该卡刷卡将被拒绝"
    )


def _active_cards(session: Session, member_ids: list[int]) -> dict[int, CardBinding]:
    if not member_ids:
        return {}
    rows = session.exec(
        select(CardBinding).where(
            col(CardBinding.member_id).in_(member_ids), CardBinding.status == BindingStatus.ACTIVE
        )
    ).all()
    return {row.member_id: row for row in rows}
