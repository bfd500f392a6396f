"""Set-based queries over the organisation tree (recursive CTEs: depth never costs a round trip)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy import CTE, literal_column
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select, SelectOfScalar

from server.records.orgs import Organisation
from server.vocabulary import OrgKind


def subtree_cte(root_ids: Collection[int], *, name: str = "org_subtree") -> CTE:
    """A CTE of ``(root_id, org_id)``: every organisation at or below each root, once per root."""
    base: Select[int, int] = select(
        col(Organisation.id).label("root_id"), col(Organisation.id).label("org_id")
    ).where(col(Organisation.id).in_(list(root_ids)))
    tree = base.cte(name, recursive=True)
    step = select(tree.c.root_id, col(Organisation.id)).where(col(Organisation.parent_id) == tree.c.org_id)
    return tree.union_all(step)


def subtrees(session: Session, root_ids: Collection[int]) -> dict[int, set[int]]:
    """For each root, the ids of the organisations at or below it."""
    if not root_ids:
        return {}
    tree = subtree_cte(root_ids)
    found: dict[int, set[int]] = {root: set() for root in root_ids}
    for root_id, org_id in session.exec(select(tree.c.root_id, tree.c.org_id)).all():
        found[root_id].add(org_id)
    return found


def ancestor_ids(session: Session, org_id: int) -> list[int]:
    """The organisation and its ancestors, nearest first."""
    start: Select[int, int | None, int] = select(
        col(Organisation.id).label("org_id"),
        col(Organisation.parent_id).label("parent_id"),
        literal_column("0").label("depth"),
    ).where(col(Organisation.id) == org_id)
    chain = start.cte("org_ancestors", recursive=True)
    step = select(
        col(Organisation.id), col(Organisation.parent_id), (chain.c.depth + 1).label("depth")
    ).where(col(Organisation.id) == chain.c.parent_id)
    chain = chain.union_all(step)
    return list(session.exec(select(chain.c.org_id).order_by(chain.c.depth)).all())


def own_and_group_ids(session: Session, org_id: int) -> set[int]:
    """The organisation and the 党小组 below it: whose events make up its ledger.

    A 党小组 is part of its 支部 (its meetings are the branch's organisational life), whereas a
    branch under a 党委 keeps its own ledger, so the walk only descends through party groups.
    """
    start: SelectOfScalar[int] = select(col(Organisation.id).label("org_id")).where(
        col(Organisation.id) == org_id
    )
    tree = start.cte("org_groups", recursive=True)
    step = select(col(Organisation.id)).where(
        col(Organisation.parent_id) == tree.c.org_id, Organisation.kind == OrgKind.PARTY_GROUP
    )
    tree = tree.union_all(step)
    return set(session.exec(select(tree.c.org_id)).all())


MAX_GROUP_NESTING = 16


def group_branches(tree: Mapping[int, tuple[OrgKind, int | None]]) -> dict[int, int]:
    """Each 党小组's branch, from ``{org_id: (kind, parent_id)}``: the nearest ancestor that is not
    a party group (a 党小组's members count for that branch). Groups whose branch is not in
    ``tree`` are left out."""
    found: dict[int, int] = {}
    for org_id, (kind, parent_id) in tree.items():
        if kind != OrgKind.PARTY_GROUP:
            continue
        for _ in range(MAX_GROUP_NESTING):
            if parent_id is None or parent_id not in tree or tree[parent_id][0] != OrgKind.PARTY_GROUP:
                break
            parent_id = tree[parent_id][1]
        if parent_id is not None and parent_id in tree:
            found[org_id] = parent_id
    return found
