"""转入申请: the transfer-in queue, a request's checks and documents, and the reviewer's actions.

Every handler calls :mod:`server.transfers.service`, the same functions as
``/api/v1/transfers``; scope, levels, guards and the audit trail are the service's. A request
outside the user's subtree is a 404 (the service raises TransferNotFound), also by URL.

``/web/transfers/outgoing`` is the other half (转出): requests for members of the user's subtree to
move elsewhere, where their branch secretary agrees, their 基层党委's organiser releases, and
either may refuse with a reason.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from server.deps import KeyringDep
from server.errors import InvalidInput
from server.inputs import RowId
from server.limits import Limit, TransfersLimit, enforce_limit
from server.records.transfers import DocumentKind, TransferAction, TransferSource, TransferState
from server.transfers.calendar import transfer_policy
from server.transfers.kinds import DOCUMENT_LABELS, ISSUER_LABELS, SOURCE_LABELS
from server.transfers.queue import (
    count_outgoing_waiting,
    list_outgoing,
    list_queue,
    list_suggestions,
    placement_choices,
)
from server.transfers.schemas import LetterIn, TransferCreate, TransferUpdate
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
from server.transfers.states import (
    ACTION_LABELS,
    OPEN_STATES,
    OUTGOING_STATE_LABELS,
    PENDING_STATES,
    SOURCE_STATES,
    STATE_LABELS,
)
from server.vocabulary import MemberCategory
from server.web.deps import PageDep
from server.web.lookups import organisations_in_scope
from server.web.templating import redirect, render

router = APIRouter(prefix="/transfers")

SUGGESTION_WINDOW = timedelta(days=180)
CATEGORY_NAMES = {MemberCategory.FULL: "正式党员", MemberCategory.PROBATIONARY: "预备党员"}
STATE_BADGES = {
    TransferState.AWAITING_SOURCE: "blue",
    TransferState.SOURCE_BRANCH_AGREED: "blue",
    TransferState.SOURCE_REFUSED: "",
    TransferState.SUBMITTED: "amber",
    TransferState.BRANCH_ACCEPTED: "amber",
    TransferState.COMMITTEE_APPROVED: "blue",
    TransferState.RECEIVED: "green",
    TransferState.CLOSED: "",
    TransferState.RETURNED: "red",
    TransferState.EXPIRED: "red",
    TransferState.REJECTED: "",
    TransferState.WITHDRAWN: "",
}
CHECK_LABELS = {
    "applicant_name_missing": "缺申请人姓名",
    "member_not_active": "党籍状态异常",
    "letter_missing": "缺介绍信",
    "letter_expired": "介绍信过期",
    "letter_expiring": "介绍信将到期",
    "letter_long_validity": "有效期过长",
    "probation_due_missing": "缺预备期满日期",
    "probation_overdue": "预备期已满未转正",
    "dues_lapsed": "党费长期未交",
}
# Which actions take a placement, and which cannot be undone: those ask first, naming what happens
# to whom (``{name}``: the applicant; the templates fill it in).
PLACING_ACTIONS = frozenset({TransferAction.BRANCH_ACCEPT, TransferAction.RECEIVE})
CONFIRMS = {
    TransferAction.SOURCE_AGREE: "同意后，{name}的转出申请将报党委审批，此操作不能撤销。确定支部同意转出吗？",
    TransferAction.REFUSE_RELEASE: (
        "不同意转出后，{name}的这份申请即告终止，理由将告知接收方，此操作不能撤销。确定不同意转出吗？"
    ),
    TransferAction.RELEASE: (
        "同意转出后，接收方将看到{name}的姓名和所在组织并开始审核，此操作不能撤销。确定党委同意转出吗？"
    ),
    TransferAction.REJECT: (
        "不予接收后，{name}的转入申请即告终止，不能再恢复办理，理由记入办理记录。确定不予接收吗？"
    ),
    TransferAction.WITHDRAW: (
        "登记本人撤回后，{name}的转入申请即告终止，不能再恢复办理。确定登记为本人撤回吗？"
    ),
    TransferAction.RECEIVE: (
        "接收后，{name}将转入本组织，编入所选党支部的花名册，此操作不能撤销。确定接收吗？"
    ),
    TransferAction.CLOSE: "办结后，{name}的转入手续即告完成，申请不能再修改。确定回执已寄回并办结吗？",
}
PRIMARY_ACTIONS = frozenset(
    {
        TransferAction.BRANCH_ACCEPT,
        TransferAction.COMMITTEE_APPROVE,
        TransferAction.RECEIVE,
        TransferAction.CLOSE,
        TransferAction.RESUBMIT,
        TransferAction.REVIVE,
    }
)
DANGER_ACTIONS = frozenset({TransferAction.REJECT, TransferAction.WITHDRAW, TransferAction.REFUSE_RELEASE})
RELEASE_ACTIONS = frozenset({TransferAction.SOURCE_AGREE, TransferAction.RELEASE})

HISTORY_LABELS = {
    "transfer.submit": "提交申请",
    "transfer.letter": "录入介绍信",
    "transfer.letter_reissued": "录入重新开具的介绍信",
    "transfer.update": "补充申请信息",
    "transfer.document_tick": "核对材料",
    "transfer.document_untick": "取消核对材料",
    "transfer.member_confirm": "本人刷卡确认",
    **{f"transfer.{action.value}": label for action, label in ACTION_LABELS.items()},
}

LABELS = {
    "history_labels": HISTORY_LABELS,
    "state_labels": STATE_LABELS,
    "outgoing_state_labels": OUTGOING_STATE_LABELS,
    "source_states": SOURCE_STATES,
    "state_badges": STATE_BADGES,
    "action_labels": ACTION_LABELS,
    "document_labels": DOCUMENT_LABELS,
    "issuer_labels": ISSUER_LABELS,
    "source_labels": SOURCE_LABELS,
    "category_names": CATEGORY_NAMES,
    "check_labels": CHECK_LABELS,
}


def letter_form(
    letter_no: Annotated[str, Form(max_length=50)] = "",
    issuer_name: Annotated[str, Form(max_length=200)] = "",
    issuer_kind: Annotated[str, Form(max_length=32)] = "",
    from_org_name: Annotated[str, Form(max_length=200)] = "",
    to_org_name: Annotated[str, Form(max_length=200)] = "",
    member_category: Annotated[str, Form(max_length=32)] = "",
    dues_paid_to: Annotated[str, Form(max_length=7)] = "",
    issued_on: Annotated[str, Form(max_length=10)] = "",
    valid_days: Annotated[str, Form(max_length=4)] = "",
) -> dict[str, object]:
    """The 介绍信 fields of a form (filing a request, or recording a letter), as the API takes them."""
    return {
        "letter_no": letter_no.strip(),
        "issuer_name": issuer_name.strip(),
        "issuer_kind": issuer_kind,
        "from_org_name": from_org_name.strip(),
        "to_org_name": to_org_name.strip(),
        "member_category": member_category,
        "dues_paid_to": dues_paid_to,
        "issued_on": issued_on,
        "valid_days": valid_days,
    }


LetterFormDep = Annotated[dict[str, object], Depends(letter_form)]


def get_scope(ctx: PageDep) -> TransferScope:
    return TransferScope(
        session=ctx.session, caller=ctx.caller, policy=transfer_policy(ctx.settings), now=ctx.now
    )


ScopeDep = Annotated[TransferScope, Depends(get_scope)]


def limit_filing_per_caller(request: Request, scope: ScopeDep) -> None:
    """Filing looks a card number up: a budget per signed-in user as well as per source address."""
    enforce_limit(request, Limit.TRANSFERS_PER_CALLER, scope.caller.actor.ref)


FilingLimit = Annotated[None, Depends(limit_filing_per_caller)]


@router.get("")
def transfer_queue(
    request: Request,
    scope: ScopeDep,
    state: Annotated[str, Query(max_length=32)] = "",
    overdue: Annotated[str, Query(max_length=5)] = "",
    q: Annotated[str, Query(max_length=50)] = "",
) -> HTMLResponse:
    if state == "all":
        states: list[TransferState] | None = list(TransferState)
    elif state in set(TransferState):
        states = [TransferState(state)]
    else:
        states = None
    queue = list_queue(
        scope.session,
        caller=scope.caller,
        policy=scope.policy,
        now=scope.now,
        states=states,
        overdue_only=bool(overdue),
        search=q,
    )
    open_queue = queue if states is None and not overdue and not q else None
    home = scope.caller.org_id
    suggestions = (
        list_suggestions(scope.session, caller=scope.caller, org_id=home, since=scope.now - SUGGESTION_WINDOW)
        if home is not None
        else []
    )
    return render(
        request,
        "transfers/list.html",
        {
            "nav": "transfers",
            "queue": queue,
            "open_queue": open_queue,
            "state": state,
            "overdue": bool(overdue),
            "q": q,
            "states": list(TransferState),
            "open_states": OPEN_STATES,
            "sla_days": scope.policy.step_working_days,
            "suggestions": suggestions,
            "outgoing_waiting": count_outgoing_waiting(scope.session, caller=scope.caller),
            **LABELS,
        },
    )


@router.get("/new")
def new_transfer(request: Request, ctx: PageDep) -> HTMLResponse:
    return render(
        request,
        "transfers/new.html",
        {
            "nav": "transfers",
            "organisations": organisations_in_scope(ctx.session, ctx.caller),
            "categories": list(MemberCategory),
            **LABELS,
        },
    )


@router.post("")
def file_transfer(
    request: Request,
    keyring: KeyringDep,
    scope: ScopeDep,
    _source: TransfersLimit,
    _caller: FilingLimit,
    letter_fields: LetterFormDep,
    to_org_id: Annotated[int, Form()],
    card_no: Annotated[str, Form(max_length=40)] = "",
    claimed_name: Annotated[str, Form(max_length=100)] = "",
    probation_due_on: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    letter = letter_fields if letter_fields["letter_no"] else None
    data = _parse(
        TransferCreate,
        {
            "to_org_id": to_org_id,
            "card_no": card_no.strip() or None,
            "claimed_name": claimed_name.strip() or None,
            "probation_due_on": probation_due_on or None,
            "note": note,
            "letter": letter,
        },
    )
    filed = create_request(
        scope.session,
        keyring=keyring,
        data=data,
        caller=scope.caller,
        source=TransferSource.WEB,
        policy=scope.policy,
        now=scope.now,
    )
    return redirect(request, f"/web/transfers/{filed.id}", toast=f"已登记转入申请（编号 {filed.id}）")


@router.post("/suggestions/{member_id}")
def file_suggested(
    member_id: RowId,
    request: Request,
    scope: ScopeDep,
    _source: TransfersLimit,
    _caller: FilingLimit,
    org_id: Annotated[int, Form()],
) -> Response:
    filed = file_from_suggestion(
        scope.session, member_id=member_id, org_id=org_id, caller=scope.caller, now=scope.now
    )
    return redirect(request, f"/web/transfers/{filed.id}", toast="已代为发起转入申请，请录入介绍信")


@router.get("/outgoing")
def outgoing_list(
    request: Request,
    scope: ScopeDep,
    state: Annotated[str, Query(max_length=32)] = "",
) -> HTMLResponse:
    """转出申请: requests for our members to move elsewhere, those waiting for us first."""
    states = list(TransferState) if state == "all" else None
    outgoing = list_outgoing(scope.session, caller=scope.caller, states=states)
    return render(
        request,
        "transfers/outgoing.html",
        {"nav": "transfers", "outgoing": outgoing, "state": state, **LABELS},
    )


@router.get("/outgoing/{transfer_id}")
def outgoing_detail(transfer_id: RowId, request: Request, scope: ScopeDep) -> HTMLResponse:
    return render(
        request,
        "transfers/outgoing_detail.html",
        {
            "nav": "transfers",
            "t": scope.outgoing(transfer_id),
            "confirms": CONFIRMS,
            "release_actions": RELEASE_ACTIONS,
            "danger_actions": DANGER_ACTIONS,
            **LABELS,
        },
    )


@router.post("/outgoing/{transfer_id}/decision")
def outgoing_decision(
    transfer_id: RowId,
    request: Request,
    scope: ScopeDep,
    action: Annotated[TransferAction, Form()],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    decided = decide_release(
        scope.session,
        request_id=transfer_id,
        action=action,
        reason=reason,
        caller=scope.caller,
        policy=scope.policy,
        now=scope.now,
    )
    return redirect(
        request,
        f"/web/transfers/outgoing/{transfer_id}",
        toast=f"已{ACTION_LABELS[action]}：当前状态「{OUTGOING_STATE_LABELS[decided.state]}」",
    )


@router.get("/{transfer_id}")
def transfer_detail(transfer_id: RowId, request: Request, scope: ScopeDep) -> HTMLResponse:
    detail = scope.detail(transfer_id)
    return render(
        request,
        "transfers/detail.html",
        {
            "nav": "transfers",
            "t": detail,
            "placements": placement_choices(scope.session, request_id=transfer_id, caller=scope.caller),
            "pending": detail.state in PENDING_STATES,
            "categories": list(MemberCategory),
            "placing_actions": PLACING_ACTIONS,
            "confirms": CONFIRMS,
            "primary_actions": PRIMARY_ACTIONS,
            "danger_actions": DANGER_ACTIONS,
            **LABELS,
        },
    )


@router.post("/{transfer_id}/transition")
def transfer_transition(
    transfer_id: RowId,
    request: Request,
    scope: ScopeDep,
    action: Annotated[TransferAction, Form()],
    reason: Annotated[str, Form(max_length=500)] = "",
    placement_org_id: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    moved = transition(
        scope.session,
        request_id=transfer_id,
        action=action,
        reason=reason,
        caller=scope.caller,
        policy=scope.policy,
        now=scope.now,
        placement_org_id=int(placement_org_id)
        if placement_org_id.isdigit() and action in PLACING_ACTIONS
        else None,
    )
    return redirect(
        request,
        f"/web/transfers/{transfer_id}",
        toast=f"已{ACTION_LABELS[action]}：当前状态「{STATE_LABELS[moved.state]}」",
    )


@router.post("/{transfer_id}/letter")
def transfer_letter(
    transfer_id: RowId,
    request: Request,
    scope: ScopeDep,
    letter_fields: LetterFormDep,
) -> Response:
    letter = _parse(LetterIn, letter_fields)
    attach_letter(
        scope.session,
        request_id=transfer_id,
        letter=letter,
        caller=scope.caller,
        policy=scope.policy,
        now=scope.now,
    )
    return redirect(request, f"/web/transfers/{transfer_id}", toast="介绍信已录入")


@router.post("/{transfer_id}/details")
def transfer_details(
    transfer_id: RowId,
    request: Request,
    scope: ScopeDep,
    claimed_name: Annotated[str, Form(max_length=100)] = "",
    placement_org_id: Annotated[str, Form(max_length=12)] = "",
    probation_due_on: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    changes = _parse(
        TransferUpdate,
        {
            "claimed_name": claimed_name.strip() or None,
            "placement_org_id": int(placement_org_id) if placement_org_id.isdigit() else None,
            "probation_due_on": probation_due_on or None,
            "note": note,
        },
    )
    update_details(scope.session, request_id=transfer_id, changes=changes, caller=scope.caller, now=scope.now)
    return redirect(request, f"/web/transfers/{transfer_id}", toast="申请信息已保存")


@router.post("/{transfer_id}/documents/{kind}")
def transfer_document(
    transfer_id: RowId,
    kind: DocumentKind,
    request: Request,
    scope: ScopeDep,
    ticked: Annotated[str, Form(max_length=1)] = "1",
    note: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    session, caller, now = scope.session, scope.caller, scope.now
    if ticked == "1":
        tick_document(session, request_id=transfer_id, kind=kind, note=note, caller=caller, now=now)
        message = f"已核对：{DOCUMENT_LABELS[kind]}"
    else:
        untick_document(session, request_id=transfer_id, kind=kind, caller=caller, now=now)
        message = f"已取消核对：{DOCUMENT_LABELS[kind]}"
    return redirect(request, f"/web/transfers/{transfer_id}", toast=message)


Model = TypeVar("Model", TransferCreate, TransferUpdate, LetterIn)

_FIELD_NAMES = {
    "letter_no": "介绍信编号",
    "issuer_name": "开具单位",
    "issuer_kind": "开具单位类别",
    "from_org_name": "转出单位",
    "to_org_name": "去向单位",
    "member_category": "党员类别",
    "dues_paid_to": "党费交至",
    "issued_on": "开具日期",
    "valid_days": "有效期（天）",
    "probation_due_on": "预备期满日期",
    "claimed_name": "姓名",
    "card_no": "卡号",
}


def _parse(model: type[Model], data: dict[str, object]) -> Model:
    """Validate form data with the API's own model; say in Chinese which fields are wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = sorted(
            {_FIELD_NAMES.get(str(error["loc"][-1]), str(error["loc"][-1])) for error in exc.errors()}
        )
        raise InvalidInput(f"请检查：{'、'.join(fields)}") from exc
