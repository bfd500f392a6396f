"""The transfer state table, exhaustively: every (state, action) pair is either the expected move
or refused with ``transfer_transition_not_allowed`` — in the table itself, and through the
service on a real request in each state (SQLite and PostgreSQL), from the receiving side and from
the member's own organisation."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from server.db import unit_of_work
from server.errors import DomainError, TransferTransitionNotAllowed
from server.keyring import Keyring
from server.records.transfers import (
    DocumentKind,
    TransferAction,
    TransferRequest,
    TransferSource,
    TransferState,
)
from server.transfers.schemas import TransferCreate
from server.transfers.service import create_request, decide_release, tick_document, transition
from server.transfers.states import ALLOWED, FINAL_STATES, PENDING_STATES, Level, actions_from, rule_for
from tests.server.factories import World
from tests.server.transfers.factories import (
    QIAN_CARD,
    SHANGHAI,
    Elsewhere,
    build_elsewhere,
    letter,
    policy,
    reviewer,
)

S, A = TransferState, TransferAction

# Written out independently of the implementation's table (docs/domain-rules.md §3.7, refined).
EXPECTED: dict[TransferState, dict[TransferAction, TransferState]] = {
    S.AWAITING_SOURCE: {
        A.SOURCE_AGREE: S.SOURCE_BRANCH_AGREED,
        A.REFUSE_RELEASE: S.SOURCE_REFUSED,
        A.CONFIRM_BY_TAP: S.SUBMITTED,
        A.REJECT: S.REJECTED,
        A.WITHDRAW: S.WITHDRAWN,
    },
    S.SOURCE_BRANCH_AGREED: {
        A.RELEASE: S.SUBMITTED,
        A.REFUSE_RELEASE: S.SOURCE_REFUSED,
        A.REJECT: S.REJECTED,
        A.WITHDRAW: S.WITHDRAWN,
    },
    S.SOURCE_REFUSED: {},
    S.SUBMITTED: {
        A.BRANCH_ACCEPT: S.BRANCH_ACCEPTED,
        A.RETURN: S.RETURNED,
        A.REJECT: S.REJECTED,
        A.WITHDRAW: S.WITHDRAWN,
        A.EXPIRE: S.EXPIRED,
    },
    S.RETURNED: {A.RESUBMIT: S.SUBMITTED, A.WITHDRAW: S.WITHDRAWN, A.EXPIRE: S.EXPIRED},
    S.BRANCH_ACCEPTED: {
        A.COMMITTEE_APPROVE: S.COMMITTEE_APPROVED,
        A.RETURN: S.RETURNED,
        A.REJECT: S.REJECTED,
        A.WITHDRAW: S.WITHDRAWN,
        A.EXPIRE: S.EXPIRED,
    },
    S.COMMITTEE_APPROVED: {A.RECEIVE: S.RECEIVED, A.WITHDRAW: S.WITHDRAWN, A.EXPIRE: S.EXPIRED},
    S.RECEIVED: {A.CLOSE: S.CLOSED},
    S.EXPIRED: {A.REVIVE: S.SUBMITTED, A.WITHDRAW: S.WITHDRAWN},
    S.REJECTED: {},
    S.CLOSED: {},
    S.WITHDRAWN: {},
}
COMMITTEE_LEVEL = {
    (S.BRANCH_ACCEPTED, A.COMMITTEE_APPROVE),
    (S.BRANCH_ACCEPTED, A.RETURN),
    (S.BRANCH_ACCEPTED, A.REJECT),
    (S.COMMITTEE_APPROVED, A.RECEIVE),
    (S.RECEIVED, A.CLOSE),
}
# The member's own organisation: its branch agrees or refuses, its 基层党委 releases or refuses.
SOURCE_BRANCH_LEVEL = {(S.AWAITING_SOURCE, A.SOURCE_AGREE), (S.AWAITING_SOURCE, A.REFUSE_RELEASE)}
SOURCE_COMMITTEE_LEVEL = {(S.SOURCE_BRANCH_AGREED, A.RELEASE), (S.SOURCE_BRANCH_AGREED, A.REFUSE_RELEASE)}
SOURCE_MOVES = SOURCE_BRANCH_LEVEL | SOURCE_COMMITTEE_LEVEL
ALL_PAIRS = [(state, action) for state in TransferState for action in TransferAction]


class TestTable:
    @pytest.mark.parametrize(
        ("state", "action"), ALL_PAIRS, ids=[f"{s.value}-{a.value}" for s, a in ALL_PAIRS]
    )
    def test_every_pair_is_the_expected_move_or_refused(
        self, state: TransferState, action: TransferAction
    ) -> None:
        expected = EXPECTED[state].get(action)
        if expected is None:
            with pytest.raises(TransferTransitionNotAllowed) as excinfo:
                rule_for(state, action)
            assert excinfo.value.code == "transfer_transition_not_allowed"
            assert "不能执行" in excinfo.value.message
        else:
            assert rule_for(state, action).target == expected

    def test_the_table_has_nothing_else(self) -> None:
        assert set(ALLOWED) == {(s, a) for s, moves in EXPECTED.items() for a in moves}

    def test_levels(self) -> None:
        """Only expiry and a card holder's own tap are the system's; approval, receipt, closing and
        the committee's own return or rejection need the receiving 基层党委; agreeing, releasing
        and refusing belong to the member's own organisation."""
        for (state, action), rule in ALLOWED.items():
            if action in (A.EXPIRE, A.CONFIRM_BY_TAP):
                assert rule.level == Level.SYSTEM
            elif (state, action) in COMMITTEE_LEVEL:
                assert rule.level == Level.COMMITTEE
            elif (state, action) in SOURCE_BRANCH_LEVEL:
                assert rule.level == Level.SOURCE_BRANCH
            elif (state, action) in SOURCE_COMMITTEE_LEVEL:
                assert rule.level == Level.SOURCE_COMMITTEE
            else:
                assert rule.level == Level.BRANCH

    def test_reasons_are_required_for_refusals_and_exceptions(self) -> None:
        needs_reason = {a for (_, a), rule in ALLOWED.items() if rule.reason_required}
        assert needs_reason == {A.RETURN, A.REJECT, A.WITHDRAW, A.EXPIRE, A.REVIVE, A.REFUSE_RELEASE}

    def test_final_states_offer_nothing(self) -> None:
        assert all(actions_from(state, include_system=True) == [] for state in FINAL_STATES)
        assert actions_from(S.SUBMITTED) == [A.BRANCH_ACCEPT, A.RETURN, A.REJECT, A.WITHDRAW]

    def test_pending_states_are_the_ones_a_second_filing_refers_to(self) -> None:
        assert {
            S.AWAITING_SOURCE,
            S.SOURCE_BRANCH_AGREED,
            S.SUBMITTED,
            S.RETURNED,
            S.BRANCH_ACCEPTED,
            S.COMMITTEE_APPROVED,
            S.EXPIRED,
        } == PENDING_STATES

    def test_nothing_leaves_the_source_states_for_review_but_a_release_or_the_holders_tap(self) -> None:
        """The only ways from waiting on the member's organisation to review (where receiving is
        possible) are its release and, for a card nobody holds, the holder's tap; no expiry there
        either (a revival would skip the release)."""
        into_review = {
            (state, action)
            for (state, action), rule in ALLOWED.items()
            if state in (S.AWAITING_SOURCE, S.SOURCE_BRANCH_AGREED)
            and rule.target in PENDING_STATES
            and rule.target not in (S.AWAITING_SOURCE, S.SOURCE_BRANCH_AGREED)
        }
        assert into_review == {(S.SOURCE_BRANCH_AGREED, A.RELEASE), (S.AWAITING_SOURCE, A.CONFIRM_BY_TAP)}


