"""What the transfer services share: what a caller may see and do, and the reads every view of a
request needs (its current letter, ticked documents, checks) and its audit entries.

A request has two halves. The receiving side (``to_org_id``, ``placement_org_id``) works the
request; the member's own organisation (``from_org_id``, between organisations) sees the outgoing
request and releases or refuses. :func:`load_request` and :func:`load_outgoing` are the two ways
in; :func:`may_take` says who stands at which level of the state table; :func:`identity_hidden`
says whether the receiving side may know who the member is yet.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Session, col, select

from server.audit.service import record
from server.caller import Actor, Caller
from server.errors import TransferNotFound, TransferTransitionNotAllowed
from server.records.orgs import Member, Organisation
from server.records.transfers import DocumentKind, IntroductionLetter, TransferDocument, TransferRequest
from server.transfers.checks import Applicant, Evaluation, evaluate
from server.transfers.schemas import OrgRef
from server.transfers.states import PENDING_STATES, STATE_LABELS, Level
from server.vocabulary import MemberCategory, OrgKind

OBJECT_TYPE = "transfer_request"
PLACEMENT_KINDS = frozenset(
    {OrgKind.BRANCH, OrgKind.JOINT_BRANCH, OrgKind.TEMPORARY_BRANCH, OrgKind.PARTY_GROUP}
)


def may_act_for_committee(caller: Caller, request: TransferRequest) -> bool:
    """Committee-level actions: a role that may approve, with the receiving 基层党委 in scope."""
    return caller.may_approve and caller.sees_org(request.committee_id)


def sees_receiving_side(caller: Caller, request: TransferRequest) -> bool:
    return caller.scope.sees_any(
        org_id for org_id in (request.to_org_id, request.placement_org_id) if org_id is not None
    )


def sees_source_side(caller: Caller, request: TransferRequest) -> bool:
    return request.from_org_id is not None and caller.sees_org(request.from_org_id)


def may_take(level: Level, caller: Caller, request: TransferRequest) -> bool:
    """Whether ``caller`` stands at ``level`` for this request: the one place levels are decided."""
    if level == Level.BRANCH:
        return sees_receiving_side(caller, request)
    if level == Level.COMMITTEE:
        return sees_receiving_side(caller, request) and may_act_for_committee(caller, request)
    if level == Level.SOURCE_BRANCH:
        return sees_source_side(caller, request)
    if level == Level.SOURCE_COMMITTEE:
        return (
            sees_source_side(caller, request)
            and caller.may_approve
            and request.from_committee_id is not None
            and caller.sees_org(request.from_committee_id)
        )
    return False  # SYSTEM: never a person


def identity_hidden(caller: Caller, request: TransferRequest, member: Member | None) -> bool:
    """Whether the receiving side must not yet learn who the applicant is (name, home organisation,
    category, member id): a member of an organisation outside the caller's scope, not yet released
    by it. A card number typed on a form is no consent; the release (or the holder's tap) is."""
    return member is not None and request.released_at is None and not caller.sees_org(member.org_id)


def load_request(
    session: Session, request_id: int, caller: Caller, *, for_update: bool = False
) -> TransferRequest:
    """The request, if its receiving organisation or placement branch is in the caller's scope.
    Raises TransferNotFound (also outside it)."""
    query = select(TransferRequest).where(TransferRequest.id == request_id)
    if for_update:
        # Two reviewers acting at once: the second waits, then sees the first one's state.
        query = query.with_for_update()
    request = session.exec(query).first()
    if request is None or not sees_receiving_side(caller, request):
        raise TransferNotFound(f"转入申请 {request_id} 不存在")
    return request


def load_outgoing(
    session: Session, request_id: int, caller: Caller, *, for_update: bool = False
) -> TransferRequest:
    """A request for a member of the caller's subtree to move elsewhere (the outgoing half).
    Raises TransferNotFound (also for a request that needed nobody's release)."""
    query = select(TransferRequest).where(TransferRequest.id == request_id)
    if for_update:
        query = query.with_for_update()
    request = session.exec(query).first()
    if request is None or not sees_source_side(caller, request):
        raise TransferNotFound(f"转出申请 {request_id} 不存在")
    return request


def require_pending(request: TransferRequest, what: str) -> None:
    if request.state not in PENDING_STATES:
        raise TransferTransitionNotAllowed(f"转入申请当前为「{STATE_LABELS[request.state]}」，不能{what}")


def org_ref(organisation: Organisation) -> OrgRef:
    assert organisation.id is not None
    return OrgRef(id=organisation.id, name=organisation.name)


def ticked_documents(session: Session, request: TransferRequest) -> set[DocumentKind]:
    kinds = session.exec(select(TransferDocument.kind).where(TransferDocument.request_id == request.id)).all()
    return {DocumentKind(kind) for kind in kinds}


def current_letter(session: Session, request: TransferRequest) -> IntroductionLetter | None:
    return session.exec(
        select(IntroductionLetter).where(
            IntroductionLetter.request_id == request.id, col(IntroductionLetter.superseded_at).is_(None)
        )
    ).first()


def evaluate_request(
    session: Session,
    request: TransferRequest,
    letter: IntroductionLetter | None,
    today: date,
    *,
    member: Member | None = None,
) -> Evaluation:
    if member is None and request.member_id is not None:
        member = session.get(Member, request.member_id)
    return evaluate(
        applicant=applicant_of(request, letter, member),
        letter=letter,
        probation_due_on=request.probation_due_on,
        ticked=ticked_documents(session, request),
        today=today,
    )


def applicant_of(
    request: TransferRequest, letter: IntroductionLetter | None, member: Member | None
) -> Applicant:
    return Applicant(
        name=member.name if member is not None else request.claimed_name,
        member_status=member.status if member is not None else None,
        category=letter.member_category
        if letter is not None
        else member.category
        if member is not None
        else None,
    )


def is_probationary(letter: IntroductionLetter | None, member: Member | None) -> bool:
    category = (
        letter.member_category if letter is not None else member.category if member is not None else None
    )
    return category == MemberCategory.PROBATIONARY


def audit_request(
    session: Session,
    request: TransferRequest,
    *,
    actor: Actor,
    action: str,
    at: datetime,
    reason: str = "",
    detail: dict[str, object] | None = None,
    source_side: bool = False,
) -> None:
    assert request.id is not None
    record(
        session,
        actor=actor,
        action=action,
        object_type=OBJECT_TYPE,
        object_id=request.id,
        # The placement branch once known, so its secretary's audit view shows the request; the
        # member's own organisation for what it decided (its audit view, not the receiving side's).
        org_id=request.from_org_id
        if source_side and request.from_org_id is not None
        else request.placement_org_id or request.to_org_id,
        at=at,
        reason=reason[:500],
        detail=detail,
    )
