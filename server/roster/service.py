"""Importing a 花名册: every row is checked first, then all of it is written in one transaction.

Rules (what the secretary can rely on):

* **All or nothing.** Any problem in any row refuses the whole file with ``roster_invalid`` and a
  row-by-row list; nothing is written.
* **Branches must exist.** 所在支部 names an existing 党支部 / 联合党支部 / 临时党支部 / 党小组, by
  name or by a path of names (``某党委/第一党支部``, matched from the end) inside the importer's
  subtree. Unknown names are errors, never new organisations: a typo must not create a branch.
* **Who is who.** "In the branch" includes its 党小组 (a roster names a member's 支部 even when
  the system has them in one of its groups). A row with a card is the member whose binding
  (current or past) has that card, if that member has the row's name and branch; otherwise an
  unclaimed member of that name in the branch with no card of that kind (the card gets bound to
  them); otherwise a new member. Two same-named members in one branch are therefore told apart
  by their cards. A row without a card is the one member of that name in the branch, or a new
  member; with several, it is ambiguous.
  Active members are matched first; a row that can only be someone who left (transferred out,
  suspended) is refused rather than creating them again.
* **Idempotent.** Importing the same file again matches every row to the member it created and
  changes nothing (not even the audit log). A changed 性别 or 党员类别 updates the member; a card is
  only ever added, never replaced or unbound (losing or replacing a card is the card workflow),
  and the import never deletes members or changes anyone's status or branch.
* Card numbers are stored only as keyed digests and masked forms (the digests ``bind_card``
  computes); messages show masked numbers at most.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, insert, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from server.audit.service import record
from server.caller import Caller
from server.cards.identifiers import card_no_digest, uid_digest
from server.db import in_chunks
from server.errors import OrganisationNotFound, RosterInvalid
from server.keyring import Keyring
from server.masking import mask_card_no, mask_uid
from server.orgs.membership import change_member_category
from server.records.cards import CardBinding
from server.records.orgs import Member, MembershipPeriod, Organisation
from server.roster.schemas import (
    MAX_LISTED_NEW_MEMBERS,
    MemberUpdate,
    NewMember,
    ProblemCode,
    RosterProblem,
    RosterReport,
)
from server.roster.sheet import (
    RosterContent,
    RosterField,
    RosterRow,
    Tracker,
    name_key,
    org_name_key,
    read_roster,
    untracked,
)
from server.vocabulary import BindingStatus, Gender, MemberCategory, MemberStatus, OrgKind

log = logging.getLogger(__name__)

MEMBER_ORG_KINDS = frozenset(
    {OrgKind.BRANCH, OrgKind.JOINT_BRANCH, OrgKind.TEMPORARY_BRANCH, OrgKind.PARTY_GROUP}
)
MAX_PROBLEMS = 500  # a wholly wrong file would otherwise list every cell
_CHUNK = 500  # ids per IN (...) list: well under SQLite's bound-parameter limit
_KIND_NAMES = {
    OrgKind.BASIC_COMMITTEE: "基层党委",
    OrgKind.GENERAL_BRANCH: "党总支",
}
_STATUS_NAMES = {
    MemberStatus.TRANSFERRED_OUT: "已转出",
    MemberStatus.SUSPENDED: "停止党籍",
    MemberStatus.LEFT: "已出党",
}


def import_roster(
    session: Session,
    *,
    keyring: Keyring,
    data: bytes,
    caller: Caller,
    org_id: int | None,
    now: datetime,
    dry_run: bool = False,
    track: Tracker = untracked,
) -> RosterReport:
    """Check a 花名册 workbook and, unless ``dry_run``, write its members and cards.

    Rows may name branches in ``org_id``'s subtree, or (None) in the caller's: their
    organisation's subtree, or every organisation for an unscoped caller.

    Raises:
        RosterUnreadable: not an .xlsx workbook.
        RosterInvalid: one or more problems; ``problems`` lists them and nothing was written.
        OrganisationNotFound: ``org_id`` does not exist or is outside the caller's scope.
    """
    if org_id is not None and not caller.sees_org(org_id):
        raise OrganisationNotFound(f"党组织 {org_id} 不存在")
    scope_org_id = org_id if org_id is not None else caller.org_id
    content = read_roster(data, track=track)
    directory = _OrgDirectory.load(session, scope_org_id)
    plan = _plan(session, keyring, content, directory, track)
    if plan.problems:
        raise _refusal(plan.problems)

    report = RosterReport(
        dry_run=dry_run,
        sheets=content.sheets,
        ignored_sheets=content.ignored_sheets,
        ignored_columns=content.ignored_columns,
        rows=len(content.rows),
        created=len(plan.creates),
        updated=len(plan.updates),
        unchanged=len(content.rows) - len(plan.creates) - len(plan.updates),
        cards_bound=len(plan.bindings),
        updates=[
            MemberUpdate(
                sheet=u.row.sheet, row=u.row.row, member_id=u.member_id, name=u.row.name, changed=u.changed
            )
            for u in plan.updates
        ],
        new_members=[
            NewMember(
                sheet=c.row.sheet,
                row=c.row.row,
                name=c.row.name,
                branch=directory.by_id[c.org_id].name,
                category=c.row.category,
            )
            for c in plan.creates[:MAX_LISTED_NEW_MEMBERS]
        ],
    )
    if dry_run or not (plan.creates or plan.updates):
        return report
    file_id = hashlib.sha256(data).hexdigest()[:16]
    _apply(session, plan, now=now, caller=caller, reason=f"花名册导入 {file_id}", track=track)
    record(
        session,
        actor=caller.actor,
        action="roster.import",
        object_type="roster",
        object_id=file_id,
        org_id=scope_org_id,
        at=now,
        detail={
            "sheets": report.sheets,
            "rows": report.rows,
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "cards_bound": report.cards_bound,
        },
    )
    log.info(
        "roster imported: %d rows, %d created, %d updated, %d cards bound",
        report.rows,
        report.created,
        report.updated,
        report.cards_bound,
    )
    return report


def _refusal(problems: list[RosterProblem]) -> RosterInvalid:
    rows = {(p.sheet, p.row) for p in problems if p.row is not None}
    message = f"花名册有{len(problems)}处错误"
    if rows:
        message += f"（涉及{len(rows)}行）"
    message += "，未导入任何数据"
    if len(problems) > MAX_PROBLEMS:
        message += f"；仅列出前{MAX_PROBLEMS}处"
    return RosterInvalid(message, problems=[p.model_dump(mode="json") for p in problems[:MAX_PROBLEMS]])


# --- organisations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Org:
    id: int
    name: str
    key: str
    kind: OrgKind
    parent_id: int | None


class _OrgDirectory:
    """Every organisation in memory (thousands at city scale, small): resolving thousands of rows'
    paths against it costs one query instead of one per row."""

    def __init__(self, orgs: Iterable[_Org], scope_org_id: int | None) -> None:
        self.by_id = {org.id: org for org in orgs}
        self.by_key: dict[str, list[_Org]] = defaultdict(list)
        children: dict[int | None, list[int]] = defaultdict(list)
        self.groups: dict[int, list[int]] = defaultdict(list)
        for org in self.by_id.values():
            self.by_key[org.key].append(org)
            children[org.parent_id].append(org.id)
            if org.kind == OrgKind.PARTY_GROUP and org.parent_id is not None:
                self.groups[org.parent_id].append(org.id)
        if scope_org_id is None:
            self.in_scope: set[int] | None = None
            return
        if scope_org_id not in self.by_id:
            raise OrganisationNotFound(f"党组织 {scope_org_id} 不存在")
        self.in_scope = set()
        pending = [scope_org_id]
        while pending:
            org_id = pending.pop()
            self.in_scope.add(org_id)
            pending.extend(children[org_id])

    @classmethod
    def load(cls, session: Session, scope_org_id: int | None) -> _OrgDirectory:
        rows = session.exec(
            select(col(Organisation.id), Organisation.name, Organisation.kind, col(Organisation.parent_id))
        ).all()
        return cls(
            (
                _Org(id=org_id, name=name, key=org_name_key(name), kind=OrgKind(kind), parent_id=parent_id)
                for org_id, name, kind, parent_id in rows
                if org_id is not None
            ),
            scope_org_id,
        )

    def resolve(self, path: Sequence[str]) -> list[_Org]:
        """Organisations in scope whose name is ``path[-1]`` and whose parents match the rest."""
        found = []
        for org in self.by_key.get(path[-1], ()):
            if self.in_scope is not None and org.id not in self.in_scope:
                continue
            parent_id = org.parent_id
            for name in reversed(path[:-1]):
                parent = self.by_id.get(parent_id) if parent_id is not None else None
                if parent is None or parent.key != name:
                    break
                parent_id = parent.parent_id
            else:
                found.append(org)
        return sorted(found, key=lambda org: org.id)

    def with_groups(self, org_id: int) -> list[int]:
        """The branch and its 党小组: a roster names the branch of a member who sits in a group."""
        return [org_id, *sorted(self.groups.get(org_id, ()))]

    def path_text(self, org_id: int) -> str:
        names = []
        current: int | None = org_id
        while current is not None and current in self.by_id:
            names.append(self.by_id[current].name)
            current = self.by_id[current].parent_id
        return "/".join(reversed(names))


# --- planning ------------------------------------------------------------------------------------


@dataclass
class _Member:
    id: int
    name_key: str
    org_id: int
    status: MemberStatus
    gender: Gender | None
    category: MemberCategory
    has_card_no: bool = False  # an active binding with a card number
    has_uid: bool = False  # an active binding with a UID


@dataclass(frozen=True)
class _Binding:
    member_id: int
    status: BindingStatus


@dataclass(frozen=True)
class _Create:
    row: RosterRow
    org_id: int


@dataclass(frozen=True)
class _Update:
    row: RosterRow
    member_id: int
    changed: list[str]
    gender: Gender | None
    category: MemberCategory


@dataclass(frozen=True)
class _NewBinding:
    """A card to bind: to an existing member, or to the ``create_index``-th created one."""

    member_id: int | None
    create_index: int | None
    card_no_hmac: str | None
    uid_hmac: str | None
    card_no_masked: str | None
    uid_masked: str | None


@dataclass
class _Plan:
    creates: list[_Create] = field(default_factory=list)
    updates: list[_Update] = field(default_factory=list)
    bindings: list[_NewBinding] = field(default_factory=list)
    problems: list[RosterProblem] = field(default_factory=list)


@dataclass(frozen=True)
class _Placed:
    """A row whose branch resolved, with its card digests."""

    row: RosterRow
    branch: _Org
    card_no_hmac: str | None
    uid_hmac: str | None


def _plan(
    session: Session, keyring: Keyring, content: RosterContent, directory: _OrgDirectory, track: Tracker
) -> _Plan:
    plan = _Plan(problems=list(content.problems))
    placed = _place_rows(keyring, content.rows, directory, plan.problems)
    _find_repeats(placed, plan.problems)
    if plan.problems:
        # Matching against the database only makes sense for a clean file; report what we have.
        return _sorted(plan, content)

    branch_ids = sorted({p.branch.id for p in placed})
    _lock_organisations(session, branch_ids)
    members = _load_members(session, sorted({o for b in branch_ids for o in directory.with_groups(b)}))
    by_card_no = _load_bindings(session, col(CardBinding.card_no_hmac), {p.card_no_hmac for p in placed})
    by_uid = _load_bindings(session, col(CardBinding.uid_hmac), {p.uid_hmac for p in placed})
    owner_ids = {b.member_id for found in (by_card_no, by_uid) for bs in found.values() for b in bs}
    members.update(_load_members_by_id(session, owner_ids - members.keys()))
    by_name: dict[tuple[int, str], list[_Member]] = defaultdict(list)
    for member in sorted(members.values(), key=lambda m: m.id):
        by_name[(member.org_id, member.name_key)].append(member)

    claimed: set[int] = set()
    for item in track(placed, label="核对", total=len(placed)):
        _plan_row(item, plan, members, by_name, by_card_no, by_uid, claimed, directory)
    return _sorted(plan, content)


def _place_rows(
    keyring: Keyring, rows: Sequence[RosterRow], directory: _OrgDirectory, problems: list[RosterProblem]
) -> list[_Placed]:
    placed = []
    for row in rows:
        candidates = directory.resolve(row.branch_path)
        if not candidates:
            problems.append(
                row.problem(
                    RosterField.BRANCH,
                    ProblemCode.BRANCH_UNKNOWN,
                    f"党组织“{row.branch_text}”不存在（或不在您的管理范围内）；"
                    "请先建立该党组织，或核对名称，也可写完整路径，如“某党委/第一党支部”",
                )
            )
            continue
        if len(candidates) > 1:
            shown = "、".join(f"“{directory.path_text(org.id)}”" for org in candidates[:3])
            problems.append(
                row.problem(
                    RosterField.BRANCH,
                    ProblemCode.BRANCH_AMBIGUOUS,
                    f"有{len(candidates)}个党组织名为“{row.branch_text}”（{shown}）；"
                    "请写出上级组织以区分，如“上级党委/支部名称”",
                )
            )
            continue
        branch = candidates[0]
        if branch.kind not in MEMBER_ORG_KINDS:
            problems.append(
                row.problem(
                    RosterField.BRANCH,
                    ProblemCode.BRANCH_NOT_A_BRANCH,
                    f"“{branch.name}”是{_KIND_NAMES.get(branch.kind, '上级党组织')}；"
                    "党员须编入党支部或党小组",
                )
            )
            continue
        placed.append(
            _Placed(
                row=row,
                branch=branch,
                card_no_hmac=card_no_digest(keyring, row.card_no) if row.card_no else None,
                uid_hmac=uid_digest(keyring, row.uid) if row.uid else None,
            )
        )
    return placed


def _find_repeats(placed: Sequence[_Placed], problems: list[RosterProblem]) -> None:
    """Rows that cannot be told apart: the same card twice, or a same-named member of one branch
    twice where a row has no card to distinguish them."""
    first_card_no: dict[str, RosterRow] = {}
    first_uid: dict[str, RosterRow] = {}
    people: dict[tuple[int, str], list[_Placed]] = defaultdict(list)
    for item in placed:
        row = item.row
        for digest, seen, roster_field, shown in (
            (item.card_no_hmac, first_card_no, RosterField.CARD_NO, "易通卡号"),
            (item.uid_hmac, first_uid, RosterField.UID, "UID"),
        ):
            if digest is None:
                continue
            if digest in seen:
                problems.append(
                    row.problem(
                        roster_field, ProblemCode.CARD_REPEATED, f"与{_where(seen[digest], row)}的{shown}相同"
                    )
                )
            else:
                seen[digest] = row
        key = (item.branch.id, row.name)
        for earlier in people[key]:
            if not _has_card(earlier) or not _has_card(item):
                problems.append(
                    row.problem(
                        RosterField.NAME,
                        ProblemCode.MEMBER_REPEATED,
                        f"与{_where(earlier.row, row)}是同一支部的同名党员；"
                        "如是两个人，请都填写易通卡号以区分",
                    )
                )
                break
        people[key].append(item)


def _plan_row(
    item: _Placed,
    plan: _Plan,
    members: dict[int, _Member],
    by_name: dict[tuple[int, str], list[_Member]],
    by_card_no: dict[str, list[_Binding]],
    by_uid: dict[str, list[_Binding]],
    claimed: set[int],
    directory: _OrgDirectory,
) -> None:
    row, branch = item.row, item.branch
    homes = directory.with_groups(branch.id)
    named = [m for org_id in homes for m in by_name[(org_id, row.name)]]
    member: _Member | None = None
    needs_binding = False
    if _has_card(item):
        key_field = RosterField.CARD_NO if item.card_no_hmac else RosterField.UID
        bindings = by_card_no[item.card_no_hmac] if item.card_no_hmac else by_uid[item.uid_hmac or ""]
        owners = [members[b.member_id] for b in bindings]
        same = [m for m in owners if m.org_id in homes and m.name_key == row.name]
        if same:
            member = same[0]
        else:
            active_owners = [members[b.member_id] for b in bindings if b.status == BindingStatus.ACTIVE]
            if active_owners:
                plan.problems.append(_card_taken(row, key_field, active_owners[0], directory))
                return
            needs_binding = True
            pool = [
                m
                for m in named
                if m.id not in claimed and not (m.has_card_no if item.card_no_hmac else m.has_uid)
            ]
            member, ambiguous = _match_by_name(row, pool)
            if ambiguous is not None:
                plan.problems.append(ambiguous)
                return
        if item.card_no_hmac and item.uid_hmac:
            # The UID rides along with the card number; it must not belong to someone else.
            uid_owners = [
                members[b.member_id]
                for b in by_uid[item.uid_hmac]
                if b.status == BindingStatus.ACTIVE and (member is None or b.member_id != member.id)
            ]
            if uid_owners:
                plan.problems.append(_card_taken(row, RosterField.UID, uid_owners[0], directory))
                return
    else:
        pool = [m for m in named if m.id not in claimed]
        member, ambiguous = _match_by_name(row, pool)
        if ambiguous is not None:
            plan.problems.append(ambiguous)
            return

    binding = (
        _NewBinding(
            member_id=member.id if member else None,
            create_index=None if member else len(plan.creates),
            card_no_hmac=item.card_no_hmac,
            uid_hmac=item.uid_hmac,
            card_no_masked=mask_card_no(row.card_no) if row.card_no else None,
            uid_masked=mask_uid(row.uid) if row.uid else None,
        )
        if needs_binding
        else None
    )
    if member is None:
        plan.creates.append(_Create(row=row, org_id=branch.id))
    else:
        if member.status != MemberStatus.ACTIVE:
            plan.problems.append(
                row.problem(
                    RosterField.NAME,
                    ProblemCode.MEMBER_INACTIVE,
                    f"该党员状态为“{_STATUS_NAMES.get(member.status, member.status.value)}”；"
                    "花名册导入不恢复党员身份",
                )
            )
            return
        claimed.add(member.id)
        changed = []
        if row.gender is not None and row.gender != member.gender:
            changed.append("gender")
        if row.category != member.category:
            changed.append("category")
        if binding is not None:
            changed.append("card")
        if changed:
            plan.updates.append(
                _Update(
                    row=row,
                    member_id=member.id,
                    changed=changed,
                    gender=row.gender or member.gender,
                    category=row.category,
                )
            )
    if binding is not None:
        plan.bindings.append(binding)


def _match_by_name(row: RosterRow, pool: list[_Member]) -> tuple[_Member | None, RosterProblem | None]:
    """The one active member of that name, else an inactive one (for the caller to refuse: a
    roster still listing someone who left must not bring them back as a new member), else None."""
    active = [m for m in pool if m.status == MemberStatus.ACTIVE]
    if len(active) > 1:
        return None, _ambiguous(row, len(active))
    if active:
        return active[0], None
    return (pool[0] if pool else None), None


def _card_taken(
    row: RosterRow, key_field: RosterField, owner: _Member, directory: _OrgDirectory
) -> RosterProblem:
    what = "易通卡号" if key_field == RosterField.CARD_NO else "UID"
    if owner.name_key == row.name:
        # Only name the other organisation if the importer may see it.
        visible = directory.in_scope is None or owner.org_id in directory.in_scope
        where = f"“{directory.path_text(owner.org_id)}”" if visible else "其他党组织"
        return row.problem(
            key_field,
            ProblemCode.MEMBER_IN_OTHER_BRANCH,
            f"持该{what}的同名党员登记在{where}；调整所在支部请走组织关系转接，不要通过花名册导入",
        )
    return row.problem(
        key_field,
        ProblemCode.CARD_BOUND_ELSEWHERE,
        f"该{what}已绑定给另一名党员；如卡片已转让或挂失，请先在卡片管理中解除绑定",
    )


def _ambiguous(row: RosterRow, count: int) -> RosterProblem:
    return row.problem(
        RosterField.NAME,
        ProblemCode.MEMBER_AMBIGUOUS,
        f"该支部已有{count}名同名党员，无法确定是哪一位；请填写易通卡号以区分",
    )


def _has_card(item: _Placed) -> bool:
    return item.card_no_hmac is not None or item.uid_hmac is not None


def _where(earlier: RosterRow, row: RosterRow) -> str:
    if earlier.sheet == row.sheet:
        return f"第{earlier.row}行"
    return f"工作表“{earlier.sheet}”第{earlier.row}行"


def _sorted(plan: _Plan, content: RosterContent) -> _Plan:
    sheet_order = {sheet: index for index, sheet in enumerate(content.sheets)}
    plan.problems.sort(key=lambda p: (sheet_order.get(p.sheet or "", -1), p.row if p.row is not None else -1))
    return plan


# --- loading -------------------------------------------------------------------------------------


def _lock_organisations(session: Session, org_ids: Sequence[int]) -> None:
    # Two imports naming the same branch must not both decide "new member": the second waits here
    # (PostgreSQL row locks; SQLite transactions here already hold the write lock).
    for chunk in in_chunks(org_ids, _CHUNK):
        session.exec(
            select(col(Organisation.id)).where(col(Organisation.id).in_(chunk)).with_for_update()
        ).all()


def _load_members(session: Session, org_ids: Sequence[int]) -> dict[int, _Member]:
    members: dict[int, _Member] = {}
    for chunk in in_chunks(org_ids, _CHUNK):
        members.update(_fetch_members(session, col(Member.org_id).in_(chunk)))
        held = session.exec(
            select(CardBinding.member_id, CardBinding.card_no_hmac, CardBinding.uid_hmac)
            .join(Member, col(Member.id) == col(CardBinding.member_id))
            .where(col(Member.org_id).in_(chunk), CardBinding.status == BindingStatus.ACTIVE)
        ).all()
        for member_id, card_no_hmac, uid_hmac in held:
            members[member_id].has_card_no |= card_no_hmac is not None
            members[member_id].has_uid |= uid_hmac is not None
    return members


def _load_members_by_id(session: Session, member_ids: Iterable[int]) -> dict[int, _Member]:
    members: dict[int, _Member] = {}
    for chunk in in_chunks(sorted(member_ids), _CHUNK):
        members.update(_fetch_members(session, col(Member.id).in_(chunk)))
    return members


def _fetch_members(session: Session, condition: ColumnElement[bool]) -> dict[int, _Member]:
    # Core select on the session's connection: sqlmodel's select overloads stop at four columns.
    rows = (
        session.connection()
        .execute(
            sa_select(
                col(Member.id),
                col(Member.name),
                col(Member.org_id),
                col(Member.status),
                col(Member.gender),
                col(Member.category),
            ).where(condition)
        )
        .all()
    )
    return {
        member_id: _Member(
            id=member_id,
            name_key=name_key(name),
            org_id=org_id,
            status=MemberStatus(status),
            gender=Gender(gender) if gender else None,
            category=MemberCategory(category),
        )
        for member_id, name, org_id, status, gender, category in rows
        if member_id is not None
    }


def _load_bindings(
    session: Session, digest_column: Any, digests: Iterable[str | None]
) -> dict[str, list[_Binding]]:
    """Every binding (any status) with one of these digests: a card seen before, even if since
    lost, still says whose it was."""
    found: dict[str, list[_Binding]] = defaultdict(list)
    for chunk in in_chunks(sorted(d for d in digests if d is not None), _CHUNK):
        rows = session.exec(
            select(digest_column, CardBinding.member_id, CardBinding.status)
            .where(digest_column.in_(chunk))
            .order_by(col(CardBinding.id))
        ).all()
        for digest, member_id, status in rows:
            found[digest].append(_Binding(member_id=member_id, status=BindingStatus(status)))
    return found


# --- writing -------------------------------------------------------------------------------------


def _apply(
    session: Session, plan: _Plan, *, now: datetime, caller: Caller, reason: str, track: Tracker
) -> None:
    created_ids: list[int] = []
    # New members go to the end of their organisation's 花名册, in the order of the file.
    positions = _last_roster_positions(session, sorted({item.org_id for item in plan.creates}))
    roster_position: dict[int, int] = {}
    for index, item in enumerate(plan.creates):
        positions[item.org_id] = positions.get(item.org_id, 0) + 1
        roster_position[index] = positions[item.org_id]
    created_before = 0
    for chunk in in_chunks(track(plan.creates, label="写入党员", total=len(plan.creates)), _CHUNK):
        result = session.exec(
            insert(Member).returning(col(Member.id), sort_by_parameter_order=True),
            params=[
                {
                    "name": item.row.name,
                    "org_id": item.org_id,
                    "category": item.row.category,
                    "status": MemberStatus.ACTIVE,
                    "gender": item.row.gender,
                    "joined_org_at": None,
                    "created_at": now,
                    "roster_position": roster_position[created_before + offset],
                }
                for offset, item in enumerate(chunk)
            ],
        )
        created_before += len(chunk)
        new_ids = [member_id for (member_id,) in result.all()]
        # Every member has an open membership period: it is what ledgers read as 应到.
        session.exec(
            insert(MembershipPeriod),
            params=[
                {
                    "member_id": member_id,
                    "org_id": item.org_id,
                    "category": item.row.category,
                    "started_at": None,
                }
                for member_id, item in zip(new_ids, chunk, strict=True)
            ],
        )
        created_ids.extend(new_ids)
    for change in plan.updates:
        if "category" in change.changed:
            # 转正 (or a correction) is history: the membership service closes the period and audits.
            change_member_category(
                session,
                member_id=change.member_id,
                category=change.category,
                at=now,
                caller=caller,
                reason=reason,
            )
    gender_changes = [u for u in plan.updates if "gender" in u.changed]
    for updates in in_chunks(gender_changes, _CHUNK):
        session.exec(update(Member), params=[{"id": u.member_id, "gender": u.gender} for u in updates])
    for bindings in in_chunks(track(plan.bindings, label="绑定卡片", total=len(plan.bindings)), _CHUNK):
        session.exec(
            insert(CardBinding),
            params=[
                {
                    "member_id": _binding_member_id(b, created_ids),
                    "card_no_hmac": b.card_no_hmac,
                    "uid_hmac": b.uid_hmac,
                    "card_no_masked": b.card_no_masked,
                    "uid_masked": b.uid_masked,
                    "status": BindingStatus.ACTIVE,
                    "bound_at": now,
                }
                for b in bindings
            ],
        )
    session.flush()


def _last_roster_positions(session: Session, org_ids: Sequence[int]) -> dict[int, int]:
    found: dict[int, int] = {}
    for chunk in in_chunks(org_ids, _CHUNK):
        rows = session.exec(
            select(Member.org_id, func.max(Member.roster_position))
            .where(col(Member.org_id).in_(chunk))
            .group_by(col(Member.org_id))
        ).all()
        found.update({org_id: last or 0 for org_id, last in rows})
    return found


def _binding_member_id(binding: _NewBinding, created_ids: Sequence[int]) -> int:
    if binding.member_id is not None:
        return binding.member_id
    assert binding.create_index is not None
    return created_ids[binding.create_index]
