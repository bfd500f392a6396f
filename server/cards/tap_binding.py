"""刷卡绑定 (binding a card by tap): a secretary starts a bind request for a member; the next tap at
a kiosk in enrol mode binds that card. Not to be confused with a kiosk's enrollment (registering
the kiosk device's key, ``server.kiosks.service.enroll_kiosk``). The stored names keep the word
"enrol" (table ``enrol_session``, tap mode ``enrol``): they are stored and wire values.

Which kiosk's tap counts: a kiosk the request was pinned to, or else any kiosk whose venue's
organisation contains the member's organisation (a committee's meeting room serves its branches).
When several requests wait at one kiosk, a tap cannot know whose card it is: it is refused
(``enrol_ambiguous``) rather than guessed, unless exactly one of them is pinned to that kiosk.

A request waits for ``enrol_session_ttl`` (server setting, default five minutes); an enrol-mode
tap must both happen and arrive while it waits, so a tap stored offline for hours does not bind
a card to a request started later. Enrol taps never count as attendance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, or_, select

from schemas.messages import CardFacts
from server.audit.service import record
from server.caller import Actor, Caller
from server.cards.schemas import EnrolSessionPublic
from server.cards.service import bind_card
from server.errors import (
    CardAlreadyBound,
    EnrolSessionClosed,
    EnrolSessionNotFound,
    KioskNotFound,
)
from server.keyring import Keyring
from server.masking import mask_name
from server.orgs.service import organisation_subtree_ids, require_visible_member
from server.records.kiosks import EnrolSession, EnrolSessionState, Kiosk
from server.records.orgs import Member
from server.venues.service import venue_org_id
from server.vocabulary import EnrolSessionStatus, KioskStatus, RejectionCode

PROBLEM_MESSAGES: dict[RejectionCode, str] = {
    RejectionCode.CARD_ALREADY_BOUND: "刚才刷的卡已绑定到其他党员",
    RejectionCode.ENROL_AMBIGUOUS: "有多个绑卡请求同时等待，无法判断刚才的卡属于谁",
}


@dataclass(frozen=True)
class EnrolOutcome:
    """What an enrol-mode tap did: bound a card (``member_name`` masked) or was refused (``rejection``)."""

    rejection: RejectionCode | None = None
    member_name: str | None = None
    binding_id: int | None = None


def start_enrol_session(
    session: Session,
    *,
    member_id: int,
    kiosk_id: str | None,
    caller: Caller,
    now: datetime,
    ttl: timedelta,
) -> EnrolSessionPublic:
    """Wait for the member's card at a kiosk in enrol mode; the member's earlier waiting request ends.

    Raises:
        MemberNotFound: no such member within the caller's scope.
        KioskNotFound: *kiosk_id* is given but is not an active kiosk within the caller's scope.
    """
    member = require_visible_member(session, member_id, caller=caller)
    if kiosk_id is not None:
        kiosk = session.get(Kiosk, kiosk_id)
        if (
            kiosk is None
            or kiosk.status != KioskStatus.ACTIVE
            or not caller.sees_org(venue_org_id(session, kiosk.venue_id))
        ):
            raise KioskNotFound(f"终端 {kiosk_id} 不存在或未启用")
    for earlier in session.exec(
        select(EnrolSession).where(
            EnrolSession.member_id == member_id, EnrolSession.status == EnrolSessionStatus.PENDING
        )
    ).all():
        earlier.status = EnrolSessionStatus.CANCELLED
        earlier.finished_at = now
        session.add(earlier)
    enrol = EnrolSession(
        member_id=member_id,
        org_id=member.org_id,
        kiosk_id=kiosk_id,
        status=EnrolSessionStatus.PENDING,
        started_by=caller.actor.ref,
        started_by_name=caller.actor.name,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(enrol)
    session.flush()
    assert enrol.id is not None
    record(
        session,
        actor=caller.actor,
        action="enrol_session.start",
        object_type="member",
        object_id=member_id,
        org_id=member.org_id,
        at=now,
        detail={"enrol_session_id": enrol.id, "kiosk_id": kiosk_id},
    )
    return enrol_session_public(enrol, now=now)


def cancel_enrol_session(
    session: Session, *, enrol_session_id: int, caller: Caller, now: datetime
) -> EnrolSessionPublic:
    """Stop waiting for a card.

    Raises:
        EnrolSessionNotFound: no such request within the caller's scope.
        EnrolSessionClosed: it already bound a card, was cancelled or expired.
    """
    enrol = _visible_session(session, enrol_session_id, caller, lock=True)
    if session_state(enrol, now=now) != EnrolSessionState.PENDING:
        raise EnrolSessionClosed()
    enrol.status = EnrolSessionStatus.CANCELLED
    enrol.finished_at = now
    session.add(enrol)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="enrol_session.cancel",
        object_type="member",
        object_id=enrol.member_id,
        org_id=enrol.org_id,
        at=now,
        detail={"enrol_session_id": enrol_session_id},
    )
    return enrol_session_public(enrol, now=now)


def read_enrol_session(
    session: Session, *, enrol_session_id: int, now: datetime, caller: Caller
) -> EnrolSessionPublic:
    """A request's state (what the waiting page polls). Raises EnrolSessionNotFound."""
    return enrol_session_public(_visible_session(session, enrol_session_id, caller), now=now)


