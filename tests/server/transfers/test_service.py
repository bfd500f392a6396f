"""Filing, checks as guards, expiry, the audit trail, SLA and scope — through the service, on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from server.audit.service import verify_chain
from server.caller import Caller
from server.db import unit_of_work
from server.errors import DomainError
from server.keyring import Keyring
from server.records.audit import AuditEntry
from server.records.transfers import DocumentKind, IssuerKind, TransferAction, TransferSource, TransferState
from server.transfers.calendar import TransferPolicy
from server.transfers.queue import get_detail, list_queue
from server.transfers.schemas import LetterIn, TransferCreate, TransferDetail, TransferQueue, TransferUpdate
from server.transfers.service import (
    attach_letter,
    create_request,
    expire_lapsed_requests,
    tick_document,
    transition,
    update_details,
)
from tests.server.factories import ZHANG_CARD, World
from tests.server.transfers.factories import (
    NEWCOMER_CARD,
    QIAN_CARD,
    SHANGHAI,
    Elsewhere,
    build_elsewhere,
    letter,
    policy,
    release,
    requests,
    reviewer,
)

MONDAY = datetime(2025, 3, 3, 10, 0, tzinfo=SHANGHAI)
A, S = TransferAction, TransferState


@pytest.fixture
def elsewhere(engine: Engine, keyring: Keyring, world: World) -> Elsewhere:
    return build_elsewhere(engine, keyring, now=MONDAY - timedelta(days=30))


@pytest.fixture
def committee(engine: Engine, world: World) -> Caller:
    return reviewer(engine, world.committee_id, name="街道党委组织员")


class Desk:
    """The service calls a reviewer makes, each in its own unit of work like a request."""

    def __init__(
        self, engine: Engine, keyring: Keyring, world: World, who: Caller, elsewhere: Elsewhere
    ) -> None:
        self.engine, self.keyring, self.world, self.who = engine, keyring, world, who
        self.elsewhere = elsewhere
        self.policy: TransferPolicy = policy()

    def file(self, now: datetime = MONDAY, *, released: bool = True, **fields: object) -> int:
        """File; a request for a member elsewhere is then released by their 基层党委 unless
        ``released`` is False."""
        data = TransferCreate.model_validate({"to_org_id": self.world.committee_id, **fields})
        with unit_of_work(self.engine) as session:
            request = create_request(
                session,
                keyring=self.keyring,
                data=data,
                caller=self.who,
                source=TransferSource.WEB,
                policy=self.policy,
                now=now,
            )
            assert request.id is not None
            request_id, from_org = request.id, request.from_org_id
        if released and from_org is not None:
            release(self.engine, self.elsewhere, request_id, now=now)
        return request_id

    def act(
        self,
        request_id: int,
        action: TransferAction,
        *,
        reason: str = "",
        now: datetime = MONDAY,
        placement_org_id: int | None = None,
        who: Caller | None = None,
    ) -> TransferState:
        with unit_of_work(self.engine) as session:
            request = transition(
                session,
                request_id=request_id,
                action=action,
                reason=reason,
                caller=who or self.who,
                policy=self.policy,
                now=now,
                placement_org_id=placement_org_id,
            )
            return request.state

    def refused(self, request_id: int, action: TransferAction, **kwargs: object) -> str:
        with pytest.raises(DomainError) as excinfo:
            self.act(request_id, action, **kwargs)  # type: ignore[arg-type]
        return excinfo.value.code

    def tick(self, request_id: int, *kinds: DocumentKind, now: datetime = MONDAY) -> None:
        with unit_of_work(self.engine) as session:
            for kind in kinds:
                tick_document(
                    session, request_id=request_id, kind=kind, note="原件已核", caller=self.who, now=now
                )

    def letter(self, request_id: int, letter_in: LetterIn, now: datetime = MONDAY) -> None:
        with unit_of_work(self.engine) as session:
            attach_letter(
                session,
                request_id=request_id,
                letter=letter_in,
                caller=self.who,
                policy=self.policy,
                now=now,
            )

    def detail(self, request_id: int, now: datetime = MONDAY, who: Caller | None = None) -> TransferDetail:
        with Session(self.engine) as session:
            return get_detail(
                session, request_id=request_id, caller=who or self.who, policy=self.policy, now=now
            )

    def queue(self, now: datetime = MONDAY, who: Caller | None = None, **filters: object) -> TransferQueue:
        with Session(self.engine) as session:
            return list_queue(session, caller=who or self.who, policy=self.policy, now=now, **filters)  # type: ignore[arg-type]


@pytest.fixture
def desk(engine: Engine, keyring: Keyring, world: World, committee: Caller, elsewhere: Elsewhere) -> Desk:
    return Desk(engine, keyring, world, committee, elsewhere)


def fresh_letter(**overrides: object) -> LetterIn:
    return letter(issued_on=overrides.pop("issued_on", date(2025, 2, 28)), **overrides)  # type: ignore[arg-type]


def audit_rows(engine: Engine, request_id: int) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(AuditEntry)
                .where(AuditEntry.object_type == "transfer_request", AuditEntry.object_id == str(request_id))
                .order_by(col(AuditEntry.id))
            ).all()
        )


class TestFiling:
    def test_a_member_elsewhere_waits_for_their_organisation_and_stays_unnamed_until_released(
        self, desk: Desk, elsewhere: Elsewhere, world: World, engine: Engine
    ) -> None:
        """A card number is no consent: the request waits for 钱七's own organisation, and the
        receiving side sees neither his name nor where he is until it releases him."""
        request_id = desk.file(card_no=QIAN_CARD.card_no, letter=fresh_letter().model_dump(), released=False)
        waiting = desk.detail(request_id)
        assert waiting.state == S.AWAITING_SOURCE
        assert (waiting.member_id, waiting.member_home_org, waiting.member_category) == (None, None, "full")
        assert waiting.applicant_name == "未登记持卡人（3104********1234）"
        assert "钱七" not in waiting.model_dump_json()
        assert "湖里" not in waiting.model_dump_json().replace("中共湖里区某社区委员会", "").replace(
            "湖里第三党支部", "", 1
        )  # only the letter the receiving side typed in names it
        assert waiting.actions == [A.REJECT, A.WITHDRAW]
        assert desk.refused(request_id, A.BRANCH_ACCEPT, placement_org_id=world.branch_id) == (
            "transfer_transition_not_allowed"
        )
        assert desk.queue(search="钱").items == []

        release(engine, elsewhere, request_id, now=MONDAY)
        detail = desk.detail(request_id)
        assert detail.member_id == elsewhere.qian_id
        assert detail.applicant_name == "钱七"
        assert detail.member_home_org is not None
        assert detail.member_home_org.name == "湖里第三党支部"
        assert detail.state == S.SUBMITTED
        assert detail.committee.id == world.committee_id
        assert detail.letter is not None
        assert detail.letter.valid_until == date(2025, 3, 29)
        assert detail.blockers == []

    def test_a_card_nobody_holds_waits_for_its_holders_tap(self, desk: Desk) -> None:
        request_id = desk.file(card_no=NEWCOMER_CARD.card_no, claimed_name="  周九 ")
        detail = desk.detail(request_id)
        assert (detail.member_id, detail.applicant_name, detail.card_masked, detail.state) == (
            None,
            "周九",
            "3104********6789",
            S.AWAITING_SOURCE,
        )
        assert detail.blockers == ["letter_missing"]

    def test_a_bound_card_elsewhere_and_an_unbound_card_get_the_same_answer(self, desk: Desk) -> None:
        """No name, no home organisation, the same state, checks and actions: the number alone
        says nothing about whether anyone holds the card."""
        bound = desk.detail(desk.file(card_no=QIAN_CARD.card_no, released=False))
        unbound = desk.detail(desk.file(card_no=NEWCOMER_CARD.card_no))
        ignore = {"id", "card_masked", "applicant_name", "history", "submitted_at", "state_since"}
        assert bound.model_dump(exclude=ignore) == unbound.model_dump(exclude=ignore)
        assert (bound.applicant_name, unbound.applicant_name) == (
            "未登记持卡人（3104********1234）",
            "未登记持卡人（3104********6789）",
        )
        assert [h.action for h in bound.history] == [h.action for h in unbound.history]

    def test_nobody_to_file_for(self, desk: Desk) -> None:
        with pytest.raises(DomainError) as excinfo:
            desk.file(note="无卡号、无姓名")
        assert excinfo.value.code == "applicant_name_required"

    def test_a_member_who_already_belongs_here(self, desk: Desk) -> None:
        with pytest.raises(DomainError) as excinfo:
            desk.file(card_no=ZHANG_CARD.card_no)
        assert excinfo.value.code == "already_member"

    def test_a_second_filing_for_the_same_person_is_refused(self, desk: Desk, engine: Engine) -> None:
        first = desk.file(card_no=QIAN_CARD.card_no)
        with pytest.raises(DomainError) as excinfo:
            desk.file(card_no=QIAN_CARD.card_no)
        assert excinfo.value.code == "transfer_already_pending"
        assert str(first) in excinfo.value.message
        assert len(requests(engine)) == 1

    @pytest.mark.parametrize("issuer", [IssuerKind.BRANCH, IssuerKind.GENERAL_BRANCH])
    def test_letters_from_a_branch_or_general_branch_are_refused(
        self, desk: Desk, engine: Engine, issuer: IssuerKind
    ) -> None:
        """Xiamen practice: only a 基层党委 (or a 县级以上组织部) may issue; nothing is stored."""
        with pytest.raises(DomainError) as excinfo:
            desk.file(card_no=QIAN_CARD.card_no, letter=fresh_letter(issuer_kind=issuer).model_dump())
        assert excinfo.value.code == "letter_issuer_not_committee"
        assert "党支部、党总支开具的介绍信不予接收" in excinfo.value.message
        assert requests(engine) == []

    def test_an_organisation_department_may_issue(self, desk: Desk) -> None:
        request_id = desk.file(
            card_no=QIAN_CARD.card_no, letter=fresh_letter(issuer_kind=IssuerKind.ORG_DEPARTMENT).model_dump()
        )
        assert desk.detail(request_id).blockers == []

    def test_a_member_id_outside_the_reviewers_subtree_is_unknown(
        self, desk: Desk, elsewhere: Elsewhere
    ) -> None:
        """Naming a member by id only works inside one's own subtree (else names would leak)."""
        with pytest.raises(DomainError) as excinfo:
            desk.file(member_id=elsewhere.qian_id)
        assert excinfo.value.code == "member_not_found"

    def test_the_target_must_be_in_the_reviewers_subtree(self, desk: Desk, elsewhere: Elsewhere) -> None:
        with pytest.raises(DomainError) as excinfo:
            desk.file(to_org_id=elsewhere.committee_id, claimed_name="周九")
        assert excinfo.value.code == "organisation_not_found"

    def test_placement_must_be_a_branch_below_the_target(self, desk: Desk, world: World) -> None:
        with pytest.raises(DomainError) as excinfo:
            desk.file(claimed_name="周九", placement_org_id=world.committee_id)
        assert excinfo.value.code == "invalid_placement"


