"""组织关系转入 requests: filing, details, documents, transitions and receiving the member (the
writes; reading the queue and a request is :mod:`server.transfers.queue`).

Every change goes through one unit of work with its audit entry (``server.audit.service.record``),
so a transition and its record land together or not at all. The state table is in
:mod:`server.transfers.states`; every state change goes through :func:`_apply`.

Where requests come from:

* a kiosk in transfer-in mode (:func:`check_tap_filing` + :func:`file_from_tap`, called by tap
  ingest): at the venue's organisation, with the tap as evidence; an unknown card files for an
  unknown person keyed by the card's digests; a pending request for the same person there is
  referred to instead of duplicated;
* the API or the web form (:func:`create_request`), with the 介绍信 fields;
* a guest's check-ins (``queue.list_suggestions``, :func:`file_from_suggestion`). A member of
  another organisation who taps in *check-in* mode is recorded as a guest (their organisational
  life counts, docs/domain-rules.md §1.4) and no request is opened by itself: a 流动党员 may attend here for
  years without wanting to move, and a transfer starts with the member's own application. The
  kiosk's configured mode says what a tap means. Guests who keep coming are listed for the
  secretary, who can file a request for them in one step, with the latest tap as evidence.

Between organisations (docs/transfers.md): when the applicant is a current member of an
organisation the filer cannot see, or outside the receiving 基层党委, the request starts in
``awaiting_source`` and the member's own organisation releases it (:func:`decide_release`: their
branch agrees, their 基层党委 releases) before the receiving side may review and receive. Until then
the receiving side learns nothing about who it is: a card number typed on a form gets the same
answer whether it is bound to someone elsewhere or to nobody (for a card nobody holds, the holder's
own tap at a kiosk of the receiving venue confirms it, :func:`confirm_from_tap`).

Who may do what: a request is visible to a caller whose scope holds its receiving organisation
or its placement branch; actions of level ``committee`` also need the receiving 基层党委 in the
scope and ``caller.may_approve`` (organiser or admin on the web; any token on the API, whose
scope alone decides). The outgoing half is visible to a caller whose scope holds the member's
organisation (``access.load_outgoing``); :func:`server.transfers.access.may_take` decides levels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from enum import StrEnum

from sqlalchemy import or_
from sqlmodel import Session, col, select

from server.audit.service import record
from server.caller import Actor, Caller
from server.cards.identifiers import card_no_digest, normalise_card_no
from server.errors import (
    AlreadyMember,
    ApplicantNameRequired,
    InvalidPlacement,
    LetterIssuerNotCommittee,
    MemberNotFound,
    OrganisationNotFound,
    PlacementRequired,
    ReasonRequired,
    TransferAlreadyPending,
    TransferCardTaken,
    TransferCureMissing,
    TransferLevelForbidden,
    TransferReleaseRequired,
    TransferTransitionNotAllowed,
)
from server.inputs import clean_text
from server.keyring import Keyring
from server.masking import mask_card_no
from server.orgs.membership import change_member_category, change_member_status, move_member
from server.orgs.service import (
    add_member,
    organisation_subtree_ids,
    require_organisation,
    require_visible_organisation,
)
from server.records.attendance import Attendance
from server.records.cards import CardBinding
from server.records.events import Event
from server.records.orgs import Member, Organisation
from server.records.transfers import (
    DocumentKind,
    IntroductionLetter,
    TransferAction,
    TransferDocument,
    TransferRequest,
    TransferSource,
    TransferState,
)
from server.transfers.access import (
    PLACEMENT_KINDS,
    audit_request,
    current_letter,
    evaluate_request,
    identity_hidden,
    load_outgoing,
    load_request,
    may_take,
    require_pending,
    ticked_documents,
)
from server.transfers.calendar import TransferPolicy
from server.transfers.checks import letter_lapsed, letter_valid_until, overdue_cured
from server.transfers.kinds import AUTHORISED_ISSUERS
from server.transfers.schemas import LetterIn, TransferCreate, TransferUpdate
from server.transfers.states import (
    ALLOWED,
    PENDING_STATES,
    SOURCE_LEVELS,
    SOURCE_STATES,
    Level,
    Rule,
    rule_for,
)
from server.vocabulary import BindingStatus, MemberStatus, OrgKind

SYSTEM_ACTOR = Actor("system", "系统")
# Forward actions run only when no check blocks (what the reviewer sees is what stops them).
GUARDED_ACTIONS = frozenset(
    {TransferAction.BRANCH_ACCEPT, TransferAction.COMMITTEE_APPROVE, TransferAction.RECEIVE}
)
DEFAULT_REASONS = {
    TransferAction.BRANCH_ACCEPT: "支部同意接收",
    TransferAction.COMMITTEE_APPROVE: "党委审批通过",
    TransferAction.RECEIVE: "已接收入支部",
    TransferAction.CLOSE: "回执已寄回原基层党委",
    TransferAction.RESUBMIT: "已补正，重新提交",
    TransferAction.SOURCE_AGREE: "支部同意转出",
    TransferAction.RELEASE: "党委同意转出",
}
# Members of an organisation now; a member who transferred out of our tree or left is nobody's.
CURRENT_STATUSES = frozenset({MemberStatus.ACTIVE, MemberStatus.SUSPENDED})


class TapFiling(StrEnum):
    """What a transfer-in tap does."""

    FILED = "filed"  # a new request
    PENDING = "pending"  # refers to the person's pending request at this organisation
    ALREADY_MEMBER = "already_member"  # nothing to transfer: they belong here


# --- filing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Consent:
    """How a new request starts: whose consent it waits for, and whether the receiving side may
    see who the applicant is from the start (``released``)."""

    state: TransferState
    from_org_id: int | None = None
    from_committee_id: int | None = None
    released: bool = False


def _consent(
    session: Session,
    member: Member | None,
    *,
    committee_id: int,
    filer_sees: Callable[[int], bool],
    holder_present: bool,
) -> _Consent:
    """Whose consent a request for ``member`` needs before the receiving side may review it.

    * A person unknown to the system: nobody's, when they are present (their tap) or named by the
      filer; a card number typed by the filer waits for the holder's own tap (``confirm_by_tap``),
      exactly like the card of a member elsewhere would wait for their organisation.
    * A member the filer can see, inside the receiving 基层党委: a move within one committee, which
      the committee itself approves and receives.
    * A current member of any other organisation: their branch and 基层党委 release them first.
    * A member who is nobody's now (transferred out, left) and whom the filer cannot see: their tap
      confirms, as for an unknown card.
    """
    if member is None:
        return _Consent(TransferState.SUBMITTED if holder_present else TransferState.AWAITING_SOURCE)
    current = member.status in CURRENT_STATUSES
    if filer_sees(member.org_id) and (
        not current or member.org_id in organisation_subtree_ids(session, committee_id)
    ):
        return _Consent(TransferState.SUBMITTED, released=True)
    if not current:
        if holder_present:
            return _Consent(TransferState.SUBMITTED, released=True)
        return _Consent(TransferState.AWAITING_SOURCE)
    return _Consent(
        TransferState.AWAITING_SOURCE,
        from_org_id=member.org_id,
        from_committee_id=_receiving_committee(session, member.org_id),
    )


def check_tap_filing(
    session: Session, *, org_id: int, member: Member | None, card_no_hmac: str | None, uid_hmac: str | None
) -> TapFiling:
    """What a transfer-in tap at a venue of ``org_id`` would do (no writes)."""
    if member is not None and member.org_id in organisation_subtree_ids(session, org_id):
        return TapFiling.ALREADY_MEMBER
    pending = _pending_request(
        session,
        org_id=org_id,
        member_id=member.id if member is not None else None,
        card_no_hmac=None if member is not None else card_no_hmac,
        uid_hmac=None if member is not None else uid_hmac,
    )
    return TapFiling.PENDING if pending is not None else TapFiling.FILED


def file_from_tap(
    session: Session,
    *,
    org_id: int,
    member: Member | None,
    card_no_hmac: str | None,
    uid_hmac: str | None,
    card_masked: str | None,
    tap_id: int,
    kiosk_id: str,
    now: datetime,
) -> TransferRequest:
    """Open a request at ``org_id`` for the tapped card's member, or for an unknown person keyed by
    the card's digests, with the tap as evidence. Call after :func:`check_tap_filing` said FILED.

    The tap is the member's own application, but not their organisation's consent: a current
    member of another organisation waits for its release (``awaiting_source``).

    A concurrent tap of the same person can make the insert fail on the pending-key constraint;
    ingest retries the envelope, and the retry finds this request pending.
    """
    subtree = organisation_subtree_ids(session, org_id)
    consent = _consent(
        session,
        member,
        committee_id=_receiving_committee(session, org_id),
        filer_sees=subtree.__contains__,
        holder_present=True,
    )
    request = _new_request(
        session,
        consent=consent,
        to_org_id=org_id,
        source=TransferSource.KIOSK_TAP,
        created_by=f"kiosk:{kiosk_id}",
        member_id=member.id if member is not None else None,
        claimed_name=None,
        card_no_hmac=None if member is not None else card_no_hmac,
        uid_hmac=None if member is not None else uid_hmac,
        card_masked=None if member is not None else card_masked,
        evidence_tap_id=tap_id,
        placement_org_id=None,
        probation_due_on=None,
        note="",
        now=now,
    )
    request.member_confirmed_at = now
    request.member_confirm_tap_id = tap_id
    session.add(request)
    session.flush()
    audit_request(
        session,
        request,
        actor=Actor(f"kiosk:{kiosk_id}", "签到机"),
        action="transfer.submit",
        at=now,
        reason="签到机转入模式刷卡申请",
        detail={"to_state": request.state.value, "evidence_tap_id": tap_id},
    )
    return request


def confirm_from_tap(
    session: Session,
    *,
    org_id: int,
    member: Member | None,
    card_no_hmac: str | None,
    uid_hmac: str | None,
    tap_id: int,
    kiosk_id: str,
    now: datetime,
) -> TransferRequest | None:
    """A transfer-in tap for a request already pending at ``org_id`` (:func:`check_tap_filing`
    said PENDING): the member's own confirmation, recorded on the request once.

    It stands as the applicant's confirmation only. For a card nobody here held when a secretary
    typed its number, the holder's tap is all the identity there is to confirm, so the request
    goes on to review (``confirm_by_tap``); a member of another organisation still waits for its
    release, which a tap does not replace.
    """
    request = _pending_request(
        session,
        org_id=org_id,
        member_id=member.id if member is not None else None,
        card_no_hmac=None if member is not None else card_no_hmac,
        uid_hmac=None if member is not None else uid_hmac,
    )
    if request is None:
        return None
    actor = Actor(f"kiosk:{kiosk_id}", "签到机")
    if request.member_confirmed_at is None:
        request.member_confirmed_at = now
        request.member_confirm_tap_id = tap_id
        session.add(request)
        session.flush()
        audit_request(
            session,
            request,
            actor=actor,
            action="transfer.member_confirm",
            at=now,
            reason="本人在接收方签到机刷卡确认转入",
            detail={"tap_id": tap_id},
        )
    if request.state == TransferState.AWAITING_SOURCE and request.from_org_id is None:
        if request.uid_hmac is None and uid_hmac is not None and member is None:
            request.uid_hmac = uid_hmac  # so receiving binds the card the holder actually tapped
        if request.evidence_tap_id is None:
            request.evidence_tap_id = tap_id
        _apply(
            session,
            request,
            TransferAction.CONFIRM_BY_TAP,
            actor=actor,
            reason="持卡人本人刷卡确认身份",
            now=now,
            detail={"tap_id": tap_id},
        )
    return request


def create_request(
    session: Session,
    *,
    keyring: Keyring,
    data: TransferCreate,
    caller: Caller,
    source: TransferSource,
    policy: TransferPolicy,
    now: datetime,
) -> TransferRequest:
    """File a request from the web or the API.

    The applicant is ``member_id`` (a member the reviewer may see: a move inside their subtree),
    or the holder of the card whose number is ``card_no``, or else a new person named
    ``claimed_name``. A letter that has already lapsed sends the request straight to ``expired``.

    A card number is printed on the card; knowing it proves nothing. When its holder is a member
    outside the caller's scope, or nobody, the answer is the same: a request in
    ``awaiting_source``, named as the caller typed it (or 未登记持卡人), that the member's
    organisation releases or the holder's own tap confirms. Only a member inside the caller's scope
    is named (and ``already_member`` told).

    Raises:
        OrganisationNotFound: ``to_org_id`` (or the placement) is not in the caller's scope.
        MemberNotFound: ``member_id`` is unknown or outside the caller's scope.
        InvalidCardIdentifier: ``card_no`` is not 19 digits.
        ApplicantNameRequired: neither a member, nor a card number, nor a name.
        AlreadyMember: the member already belongs to ``to_org_id``'s subtree.
        TransferAlreadyPending: the person has a pending request there.
        LetterIssuerNotCommittee: the letter comes from a 党支部 or 党总支.
        InvalidPlacement: the placement is not a branch or group under ``to_org_id``.
    """
    require_visible_organisation(session, data.to_org_id, caller=caller)
    member: Member | None = None
    card_no_hmac: str | None = None
    card_masked: str | None = None
    if data.member_id is not None:
        member = session.get(Member, data.member_id)
        if member is None or not caller.sees_org(member.org_id):
            raise MemberNotFound(f"党员 {data.member_id} 不存在")
    elif data.card_no:
        card_no = normalise_card_no(data.card_no)
        card_no_hmac = card_no_digest(keyring, card_no)
        member = _member_by_card_number(session, card_no_hmac)
        card_masked = mask_card_no(card_no)
    claimed_name = None
    if data.claimed_name and data.claimed_name.strip():
        claimed_name = clean_text(data.claimed_name, field="姓名", max_length=100)
    hidden = member is not None and not caller.sees_org(member.org_id)
    if member is None and card_no_hmac is None and claimed_name is None:
        raise ApplicantNameRequired()
    if member is not None and not hidden:
        if member.org_id in organisation_subtree_ids(session, data.to_org_id):
            raise AlreadyMember()
        # A member the caller may see is named by the roster, not by what was typed.
        claimed_name = card_no_hmac = card_masked = None
    elif member is not None:
        card_no_hmac = None  # the pending key is the member; the masked number is what was typed
    committee_id = _receiving_committee(session, data.to_org_id)
    consent = _consent(
        session,
        member,
        committee_id=committee_id,
        filer_sees=caller.sees_org,
        holder_present=card_no_hmac is None and member is None,
    )
    pending = _pending_request(
        session,
        org_id=data.to_org_id,
        member_id=member.id if member is not None else None,
        card_no_hmac=card_no_hmac,
        uid_hmac=None,
    )
    if pending is not None:
        raise TransferAlreadyPending(f"此人已有正在办理的转入申请（编号 {pending.id}）")
    if data.letter is not None:
        _refuse_unauthorised_issuer(data.letter)
    if data.placement_org_id is not None:
        _validate_placement(session, caller, to_org_id=data.to_org_id, placement_org_id=data.placement_org_id)

    request = _new_request(
        session,
        consent=consent,
        to_org_id=data.to_org_id,
        source=source,
        created_by=caller.actor.ref,
        member_id=member.id if member is not None else None,
        claimed_name=claimed_name,
        card_no_hmac=card_no_hmac,
        uid_hmac=None,
        card_masked=card_masked,
        evidence_tap_id=None,
        placement_org_id=data.placement_org_id,
        probation_due_on=data.probation_due_on,
        note=data.note.strip(),
        now=now,
    )
    audit_request(
        session,
        request,
        actor=caller.actor,
        action="transfer.submit",
        at=now,
        reason=data.note.strip(),
        detail={"to_state": request.state.value, "source": source.value},
    )
    if data.letter is not None:
        _store_letter(session, request, data.letter, actor=caller.actor, now=now)
        _expire_if_lapsed(session, request, policy=policy, now=now)
    return request


def _new_request(
    session: Session,
    *,
    consent: _Consent,
    to_org_id: int,
    source: TransferSource,
    created_by: str,
    member_id: int | None,
    claimed_name: str | None,
    card_no_hmac: str | None,
    uid_hmac: str | None,
    card_masked: str | None,
    evidence_tap_id: int | None,
    placement_org_id: int | None,
    probation_due_on: date | None,
    note: str,
    now: datetime,
) -> TransferRequest:
    request = TransferRequest(
        state=consent.state,
        state_since=now,
        submitted_at=now,
        source=source,
        created_by=created_by,
        to_org_id=to_org_id,
        committee_id=_receiving_committee(session, to_org_id),
        placement_org_id=placement_org_id,
        member_id=member_id,
        claimed_name=claimed_name,
        card_no_hmac=card_no_hmac,
        uid_hmac=uid_hmac,
        card_masked=card_masked,
        evidence_tap_id=evidence_tap_id,
        probation_due_on=probation_due_on,
        note=note[:500],
        from_org_id=consent.from_org_id,
        from_committee_id=consent.from_committee_id,
        released_at=now if consent.released else None,
    )
    request.pending_key = _pending_key(request)
    session.add(request)
    session.flush()
    return request


def _pending_key(request: TransferRequest) -> str | None:
    if request.member_id is not None:
        return f"m:{request.member_id}"
    if request.card_no_hmac is not None:
        return f"c:{request.card_no_hmac}"
    if request.uid_hmac is not None:
        return f"u:{request.uid_hmac}"
    # A person known only by the name they gave: names are not unique, so nothing to enforce.
    return None


def _pending_request(
    session: Session, *, org_id: int, member_id: int | None, card_no_hmac: str | None, uid_hmac: str | None
) -> TransferRequest | None:
    matches = []
    if member_id is not None:
        matches.append(col(TransferRequest.member_id) == member_id)
    if card_no_hmac is not None:
        matches.append(col(TransferRequest.card_no_hmac) == card_no_hmac)
    if uid_hmac is not None:
        matches.append(col(TransferRequest.uid_hmac) == uid_hmac)
    if not matches:
        return None
    return session.exec(
        select(TransferRequest)
        .where(
            TransferRequest.to_org_id == org_id,
            col(TransferRequest.state).in_(list(PENDING_STATES)),
            or_(*matches),
        )
        .order_by(col(TransferRequest.id))
    ).first()


def _member_by_card_number(session: Session, card_no_hmac: str) -> Member | None:
    return session.exec(
        select(Member)
        .join(CardBinding, col(CardBinding.member_id) == col(Member.id))
        .where(CardBinding.status == BindingStatus.ACTIVE, CardBinding.card_no_hmac == card_no_hmac)
    ).first()


def _receiving_committee(session: Session, org_id: int) -> int:
    """The nearest 基层党委 at or above ``org_id``; the tree's root when there is none."""
    organisation = require_organisation(session, org_id)
    while organisation.kind != OrgKind.BASIC_COMMITTEE and organisation.parent_id is not None:
        organisation = require_organisation(session, organisation.parent_id)
    assert organisation.id is not None
    return organisation.id


