"""组织关系转入 endpoints: file, queue, detail, letter, documents, transitions, guest suggestions.

Bearer tokens as elsewhere: a token scoped to an organisation sees the requests whose receiving
organisation or placement branch is in its subtree (others are 404), and may take committee-level
actions only when the receiving 基层党委 is in its subtree.

``/outgoing`` is the other half: requests for members of the token's subtree to move to another
organisation, where their branch agrees and their 基层党委 releases (or either refuses) before
the receiving side may review them or learn who they are.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from server.deps import KeyringDep, RequestDep
from server.inputs import RowId
from server.limits import Limit, TransfersLimit, enforce_limit
from server.records.transfers import DocumentKind, TransferSource, TransferState
from server.transfers.calendar import transfer_policy
from server.transfers.queue import list_outgoing, list_queue, list_suggestions
from server.transfers.schemas import (
    DocumentTickIn,
    LetterIn,
    OutgoingDetail,
    OutgoingList,
    ReleaseDecisionIn,
    TransferCreate,
    TransferDetail,
    TransferQueue,
    TransferSuggestion,
    TransferUpdate,
    TransitionIn,
)
from server.transfers.scope import TransferScope
from server.transfers.service import (
    attach_letter,
    create_request,
    decide_release,
    file_from_suggestion,
    tick_document,
    transition,
    untick_document,
    update_details,
)

router = APIRouter(prefix="/api/v1/transfers", tags=["transfers"])


def get_scope(ctx: RequestDep) -> TransferScope:
    return TransferScope(
        session=ctx.session, caller=ctx.caller, policy=transfer_policy(ctx.settings), now=ctx.now
    )


ScopeDep = Annotated[TransferScope, Depends(get_scope)]


def limit_filing_per_caller(request: Request, scope: ScopeDep) -> None:
    """Filing looks a card number up: a budget per token as well as per source address."""
    enforce_limit(request, Limit.TRANSFERS_PER_CALLER, scope.caller.actor.ref)


FilingLimit = Annotated[None, Depends(limit_filing_per_caller)]


@router.post("", status_code=status.HTTP_201_CREATED)
def file_transfer(
    data: TransferCreate, keyring: KeyringDep, scope: ScopeDep, _source: TransfersLimit, _caller: FilingLimit
) -> TransferDetail:
    """File a request with the 介绍信 fields (a lapsed letter lands in ``expired`` at once)."""
    request = create_request(
        scope.session,
        keyring=keyring,
        data=data,
        caller=scope.caller,
        source=TransferSource.API,
        policy=scope.policy,
        now=scope.now,
    )
    assert request.id is not None
    return scope.detail(request.id)


@router.get("")
def transfer_queue(
    scope: ScopeDep,
    state: Annotated[list[TransferState] | None, Query(description="Default: every open state.")] = None,
    org_id: RowId | None = None,
    overdue: bool = False,
    q: Annotated[str | None, Query(max_length=50, description="Part of the applicant's name.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> TransferQueue:
    """The queue, oldest first, with each step's SLA deadline and overdue marking."""
    return list_queue(
        scope.session,
        caller=scope.caller,
        policy=scope.policy,
        now=scope.now,
        states=state,
        org_id=org_id,
        overdue_only=overdue,
        search=q,
        limit=limit,
    )


@router.get("/suggestions")
def transfer_suggestions(
    scope: ScopeDep,
    org_id: RowId,
    days: Annotated[int, Query(ge=1, le=730)] = 180,
    min_events: Annotated[int, Query(ge=1, le=100)] = 2,
) -> list[TransferSuggestion]:
    """Members of other organisations who keep checking in at this organisation's events."""
    return list_suggestions(
        scope.session,
        caller=scope.caller,
        org_id=org_id,
        since=scope.now - timedelta(days=days),
        min_events=min_events,
    )