def bind_card_from_tap(
    session: Session,
    *,
    keyring: Keyring,
    kiosk: Kiosk,
    card: CardFacts,
    occurred_at: datetime,
    received_at: datetime,
    max_clock_skew: timedelta,
) -> EnrolOutcome:
    """Offer an enrol-mode tap to the bind request waiting at *kiosk* (see the module docstring)."""
    kiosk_org_id = venue_org_id(session, kiosk.venue_id)
    waiting = session.exec(
        select(EnrolSession)
        .where(
            EnrolSession.status == EnrolSessionStatus.PENDING,
            col(EnrolSession.expires_at) > received_at,
            col(EnrolSession.created_at) <= occurred_at + max_clock_skew,
            col(EnrolSession.org_id).in_(organisation_subtree_ids(session, kiosk_org_id)),
            or_(col(EnrolSession.kiosk_id).is_(None), col(EnrolSession.kiosk_id) == kiosk.id),
        )
        .order_by(col(EnrolSession.id))
        .with_for_update()
    ).all()
    pinned = [enrol for enrol in waiting if enrol.kiosk_id == kiosk.id]
    candidates = pinned or list(waiting)
    if not candidates:
        return EnrolOutcome(rejection=RejectionCode.NO_ENROL_SESSION)
    if len(candidates) > 1:
        for enrol in candidates:
            _note_problem(session, enrol, RejectionCode.ENROL_AMBIGUOUS)
        return EnrolOutcome(rejection=RejectionCode.ENROL_AMBIGUOUS)
    enrol = candidates[0]

    member = session.get(Member, enrol.member_id)
    assert member is not None  # foreign key
    try:
        binding = bind_card(
            session,
            keyring=keyring,
            member_id=enrol.member_id,
            card_no=card.card_no,
            uid=card.uid,
            now=received_at,
        )
    except CardAlreadyBound:
        _note_problem(session, enrol, RejectionCode.CARD_ALREADY_BOUND)
        return EnrolOutcome(rejection=RejectionCode.CARD_ALREADY_BOUND)
    assert binding.id is not None
    enrol.status = EnrolSessionStatus.BOUND
    enrol.finished_at = received_at
    enrol.binding_id = binding.id
    enrol.bound_kiosk_id = kiosk.id
    enrol.card_masked = binding.card_no_masked or binding.uid_masked
    enrol.last_problem = None
    session.add(enrol)
    session.flush()
    record(
        session,
        actor=Actor(enrol.started_by, enrol.started_by_name),
        action="card.bind",
        object_type="member",
        object_id=enrol.member_id,
        org_id=member.org_id,
        at=received_at,
        reason="刷卡绑定",
        detail={
            "binding_id": binding.id,
            "card": enrol.card_masked,
            "enrol_session_id": enrol.id,
            "kiosk_id": kiosk.id,
        },
    )
    return EnrolOutcome(member_name=mask_name(member.name), binding_id=binding.id)


def session_state(enrol: EnrolSession, *, now: datetime) -> EnrolSessionState:
    if enrol.status == EnrolSessionStatus.PENDING and now >= enrol.expires_at:
        return EnrolSessionState.EXPIRED
    return EnrolSessionState(enrol.status.value)


def enrol_session_public(enrol: EnrolSession, *, now: datetime) -> EnrolSessionPublic:
    assert enrol.id is not None
    problem = RejectionCode(enrol.last_problem) if enrol.last_problem else None
    return EnrolSessionPublic(
        id=enrol.id,
        member_id=enrol.member_id,
        kiosk_id=enrol.kiosk_id,
        state=session_state(enrol, now=now),
        created_at=enrol.created_at,
        expires_at=enrol.expires_at,
        finished_at=enrol.finished_at,
        card_masked=enrol.card_masked,
        last_problem=problem.value if problem else None,
        last_problem_message=PROBLEM_MESSAGES.get(problem) if problem else None,
    )


def _note_problem(session: Session, enrol: EnrolSession, code: RejectionCode) -> None:
    # The waiting page shows why the tap it was expecting did not bind.
    enrol.last_problem = code.value
    session.add(enrol)
    session.flush()


def _visible_session(
    session: Session, enrol_session_id: int, caller: Caller, *, lock: bool = False
) -> EnrolSession:
    query = select(EnrolSession).where(EnrolSession.id == enrol_session_id)
    enrol = session.exec(query.with_for_update() if lock else query).first()
    if enrol is None or not caller.sees_org(enrol.org_id):
        raise EnrolSessionNotFound()
    return enrol