# --- details, letters, documents --------------------------------------------------------------


def attach_letter(
    session: Session,
    *,
    request_id: int,
    letter: LetterIn,
    caller: Caller,
    policy: TransferPolicy,
    now: datetime,
) -> TransferRequest:
    """Record the request's letter; a second one (re-issued) supersedes the first, which is kept.

    Raises:
        TransferNotFound, LetterIssuerNotCommittee.
        TransferTransitionNotAllowed: the request is no longer pending.
    """
    request = load_request(session, request_id, caller, for_update=True)
    require_pending(request, "录入介绍信")
    _refuse_unauthorised_issuer(letter)
    _store_letter(session, request, letter, actor=caller.actor, now=now)
    _expire_if_lapsed(session, request, policy=policy, now=now)
    return request


def update_details(
    session: Session, *, request_id: int, changes: TransferUpdate, caller: Caller, now: datetime
) -> TransferRequest:
    """Complete the applicant's name, the placement branch, the probation date or the note.

    Raises:
        TransferNotFound, InvalidPlacement, OrganisationNotFound.
        TransferTransitionNotAllowed: the request is no longer pending.
    """
    request = load_request(session, request_id, caller, for_update=True)
    require_pending(request, "修改申请信息")
    changed: dict[str, object] = {}
    if changes.claimed_name is not None:
        member = session.get(Member, request.member_id) if request.member_id is not None else None
        # Refusing only for a member the caller may see: else the refusal would tell who it is.
        if member is not None and not identity_hidden(caller, request, member):
            raise ApplicantNameRequired("申请人已是系统中的党员，姓名以党员信息为准")
        request.claimed_name = clean_text(changes.claimed_name, field="姓名", max_length=100)
        changed["claimed_name"] = request.claimed_name
    if changes.placement_org_id is not None:
        _validate_placement(
            session, caller, to_org_id=request.to_org_id, placement_org_id=changes.placement_org_id
        )
        request.placement_org_id = changes.placement_org_id
        changed["placement_org_id"] = changes.placement_org_id
    if changes.probation_due_on is not None:
        request.probation_due_on = changes.probation_due_on
        changed["probation_due_on"] = changes.probation_due_on.isoformat()
    if changes.note is not None:
        request.note = changes.note.strip()[:500]
        changed["note"] = request.note
    if changed:
        session.add(request)
        session.flush()
        audit_request(session, request, actor=caller.actor, action="transfer.update", at=now, detail=changed)
    return request