@router.post("/suggestions/{member_id}", status_code=status.HTTP_201_CREATED)
def file_suggested_transfer(
    member_id: RowId, org_id: RowId, scope: ScopeDep, _source: TransfersLimit, _caller: FilingLimit
) -> TransferDetail:
    """File a request for a guest of ``org_id``, with their latest check-in as evidence."""
    request = file_from_suggestion(
        scope.session, member_id=member_id, org_id=org_id, caller=scope.caller, now=scope.now
    )
    assert request.id is not None
    return scope.detail(request.id)


@router.get("/outgoing")
def outgoing_transfers(
    scope: ScopeDep,
    state: Annotated[list[TransferState] | None, Query(description="Default: every open state.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> OutgoingList:
    """Requests for our members to move elsewhere, those waiting for our decision first."""
    return list_outgoing(scope.session, caller=scope.caller, states=state, limit=limit)


@router.get("/outgoing/{transfer_id}")
def outgoing_transfer(transfer_id: RowId, scope: ScopeDep) -> OutgoingDetail:
    """One outgoing request: where to, its state, and the decisions this caller may take."""
    return scope.outgoing(transfer_id)


@router.post("/outgoing/{transfer_id}/decisions")
def decide_outgoing_transfer(transfer_id: RowId, body: ReleaseDecisionIn, scope: ScopeDep) -> OutgoingDetail:
    """Agree (branch), release (基层党委) or refuse with a reason."""
    decide_release(
        scope.session,
        request_id=transfer_id,
        action=body.action,
        reason=body.reason,
        caller=scope.caller,
        policy=scope.policy,
        now=scope.now,
    )
    return scope.outgoing(transfer_id)


@router.get("/{transfer_id}")
def transfer_detail(transfer_id: RowId, scope: ScopeDep) -> TransferDetail:
    """One request with its letter, checks, documents, allowed actions and history."""
    return scope.detail(transfer_id)


@router.patch("/{transfer_id}")
def update_transfer(transfer_id: RowId, changes: TransferUpdate, scope: ScopeDep) -> TransferDetail:
    """Complete the applicant's name, the placement branch, the probation date or the note."""
    update_details(scope.session, request_id=transfer_id, changes=changes, caller=scope.caller, now=scope.now)
    return scope.detail(transfer_id)


@router.put("/{transfer_id}/letter")
def record_letter(transfer_id: RowId, letter: LetterIn, scope: ScopeDep) -> TransferDetail:
    """Record the letter; a second one (re-issued) supersedes the first."""
    attach_letter(
        scope.session,
        request_id=transfer_id,
        letter=letter,
        caller=scope.caller,
        policy=scope.policy,
        now=scope.now,
    )
    return scope.detail(transfer_id)


@router.put("/{transfer_id}/documents/{kind}")
def tick_transfer_document(
    transfer_id: RowId, kind: DocumentKind, body: DocumentTickIn, scope: ScopeDep
) -> TransferDetail:
    """Tick a document the reviewer has seen (支部证明, 本人申请, 转正决定 …)."""
    tick_document(
        scope.session,
        request_id=transfer_id,
        kind=kind,
        note=body.note,
        caller=scope.caller,
        now=scope.now,
    )
    return scope.detail(transfer_id)


@router.delete("/{transfer_id}/documents/{kind}")
def untick_transfer_document(transfer_id: RowId, kind: DocumentKind, scope: ScopeDep) -> TransferDetail:
    untick_document(scope.session, request_id=transfer_id, kind=kind, caller=scope.caller, now=scope.now)
    return scope.detail(transfer_id)


@router.post("/{transfer_id}/transitions")
def transition_transfer(transfer_id: RowId, body: TransitionIn, scope: ScopeDep) -> TransferDetail:
    """Accept, return, reject, approve, receive, close, revive or withdraw, with a reason."""
    transition(
        scope.session,
        request_id=transfer_id,
        action=body.action,
        reason=body.reason,
        caller=scope.caller,
        policy=scope.policy,
        now=scope.now,
        placement_org_id=body.placement_org_id,
    )
    return scope.detail(transfer_id)
