"""A small organisation tree with a few members and cards, made through the real services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from server.cards.service import bind_card
from server.db import unit_of_work
from server.keyring import Keyring
from server.orgs.service import add_member, add_organisation
from server.records.audit import AuditEntry
from server.records.cards import CardBinding
from server.records.orgs import Member
from server.vocabulary import MemberCategory, OrgKind

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))

ZHANG_CARD = "3104393000000018901"  # 张三明's, bound before the import
ZHAO_CARD = "3104393000000035555"  # 赵六's, in 第二党支部


@dataclass(frozen=True)
class Tree:
    siming: int  # 思明区某街道党委
    branch: int  # 思明区某街道党委/第一党支部
    group: int  # …/第一党支部/第一党小组
    second: int  # 思明区某街道党委/第二党支部
    huli: int  # 湖里区某公司党委
    huli_branch: int  # 湖里区某公司党委/第一党支部 (same name as ``branch``)
    zhang: int
    wang: int
    zhao: int


@pytest.fixture
def tree(engine: Engine, keyring: Keyring) -> Tree:
    with unit_of_work(engine) as session:

        def org(name: str, kind: OrgKind, parent: int | None) -> int:
            created = add_organisation(session, name=name, kind=kind, parent_id=parent, now=NOW)
            assert created.id is not None
            return created.id

        def member(name: str, org_id: int) -> int:
            created = add_member(
                session, name=name, org_id=org_id, category=MemberCategory.FULL, joined_org_at=None, now=NOW
            )
            assert created.id is not None
            return created.id

        siming = org("思明区某街道党委", OrgKind.BASIC_COMMITTEE, None)
        branch = org("第一党支部", OrgKind.BRANCH, siming)
        group = org("第一党小组", OrgKind.PARTY_GROUP, branch)
        second = org("第二党支部", OrgKind.BRANCH, siming)
        huli = org("湖里区某公司党委", OrgKind.BASIC_COMMITTEE, None)
        huli_branch = org("第一党支部", OrgKind.BRANCH, huli)
        zhang, wang, zhao = member("张三明", branch), member("王五", branch), member("赵六", second)
        bind_card(session, keyring=keyring, member_id=zhang, card_no=ZHANG_CARD, uid=None, now=NOW)
        bind_card(session, keyring=keyring, member_id=zhao, card_no=ZHAO_CARD, uid=None, now=NOW)
        return Tree(siming, branch, group, second, huli, huli_branch, zhang, wang, zhao)


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows in every table an import may write: unchanged counts mean nothing was written."""
    with Session(engine) as session:
        return {
            "member": session.exec(select(func.count()).select_from(Member)).one(),
            "card_binding": session.exec(select(func.count()).select_from(CardBinding)).one(),
            "audit_entry": session.exec(select(func.count()).select_from(AuditEntry)).one(),
        }