def tick_document(
    session: Session, *, request_id: int, kind: DocumentKind, note: str, caller: Caller, now: datetime
) -> TransferRequest:
    """Record that the reviewer has seen ``kind`` (idempotent: ticking again changes nothing)."""
    request = load_request(session, request_id, caller, for_update=True)
    require_pending(request, "核对材料")
    existing = _ticked_document(session, request, kind)
    if existing is None:
        assert request.id is not None
        session.add(
            TransferDocument(
                request_id=request.id,
                kind=kind,
                ticked_at=now,
                ticked_by=caller.actor.ref,
                ticked_by_name=caller.actor.name,
                note=note.strip()[:200],
            )
        )
        session.flush()
        audit_request(
            session,
            request,
            actor=caller.actor,
            action="transfer.document_tick",
            at=now,
            reason=note.strip(),
            detail={"document": kind.value},
        )
    return request


def untick_document(
    session: Session, *, request_id: int, kind: DocumentKind, caller: Caller, now: datetime
) -> TransferRequest:
    request = load_request(session, request_id, caller, for_update=True)
    require_pending(request, "核对材料")
    existing = _ticked_document(session, request, kind)
    if existing is not None:
        session.delete(existing)
        session.flush()
        audit_request(
            session,
            request,
            actor=caller.actor,
            action="transfer.document_untick",
            at=now,
            detail={"document": kind.value},
        )
    return request


