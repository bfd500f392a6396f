"""Members as plain rows, for ledgers that list hundreds or thousands of them at once.

A ledger only needs a member's name, organisation, category and roster position; building an ORM
object per member (identity map, attribute instrumentation, UTC conversion of every timestamp)
cost a 1,000-member sign-in sheet more than its queries did.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from sqlalchemy import select
from sqlmodel import Session, col

from server.records.idlists import one_of
from server.records.orgs import Member
from server.vocabulary import MemberCategory


class MemberRow(NamedTuple):
    """What a ledger shows of a member (today's organisation and category), built straight from
    the result tuple."""

    id: int
    name: str
    org_id: int
    category: MemberCategory
    roster_position: int | None

    def roster_key(self) -> tuple[bool, int, str, int]:
        """The 花名册 order of ``server.orgs.service.roster_order``: roster position, then (no
        position) name; the id only breaks ties."""
        return (self.roster_position is None, self.roster_position or 0, self.name, self.id)


def member_rows(session: Session, member_ids: Collection[int]) -> dict[int, MemberRow]:
    """The members with these ids, by id (any number of ids)."""
    found: dict[int, MemberRow] = {}
    columns = (
        col(Member.id),
        col(Member.name),
        col(Member.org_id),
        col(Member.category),
        col(Member.roster_position),
    )
    for condition in one_of(session, col(Member.id), member_ids):
        for row in session.connection().execute(select(*columns).where(condition)).all():
            member = MemberRow._make(row)
            found[member.id] = member
    return found