class TestSevenYearsExpiredLetter:
    SEVEN_YEARS_AGO = date(2018, 3, 1)

    def test_filed_straight_into_expired_with_the_reason(self, desk: Desk, engine: Engine) -> None:
        request_id = desk.file(
            card_no=QIAN_CARD.card_no, letter=fresh_letter(issued_on=self.SEVEN_YEARS_AGO).model_dump()
        )
        detail = desk.detail(request_id)
        assert detail.state == S.EXPIRED
        assert detail.blockers == ["letter_expired"]
        assert "超期6年11个月" in next(c.message for c in detail.checks if c.code == "letter_expired")
        required = {d.kind for d in detail.documents if d.required}
        assert {DocumentKind.BRANCH_CERTIFICATE, DocumentKind.MEMBER_APPLICATION} <= required
        actions = [entry.action for entry in audit_rows(engine, request_id)]
        assert actions == [
            "transfer.submit",
            "transfer.letter",
            "transfer.source_agree",
            "transfer.release",
            "transfer.expire",
        ]
        expiry = audit_rows(engine, request_id)[-1]
        assert expiry.actor == "system"
        assert "已过期" in expiry.reason
        assert detail.actions == [A.REVIVE, A.WITHDRAW]

    def test_revived_with_the_branch_certificate_and_own_application(self, desk: Desk) -> None:
        request_id = desk.file(
            card_no=QIAN_CARD.card_no, letter=fresh_letter(issued_on=self.SEVEN_YEARS_AGO).model_dump()
        )
        assert desk.refused(request_id, A.REVIVE, reason="已补材料") == "transfer_cure_missing"
        desk.tick(request_id, DocumentKind.BRANCH_CERTIFICATE)
        assert desk.refused(request_id, A.REVIVE, reason="已补材料") == "transfer_cure_missing"
        desk.tick(request_id, DocumentKind.MEMBER_APPLICATION)
        assert desk.refused(request_id, A.REVIVE) == "reason_required"
        assert desk.act(request_id, A.REVIVE, reason="支部证明和本人申请已收") == S.SUBMITTED
        assert (
            desk.act(request_id, A.BRANCH_ACCEPT, placement_org_id=desk.world.branch_id) == S.BRANCH_ACCEPTED
        )
        checks = {c.code: c.severity for c in desk.detail(request_id).checks}
        assert checks["letter_expired"] == "warning"  # still visible after the cure

    def test_revived_with_a_reissued_letter(self, desk: Desk) -> None:
        request_id = desk.file(
            card_no=QIAN_CARD.card_no, letter=fresh_letter(issued_on=self.SEVEN_YEARS_AGO).model_dump()
        )
        desk.letter(request_id, fresh_letter(issued_on=date(2025, 3, 1), letter_no="闽湖组〔2025〕031号"))
        assert desk.act(request_id, A.REVIVE, reason="原单位重新开具介绍信") == S.SUBMITTED
        detail = desk.detail(request_id)
        assert detail.letter is not None
        assert detail.letter.letter_no == "闽湖组〔2025〕031号"
        assert [old.issued_on for old in detail.earlier_letters] == [self.SEVEN_YEARS_AGO]
        assert detail.blockers == []