def _ticked_document(
    session: Session, request: TransferRequest, kind: DocumentKind
) -> TransferDocument | None:
    return session.exec(
        select(TransferDocument).where(
            TransferDocument.request_id == request.id, TransferDocument.kind == kind
        )
    ).first()


def _store_letter(
    session: Session, request: TransferRequest, letter: LetterIn, *, actor: Actor, now: datetime
) -> IntroductionLetter:
    current = current_letter(session, request)
    if current is not None:
        current.superseded_at = now
        session.add(current)
    assert request.id is not None
    stored = IntroductionLetter(
        request_id=request.id,
        letter_no=letter.letter_no.strip(),
        issuer_name=letter.issuer_name.strip(),
        issuer_kind=letter.issuer_kind,
        from_org_name=letter.from_org_name.strip(),
        to_org_name=letter.to_org_name.strip(),
        member_category=letter.member_category,
        dues_paid_to=letter.dues_paid_to,
        issued_on=letter.issued_on,
        valid_days=letter.valid_days,
        recorded_at=now,
        recorded_by=actor.ref,
    )
    session.add(stored)
    session.flush()
    audit_request(
        session,
        request,
        actor=actor,
        action="transfer.letter_reissued" if current is not None else "transfer.letter",
        at=now,
        detail={
            "letter_no": stored.letter_no,
            "issuer_name": stored.issuer_name,
            "issued_on": stored.issued_on.isoformat(),
            "valid_days": stored.valid_days,
        },
    )
    return stored


