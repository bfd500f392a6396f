"""What the transfer services share: who the reviewer is, what they may see, and the reads every
view of a request needs (its current letter, ticked documents, checks) and its audit entries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session, col, select

from server.audit.service import Actor, record
from server.errors import OrganisationNotFound, TransferNotFound, TransferTransitionNotAllowed
from server.orgs.models import Member, Organisation
from server.orgs.service import organisation_subtree_ids
from server.transfers.checks import Applicant, Evaluation, evaluate
from server.transfers.kinds import DocumentKind
from server.transfers.models import IntroductionLetter, OrgRef, TransferDocument, TransferRequest
from server.transfers.states import PENDING_STATES, STATE_LABELS
from server.vocabulary import MemberCategory, OrgKind

OBJECT_TYPE = "transfer_request"
PLACEMENT_KINDS = frozenset(
    {OrgKind.BRANCH, OrgKind.JOINT_BRANCH, OrgKind.TEMPORARY_BRANCH, OrgKind.PARTY_GROUP}
)


@dataclass(frozen=True)
class Reviewer:
    """Who acts on requests: the audit actor, the organisation subtree they see (None: all), and
    whether their role may take committee-level actions."""

    actor: Actor
    org_id: int | None
    may_approve: bool = True


def scope_ids(session: Session, reviewer: Reviewer) -> set[int] | None:
    return None if reviewer.org_id is None else organisation_subtree_ids(session, reviewer.org_id)


def sees_org(session: Session, reviewer: Reviewer, org_id: int) -> bool:
    scope = scope_ids(session, reviewer)
    return scope is None or org_id in scope


def require_visible_org(session: Session, reviewer: Reviewer, org_id: int) -> None:
    if session.get(Organisation, org_id) is None or not sees_org(session, reviewer, org_id):
        raise OrganisationNotFound(f"党组织 {org_id} 不存在")


def may_act_for_committee(session: Session, reviewer: Reviewer, request: TransferRequest) -> bool:
    return reviewer.may_approve and sees_org(session, reviewer, request.committee_id)


def load_request(
    session: Session, request_id: int, reviewer: Reviewer, *, for_update: bool = False
) -> TransferRequest:
    query = select(TransferRequest).where(TransferRequest.id == request_id)
    if for_update:
        # Two reviewers acting at once: the second waits, then sees the first one's state.
        query = query.with_for_update()
    request = session.exec(query).first()
    scope = scope_ids(session, reviewer)
    if request is None or (
        scope is not None and request.to_org_id not in scope and request.placement_org_id not in scope
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