class TestExpirySweep:
    def test_a_letter_lapsing_while_pending_expires_the_next_day(self, desk: Desk, engine: Engine) -> None:
        request_id = desk.file(
            card_no=QIAN_CARD.card_no, letter=fresh_letter().model_dump()
        )  # valid to 29 March
        last_day = datetime(2025, 3, 29, 23, 0, tzinfo=SHANGHAI)
        with unit_of_work(engine) as session:
            assert expire_lapsed_requests(session, policy=desk.policy, now=last_day) == []
        # Before the sweep runs, the guard already refuses to move a lapsed request on.
        assert (
            desk.refused(
                request_id,
                A.BRANCH_ACCEPT,
                now=last_day + timedelta(days=1),
                placement_org_id=desk.world.branch_id,
            )
            == "letter_expired"
        )
        with unit_of_work(engine) as session:
            assert expire_lapsed_requests(session, policy=desk.policy, now=last_day + timedelta(hours=2)) == [
                request_id
            ]
        assert desk.detail(request_id).state == S.EXPIRED

    def test_cured_and_letterless_requests_are_left_alone(self, desk: Desk, engine: Engine) -> None:
        cured = desk.file(card_no=QIAN_CARD.card_no, letter=fresh_letter().model_dump())
        desk.tick(cured, DocumentKind.BRANCH_CERTIFICATE, DocumentKind.MEMBER_APPLICATION)
        desk.file(card_no=NEWCOMER_CARD.card_no, claimed_name="周九")
        with unit_of_work(engine) as session:
            assert expire_lapsed_requests(session, policy=desk.policy, now=MONDAY + timedelta(days=60)) == []