def _refuse_unauthorised_issuer(letter: LetterIn) -> None:
    if letter.issuer_kind not in AUTHORISED_ISSUERS:
        raise LetterIssuerNotCommittee()


def _validate_placement(session: Session, caller: Caller, *, to_org_id: int, placement_org_id: int) -> None:
    placement = session.get(Organisation, placement_org_id)
    if placement is None or not caller.sees_org(placement_org_id):
        raise OrganisationNotFound(f"党组织 {placement_org_id} 不存在")
    if placement.kind not in PLACEMENT_KINDS or placement_org_id not in organisation_subtree_ids(
        session, to_org_id
    ):
        raise InvalidPlacement()


# --- transitions -----------------------------------------------------------------------------


def transition(
    session: Session,
    *,
    request_id: int,
    action: TransferAction,
    reason: str,
    caller: Caller,
    policy: TransferPolicy,
    now: datetime,
    placement_org_id: int | None = None,
) -> TransferRequest:
    """Take ``action`` on a request, as ``caller``, with the checks as guards.

    Raises:
        TransferNotFound: no such request in the caller's scope.
        TransferTransitionNotAllowed: the state table has no such move (or it is the system's, or
            the member's own organisation's: :func:`decide_release`).
        TransferLevelForbidden: a committee-level action by someone who is not the receiving 基层党委.
        ReasonRequired: return, reject, withdraw and revive need a reason.
        PlacementRequired / InvalidPlacement: accepting or receiving needs a branch to place into.
        ApplicantNameRequired, LetterMissing, LetterExpired, ProbationOverdue: a blocking check.
        TransferCureMissing: reviving an expired request without the documents or a new letter.
        TransferCardTaken: receiving an unknown person whose card was bound to someone else meanwhile.
        TransferReleaseRequired: receiving a member of another organisation that has not released them.
    """
    request = load_request(session, request_id, caller, for_update=True)
    rule = rule_for(request.state, action)
    if rule.level == Level.SYSTEM:
        raise TransferTransitionNotAllowed("此状态变化由系统自动完成")
    if rule.level in SOURCE_LEVELS:
        raise TransferTransitionNotAllowed("是否同意转出，由党员所在的原组织办理")
    reason = _decision_reason(rule, action, caller, request, reason, TransferLevelForbidden())
    if placement_org_id is not None:
        _validate_placement(session, caller, to_org_id=request.to_org_id, placement_org_id=placement_org_id)
        request.placement_org_id = placement_org_id
    if action in (TransferAction.BRANCH_ACCEPT, TransferAction.RECEIVE) and request.placement_org_id is None:
        request.placement_org_id = _default_placement(session, request)

    letter = current_letter(session, request)
    if action in GUARDED_ACTIONS:
        evaluation = evaluate_request(session, request, letter, policy.local_date(now))
        if evaluation.blocking_error is not None:
            raise evaluation.blocking_error
    if action == TransferAction.REVIVE:
        _require_cure(session, request, letter, policy.local_date(now))

    detail: dict[str, object] = {}
    if action == TransferAction.RECEIVE:
        assert letter is not None  # the guard refused a request without one
        detail = _receive_member(session, request, letter, caller=caller, now=now, tz=policy.tz)
    _apply(
        session,
        request,
        action,
        actor=caller.actor,
        reason=reason,
        now=now,
        detail=detail,
    )
    return request


