"""党员与卡: search members, see a member's cards, bind a card by its number, report one lost."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from server.audit.service import record
from server.cards.lifecycle import card_history, report_card_lost, require_binding
from server.cards.models import CardBinding
from server.cards.service import bind_card
from server.deps import ClockDep, KeyringDep, SessionDep
from server.errors import CardBindingNotFound, MemberNotFound
from server.ledgers.labels import CATEGORY_LABELS, STATUS_LABELS
from server.orgs.models import Member
from server.orgs.service import require_member
from server.users.service import WebUser
from server.vocabulary import BindingStatus
from server.web.deps import CurrentUser, ensure_visible
from server.web.lookups import members_in_scope, organisation_names
from server.web.templating import redirect, render

router = APIRouter(prefix="/members")

BINDING_LABELS = {
    BindingStatus.ACTIVE: ("在用", "green"),
    BindingStatus.LOST: ("已挂失", "red"),
    BindingStatus.REPLACED: ("已补换", ""),
    BindingStatus.REVOKED: ("已注销", ""),
}


@router.get("")
def member_list(request: Request, session: SessionDep, viewer: CurrentUser, q: str = "") -> HTMLResponse:
    members = members_in_scope(session, viewer, search=q[:50])
    ids = [m.id for m in members if m.id is not None]
    return render(
        request,
        "members/list.html",
        {
            "nav": "members",
            "members": members,
            "q": q[:50],
            "cards": _active_cards(session, ids),
            "org_names": organisation_names(session, {m.org_id for m in members}),
            "category_labels": CATEGORY_LABELS,
            "status_labels": STATUS_LABELS,
        },
    )


@router.get("/{member_id}")
def member_detail(member_id: int, request: Request, session: SessionDep, viewer: CurrentUser) -> HTMLResponse:
    member = _visible_member(session, viewer, member_id)
    return render(
        request,
        "members/detail.html",
        {
            "nav": "members",
            "member": member,
            "org_name": organisation_names(session, {member.org_id}).get(member.org_id, ""),
            "history": card_history(session, member_id=member_id),
            "binding_labels": BINDING_LABELS,
            "category_labels": CATEGORY_LABELS,
            "status_labels": STATUS_LABELS,
        },
    )


@router.post("/{member_id}/cards")
def bind_member_card(
    member_id: int,
    request: Request,
    session: SessionDep,
    keyring: KeyringDep,
    clock: ClockDep,
    viewer: CurrentUser,
    card_no: Annotated[str, Form(max_length=40)] = "",
    uid: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    member = _visible_member(session, viewer, member_id)
    now = clock()
    binding = bind_card(
        session, keyring=keyring, member_id=member_id, card_no=card_no or None, uid=uid or None, now=now
    )
    assert binding.id is not None
    shown = binding.card_no_masked or binding.uid_masked or ""
    record(
        session,
        actor=viewer.actor,
        action="card.bind",
        object_type="card_binding",
        object_id=binding.id,
        org_id=member.org_id,
        at=now,
        detail={"member_id": member_id, "card": shown},
    )
    return redirect(request, f"/web/members/{member_id}", toast=f"已为{member.name}绑定卡 {shown}")


@router.post("/{member_id}/cards/{binding_id}/lost")
def report_lost(
    member_id: int,
    binding_id: int,
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    viewer: CurrentUser,
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    member = _visible_member(session, viewer, member_id)
    binding: CardBinding = require_binding(session, binding_id)
    if binding.member_id != member_id:
        raise CardBindingNotFound(f"卡绑定 {binding_id} 不存在")
    report_card_lost(session, binding_id=binding_id, actor=viewer.actor, now=clock(), reason=reason)
    shown = binding.card_no_masked or binding.uid_masked or ""
    return redirect(
        request, f"/web/members/{member_id}", toast=f"已挂失{member.name}的卡 {shown}，该卡刷卡将被拒绝"
    )


def _visible_member(session: Session, viewer: WebUser, member_id: int) -> Member:
    member = require_member(session, member_id)
    ensure_visible(viewer, member.org_id, MemberNotFound(f"党员 {member_id} 不存在"))
    return member


def _active_cards(session: Session, member_ids: list[int]) -> dict[int, CardBinding]:
    if not member_ids:
        return {}
    rows = session.exec(
        select(CardBinding).where(
            col(CardBinding.member_id).in_(member_ids), CardBinding.status == BindingStatus.ACTIVE
        )
    ).all()
    return {row.member_id: row for row in rows}
