"""组织设置 rules at their boundaries: 3 正式党员, a committee from 7, 50 members, the secretary,
and the committee's term (notice 3 months ahead, warning once ended)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.orgs.membership import appoint_committee_member
from server.orgs.service import add_member, add_organisation
from server.supervision.org_setup import find_org_setup
from server.vocabulary import CommitteeRole, MemberCategory, OrgKind
from tests.server.factories import SHANGHAI, World
from tests.server.ledgers.helpers import at


def branch_with(
    engine: Engine,
    world: World,
    *,
    full: int,
    probationary: int = 0,
    in_group: int = 0,
    seats: tuple[CommitteeRole, ...] = (),
    seated: datetime | None = None,
    kind: OrgKind = OrgKind.BRANCH,
) -> int:
    """A new branch under the world's committee with that many members (``in_group`` of the full
    members in a 党小组 below it) and committee seats held by its first members."""
    now = at("2024-01-01")
    with unit_of_work(engine) as session:
        branch = add_organisation(
            session, name="测试党支部", kind=kind, parent_id=world.committee_id, now=now
        )
        assert branch.id is not None
        group = add_organisation(
            session, name="测试党小组", kind=OrgKind.PARTY_GROUP, parent_id=branch.id, now=now
        )
        assert group.id is not None
        ids = []
        for n in range(full + probationary):
            category = MemberCategory.FULL if n < full else MemberCategory.PROBATIONARY
            org_id = group.id if n < in_group else branch.id
            member = add_member(
                session, name=f"党员{n}", org_id=org_id, category=category, joined_org_at=None, now=now
            )
            assert member.id is not None
            ids.append(member.id)
        for role, member_id in zip(seats, ids, strict=False):
            appoint_committee_member(
                session, org_id=branch.id, member_id=member_id, role=role, at=seated or now, caller=CLI_CALLER
            )
        return branch.id


def rules(engine: Engine, org_id: int, now: datetime) -> dict[str, str]:
    with unit_of_work(engine) as session:
        found = find_org_setup(session, now=now, tz=SHANGHAI, org_ids={org_id})
    return {f.rule.removeprefix("org_setup."): f.level.value for f in found}


SECRETARY = (CommitteeRole.SECRETARY,)
COMMITTEE = (CommitteeRole.SECRETARY, CommitteeRole.ORGANISATION, CommitteeRole.PROPAGANDA)


def test_three_full_members_are_enough_and_two_are_not(engine: Engine, world: World) -> None:
    two = branch_with(engine, world, full=2, probationary=3, seats=SECRETARY)
    three = branch_with(engine, world, full=3, seats=SECRETARY)
    assert rules(engine, two, at("2024-06-01")) == {"too_few_full": "warning"}
    assert rules(engine, three, at("2024-06-01")) == {}


def test_members_of_a_party_group_count_for_their_branch(engine: Engine, world: World) -> None:
    branch = branch_with(engine, world, full=3, in_group=2, seats=SECRETARY)
    assert rules(engine, branch, at("2024-06-01")) == {}


def test_a_committee_is_needed_from_seven_full_members(engine: Engine, world: World) -> None:
    six = branch_with(engine, world, full=6, seats=SECRETARY)
    seven = branch_with(engine, world, full=7, seats=SECRETARY)
    seated = branch_with(engine, world, full=7, seats=COMMITTEE)
    assert rules(engine, six, at("2024-06-01")) == {}
    assert rules(engine, seven, at("2024-06-01")) == {"committee_missing": "warning"}
    assert rules(engine, seated, at("2024-06-01")) == {}


def test_more_than_fifty_members_is_too_large(engine: Engine, world: World) -> None:
    fifty = branch_with(engine, world, full=45, probationary=5, seats=COMMITTEE)
    fifty_one = branch_with(engine, world, full=45, probationary=6, seats=COMMITTEE)
    assert rules(engine, fifty, at("2024-06-01")) == {}
    assert rules(engine, fifty_one, at("2024-06-01")) == {"too_large": "notice"}


def test_a_branch_without_a_secretary(engine: Engine, world: World) -> None:
    branch = branch_with(engine, world, full=3, seats=(CommitteeRole.ORGANISATION,))
    assert rules(engine, branch, at("2024-06-01")) == {"no_secretary": "warning"}


def test_the_committee_term_reminds_three_months_ahead_and_warns_once_ended(
    engine: Engine, world: World
) -> None:
    branch = branch_with(engine, world, full=7, seats=COMMITTEE, seated=at("2024-03-15"))
    assert rules(engine, branch, at("2026-12-14", "23:59")) == {}
    assert rules(engine, branch, at("2026-12-15", "00:00")) == {"committee_term": "notice"}
    assert rules(engine, branch, at("2027-03-14", "23:59")) == {"committee_term": "notice"}
    assert rules(engine, branch, at("2027-03-15", "00:00")) == {"committee_term": "warning"}
    with unit_of_work(engine) as session:
        (term,) = find_org_setup(session, now=at("2027-03-15"), tz=SHANGHAI, org_ids={branch})
    assert term.period == "2027-03-15"
    assert "换届" in term.message


def test_a_temporary_branch_is_not_checked(engine: Engine, world: World) -> None:
    temporary = branch_with(engine, world, full=1, kind=OrgKind.TEMPORARY_BRANCH)
    assert rules(engine, temporary, at("2024-06-01")) == {}
