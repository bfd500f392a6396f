"""The 组织关系转入 (inbound transfer) state machine: one explicit table, enforced in one function.

Between organisations the member's own organisation releases them first (转出), and only then
does the receiving side review::

    (filed for a current member of another organisation, or by a card number) ──▶ AWAITING_SOURCE
    AWAITING_SOURCE ──source_agree (branch)──▶ SOURCE_BRANCH_AGREED ──release (基层党委)──▶ SUBMITTED
    AWAITING_SOURCE | SOURCE_BRANCH_AGREED ──refuse_release (with a reason)──▶ SOURCE_REFUSED
    AWAITING_SOURCE ──confirm_by_tap──▶ SUBMITTED   (a card nobody here holds: its holder tapped it)
    AWAITING_SOURCE | SOURCE_BRANCH_AGREED ──withdraw / reject (the receiving side)──▶ WITHDRAWN / REJECTED

A card number is printed on the card: typing it is not the member's consent, nor their
organisation's. The source states have no ``expire``: reviving an expired request goes to
SUBMITTED, which would skip the release.

Then the states of docs/domain-rules.md §3.7, refined::

    (kiosk tap, web or API) ──▶ SUBMITTED ──branch_accept──▶ BRANCH_ACCEPTED ──committee_approve──▶
    COMMITTEE_APPROVED ──receive──▶ RECEIVED ──close (回执 returned)──▶ CLOSED

    SUBMITTED ─return─▶ RETURNED ─resubmit─▶ SUBMITTED     (the branch, or the committee from
    BRANCH_ACCEPTED ─return─▶ RETURNED                      BRANCH_ACCEPTED, sends it back)
    SUBMITTED | BRANCH_ACCEPTED ─reject─▶ REJECTED
    any pending state ─expire (letter lapsed)─▶ EXPIRED ─revive (cured)─▶ SUBMITTED
    any pending state ─withdraw (the member withdraws)─▶ WITHDRAWN

What changed from the proposal and why:

* No DRAFT: a kiosk tap or a form submission *is* the application.
* No PRECHECK_FAILED state: the checks (issuer, validity, probation, dues) are computed every time
  the request is shown, and the forward actions refuse to run while a blocking check fails. A
  state would go stale the moment a reviewer ticks a document; a guard cannot.
* EXPIRED is entered by the system sweep (``service.expire_lapsed_requests``) or at once when a
  request is filed with a letter that has already lapsed. Reviving it needs the cure of
  docs/domain-rules.md §3.4 (支部证明 + 本人申请, or a re-issued letter); that guard lives in the
  service, next to the other checks.

Each rule also says at which *level* the actor must stand: ``BRANCH`` actions need the request to
be visible to the actor (its receiving organisation or its placement branch is in their subtree);
``COMMITTEE`` actions need the receiving 基层党委 itself in their subtree (docs/domain-rules.md §3.7: the
committee receives, the branch confirms placement). ``SOURCE_BRANCH`` and ``SOURCE_COMMITTEE``
actions are the same two levels on the member's side: their organisation (``from_org_id``) in the
actor's subtree, and for the release their 基层党委 (``from_committee_id``) too. ``SYSTEM`` actions
are not offered to people. Who stands at which level is decided in one place,
``server.transfers.access.may_take``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from server.errors import TransferTransitionNotAllowed
from server.records.transfers import TransferAction, TransferState


class Level(StrEnum):
    BRANCH = "branch"
    COMMITTEE = "committee"
    SOURCE_BRANCH = "source_branch"
    SOURCE_COMMITTEE = "source_committee"
    SYSTEM = "system"


# The levels of the member's own organisation: its half of the request (the outgoing list).
SOURCE_LEVELS: frozenset[Level] = frozenset({Level.SOURCE_BRANCH, Level.SOURCE_COMMITTEE})


@dataclass(frozen=True)
class Rule:
    target: TransferState
    level: Level
    reason_required: bool


S = TransferState
A = TransferAction

# Waiting for someone; a second request for the same person at the same organisation refers to
# the pending one instead. RECEIVED is not pending: the member already belongs here.
PENDING_STATES: frozenset[TransferState] = frozenset(
    {
        S.AWAITING_SOURCE,
        S.SOURCE_BRANCH_AGREED,
        S.SUBMITTED,
        S.RETURNED,
        S.BRANCH_ACCEPTED,
        S.COMMITTEE_APPROVED,
        S.EXPIRED,
    }
)
# Waiting for the member's organisation (or the holder's tap); the receiving side only waits.
SOURCE_STATES: frozenset[TransferState] = frozenset({S.AWAITING_SOURCE, S.SOURCE_BRANCH_AGREED})
FINAL_STATES: frozenset[TransferState] = frozenset({S.REJECTED, S.CLOSED, S.WITHDRAWN, S.SOURCE_REFUSED})
OPEN_STATES: frozenset[TransferState] = frozenset(set(TransferState) - FINAL_STATES)

B, C, SYS = Level.BRANCH, Level.COMMITTEE, Level.SYSTEM
SB, SC = Level.SOURCE_BRANCH, Level.SOURCE_COMMITTEE
WHY, NO_WHY = True, False  # is a reason required?

# Every allowed (state, action) pair; anything not listed is refused.
ALLOWED: dict[tuple[TransferState, TransferAction], Rule] = {
    (S.AWAITING_SOURCE, A.SOURCE_AGREE): Rule(S.SOURCE_BRANCH_AGREED, SB, NO_WHY),
    (S.AWAITING_SOURCE, A.REFUSE_RELEASE): Rule(S.SOURCE_REFUSED, SB, WHY),
    (S.AWAITING_SOURCE, A.CONFIRM_BY_TAP): Rule(S.SUBMITTED, SYS, NO_WHY),
    (S.AWAITING_SOURCE, A.REJECT): Rule(S.REJECTED, B, WHY),
    (S.AWAITING_SOURCE, A.WITHDRAW): Rule(S.WITHDRAWN, B, WHY),
    (S.SOURCE_BRANCH_AGREED, A.RELEASE): Rule(S.SUBMITTED, SC, NO_WHY),
    (S.SOURCE_BRANCH_AGREED, A.REFUSE_RELEASE): Rule(S.SOURCE_REFUSED, SC, WHY),
    (S.SOURCE_BRANCH_AGREED, A.REJECT): Rule(S.REJECTED, B, WHY),
    (S.SOURCE_BRANCH_AGREED, A.WITHDRAW): Rule(S.WITHDRAWN, B, WHY),
    (S.SUBMITTED, A.BRANCH_ACCEPT): Rule(S.BRANCH_ACCEPTED, B, NO_WHY),
    (S.SUBMITTED, A.RETURN): Rule(S.RETURNED, B, WHY),
    (S.SUBMITTED, A.REJECT): Rule(S.REJECTED, B, WHY),
    (S.SUBMITTED, A.EXPIRE): Rule(S.EXPIRED, SYS, WHY),
    (S.SUBMITTED, A.WITHDRAW): Rule(S.WITHDRAWN, B, WHY),
    (S.RETURNED, A.RESUBMIT): Rule(S.SUBMITTED, B, NO_WHY),
    (S.RETURNED, A.EXPIRE): Rule(S.EXPIRED, SYS, WHY),
    (S.RETURNED, A.WITHDRAW): Rule(S.WITHDRAWN, B, WHY),
    (S.BRANCH_ACCEPTED, A.COMMITTEE_APPROVE): Rule(S.COMMITTEE_APPROVED, C, NO_WHY),
    (S.BRANCH_ACCEPTED, A.RETURN): Rule(S.RETURNED, C, WHY),
    (S.BRANCH_ACCEPTED, A.REJECT): Rule(S.REJECTED, C, WHY),
    (S.BRANCH_ACCEPTED, A.EXPIRE): Rule(S.EXPIRED, SYS, WHY),
    (S.BRANCH_ACCEPTED, A.WITHDRAW): Rule(S.WITHDRAWN, B, WHY),
    (S.COMMITTEE_APPROVED, A.RECEIVE): Rule(S.RECEIVED, C, NO_WHY),
    (S.COMMITTEE_APPROVED, A.EXPIRE): Rule(S.EXPIRED, SYS, WHY),
    (S.COMMITTEE_APPROVED, A.WITHDRAW): Rule(S.WITHDRAWN, B, WHY),
    (S.RECEIVED, A.CLOSE): Rule(S.CLOSED, C, NO_WHY),
    (S.EXPIRED, A.REVIVE): Rule(S.SUBMITTED, B, WHY),
    (S.EXPIRED, A.WITHDRAW): Rule(S.WITHDRAWN, B, WHY),
}


def rule_for(state: TransferState, action: TransferAction) -> Rule:
    """The rule for ``action`` in ``state``: the one place a transition is allowed or refused.

    Raises:
        TransferTransitionNotAllowed: the table has no such transition.
    """
    rule = ALLOWED.get((state, action))
    if rule is None:
        raise TransferTransitionNotAllowed(
            f"转入申请当前为「{STATE_LABELS[state]}」，不能执行「{ACTION_LABELS[action]}」"
        )
    return rule


def actions_from(state: TransferState, *, include_system: bool = False) -> list[TransferAction]:
    """The actions a person (or, with ``include_system``, the system) may take in ``state``."""
    return [
        action
        for (source, action), rule in ALLOWED.items()
        if source == state and (include_system or rule.level != Level.SYSTEM)
    ]


STATE_LABELS: dict[TransferState, str] = {
    S.AWAITING_SOURCE: "待原组织同意转出或本人确认",
    S.SOURCE_BRANCH_AGREED: "原支部已同意，待原党委同意转出",
    S.SOURCE_REFUSED: "原组织不同意转出",
    S.SUBMITTED: "待支部审核",
    S.RETURNED: "已退回补正",
    S.REJECTED: "不予接收",
    S.BRANCH_ACCEPTED: "待党委审批",
    S.COMMITTEE_APPROVED: "待接收",
    S.RECEIVED: "已接收，待寄回回执",
    S.CLOSED: "已办结",
    S.EXPIRED: "介绍信已过期",
    S.WITHDRAWN: "本人已撤回",
}

ACTION_LABELS: dict[TransferAction, str] = {
    A.SOURCE_AGREE: "支部同意转出",
    A.RELEASE: "党委同意转出",
    A.REFUSE_RELEASE: "不同意转出",
    A.CONFIRM_BY_TAP: "本人刷卡确认",
    A.BRANCH_ACCEPT: "支部同意",
    A.RETURN: "退回补正",
    A.REJECT: "不予接收",
    A.RESUBMIT: "重新提交",
    A.COMMITTEE_APPROVE: "党委审批通过",
    A.RECEIVE: "接收入支部",
    A.CLOSE: "回执已寄回，办结",
    A.EXPIRE: "介绍信过期",
    A.REVIVE: "补齐材料，恢复办理",
    A.WITHDRAW: "本人撤回",
}

# The same states as the member's own organisation reads them (its outgoing list).
OUTGOING_STATE_LABELS: dict[TransferState, str] = {
    **STATE_LABELS,
    S.AWAITING_SOURCE: "待本支部审核转出",
    S.SOURCE_BRANCH_AGREED: "支部已同意，待党委同意转出",
    S.SOURCE_REFUSED: "已不同意转出",
    S.SUBMITTED: "已转出，待接收方审核",
    S.RETURNED: "已转出，接收方退回补正",
    S.BRANCH_ACCEPTED: "已转出，待接收方党委审批",
    S.COMMITTEE_APPROVED: "已转出，待接收",
    S.RECEIVED: "对方已接收",
    S.CLOSED: "对方已接收，已办结",
    S.REJECTED: "对方不予接收",
    S.WITHDRAWN: "已撤回",
    S.EXPIRED: "已转出，介绍信已过期",
}