NOW = datetime(2025, 3, 3, 10, 0, tzinfo=SHANGHAI)  # a Monday
TODAY = NOW.date()


def _drive_to(
    session: Session, keyring: Keyring, world: World, elsewhere: Elsewhere, target: TransferState
) -> int:
    """A request for 钱七 at the world's committee, placed in 第一党支部, brought to ``target``
    (released by his own 基层党委 first, unless ``target`` is one of its states)."""
    now = NOW
    committee = reviewer(session, world.committee_id)
    source = reviewer(session, elsewhere.committee_id)
    issued = TODAY - timedelta(days=400) if target == S.EXPIRED else TODAY - timedelta(days=3)
    request = create_request(
        session,
        keyring=keyring,
        data=TransferCreate(
            to_org_id=world.committee_id,
            card_no=QIAN_CARD.card_no,
            placement_org_id=world.branch_id,
            letter=letter(issued_on=issued),
        ),
        caller=committee,
        source=TransferSource.API,
        policy=policy(),
        now=now,
    )
    assert request.id is not None
    assert request.state == S.AWAITING_SOURCE
    releases = {
        S.AWAITING_SOURCE: [],
        S.SOURCE_BRANCH_AGREED: [A.SOURCE_AGREE],
        S.SOURCE_REFUSED: [A.REFUSE_RELEASE],
    }.get(target, [A.SOURCE_AGREE, A.RELEASE])
    for action in releases:
        decide_release(
            session,
            request_id=request.id,
            action=action,
            reason="理由",
            caller=source,
            policy=policy(),
            now=now,
        )
    if target in (S.AWAITING_SOURCE, S.SOURCE_BRANCH_AGREED, S.SOURCE_REFUSED):
        assert request.state == target
        return request.id
    if target == S.EXPIRED:
        assert request.state == S.EXPIRED
        for kind in (DocumentKind.BRANCH_CERTIFICATE, DocumentKind.MEMBER_APPLICATION):
            tick_document(session, request_id=request.id, kind=kind, note="", caller=committee, now=now)
        return request.id
    path = {
        S.SUBMITTED: [],
        S.RETURNED: [A.RETURN],
        S.REJECTED: [A.REJECT],
        S.WITHDRAWN: [A.WITHDRAW],
        S.BRANCH_ACCEPTED: [A.BRANCH_ACCEPT],
        S.COMMITTEE_APPROVED: [A.BRANCH_ACCEPT, A.COMMITTEE_APPROVE],
        S.RECEIVED: [A.BRANCH_ACCEPT, A.COMMITTEE_APPROVE, A.RECEIVE],
        S.CLOSED: [A.BRANCH_ACCEPT, A.COMMITTEE_APPROVE, A.RECEIVE, A.CLOSE],
    }[target]
    for action in path:
        transition(
            session,
            request_id=request.id,
            action=action,
            reason="理由",
            caller=committee,
            policy=policy(),
            now=now,
        )
    assert request.state == target
    return request.id