def decide_release(
    session: Session,
    *,
    request_id: int,
    action: TransferAction,
    reason: str,
    caller: Caller,
    policy: TransferPolicy,
    now: datetime,
) -> TransferRequest:
    """The member's own organisation on an outgoing request: its branch agrees (``source_agree``),
    its 基层党委 releases (``release``, after which the receiving side reviews and sees who it is),
    or either refuses with a reason (``refuse_release``). Released with a letter that has already
    lapsed, the request goes on to ``expired`` at once, as when it is filed so.

    Raises:
        TransferNotFound: no outgoing request for a member of the caller's subtree.
        TransferTransitionNotAllowed: not a move of the member's organisation in this state.
        TransferLevelForbidden: releasing without the member's 基层党委 in scope and the right to approve.
        ReasonRequired: refusing without a reason.
    """
    request = load_outgoing(session, request_id, caller, for_update=True)
    rule = rule_for(request.state, action)
    if rule.level not in SOURCE_LEVELS:
        raise TransferTransitionNotAllowed("此操作由接收方办理")
    reason = _decision_reason(
        rule,
        action,
        caller,
        request,
        reason,
        TransferLevelForbidden("同意转出须由党员所在基层党委的组织员办理"),
    )
    _apply(session, request, action, actor=caller.actor, reason=reason, now=now, detail={})
    _expire_if_lapsed(session, request, policy=policy, now=now)
    return request


def _decision_reason(
    rule: Rule,
    action: TransferAction,
    caller: Caller,
    request: TransferRequest,
    reason: str,
    forbidden: TransferLevelForbidden,
) -> str:
    """The part :func:`transition` and :func:`decide_release` share once the rule is theirs: the
    caller must stand at its level (else ``forbidden``), a reason it requires must be given; returns
    the reason to audit (collapsed, at most 500 characters, or the action's default)."""
    if not may_take(rule.level, caller, request):
        raise forbidden
    reason = " ".join(reason.split())[:500]
    if rule.reason_required and not reason:
        raise ReasonRequired()
    return reason or DEFAULT_REASONS.get(action, "")


def expire_lapsed_requests(session: Session, *, policy: TransferPolicy, now: datetime) -> list[int]:
    """Move every pending request whose letter has lapsed (and is not cured) to ``expired``.

    Run daily by the server's scheduled job ``transfer_expiry`` (``server.schedule``); the checks
    and guards already refuse to move a lapsed request forward, so a late sweep changes what the
    queue says, never what may be done. Returns the ids it expired.
    """
    today = policy.local_date(now)
    candidates = session.exec(
        select(TransferRequest, IntroductionLetter)
        .join(IntroductionLetter, col(IntroductionLetter.request_id) == col(TransferRequest.id))
        .where(
            col(TransferRequest.state).in_([s for s in PENDING_STATES if s != TransferState.EXPIRED]),
            col(IntroductionLetter.superseded_at).is_(None),
        )
        .order_by(col(TransferRequest.id))
        .with_for_update()
    ).all()
    expired: list[int] = []
    for request, letter in candidates:
        if _expire_if_lapsed(session, request, policy=policy, now=now, letter=letter, today=today):
            assert request.id is not None
            expired.append(request.id)
    return expired


