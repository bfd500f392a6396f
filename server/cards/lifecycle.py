"""A card binding's life after it is bound: reported lost (挂失), replaced by a new card (补换),
revoked; the member's card history; and what a retired card's tap is told.

Bindings are never deleted: a retired one keeps its status and end time, so a found-again lost
card is refused with ``card_lost`` instead of looking unknown, and the history shows every card a
member had. Every change is audited.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_
from sqlmodel import Session, col, select

from server.audit.service import record
from server.caller import Caller
from server.cards.service import bind_card
from server.errors import BindingNotActive, CardBindingNotFound
from server.keyring import Keyring
from server.orgs.service import require_member, require_visible_member
from server.records.cards import CardBinding
from server.vocabulary import BindingStatus, RejectionCode

RETIRED_CARD_REJECTIONS: dict[BindingStatus, RejectionCode] = {
    BindingStatus.LOST: RejectionCode.CARD_LOST,
    BindingStatus.REPLACED: RejectionCode.CARD_REPLACED,
    BindingStatus.REVOKED: RejectionCode.CARD_REVOKED,
}


def require_binding(session: Session, binding_id: int, *, caller: Caller) -> CardBinding:
    """The binding, if its member is in the caller's scope. Raises CardBindingNotFound (also
    when outside it)."""
    binding = session.get(CardBinding, binding_id)
    if binding is None:
        raise CardBindingNotFound(f"卡绑定 {binding_id} 不存在")
    member = require_member(session, binding.member_id)
    if not caller.sees_org(member.org_id):
        raise CardBindingNotFound(f"卡绑定 {binding_id} 不存在")
    return binding


def report_card_lost(
    session: Session, *, binding_id: int, caller: Caller, now: datetime, reason: str = ""
) -> CardBinding:
    """挂失: from now on the card's taps are refused with ``card_lost``.

    Raises:
        CardBindingNotFound (also outside the caller's scope); BindingNotActive (already lost,
        replaced or revoked).
    """
    return _retire(
        session, binding_id, BindingStatus.LOST, "card.lost", caller=caller, now=now, reason=reason
    )


def revoke_card(
    session: Session, *, binding_id: int, caller: Caller, now: datetime, reason: str
) -> CardBinding:
    """Revoke a binding (consent withdrawn, member left): its taps are refused with ``card_revoked``.

    Raises:
        CardBindingNotFound (also outside the caller's scope); BindingNotActive.
    """
    return _retire(
        session, binding_id, BindingStatus.REVOKED, "card.revoke", caller=caller, now=now, reason=reason
    )


def replace_card(
    session: Session,
    *,
    keyring: Keyring,
    binding_id: int,
    card_no: str | None,
    uid: str | None,
    caller: Caller,
    now: datetime,
    issuer_mac: bool = False,
) -> CardBinding:
    """补换卡: bind a new card to the member of ``binding_id`` and retire the old one.

    An active old card becomes ``replaced``; a card already reported lost stays ``lost`` (if it
    turns up at a kiosk, that is worth knowing). Returns the new binding.

    Raises:
        CardBindingNotFound (also outside the caller's scope); BindingNotActive (the old binding
        was revoked or already replaced); InvalidCardIdentifier, CardAlreadyBound (the new card).
    """
    old = require_binding(session, binding_id, caller=caller)
    if old.status not in (BindingStatus.ACTIVE, BindingStatus.LOST):
        raise BindingNotActive("该卡已被补换或注销，不能再次补换")
    if old.status == BindingStatus.ACTIVE:
        old.status = BindingStatus.REPLACED
        old.ended_at = now
        session.add(old)
        # Retire first: the new card may share the old one's UID or number (a re-issued card).
        session.flush()
    new = bind_card(
        session,
        keyring=keyring,
        member_id=old.member_id,
        card_no=card_no,
        uid=uid,
        now=now,
        issuer_mac=issuer_mac,
    )
    member = require_member(session, old.member_id)
    record(
        session,
        actor=caller.actor,
        action="card.replace",
        object_type="card_binding",
        object_id=old.id or 0,
        org_id=member.org_id,
        at=now,
        detail={"member_id": old.member_id, "new_binding_id": new.id, "old_status": old.status.value},
    )
    return new


def card_history(session: Session, *, member_id: int, caller: Caller) -> list[CardBinding]:
    """Every card the member has had, newest first. Raises MemberNotFound (also outside the
    caller's scope)."""
    require_visible_member(session, member_id, caller=caller)
    return list(
        session.exec(
            select(CardBinding)
            .where(CardBinding.member_id == member_id)
            .order_by(col(CardBinding.bound_at).desc(), col(CardBinding.id).desc())
        ).all()
    )


def retired_card_rejection(
    session: Session, *, card_no_hmac: str | None, uid_hmac: str
) -> RejectionCode | None:
    """For a tapped card with no active binding: ``card_lost`` / ``card_replaced`` /
    ``card_revoked`` when it matches a retired binding (the latest one), else None."""
    matches = [col(CardBinding.uid_hmac) == uid_hmac]
    if card_no_hmac is not None:
        matches.append(col(CardBinding.card_no_hmac) == card_no_hmac)
    retired = session.exec(
        select(CardBinding)
        .where(CardBinding.status != BindingStatus.ACTIVE, or_(*matches))
        .order_by(col(CardBinding.ended_at).desc(), col(CardBinding.id).desc())
    ).first()
    if retired is None:
        return None
    return RETIRED_CARD_REJECTIONS.get(retired.status)


def _retire(
    session: Session,
    binding_id: int,
    status: BindingStatus,
    action: str,
    *,
    caller: Caller,
    now: datetime,
    reason: str,
) -> CardBinding:
    binding = require_binding(session, binding_id, caller=caller)
    if binding.status != BindingStatus.ACTIVE:
        raise BindingNotActive()
    binding.status = status
    binding.ended_at = now
    session.add(binding)
    member = require_member(session, binding.member_id)
    record(
        session,
        actor=caller.actor,
        action=action,
        object_type="card_binding",
        object_id=binding_id,
        org_id=member.org_id,
        at=now,
        reason=reason.strip()[:500],
        detail={"member_id": binding.member_id, "card": binding.card_no_masked or binding.uid_masked},
    )
    session.flush()
    return binding


def member_id_for_card_at(
    session: Session, *, card_no_hmac: str | None, uid_hmac: str | None, at: datetime
) -> int | None:
    """The member whose binding held this card at ``at`` (whatever its status now), or None.

    Used when a secretary assigns an old out-of-window tap: the card may have been replaced since.
    """
    matches = []
    if card_no_hmac is not None:
        matches.append(col(CardBinding.card_no_hmac) == card_no_hmac)
    if uid_hmac is not None:
        matches.append(col(CardBinding.uid_hmac) == uid_hmac)
    if not matches:
        return None
    binding = session.exec(
        select(CardBinding)
        .where(
            or_(*matches),
            col(CardBinding.bound_at) <= at,
            or_(col(CardBinding.ended_at).is_(None), col(CardBinding.ended_at) > at),
        )
        # A binding that records the card number is the stronger match (see cards.checks).
        .order_by(col(CardBinding.card_no_hmac).is_(None), col(CardBinding.id).desc())
    ).first()
    return binding.member_id if binding is not None else None
