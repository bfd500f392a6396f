"""What the transfer services share: what a caller may see and do, and the reads every view of a
request needs (its current letter, ticked documents, checks) and its audit entries."""

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
from server.transfers.states import PENDING_STATES, STATE_LABELS
from server.vocabulary import MemberCategory, OrgKind

OBJECT_TYPE = "transfer_request"
PLACEMENT_KINDS = frozenset(
    {OrgKind.BRANCH, OrgKind.JOINT_BRANCH, OrgKind.TEMPORARY_BRANCH, OrgKind.PARTY_GROUP}
)


def may_act_for_committee(caller: Caller, request: TransferRequest) -> bool:
    """Committee-level actions: a role that may approve, with the receiving 基层党委 in scope."""
    return caller.may_approve and caller.sees_org(request.committee_id)


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
    if request is None or not caller.scope.sees_any(
        org_id for org_id in (request.to_org_id, request.placement_org_id) if org_id is not None
    ):
        raise TransferNotFound(f"转入申请 {request_id} 不存在")
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
) -> None:
    assert request.id is not None
    record(
        session,
        actor=actor,
        action=action,
        object_type=OBJECT_TYPE,
        object_id=request.id,
        # The placement branch once known, so its secretary's audit view shows the request.
        org_id=request.placement_org_id or request.to_org_id,
        at=at,
        reason=reason[:500],
        detail=detail,
    )