def _expire_if_lapsed(
    session: Session,
    request: TransferRequest,
    *,
    policy: TransferPolicy,
    now: datetime,
    letter: IntroductionLetter | None = None,
    today: date | None = None,
) -> bool:
    if (request.state, TransferAction.EXPIRE) not in ALLOWED:
        # Finished, already expired, or still waiting for the member's organisation (expiring it
        # there would let a revival skip the release).
        return False
    letter = letter or current_letter(session, request)
    today = today or policy.local_date(now)
    if (
        letter is None
        or not letter_lapsed(letter, today)
        or overdue_cured(ticked_documents(session, request))
    ):
        return False
    valid_until = letter_valid_until(letter)
    _apply(
        session,
        request,
        TransferAction.EXPIRE,
        actor=SYSTEM_ACTOR,
        reason=f"介绍信有效期至{valid_until.isoformat()}，已过期",
        now=now,
        detail={"valid_until": valid_until.isoformat()},
    )
    return True


def _apply(
    session: Session,
    request: TransferRequest,
    action: TransferAction,
    *,
    actor: Actor,
    reason: str,
    now: datetime,
    detail: dict[str, object],
) -> Rule:
    """The one place a request changes state: table lookup, pending key, release, audit entry."""
    rule = rule_for(request.state, action)
    source = request.state
    request.state = rule.target
    request.state_since = now
    request.pending_key = _pending_key(request) if rule.target in PENDING_STATES else None
    if source in SOURCE_STATES and rule.target == TransferState.SUBMITTED:
        request.released_at = now  # released, or confirmed by the holder: the receiving side may know
    session.add(request)
    session.flush()
    audit_request(
        session,
        request,
        actor=actor,
        action=f"transfer.{action.value}",
        at=now,
        reason=reason,
        detail={"from_state": source.value, "to_state": rule.target.value, **detail},
        source_side=rule.level in SOURCE_LEVELS,
    )
    return rule


def _require_cure(
    session: Session, request: TransferRequest, letter: IntroductionLetter | None, today: date
) -> None:
    if letter is None:
        raise TransferCureMissing()
    if letter_lapsed(letter, today) and not overdue_cured(ticked_documents(session, request)):
        raise TransferCureMissing()


def _default_placement(session: Session, request: TransferRequest) -> int:
    target = require_organisation(session, request.to_org_id)
    if target.kind in PLACEMENT_KINDS:
        return request.to_org_id
    raise PlacementRequired()


def _letter_day(letter: IntroductionLetter, now: datetime, tz: tzinfo) -> datetime:
    """The start of the letter's issue date, local time (never after ``now``)."""
    return min(datetime.combine(letter.issued_on, time(), tzinfo=tz), now)


def _receive_member(
    session: Session,
    request: TransferRequest,
    letter: IntroductionLetter,
    *,
    caller: Caller,
    now: datetime,
    tz: tzinfo,
) -> dict[str, object]:
    """Put the applicant into the placement branch, in the caller's transaction.

    A known member moves through :mod:`server.orgs.membership` (their membership period closes
    and a new one opens, so old ledgers keep them where they were, new ones expect them here; their
    attendance rows stay theirs), taking the category the letter states. An unknown person
    becomes a member, and the card they tapped is bound to them.

    Raises:
        PlacementRequired, ApplicantNameRequired, MemberNotFound.
        MemberNotActive: the member is suspended or has left (a transfer does not restore that).
        TransferCardTaken: the unknown person's card was bound to someone else meanwhile.
    """
    placement_id = request.placement_org_id
    if placement_id is None:
        raise PlacementRequired()
    category = letter.member_category
    reason = f"组织关系转入（申请编号 {request.id}）"
    if request.member_id is not None:
        member = session.exec(select(Member).where(Member.id == request.member_id).with_for_update()).first()
        if member is None:
            raise MemberNotFound()
        assert member.id is not None
        _require_release(session, request, member)
        from_org_id: int | None = member.org_id
        if member.status == MemberStatus.TRANSFERRED_OUT:
            # Transferred out of our tree earlier and now coming back: from outside, so their
            # six-month clock starts at the letter's date (docs/ledgers.md, Reminders).
            member.joined_org_at = _letter_day(letter, now, tz)
            change_member_status(
                session,
                member_id=member.id,
                status=MemberStatus.ACTIVE,
                at=now,
                caller=caller,
                reason=reason,
            )
        move_member(
            session, member_id=member.id, to_org_id=placement_id, at=now, caller=caller, reason=reason
        )
        change_member_category(
            session, member_id=member.id, category=category, at=now, caller=caller, reason=reason
        )
        created = False
    else:
        if not request.claimed_name:
            raise ApplicantNameRequired()
        member = add_member(
            session,
            name=request.claimed_name,
            org_id=placement_id,
            category=category,
            joined_org_at=now,
            now=now,
        )
        # From outside the system: the six-month clock starts at the letter's date, not at
        # reception (the membership period, and so 应到, starts at reception).
        member.joined_org_at = _letter_day(letter, now, tz)
        session.add(member)
        assert member.id is not None
        from_org_id = None
        created = True
        request.member_id = member.id
        _bind_tapped_card(session, request, member, now=now)
        record(
            session,
            actor=caller.actor,
            action="member.transfer_in",
            object_type="member",
            object_id=member.id,
            org_id=placement_id,
            at=now,
            reason=reason,
            detail={"to_org_id": placement_id, "category": category.value},
        )
    request.received_at = now
    return {
        "member_id": member.id,
        "from_org_id": from_org_id,
        "placement_org_id": placement_id,
        "new_member": created,
    }