class TestAuditTrail:
    def test_every_step_is_audited_with_actor_time_and_reason(
        self, desk: Desk, engine: Engine, world: World
    ) -> None:
        request_id = desk.file(card_no=QIAN_CARD.card_no, letter=fresh_letter().model_dump())
        steps = [
            (A.RETURN, "请补充身份证复印件", MONDAY + timedelta(hours=1)),
            (A.RESUBMIT, "", MONDAY + timedelta(days=1)),
            (A.BRANCH_ACCEPT, "", MONDAY + timedelta(days=2)),
            (A.COMMITTEE_APPROVE, "档案已核", MONDAY + timedelta(days=3)),
            (A.RECEIVE, "", MONDAY + timedelta(days=4)),
            (A.CLOSE, "回执已于3月10日寄回", MONDAY + timedelta(days=7)),
        ]
        for action, reason, at in steps:
            desk.act(
                request_id,
                action,
                reason=reason,
                now=at,
                placement_org_id=world.branch_id if action == A.BRANCH_ACCEPT else None,
            )
        rows = [
            row
            for row in audit_rows(engine, request_id)
            if row.action
            not in ("transfer.submit", "transfer.letter", "transfer.source_agree", "transfer.release")
        ]
        assert [(row.action, row.at, row.actor, row.actor_name) for row in rows] == [
            (f"transfer.{action.value}", at, desk.who.actor.ref, "街道党委组织员") for action, _, at in steps
        ]
        assert rows[0].reason == "请补充身份证复印件"
        assert rows[3].reason == "档案已核"
        assert rows[2].reason == "支部同意接收"  # filled in when the reviewer gave none
        assert json.loads(rows[4].detail)["from_state"] == "committee_approved"
        history = desk.detail(request_id, now=MONDAY + timedelta(days=8)).history
        assert [(h.from_state, h.to_state) for h in history[2:4]] == [
            (S.AWAITING_SOURCE, S.SOURCE_BRANCH_AGREED),
            (S.SOURCE_BRANCH_AGREED, S.SUBMITTED),
        ]
        assert [h.actor_name for h in history[2:4]] == ["原组织", "原组织"]  # not who, on their side
        assert [(h.from_state, h.to_state) for h in history[4:]] == [
            (S.SUBMITTED, S.RETURNED),
            (S.RETURNED, S.SUBMITTED),
            (S.SUBMITTED, S.BRANCH_ACCEPTED),
            (S.BRANCH_ACCEPTED, S.COMMITTEE_APPROVED),
            (S.COMMITTEE_APPROVED, S.RECEIVED),
            (S.RECEIVED, S.CLOSED),
        ]
        with Session(engine) as session:
            assert verify_chain(session) is None

    def test_refusals_need_a_reason(self, desk: Desk) -> None:
        request_id = desk.file(card_no=QIAN_CARD.card_no)
        for action in (A.RETURN, A.REJECT, A.WITHDRAW):
            assert desk.refused(request_id, action, reason="  ") == "reason_required"

    def test_a_committee_level_request_needs_a_branch_to_accept_into(self, desk: Desk) -> None:
        request_id = desk.file(card_no=QIAN_CARD.card_no, letter=fresh_letter().model_dump())
        assert desk.refused(request_id, A.BRANCH_ACCEPT) == "placement_required"

    def test_a_failed_guard_changes_nothing(self, desk: Desk, engine: Engine) -> None:
        request_id = desk.file(card_no=QIAN_CARD.card_no)  # no letter yet
        before = len(audit_rows(engine, request_id))
        assert (
            desk.refused(request_id, A.BRANCH_ACCEPT, placement_org_id=desk.world.branch_id)
            == "letter_missing"
        )
        detail = desk.detail(request_id)
        assert detail.state == S.SUBMITTED
        assert detail.placement_org is None
        assert len(audit_rows(engine, request_id)) == before


