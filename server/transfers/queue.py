"""Reading transfer requests: the reviewer's queue with its SLA, one request in full, the branches
to place into, guests who keep coming (suggestions), and the outgoing half (requests for our
members to move elsewhere, as their own organisation sees them). Nothing here writes.

Each side sees its half. The receiving side does not learn who a member of another organisation
is (name, id, home organisation, category, status) until that organisation releases them
(``access.identity_hidden``); the member's organisation sees where they are going, the state and
its own decisions, not the receiving side's letter, documents, notes or reviewers.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, func, or_
from sqlmodel import Session, col, select

from server.caller import Caller
from server.inputs import LIKE_ESCAPE, like_pattern
from server.orgs.service import organisation_subtree_ids, require_visible_organisation
from server.records.attendance import Attendance
from server.records.audit import AuditEntry
from server.records.events import Event
from server.records.orgs import Member, Organisation
from server.records.transfers import (
    DocumentKind,
    IntroductionLetter,
    TransferAction,
    TransferDocument,
    TransferRequest,
    TransferState,
)
from server.transfers.access import (
    OBJECT_TYPE,
    PLACEMENT_KINDS,
    applicant_of,
    identity_hidden,
    is_probationary,
    load_outgoing,
    load_request,
    may_take,
    org_ref,
)
from server.transfers.calendar import TransferPolicy
from server.transfers.checks import evaluate, letter_valid_until
from server.transfers.kinds import DOCUMENT_LABELS
from server.transfers.schemas import (
    DocumentPublic,
    HistoryEntry,
    LetterPublic,
    MemberRef,
    OrgRef,
    OutgoingDetail,
    OutgoingList,
    OutgoingSummary,
    TransferDetail,
    TransferQueue,
    TransferSuggestion,
    TransferSummary,
)
from server.transfers.states import (
    OPEN_STATES,
    OUTGOING_STATE_LABELS,
    PENDING_STATES,
    SOURCE_LEVELS,
    SOURCE_STATES,
    STATE_LABELS,
    actions_from,
    rule_for,
)
from server.vocabulary import MemberStatus


def list_queue(
    session: Session,
    *,
    caller: Caller,
    policy: TransferPolicy,
    now: datetime,
    states: Collection[TransferState] | None = None,
    org_id: int | None = None,
    overdue_only: bool = False,
    search: str | None = None,
    limit: int = 200,
) -> TransferQueue:
    """The reviewer's queue, oldest first, with the SLA of each request's current step.

    ``states`` defaults to every open state; ``org_id`` narrows to requests for that subtree.
    The deadline is ``policy.step_working_days`` working days after the step began for the steps
    where the organisation must act, ``policy.receipt_days`` days for returning the 回执; a
    returned or expired request waits on the applicant and is never overdue.

    Raises:
        OrganisationNotFound: ``org_id`` is outside the caller's scope.
    """
    wanted = list(states) if states else [s for s in TransferState if s in OPEN_STATES]
    query = select(TransferRequest).where(col(TransferRequest.state).in_(wanted))
    scope = caller.scope.org_ids
    if org_id is not None:
        require_visible_organisation(session, org_id, caller=caller)
        narrowed = frozenset(organisation_subtree_ids(session, org_id))
        scope = narrowed if scope is None else scope & narrowed
    if scope is not None:
        ids = sorted(scope)
        query = query.where(
            or_(col(TransferRequest.to_org_id).in_(ids), col(TransferRequest.placement_org_id).in_(ids))
        )
    if search and search.strip():
        pattern = like_pattern(search.strip())
        query = query.outerjoin(Member, col(Member.id) == col(TransferRequest.member_id)).where(
            or_(
                col(Member.name).like(pattern, escape=LIKE_ESCAPE),
                col(TransferRequest.claimed_name).like(pattern, escape=LIKE_ESCAPE),
            )
        )
    requests = list(
        session.exec(query.order_by(col(TransferRequest.submitted_at), col(TransferRequest.id))).all()
    )
    summaries = _summaries(session, requests, caller=caller, policy=policy, now=now)
    if search and search.strip():
        # The name as shown decides, not the roster: a search must not find a member of another
        # organisation before it released them (that would tell who the request is for).
        needle = search.strip().casefold()
        summaries = [summary for summary in summaries if needle in summary.applicant_name.casefold()]
    if overdue_only:
        summaries = [summary for summary in summaries if summary.overdue]
    return TransferQueue(
        items=summaries[:limit], total=len(summaries), overdue=sum(summary.overdue for summary in summaries)
    )


def get_detail(
    session: Session, *, request_id: int, caller: Caller, policy: TransferPolicy, now: datetime
) -> TransferDetail:
    """Everything a reviewer needs on one page. Raises TransferNotFound."""
    request = load_request(session, request_id, caller)
    (summary,) = _summaries(session, [request], caller=caller, policy=policy, now=now)
    letters = session.exec(
        select(IntroductionLetter)
        .where(IntroductionLetter.request_id == request.id)
        .order_by(col(IntroductionLetter.id).desc())
    ).all()
    current = next((letter for letter in letters if letter.superseded_at is None), None)
    ticked_rows = {
        row.kind: row
        for row in session.exec(
            select(TransferDocument).where(TransferDocument.request_id == request.id)
        ).all()
    }
    member = session.get(Member, request.member_id) if request.member_id is not None else None
    if identity_hidden(caller, request, member):
        member = None  # judged like a person we do not know, until their organisation releases them
    evaluation = evaluate(
        applicant=applicant_of(request, current, member),
        letter=current,
        probation_due_on=request.probation_due_on,
        ticked=set(ticked_rows),
        today=policy.local_date(now),
    )
    documents = [
        DocumentPublic(
            kind=kind,
            label=DOCUMENT_LABELS[kind],
            required=kind in evaluation.required_documents,
            ticked=kind in ticked_rows,
            ticked_at=ticked_rows[kind].ticked_at if kind in ticked_rows else None,
            ticked_by_name=ticked_rows[kind].ticked_by_name if kind in ticked_rows else None,
            note=ticked_rows[kind].note if kind in ticked_rows else "",
        )
        for kind in DocumentKind
        # A 转正 decision only concerns a 预备党员; the row is kept once ticked, whoever ticked it.
        if kind != DocumentKind.PROBATION_DECISION or kind in ticked_rows or is_probationary(current, member)
    ]
    home_org = session.get(Organisation, member.org_id) if member is not None else None
    return TransferDetail(
        **summary.model_dump(),
        member_category=(current.member_category if current else member.category if member else None),
        member_home_org=org_ref(home_org) if home_org is not None else None,
        probation_due_on=request.probation_due_on,
        note=request.note,
        evidence_tap_id=request.evidence_tap_id,
        letter=_letter_public(current) if current is not None else None,
        earlier_letters=[_letter_public(letter) for letter in letters if letter.superseded_at is not None],
        checks=evaluation.checks,
        documents=documents,
        actions=_actions_for(caller, request),
        history=_history(session, request, side="receiving"),
    )


def count_pending(
    session: Session, *, caller: Caller, policy: TransferPolicy, now: datetime
) -> tuple[int, int]:
    """(open requests waiting on the organisation, of which overdue) for dashboards."""
    queue = list_queue(session, caller=caller, policy=policy, now=now, limit=0)
    return queue.total, queue.overdue


def placement_choices(session: Session, *, request_id: int, caller: Caller) -> list[OrgRef]:
    """The branches and groups a reviewer may place the applicant in (under the receiving
    organisation, inside the reviewer's subtree). Raises TransferNotFound."""
    request = load_request(session, request_id, caller)
    candidates = organisation_subtree_ids(session, request.to_org_id)
    if caller.scope.org_ids is not None:
        candidates &= caller.scope.org_ids
    organisations = session.exec(
        select(Organisation)
        .where(col(Organisation.id).in_(candidates), col(Organisation.kind).in_(list(PLACEMENT_KINDS)))
        .order_by(col(Organisation.id))
    ).all()
    return [org_ref(organisation) for organisation in organisations]


def _summaries(
    session: Session,
    requests: Sequence[TransferRequest],
    *,
    caller: Caller,
    policy: TransferPolicy,
    now: datetime,
) -> list[TransferSummary]:
    if not requests:
        return []
    ids = [request.id for request in requests]
    letters = {
        letter.request_id: letter
        for letter in session.exec(
            select(IntroductionLetter).where(
                col(IntroductionLetter.request_id).in_(ids), col(IntroductionLetter.superseded_at).is_(None)
            )
        ).all()
    }
    ticked: dict[int, set[DocumentKind]] = {}
    for request_id, kind in session.exec(
        select(TransferDocument.request_id, TransferDocument.kind).where(
            col(TransferDocument.request_id).in_(ids)
        )
    ).all():
        ticked.setdefault(request_id, set()).add(DocumentKind(kind))
    member_ids = {request.member_id for request in requests if request.member_id is not None}
    members = {
        member.id: member
        for member in session.exec(select(Member).where(col(Member.id).in_(member_ids))).all()
    }
    org_ids = {request.to_org_id for request in requests} | {request.committee_id for request in requests}
    org_ids |= {request.placement_org_id for request in requests if request.placement_org_id is not None}
    orgs = {
        org.id: org
        for org in session.exec(select(Organisation).where(col(Organisation.id).in_(org_ids))).all()
    }
    today = policy.local_date(now)

    summaries = []
    for request in requests:
        assert request.id is not None
        member = members.get(request.member_id) if request.member_id is not None else None
        if identity_hidden(caller, request, member):
            member = None
        letter = letters.get(request.id)
        evaluation = evaluate(
            applicant=applicant_of(request, letter, member),
            letter=letter,
            probation_due_on=request.probation_due_on,
            ticked=ticked.get(request.id, set()),
            today=today,
        )
        due_on = _due_on(request, policy)
        placement = orgs.get(request.placement_org_id) if request.placement_org_id is not None else None
        summaries.append(
            TransferSummary(
                id=request.id,
                state=request.state,
                state_label=STATE_LABELS[request.state],
                applicant_name=_applicant_name(request, member),
                member_id=member.id if member is not None else None,
                card_masked=request.card_masked,
                source=request.source,
                to_org=org_ref(orgs[request.to_org_id]),
                committee=org_ref(orgs[request.committee_id]),
                placement_org=org_ref(placement) if placement is not None else None,
                submitted_at=request.submitted_at.astimezone(policy.tz),
                state_since=request.state_since.astimezone(policy.tz),
                waiting_working_days=policy.calendar.working_days_between(
                    policy.local_date(request.state_since), today
                ),
                due_on=due_on,
                overdue=due_on is not None and today > due_on,
                blockers=evaluation.blockers,
                warnings=evaluation.warnings,
                member_confirmed_at=request.member_confirmed_at,
            )
        )
    return summaries


def _due_on(request: TransferRequest, policy: TransferPolicy) -> date | None:
    started = policy.local_date(request.state_since)
    if request.state in (
        TransferState.SUBMITTED,
        TransferState.BRANCH_ACCEPTED,
        TransferState.COMMITTEE_APPROVED,
    ):
        return policy.calendar.add_working_days(started, policy.step_working_days)
    if request.state == TransferState.RECEIVED:
        return started + timedelta(days=policy.receipt_days)
    return None


def _applicant_name(request: TransferRequest, member: Member | None) -> str:
    if member is not None:
        return member.name
    if request.claimed_name:
        return request.claimed_name
    return f"未登记持卡人（{request.card_masked}）" if request.card_masked else "未登记申请人"


def _letter_public(letter: IntroductionLetter) -> LetterPublic:
    assert letter.id is not None
    return LetterPublic(
        id=letter.id,
        letter_no=letter.letter_no,
        issuer_name=letter.issuer_name,
        issuer_kind=letter.issuer_kind,
        from_org_name=letter.from_org_name,
        to_org_name=letter.to_org_name,
        member_category=letter.member_category,
        dues_paid_to=letter.dues_paid_to,
        issued_on=letter.issued_on,
        valid_days=letter.valid_days,
        valid_until=letter_valid_until(letter),
        recorded_at=letter.recorded_at,
        recorded_by=letter.recorded_by,
        superseded_at=letter.superseded_at,
    )


SOURCE_SIDE_ENTRIES = frozenset(
    f"transfer.{action.value}"
    for action in (TransferAction.SOURCE_AGREE, TransferAction.RELEASE, TransferAction.REFUSE_RELEASE)
)
# What the receiving side did that its own reviewers and notes are part of; the other side sees
# only that the state changed.
OTHER_SIDE = {"receiving": "原组织", "source": "接收方"}


def _history(session: Session, request: TransferRequest, *, side: str) -> list[HistoryEntry]:
    """The request's audit entries as ``side`` ("receiving" or "source") may read them: its own in
    full; the other side's state changes without who or why (a refusal keeps its reason, which is
    meant for the receiving side), and none of the other side's letter, documents or notes."""
    entries = session.exec(
        select(AuditEntry)
        .where(AuditEntry.object_type == OBJECT_TYPE, AuditEntry.object_id == str(request.id))
        .order_by(col(AuditEntry.id))
    ).all()
    history = []
    for entry in entries:
        detail = json.loads(entry.detail or "{}")
        own = (entry.action in SOURCE_SIDE_ENTRIES) == (side == "source")
        state_change = "to_state" in detail
        if not own and not state_change and entry.action != "transfer.member_confirm":
            continue
        shown_in_full = own or entry.action == "transfer.member_confirm"
        keeps_reason = shown_in_full or entry.action == f"transfer.{TransferAction.REFUSE_RELEASE.value}"
        history.append(
            HistoryEntry(
                at=entry.at,
                actor=entry.actor if shown_in_full else "",
                actor_name=entry.actor_name if shown_in_full else OTHER_SIDE[side],
                action=entry.action,
                reason=entry.reason if keeps_reason else "",
                from_state=detail.get("from_state"),
                to_state=detail.get("to_state"),
            )
        )
    return history


def _actions_for(
    caller: Caller, request: TransferRequest, *, source_side: bool = False
) -> list[TransferAction]:
    """The actions of one side (the receiving side's, or with ``source_side`` the member's
    organisation's) this caller may take now."""
    levels = [(action, rule_for(request.state, action).level) for action in actions_from(request.state)]
    return [
        action
        for action, level in levels
        if (level in SOURCE_LEVELS) == source_side and may_take(level, caller, request)
    ]


# --- the outgoing half --------------------------------------------------------------------------


def list_outgoing(
    session: Session,
    *,
    caller: Caller,
    states: Collection[TransferState] | None = None,
    limit: int = 200,
) -> OutgoingList:
    """Requests for members of the caller's subtree to move to another organisation, those waiting
    for our decision first, then oldest first. ``states`` defaults to every open state."""
    wanted = list(states) if states else [s for s in TransferState if s in OPEN_STATES]
    query = select(TransferRequest).where(*_outgoing_conditions(caller, wanted))
    requests = list(
        session.exec(query.order_by(col(TransferRequest.submitted_at), col(TransferRequest.id))).all()
    )
    summaries = _outgoing_summaries(session, requests)
    ordered = sorted(summaries, key=lambda summary: summary.state not in SOURCE_STATES)  # stable
    return OutgoingList(items=ordered[:limit], total=len(ordered))


def get_outgoing(session: Session, *, request_id: int, caller: Caller) -> OutgoingDetail:
    """One outgoing request with the decisions this caller may take. Raises TransferNotFound."""
    request = load_outgoing(session, request_id, caller)
    (summary,) = _outgoing_summaries(session, [request])
    return OutgoingDetail(
        **summary.model_dump(),
        actions=_actions_for(caller, request, source_side=True),
        history=_history(session, request, side="source"),
    )


def count_outgoing_waiting(session: Session, *, caller: Caller) -> int:
    """Outgoing requests waiting for a decision of the caller's organisation (for dashboards)."""
    query = (
        select(func.count()).select_from(TransferRequest).where(*_outgoing_conditions(caller, SOURCE_STATES))
    )
    return session.exec(query).one()


def _outgoing_conditions(
    caller: Caller, states: Collection[TransferState]
) -> tuple[ColumnElement[bool], ...]:
    """Requests for members of the caller's subtree to move elsewhere, in ``states``."""
    return (
        col(TransferRequest.from_org_id).is_not(None),
        col(TransferRequest.state).in_(list(states)),
        caller.scope.condition(TransferRequest.from_org_id),
    )


def _outgoing_summaries(session: Session, requests: Sequence[TransferRequest]) -> list[OutgoingSummary]:
    if not requests:
        return []
    member_ids = {request.member_id for request in requests if request.member_id is not None}
    members = {
        member.id: member
        for member in session.exec(select(Member).where(col(Member.id).in_(member_ids))).all()
    }
    org_ids: set[int] = set()
    for request in requests:
        org_ids |= {request.to_org_id, request.committee_id}
        org_ids |= {o for o in (request.from_org_id, request.from_committee_id) if o is not None}
    orgs = {
        org.id: org
        for org in session.exec(select(Organisation).where(col(Organisation.id).in_(org_ids))).all()
    }
    summaries = []
    for request in requests:
        assert request.id is not None
        assert request.member_id is not None
        assert request.from_org_id is not None
        assert request.from_committee_id is not None
        member = members[request.member_id]
        assert member.id is not None
        summaries.append(
            OutgoingSummary(
                id=request.id,
                state=request.state,
                state_label=OUTGOING_STATE_LABELS[request.state],
                member=MemberRef(id=member.id, name=member.name),
                from_org=org_ref(orgs[request.from_org_id]),
                from_committee=org_ref(orgs[request.from_committee_id]),
                to_org=org_ref(orgs[request.to_org_id]),
                to_committee=org_ref(orgs[request.committee_id]),
                source=request.source,
                submitted_at=request.submitted_at,
                state_since=request.state_since,
                member_confirmed_at=request.member_confirmed_at,
                released_at=request.released_at,
            )
        )
    return summaries


def list_suggestions(
    session: Session, *, caller: Caller, org_id: int, since: datetime, min_events: int = 2
) -> list[TransferSuggestion]:
    """Members of other organisations who checked in at ``min_events`` or more events of
    ``org_id``'s subtree since ``since`` and have no pending request there, most frequent first.

    One grouped query over attendance; nothing is stored (see the module docstring for why a
    guest tap opens no request by itself).

    Raises:
        OrganisationNotFound: ``org_id`` is outside the caller's scope.
    """
    require_visible_organisation(session, org_id, caller=caller)
    subtree = organisation_subtree_ids(session, org_id)
    pending = select(TransferRequest.member_id).where(
        col(TransferRequest.state).in_(list(PENDING_STATES)), col(TransferRequest.to_org_id).in_(subtree)
    )
    rows = session.exec(
        select(
            Attendance.member_id,
            func.count(col(Attendance.event_id)),
            func.max(col(Attendance.last_tap_at)),
            func.max(col(Attendance.last_tap_id)),
        )
        .join(Event, col(Event.id) == col(Attendance.event_id))
        .join(Member, col(Member.id) == col(Attendance.member_id))
        .where(
            col(Event.org_id).in_(subtree),
            col(Event.start_at) >= since,
            col(Member.org_id).not_in(subtree),
            Member.status == MemberStatus.ACTIVE,
            col(Attendance.member_id).not_in(pending.where(col(TransferRequest.member_id).is_not(None))),
        )
        .group_by(col(Attendance.member_id))
        .having(func.count(col(Attendance.event_id)) >= min_events)
        .order_by(func.count(col(Attendance.event_id)).desc(), col(Attendance.member_id))
    ).all()
    if not rows:
        return []
    members = {
        m.id: m for m in session.exec(select(Member).where(col(Member.id).in_([r[0] for r in rows]))).all()
    }
    org_ids = {m.org_id for m in members.values()} | {org_id}
    orgs = {
        o.id: o for o in session.exec(select(Organisation).where(col(Organisation.id).in_(org_ids))).all()
    }
    return [
        TransferSuggestion(
            member_id=member_id,
            name=members[member_id].name,
            home_org=org_ref(orgs[members[member_id].org_id]),
            host_org=org_ref(orgs[org_id]),
            events_attended=count,
            last_attended_at=last_at,
            evidence_tap_id=last_tap_id,
        )
        for member_id, count, last_at, last_tap_id in rows
    ]
