"""A committee with two branches (one with a 党小组) and five members, two of them named 王五."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from server.caller import Actor, Caller
from server.db import unit_of_work
from server.orgs.service import add_member, add_organisation, subtree_scope
from server.vocabulary import MemberCategory, OrgKind, UserRole

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=SHANGHAI)


@dataclass(frozen=True)
class Tree:
    committee: int
    branch: int
    group: int
    second: int
    members: dict[str, int]


@pytest.fixture
def tree(engine: Engine) -> Tree:
    with unit_of_work(engine) as session:
        committee = add_organisation(
            session, name="思明区某街道党委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=NOW
        ).id
        assert committee is not None
        branch = add_organisation(
            session, name="第一党支部", kind=OrgKind.BRANCH, parent_id=committee, now=NOW
        ).id
        assert branch is not None
        group = add_organisation(
            session, name="第一党小组", kind=OrgKind.PARTY_GROUP, parent_id=branch, now=NOW
        ).id
        second = add_organisation(
            session, name="第二党支部", kind=OrgKind.BRANCH, parent_id=committee, now=NOW
        ).id
        assert group is not None
        assert second is not None
        members = {}
        for key, name, org in [
            ("张三明", "张三明", branch),
            ("李四", "李四", group),
            ("王五", "王五", branch),
            ("赵六", "赵六", second),
            ("王五二支部", "王五", second),
        ]:
            member = add_member(
                session, name=name, org_id=org, category=MemberCategory.FULL, joined_org_at=None, now=NOW
            )
            assert member.id is not None
            members[key] = member.id
    return Tree(committee=committee, branch=branch, group=group, second=second, members=members)


def secretary_of(session: Session, org_id: int) -> Caller:
    return Caller(
        actor=Actor("user:9", "支部书记"),
        role=UserRole.SECRETARY,
        org_id=org_id,
        scope=subtree_scope(session, org_id),
        may_approve=False,
    )