class TestSla:
    FRIDAY = datetime(2025, 3, 7, 16, 0, tzinfo=SHANGHAI)

    def test_five_working_days_then_overdue(self, desk: Desk) -> None:
        request_id = desk.file(card_no=QIAN_CARD.card_no, now=self.FRIDAY)
        on_time = desk.detail(request_id, now=datetime(2025, 3, 14, 23, 0, tzinfo=SHANGHAI))
        assert (on_time.due_on, on_time.overdue, on_time.waiting_working_days) == (
            date(2025, 3, 14),
            False,
            5,
        )
        late = desk.detail(request_id, now=datetime(2025, 3, 17, 8, 0, tzinfo=SHANGHAI))
        assert (late.overdue, late.waiting_working_days) == (True, 6)

    def test_holidays_push_the_deadline(self, desk: Desk) -> None:
        desk.policy = policy(holidays=(date(2025, 3, 10), date(2025, 3, 11)))
        request_id = desk.file(card_no=QIAN_CARD.card_no, now=self.FRIDAY)
        assert desk.detail(request_id).due_on == date(2025, 3, 18)

    def test_each_step_has_its_own_clock_and_the_receipt_a_month(self, desk: Desk, world: World) -> None:
        request_id = desk.file(card_no=QIAN_CARD.card_no, letter=fresh_letter().model_dump(), now=self.FRIDAY)
        accepted_at = datetime(2025, 3, 12, 9, 0, tzinfo=SHANGHAI)
        desk.act(request_id, A.BRANCH_ACCEPT, now=accepted_at, placement_org_id=world.branch_id)
        assert desk.detail(request_id, now=accepted_at).due_on == date(2025, 3, 19)
        desk.act(request_id, A.COMMITTEE_APPROVE, now=accepted_at)
        received_at = datetime(2025, 3, 13, 9, 0, tzinfo=SHANGHAI)
        desk.act(request_id, A.RECEIVE, now=received_at)
        received = desk.detail(request_id, now=received_at)
        assert received.due_on == date(2025, 4, 12)

    def test_waiting_on_the_applicant_is_never_overdue(self, desk: Desk) -> None:
        request_id = desk.file(card_no=QIAN_CARD.card_no, now=self.FRIDAY)
        desk.act(request_id, A.RETURN, reason="缺介绍信", now=self.FRIDAY)
        detail = desk.detail(request_id, now=self.FRIDAY + timedelta(days=60))
        assert (detail.due_on, detail.overdue) == (None, False)

    def test_queue_is_oldest_first_with_overdue_marked_and_filtered(self, desk: Desk) -> None:
        newer = desk.file(
            card_no=NEWCOMER_CARD.card_no,
            claimed_name="周九",
            now=datetime(2025, 3, 13, 9, 0, tzinfo=SHANGHAI),
        )
        older = desk.file(card_no=QIAN_CARD.card_no, now=self.FRIDAY)
        today = datetime(2025, 3, 17, 9, 0, tzinfo=SHANGHAI)
        queue = desk.queue(now=today)
        assert [(item.id, item.overdue) for item in queue.items] == [(older, True), (newer, False)]
        assert (queue.total, queue.overdue) == (2, 1)
        assert [item.id for item in desk.queue(now=today, overdue_only=True).items] == [older]
        assert [item.id for item in desk.queue(now=today, search="周").items] == [newer]
        assert desk.queue(now=today, states=[S.CLOSED]).items == []