class TestThroughTheService:
    def test_every_action_from_a_real_request_in_every_state(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """People get exactly the table's moves (expiry and the holder's tap are the system's), each
        side only its own: the receiving committee its moves, 钱七's own 基层党委 the release; the
        rest are refused and leave the request as it was. Each state's request lives in a
        savepoint rolled back after."""
        elsewhere = build_elsewhere(engine, keyring, now=NOW)
        receiving: dict[tuple[TransferState, TransferAction], TransferState | str] = {}
        releasing: dict[tuple[TransferState, TransferAction], TransferState | str] = {}
        with unit_of_work(engine) as session:
            for state in TransferState:
                per_state = session.begin_nested()
                request_id = _drive_to(session, keyring, world, elsewhere, state)
                for action in TransferAction:
                    receiving[state, action] = _try(
                        session, request_id, action, world.committee_id, "receiving"
                    )
                    releasing[state, action] = _try(
                        session, request_id, action, elsewhere.committee_id, "source"
                    )
                    unchanged = session.get(TransferRequest, request_id)
                    assert unchanged is not None
                    assert unchanged.state == state
                per_state.rollback()
                session.expire_all()

        for (state, action), outcome in receiving.items():
            allowed = EXPECTED[state].get(action)
            if allowed is None or action in (A.EXPIRE, A.CONFIRM_BY_TAP) or (state, action) in SOURCE_MOVES:
                assert outcome == "transfer_transition_not_allowed", (state, action, outcome)
            else:
                assert outcome == allowed, (state, action, outcome)
        for (state, action), outcome in releasing.items():
            if (state, action) in SOURCE_MOVES:
                assert outcome == EXPECTED[state][action], (state, action, outcome)
            else:
                assert outcome == "transfer_transition_not_allowed", (state, action, outcome)


def _try(
    session: Session, request_id: int, action: TransferAction, org_id: int, side: str
) -> TransferState | str:
    """The state ``action`` by ``side`` leads to, or the refusal's code; either way undone afterwards."""
    savepoint = session.begin_nested()
    try:
        if side == "receiving":
            transition(
                session,
                request_id=request_id,
                action=action,
                reason="理由",
                caller=reviewer(session, org_id),
                policy=policy(),
                now=NOW,
            )
        else:
            decide_release(
                session,
                request_id=request_id,
                action=action,
                reason="理由",
                caller=reviewer(session, org_id),
                policy=policy(),
                now=NOW,
            )
    except DomainError as error:
        return error.code
    else:
        request = session.get(TransferRequest, request_id)
        assert request is not None
        return request.state
    finally:
        savepoint.rollback()
        session.expire_all()
