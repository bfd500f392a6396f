"""Organisations and members."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlmodel import Session, col, func, select

from server.caller import UNSCOPED, Caller, Scope
from server.db import in_chunks
from server.errors import InvalidTimeRange, MemberNotFound, OrganisationNotFound
from server.inputs import clean_text
from server.orgs.tree import subtrees
from server.records.orgs import Member, MembershipPeriod, Organisation
from server.vocabulary import MemberCategory, MemberStatus, OrgKind


def add_organisation(
    session: Session,
    *,
    name: str,
    kind: OrgKind,
    parent_id: int | None,
    now: datetime,
    founded_at: datetime | None = None,
) -> Organisation:
    """Add an organisation under ``parent_id`` (None: a root). ``founded_at``: when it was set up,
    for one entered after the fact (its required meetings run from then; default: ``now``).

    Raises:
        OrganisationNotFound: no such parent.
        InvalidTimeRange: ``founded_at`` is in the future.
    """
    if parent_id is not None:
        require_organisation(session, parent_id)
    if founded_at is not None and founded_at > now:
        raise InvalidTimeRange("成立日期不能晚于今天")
    organisation = Organisation(
        name=clean_text(name, field="名称", max_length=200),
        kind=kind,
        parent_id=parent_id,
        created_at=now,
        founded_at=founded_at,
    )
    session.add(organisation)
    session.flush()
    return organisation


def require_organisation(session: Session, org_id: int) -> Organisation:
    organisation = session.get(Organisation, org_id)
    if organisation is None:
        raise OrganisationNotFound(f"党组织 {org_id} 不存在")
    return organisation


def require_visible_organisation(session: Session, org_id: int, *, caller: Caller) -> Organisation:
    """The organisation, if it is in the caller's scope. Raises OrganisationNotFound (also when
    outside it: indistinguishable on purpose)."""
    organisation = require_organisation(session, org_id)
    if not caller.sees_org(org_id):
        raise OrganisationNotFound(f"党组织 {org_id} 不存在")
    return organisation


def organisation_names(session: Session, org_ids: Collection[int]) -> dict[int, str]:
    """Each organisation's name, by id (queried in chunks, so any number of ids will do)."""
    found: dict[int, str] = {}
    for chunk in in_chunks(sorted(org_ids)):
        for org_id, name in session.exec(
            select(Organisation.id, Organisation.name).where(col(Organisation.id).in_(chunk))
        ).all():
            assert org_id is not None
            found[org_id] = name
    return found


def top_organisations(session: Session) -> list[int]:
    """The organisations with no parent (the roots of the tree), by id."""
    return [
        org_id
        for org_id in session.exec(
            select(Organisation.id)
            .where(col(Organisation.parent_id).is_(None))
            .order_by(col(Organisation.id))
        )
        if org_id is not None
    ]


def members_by_id(session: Session, member_ids: Collection[int]) -> dict[int, Member]:
    """The members with these ids (queried in chunks, so any number of ids will do)."""
    found: dict[int, Member] = {}
    for chunk in in_chunks(sorted(member_ids)):
        for member in session.exec(select(Member).where(col(Member.id).in_(chunk))):
            assert member.id is not None
            found[member.id] = member
    return found


def organisation_subtree_ids(session: Session, root_id: int) -> set[int]:
    """The organisation and everything below it (recursive query, so depth does not matter)."""
    return subtrees(session, [root_id])[root_id]


def subtree_scope(session: Session, org_id: int | None) -> Scope:
    """The scope of a caller placed at ``org_id``: it and everything below it (None: everything).
    Resolved once, when a token or web session is authenticated."""
    if org_id is None:
        return UNSCOPED
    return Scope(frozenset(organisation_subtree_ids(session, org_id)))


def add_member(
    session: Session,
    *,
    name: str,
    org_id: int,
    category: MemberCategory,
    joined_org_at: datetime | None,
    now: datetime,
) -> Member:
    """Add an active member to an organisation. Raises OrganisationNotFound."""
    require_organisation(session, org_id)
    member = Member(
        name=clean_text(name, field="姓名", max_length=100),
        org_id=org_id,
        category=category,
        status=MemberStatus.ACTIVE,
        joined_org_at=joined_org_at,
        created_at=now,
        roster_position=next_roster_position(session, org_id),
    )
    session.add(member)
    session.flush()
    assert member.id is not None
    session.add(
        MembershipPeriod(member_id=member.id, org_id=org_id, category=category, started_at=joined_org_at)
    )
    session.flush()
    return member


def next_roster_position(session: Session, org_id: int) -> int:
    """The place after the last one on the organisation's 花名册 (a member added or moved in)."""
    last = session.exec(select(func.max(Member.roster_position)).where(Member.org_id == org_id)).first()
    return (last or 0) + 1


def roster_order(member: Member) -> tuple[bool, int, str, int]:
    """Sort key for names as the 花名册 lists them: by roster position, then (no position) by
    name; the id only breaks ties. Group by organisation before it where a list spans several."""
    position = member.roster_position
    return (position is None, position or 0, member.name, member.id or 0)


def require_member(session: Session, member_id: int) -> Member:
    member = session.get(Member, member_id)
    if member is None:
        raise MemberNotFound(f"党员 {member_id} 不存在")
    return member


def require_visible_member(session: Session, member_id: int, *, caller: Caller) -> Member:
    """The member, if their current organisation is in the caller's scope. Raises MemberNotFound
    (also when outside it)."""
    member = require_member(session, member_id)
    if not caller.sees_org(member.org_id):
        raise MemberNotFound(f"党员 {member_id} 不存在")
    return member