class TestScope:
    def test_a_branch_sees_a_committee_request_once_placed_in_it(
        self, desk: Desk, world: World, engine: Engine
    ) -> None:
        first_branch = reviewer(engine, world.branch_id, may_approve=False, name="第一支部书记")
        second_branch = reviewer(engine, world.other_branch_id, may_approve=False, name="第二支部书记")
        request_id = desk.file(card_no=QIAN_CARD.card_no, letter=fresh_letter().model_dump())
        assert desk.queue(who=first_branch).items == []
        with pytest.raises(DomainError) as excinfo:
            desk.detail(request_id, who=first_branch)
        assert excinfo.value.code == "transfer_not_found"

        with unit_of_work(engine) as session:
            update_details(
                session,
                request_id=request_id,
                changes=TransferUpdate(placement_org_id=world.branch_id),
                caller=desk.who,
                now=MONDAY,
            )
        assert [item.id for item in desk.queue(who=first_branch).items] == [request_id]
        assert desk.queue(who=second_branch).items == []
        assert desk.detail(request_id, who=first_branch).actions == [
            A.BRANCH_ACCEPT,
            A.RETURN,
            A.REJECT,
            A.WITHDRAW,
        ]

        assert desk.act(request_id, A.BRANCH_ACCEPT, who=first_branch) == S.BRANCH_ACCEPTED
        assert desk.detail(request_id, who=first_branch).actions == [A.WITHDRAW]
        assert desk.refused(request_id, A.COMMITTEE_APPROVE, who=first_branch) == "transfer_level_forbidden"
        assert desk.refused(request_id, A.COMMITTEE_APPROVE, who=second_branch) == "transfer_not_found"
        assert desk.act(request_id, A.COMMITTEE_APPROVE) == S.COMMITTEE_APPROVED

    def test_a_secretary_at_the_committee_may_not_approve(self, desk: Desk, world: World) -> None:
        secretary = reviewer(desk.engine, world.committee_id, may_approve=False)
        request_id = desk.file(card_no=QIAN_CARD.card_no, letter=fresh_letter().model_dump())
        desk.act(request_id, A.BRANCH_ACCEPT, placement_org_id=world.branch_id, who=secretary)
        assert desk.refused(request_id, A.COMMITTEE_APPROVE, who=secretary) == "transfer_level_forbidden"

    def test_probation_overdue_blocks_until_the_decision_is_ticked(
        self, desk: Desk, world: World, engine: Engine
    ) -> None:
        from server.vocabulary import MemberCategory

        request_id = desk.file(
            card_no=QIAN_CARD.card_no,
            letter=fresh_letter(category=MemberCategory.PROBATIONARY).model_dump(),
            probation_due_on=date(2025, 1, 31),
        )
        assert (
            desk.refused(request_id, A.BRANCH_ACCEPT, placement_org_id=world.branch_id) == "probation_overdue"
        )
        desk.tick(request_id, DocumentKind.PROBATION_DECISION)
        assert desk.act(request_id, A.BRANCH_ACCEPT, placement_org_id=world.branch_id) == S.BRANCH_ACCEPTED