def _require_release(session: Session, request: TransferRequest, member: Member) -> None:
    """Nobody takes what isn't theirs: a current member of an organisation outside the receiving
    基层党委 moves only when that organisation released them (and they are still under it).

    The state table already sends such requests through the release; this guard also covers a
    member who moved elsewhere after a request was filed, and requests filed before the release
    existed.
    """
    if member.status not in CURRENT_STATUSES:
        return
    if member.org_id in organisation_subtree_ids(session, request.committee_id):
        return
    released_by = request.from_committee_id
    if (
        request.released_at is None
        or released_by is None
        or member.org_id not in organisation_subtree_ids(session, released_by)
    ):
        raise TransferReleaseRequired()


def _bind_tapped_card(session: Session, request: TransferRequest, member: Member, *, now: datetime) -> None:
    if request.card_no_hmac is None and request.uid_hmac is None:
        return
    matches = []
    if request.card_no_hmac is not None:
        matches.append(col(CardBinding.card_no_hmac) == request.card_no_hmac)
    if request.uid_hmac is not None:
        matches.append(col(CardBinding.uid_hmac) == request.uid_hmac)
    taken = session.exec(
        select(CardBinding).where(CardBinding.status == BindingStatus.ACTIVE, or_(*matches))
    ).first()
    if taken is not None:
        raise TransferCardTaken()
    assert member.id is not None
    masked = request.card_masked
    session.add(
        CardBinding(
            member_id=member.id,
            card_no_hmac=request.card_no_hmac,
            uid_hmac=request.uid_hmac,
            card_no_masked=masked if request.card_no_hmac is not None else None,
            uid_masked=masked if request.card_no_hmac is None else None,
            status=BindingStatus.ACTIVE,
            bound_at=now,
        )
    )
    session.flush()


# --- guests who keep coming --------------------------------------------------------------------


def file_from_suggestion(
    session: Session, *, member_id: int, org_id: int, caller: Caller, now: datetime
) -> TransferRequest:
    """File a request at ``org_id`` for a guest who checked in at its events, with their latest
    check-in tap as evidence; the member must still be a guest there.

    Raises:
        OrganisationNotFound, MemberNotFound (not a guest of this organisation), AlreadyMember,
        TransferAlreadyPending.
    """
    require_visible_organisation(session, org_id, caller=caller)
    subtree = organisation_subtree_ids(session, org_id)
    # One answer for "no such member" and "never came here": a member id outside the caller's
    # scope must not be probed through this door.
    not_a_guest = MemberNotFound(f"党员 {member_id} 没有在本组织参加活动的记录")
    member = session.get(Member, member_id)
    if member is None:
        raise not_a_guest
    if member.org_id in subtree:
        raise AlreadyMember()
    attended = session.exec(
        select(Attendance)
        .join(Event, col(Event.id) == col(Attendance.event_id))
        .where(Attendance.member_id == member_id, col(Event.org_id).in_(subtree))
        .order_by(col(Attendance.last_tap_at).desc())
    ).first()
    if attended is None:
        # Only people who came to our events can be named this way; anyone else files themselves
        # (a tap in transfer-in mode) or shows their card number.
        raise not_a_guest
    evidence = attended.last_tap_id
    pending = _pending_request(session, org_id=org_id, member_id=member_id, card_no_hmac=None, uid_hmac=None)
    if pending is not None:
        raise TransferAlreadyPending(f"此人已有正在办理的转入申请（编号 {pending.id}）")
    # Coming to our events is not the member's application, nor their organisation's consent.
    consent = _consent(
        session,
        member,
        committee_id=_receiving_committee(session, org_id),
        filer_sees=caller.sees_org,
        holder_present=False,
    )
    request = _new_request(
        session,
        consent=consent,
        to_org_id=org_id,
        source=TransferSource.GUEST_TAP,
        created_by=caller.actor.ref,
        member_id=member_id,
        claimed_name=None,
        card_no_hmac=None,
        uid_hmac=None,
        card_masked=None,
        evidence_tap_id=evidence,
        placement_org_id=None,
        probation_due_on=None,
        note="",
        now=now,
    )
    audit_request(
        session,
        request,
        actor=caller.actor,
        action="transfer.submit",
        at=now,
        reason="外单位党员多次参加本组织活动，代为发起转入申请",
        detail={
            "to_state": request.state.value,
            "source": TransferSource.GUEST_TAP.value,
            "evidence_tap_id": evidence,
        },
    )
    return request
