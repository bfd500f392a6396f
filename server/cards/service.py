"""Binding cards to members, and finding the member behind a tapped card.

:func:`bind_member_card` is what a caller (API, web page, CLI) binds with: scoped and audited.
:func:`bind_card` is the storing step under it, shared with the paths that audit in their own
words (a 刷卡绑定 tap, 补换卡, a received transfer) and act for a kiosk rather than a caller.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_
from sqlmodel import Session, col, select

from schemas.messages import CardFacts
from server.audit.service import record
from server.caller import Caller
from server.cards.identifiers import card_no_digest, normalise_card_no, normalise_uid, uid_digest
from server.errors import CardAlreadyBound, InvalidCardIdentifier
from server.keyring import Keyring
from server.masking import mask_card_no, mask_uid
from server.orgs.service import require_member, require_visible_member
from server.records.cards import CardBinding
from server.records.orgs import Member
from server.vocabulary import BindingStatus, CardCheckLevel


def bind_member_card(
    session: Session,
    *,
    keyring: Keyring,
    member_id: int,
    card_no: str | None,
    uid: str | None,
    now: datetime,
    caller: Caller,
    issuer_mac: bool = False,
) -> CardBinding:
    """:func:`bind_card` for a caller: the member must be in their scope. Audited (``card.bind``,
    also when an identical binding already existed: the caller asked for it again).

    Raises:
        MemberNotFound: no such member, or outside the caller's scope.
        InvalidCardIdentifier, CardAlreadyBound: as :func:`bind_card`.
    """
    member = require_visible_member(session, member_id, caller=caller)
    binding = bind_card(
        session,
        keyring=keyring,
        member_id=member_id,
        card_no=card_no,
        uid=uid,
        now=now,
        issuer_mac=issuer_mac,
    )
    assert binding.id is not None
    record(
        session,
        actor=caller.actor,
        action="card.bind",
        object_type="card_binding",
        object_id=binding.id,
        org_id=member.org_id,
        at=now,
        detail={"member_id": member_id, "card": binding.card_no_masked or binding.uid_masked or ""},
    )
    return binding


def bind_card(
    session: Session,
    *,
    keyring: Keyring,
    member_id: int,
    card_no: str | None,
    uid: str | None,
    now: datetime,
    issuer_mac: bool = False,
) -> CardBinding:
    """Bind a card, given by its number, its UID or both, to a member.

    Binding the same identifiers to the same member again returns the existing binding, so
    scripts can be re-run. *issuer_mac* declares that the card answers the issuer's challenge
    (see ``server.cards.checks``): from then on a kiosk that asks and gets no valid answer has
    a clone in front of it. Cards that are not declared learn it from their first verified tap.

    The binding's ``verified_level`` is the evidence it is made with: ``issuer-mac`` declared,
    ``card-number`` when the number is given (it is printed on the card, and a kiosk that reads
    the card application reads it), else ``uid``. Reads below it are refused as downgrades where
    the kiosk could do better (``server.cards.checks``).

    Raises:
        MemberNotFound: no such member.
        InvalidCardIdentifier: neither identifier given, or one is malformed, or *issuer_mac*
            without a card number (the issuer knows its cards by number).
        CardAlreadyBound: an active binding of another member has this card number or UID.
    """
    require_member(session, member_id)
    if not card_no and not uid:
        raise InvalidCardIdentifier()
    if issuer_mac and not card_no:
        raise InvalidCardIdentifier("发卡机构认证须提供19位卡号")
    number = normalise_card_no(card_no) if card_no else None
    hex_uid = normalise_uid(uid) if uid else None
    number_digest = card_no_digest(keyring, number) if number else None
    uid_hmac = uid_digest(keyring, hex_uid) if hex_uid else None

    for existing in _active_bindings_matching(session, card_no_hmac=number_digest, uid_hmac=uid_hmac):
        if existing.member_id != member_id:
            raise CardAlreadyBound()
        if existing.card_no_hmac == number_digest and existing.uid_hmac == uid_hmac:
            if issuer_mac and existing.issuer_mac_since is None:
                existing.issuer_mac_since = now
                existing.verified_level = CardCheckLevel.ISSUER_MAC
                session.add(existing)
                session.flush()
            return existing
        raise CardAlreadyBound("该党员已有一张含相同卡号或UID的绑定，请先解绑")

    binding = CardBinding(
        member_id=member_id,
        card_no_hmac=number_digest,
        uid_hmac=uid_hmac,
        card_no_masked=mask_card_no(number) if number else None,
        uid_masked=mask_uid(hex_uid) if hex_uid else None,
        status=BindingStatus.ACTIVE,
        bound_at=now,
        issuer_mac_since=now if issuer_mac else None,
        verified_level=bind_level(card_no=number, issuer_mac=issuer_mac),
    )
    session.add(binding)
    session.flush()
    return binding


def bind_level(*, card_no: str | None, issuer_mac: bool) -> CardCheckLevel:
    """The level a card is verified at by the evidence it is bound with."""
    if issuer_mac:
        return CardCheckLevel.ISSUER_MAC
    return CardCheckLevel.CARD_NUMBER if card_no else CardCheckLevel.UID


def _active_bindings_matching(
    session: Session, *, card_no_hmac: str | None, uid_hmac: str | None
) -> list[CardBinding]:
    conditions = []
    if card_no_hmac:
        conditions.append(col(CardBinding.card_no_hmac) == card_no_hmac)
    if uid_hmac:
        conditions.append(col(CardBinding.uid_hmac) == uid_hmac)
    statement = select(CardBinding).where(CardBinding.status == BindingStatus.ACTIVE)
    return list(session.exec(statement.where(or_(*conditions))).all())


def find_bound_member(session: Session, *, card_no_hmac: str | None, uid_hmac: str) -> Member | None:
    """The member whose active binding matches the card, or None (a lookup, not a card check).

    Taps go through ``server.cards.checks.check_card`` instead, which also refuses identifiers
    that contradict the binding (a clone) and records how strongly the card was checked.

    By card number when the card reported one; else by UID. A card number is the stronger
    identifier (UIDs can be random per activation or cloned), so a binding that records a card
    number only matches on it. A card that reports a number can still match a UID-only binding,
    because operators may have bound it with a UID reader.
    """
    base = select(Member).join(CardBinding, col(CardBinding.member_id) == col(Member.id))
    base = base.where(CardBinding.status == BindingStatus.ACTIVE)
    if card_no_hmac:
        member = session.exec(base.where(col(CardBinding.card_no_hmac) == card_no_hmac)).first()
        if member is not None:
            return member
        return session.exec(
            base.where(col(CardBinding.card_no_hmac).is_(None), col(CardBinding.uid_hmac) == uid_hmac)
        ).first()
    return session.exec(base.where(col(CardBinding.uid_hmac) == uid_hmac)).first()


def card_digests(keyring: Keyring, card: CardFacts) -> tuple[str | None, str]:
    """(card-number digest or None, UID digest) for a tapped card."""
    number = card_no_digest(keyring, card.card_no) if card.card_no else None
    return number, uid_digest(keyring, card.uid)
