"""Transfer test helpers: an organisation elsewhere with a member and card, letters, reviewers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from server.caller import Actor, Caller
from server.cards.service import bind_card
from server.db import unit_of_work
from server.keyring import Keyring
from server.orgs.service import add_member, add_organisation, subtree_scope
from server.records.transfers import IssuerKind, TransferAction, TransferRequest
from server.transfers.calendar import TransferPolicy, make_calendar
from server.transfers.schemas import LetterIn
from server.transfers.service import decide_release
from server.vocabulary import MemberCategory, OrgKind, UserRole
from tests.server.signing import card

SHANGHAI = ZoneInfo("Asia/Shanghai")
QIAN_CARD = card("3104393000000041234", "04C1A0C1A0C1A0")  # a member of a committee elsewhere
NEWCOMER_CARD = card("3104393000000056789", "04AB12CD34EF56")  # nobody's card yet


@dataclass
class Elsewhere:
    """A 基层党委 outside the world's tree, with one branch and one member who has a card."""

    committee_id: int
    branch_id: int
    qian_id: int


def build_elsewhere(engine: Engine, keyring: Keyring, *, now: datetime) -> Elsewhere:
    with unit_of_work(engine) as session:
        committee = add_organisation(
            session, name="湖里区某社区党委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=now
        )
        assert committee.id is not None
        branch = add_organisation(
            session, name="湖里第三党支部", kind=OrgKind.BRANCH, parent_id=committee.id, now=now
        )
        assert branch.id is not None
        qian = add_member(
            session, name="钱七", org_id=branch.id, category=MemberCategory.FULL, joined_org_at=None, now=now
        )
        assert qian.id is not None
        bind_card(
            session, keyring=keyring, member_id=qian.id, card_no=QIAN_CARD.card_no, uid=QIAN_CARD.uid, now=now
        )
        return Elsewhere(committee_id=committee.id, branch_id=branch.id, qian_id=qian.id)


def letter(
    *,
    issued_on: date,
    valid_days: int = 30,
    issuer_kind: IssuerKind = IssuerKind.BASIC_COMMITTEE,
    category: MemberCategory = MemberCategory.FULL,
    dues_paid_to: str | None = None,
    letter_no: str = "闽湖组〔2025〕017号",
) -> LetterIn:
    return LetterIn(
        letter_no=letter_no,
        issuer_name="中共湖里区某社区委员会",
        issuer_kind=issuer_kind,
        from_org_name="湖里第三党支部",
        to_org_name="思明区某街道党委",
        member_category=category,
        dues_paid_to=dues_paid_to or f"{issued_on.year}-{issued_on.month:02d}",
        issued_on=issued_on,
        valid_days=valid_days,
    )


def reviewer(
    bind: Engine | Session, org_id: int | None, *, may_approve: bool = True, name: str = "组织员"
) -> Caller:
    """A web user at ``org_id``: an organiser (committee-level actions) or, without
    ``may_approve``, a secretary; their scope resolved like a signed-in session's."""
    if isinstance(bind, Session):
        scope = subtree_scope(bind, org_id)
    else:
        with Session(bind) as session:
            scope = subtree_scope(session, org_id)
    return Caller(
        actor=Actor(f"user:{org_id or 0}", name),
        role=UserRole.ORGANISER if may_approve else UserRole.SECRETARY,
        org_id=org_id,
        scope=scope,
        may_approve=may_approve,
    )


def policy(*, holidays: tuple[date, ...] = (), makeup: tuple[date, ...] = ()) -> TransferPolicy:
    return TransferPolicy(tz=SHANGHAI, calendar=make_calendar(holidays, makeup))


def requests(engine: Engine) -> list[TransferRequest]:
    with Session(engine) as session:
        return list(session.exec(select(TransferRequest).order_by(col(TransferRequest.id))).all())


def release(engine: Engine, elsewhere: Elsewhere, request_id: int, *, now: datetime) -> None:
    """钱七's own 基层党委 lets him go: its organiser agrees for the branch and releases."""
    organiser = reviewer(engine, elsewhere.committee_id, name="湖里组织员")
    with unit_of_work(engine) as session:
        for action in (TransferAction.SOURCE_AGREE, TransferAction.RELEASE):
            decide_release(
                session,
                request_id=request_id,
                action=action,
                reason="",
                caller=organiser,
                policy=policy(),
                now=now,
            )
