"""Importing a 花名册 into the database (SQLite and PostgreSQL): what gets created, matched and
refused, all-or-nothing, and re-imports that change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from server.audit.service import verify_chain
from server.caller import CLI_CALLER
from server.cards.identifiers import card_no_digest, uid_digest
from server.cards.service import find_bound_member
from server.db import unit_of_work
from server.errors import RosterInvalid
from server.keyring import Keyring
from server.orgs.membership import change_member_status
from server.orgs.service import add_member
from server.records.audit import AuditEntry
from server.records.cards import CardBinding
from server.records.orgs import Member, MembershipPeriod
from server.roster.schemas import ProblemCode, RosterReport
from server.roster.service import import_roster
from server.vocabulary import BindingStatus, Gender, MemberCategory, MemberStatus
from tests.server.roster.conftest import NOW, ZHANG_CARD, ZHAO_CARD, Tree, table_counts
from tests.server.roster.workbooks import CHEN_CARD, HUANG_CARD, LIN_CARD, numbered, roster_xlsx

HAPPY_ROWS = numbered(
    [
        ["陈一", "男", "正式党员", "思明区某街道党委/第一党支部", "3104 3930 0000 1000 001"],  # new
        ["林二", "女", "预备党员", "第二党支部", LIN_CARD],  # new, by a unique bare name
        ["王五", "男", "正式党员", "思明区某街道党委 / 第一党支部", None],  # existing: gender filled in
        ["张三明", None, "正式", "思明区某街道党委/第一党支部", ZHANG_CARD],  # existing, by card: unchanged
        ["黄　六", "女", "预备", "第一党小组", HUANG_CARD],  # new, in a 党小组; padding in the name
    ]
)


def run_import(
    engine: Engine, keyring: Keyring, data: bytes, *, scope: int | None = None, dry_run: bool = False
) -> RosterReport:
    with unit_of_work(engine) as session:
        return import_roster(
            session, keyring=keyring, data=data, caller=CLI_CALLER, org_id=scope, now=NOW, dry_run=dry_run
        )


def refusal(
    engine: Engine, keyring: Keyring, data: bytes, *, scope: int | None = None
) -> list[dict[str, Any]]:
    """The problems of a refused import, after checking that it wrote nothing."""
    before = table_counts(engine)
    with pytest.raises(RosterInvalid) as excinfo:
        run_import(engine, keyring, data, scope=scope)
    assert excinfo.value.code == "roster_invalid"
    assert table_counts(engine) == before
    return excinfo.value.problems


def located(problems: list[dict[str, Any]]) -> list[tuple[int | None, str | None, str]]:
    return [(p["row"], p["column"], p["code"]) for p in problems]


def member_named(session: Session, name: str) -> Member:
    return session.exec(select(Member).where(Member.name == name)).one()


class TestHappyPath:
    def test_new_members_go_to_the_end_of_the_roster_in_file_order(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        """Ledgers list names in 花名册 order (#10): the file's order, after those already there."""
        with Session(engine) as session:
            before = [
                m.roster_position for m in session.exec(select(Member).where(Member.org_id == tree.branch))
            ]
        assert before
        assert None not in before
        rows = numbered(
            [
                ["王甲", "男", "正式党员", "思明区某街道党委/第一党支部", None],
                ["李乙", "女", "正式党员", "思明区某街道党委/第一党支部", None],
            ]
        )
        run_import(engine, keyring, roster_xlsx(rows))
        with Session(engine) as session:
            wang, li = member_named(session, "王甲"), member_named(session, "李乙")
        last = max(p for p in before if p is not None)
        assert (wang.roster_position, li.roster_position) == (last + 1, last + 2)

    def test_members_and_cards_are_created_and_matched(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        report = run_import(engine, keyring, roster_xlsx(HAPPY_ROWS))

        assert (report.rows, report.created, report.updated, report.unchanged) == (5, 3, 1, 1)
        assert report.cards_bound == 3
        assert report.ignored_columns == ["序号"]
        [update] = report.updates
        assert (update.row, update.member_id, update.changed) == (4, tree.wang, ["gender"])
        with Session(engine) as session:
            chen, lin, huang = (member_named(session, n) for n in ("陈一", "林二", "黄六"))
            assert (chen.org_id, chen.category, chen.gender, chen.status) == (
                tree.branch,
                MemberCategory.FULL,
                Gender.MALE,
                MemberStatus.ACTIVE,
            )
            assert (lin.org_id, lin.category, lin.gender) == (
                tree.second,
                MemberCategory.PROBATIONARY,
                Gender.FEMALE,
            )
            assert huang.org_id == tree.group
            assert member_named(session, "王五").gender == Gender.MALE
            # Each new member has an open membership period (what ledgers count as 应到).
            periods = session.exec(
                select(MembershipPeriod).where(
                    col(MembershipPeriod.member_id).in_([chen.id, lin.id, huang.id])
                )
            ).all()
            assert sorted((p.member_id, p.org_id, p.ended_at) for p in periods) == sorted(
                [(chen.id, tree.branch, None), (lin.id, tree.second, None), (huang.id, tree.group, None)]
            )

    def test_an_imported_card_checks_its_member_in(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        """The binding holds the same digest a kiosk tap is looked up by, and only a masked number."""
        run_import(engine, keyring, roster_xlsx(HAPPY_ROWS))

        with Session(engine) as session:
            found = find_bound_member(
                session,
                card_no_hmac=card_no_digest(keyring, CHEN_CARD),
                uid_hmac=uid_digest(keyring, "04A1B2C3"),
            )
            assert found is not None
            assert found.name == "陈一"
            binding = session.exec(
                select(CardBinding).where(CardBinding.card_no_hmac == card_no_digest(keyring, CHEN_CARD))
            ).one()
            assert binding.card_no_masked == "3104********0001"
            assert binding.status == BindingStatus.ACTIVE

    def test_reimporting_the_same_file_changes_nothing(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        data = roster_xlsx(HAPPY_ROWS)
        run_import(engine, keyring, data)
        after_first = table_counts(engine)

        again = run_import(engine, keyring, data)

        assert (again.created, again.updated, again.unchanged, again.cards_bound) == (0, 0, 5, 0)
        assert table_counts(engine) == after_first  # not even an audit entry

    def test_the_import_is_audited_once(self, engine: Engine, keyring: Keyring, tree: Tree) -> None:
        run_import(engine, keyring, roster_xlsx(HAPPY_ROWS))

        with Session(engine) as session:
            [entry] = session.exec(select(AuditEntry).where(AuditEntry.action == "roster.import")).all()
            assert entry.actor == "cli"
            assert '"created": 3' in entry.detail
            assert CHEN_CARD not in entry.detail
            assert verify_chain(session) is None

    def test_dry_run_reports_and_writes_nothing(self, engine: Engine, keyring: Keyring, tree: Tree) -> None:
        before = table_counts(engine)
        report = run_import(engine, keyring, roster_xlsx(HAPPY_ROWS), dry_run=True)

        assert report.dry_run
        assert (report.created, report.updated, report.cards_bound) == (3, 1, 3)
        assert table_counts(engine) == before

    def test_category_change_is_recorded_as_history(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        """A 预备 who became 正式 since the last import: the member changes, the old period is kept."""
        run_import(
            engine, keyring, roster_xlsx(numbered([["林二", "女", "预备党员", "第二党支部", LIN_CARD]]))
        )
        report = run_import(
            engine, keyring, roster_xlsx(numbered([["林二", "女", "正式党员", "第二党支部", LIN_CARD]]))
        )

        assert [u.changed for u in report.updates] == [["category"]]
        with Session(engine) as session:
            lin = member_named(session, "林二")
            assert lin.category == MemberCategory.FULL
            periods = session.exec(select(MembershipPeriod).where(MembershipPeriod.member_id == lin.id)).all()
            assert sorted((p.category, p.ended_at is None) for p in periods) == [
                (MemberCategory.FULL, True),
                (MemberCategory.PROBATIONARY, False),
            ]


class TestWhoIsWho:
    def test_same_named_people_in_one_branch_are_told_apart_by_card(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        rows = numbered(
            [
                ["王伟", "男", "正式党员", "第二党支部", CHEN_CARD],
                ["王伟", "男", "预备党员", "第二党支部", LIN_CARD],
            ]
        )
        first = run_import(engine, keyring, roster_xlsx(rows))
        again = run_import(engine, keyring, roster_xlsx(list(reversed(rows))))

        assert first.created == 2
        assert (again.created, again.unchanged) == (0, 2)

    def test_card_is_bound_to_the_existing_member_without_one(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        report = run_import(
            engine,
            keyring,
            roster_xlsx(numbered([["王五", None, "正式党员", "思明区某街道党委/第一党支部", CHEN_CARD]])),
        )

        assert (report.created, report.updated, report.cards_bound) == (0, 1, 1)
        assert report.updates[0].member_id == tree.wang
        assert report.updates[0].changed == ["card"]

    def test_a_member_of_a_party_group_is_found_under_the_branch(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        """Rosters name the 支部; the system may have the member in one of its 党小组."""
        with unit_of_work(engine) as session:
            add_member(
                session,
                name="周八",
                org_id=tree.group,
                category=MemberCategory.FULL,
                joined_org_at=None,
                now=NOW,
            )
        report = run_import(
            engine,
            keyring,
            roster_xlsx(numbered([["周八", "女", "正式党员", "思明区某街道党委/第一党支部", CHEN_CARD]])),
        )

        assert (report.created, report.updated, report.cards_bound) == (0, 1, 1)
        assert report.updates[0].changed == ["gender", "card"]
        with Session(engine) as session:
            assert member_named(session, "周八").org_id == tree.group  # not moved

    def test_a_lost_card_still_identifies_its_member(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        """After a card was reported lost, re-importing the old roster neither revives it nor
        creates a second 张三明."""
        with unit_of_work(engine) as session:
            binding = session.exec(select(CardBinding).where(CardBinding.member_id == tree.zhang)).one()
            binding.status = BindingStatus.LOST
            session.add(binding)
        report = run_import(
            engine,
            keyring,
            roster_xlsx(numbered([["张三明", None, "正式党员", "思明区某街道党委/第一党支部", ZHANG_CARD]])),
        )

        assert (report.created, report.unchanged, report.cards_bound) == (0, 1, 0)


class TestRefusals:
    def test_one_bad_row_imports_nothing(self, engine: Engine, keyring: Keyring, tree: Tree) -> None:
        rows: list[list[object]] = [*HAPPY_ROWS, [6, "郑七", "男", "正式党员", "第九党支部", None]]
        problems = refusal(engine, keyring, roster_xlsx(rows))

        assert located(problems) == [(7, "所在支部", "branch_unknown")]
        assert "第九党支部" in problems[0]["message"]

    def test_every_problem_is_listed_in_row_order(self, engine: Engine, keyring: Keyring, tree: Tree) -> None:
        rows = numbered(
            [
                ["陈一", "男", "正式党员", "第九党支部", None],
                ["", "男", "正式党员", "第一党支部", None],
                ["林二", "男", "群众", "第一党支部", 3104393000001000002],
            ]
        )
        problems = refusal(engine, keyring, roster_xlsx(rows))

        assert located(problems) == [
            (2, "所在支部", "branch_unknown"),
            (3, "姓名", "name_missing"),
            (4, "党员类别", "category_invalid"),
            (4, "易通卡号", "card_no_not_text"),
        ]

    @pytest.mark.parametrize(
        ("row", "column", "code"),
        [
            (["陈一", "男", "正式党员", "第一党支部", None], "所在支部", ProblemCode.BRANCH_AMBIGUOUS),
            (
                ["陈一", "男", "正式党员", "思明区某街道党委", None],
                "所在支部",
                ProblemCode.BRANCH_NOT_A_BRANCH,
            ),
            (
                ["陈一", "男", "正式党员", "湖里区某公司党委/第二党支部", None],
                "所在支部",
                ProblemCode.BRANCH_UNKNOWN,
            ),
            (
                ["陈一", "男", "正式党员", "第二党支部", ZHANG_CARD],
                "易通卡号",
                ProblemCode.CARD_BOUND_ELSEWHERE,
            ),
            (
                ["张三明", "男", "正式党员", "第二党支部", ZHANG_CARD],
                "易通卡号",
                ProblemCode.MEMBER_IN_OTHER_BRANCH,
            ),
        ],
    )
    def test_row_against_the_database(
        self, engine: Engine, keyring: Keyring, tree: Tree, row: list[object], column: str, code: ProblemCode
    ) -> None:
        # The tree has two organisations called 第一党支部 (思明 and 湖里): the bare name is ambiguous.
        problems = refusal(engine, keyring, roster_xlsx(numbered([row])))
        assert located(problems) == [(2, column, code.value)]
        assert ZHANG_CARD not in problems[0]["message"]

    def test_ambiguous_branch_names_its_candidates(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        [problem] = refusal(
            engine, keyring, roster_xlsx(numbered([["陈一", "男", "正式党员", "第一党支部", None]]))
        )
        assert "思明区某街道党委/第一党支部" in problem["message"]
        assert "湖里区某公司党委/第一党支部" in problem["message"]

    def test_rows_that_cannot_be_told_apart(self, engine: Engine, keyring: Keyring, tree: Tree) -> None:
        rows = numbered(
            [
                ["陈一", "男", "正式党员", "第二党支部", CHEN_CARD],
                ["林二", "女", "正式党员", "第二党支部", CHEN_CARD],  # same card as row 2
                ["黄六", "女", "正式党员", "第二党支部", None],
                ["黄六", "女", "正式党员", "第二党支部", HUANG_CARD],  # same person as row 4, or not?
            ]
        )
        problems = refusal(engine, keyring, roster_xlsx(rows))

        assert located(problems) == [(3, "易通卡号", "card_repeated"), (5, "姓名", "member_repeated")]
        assert "第2行" in problems[0]["message"]

    def test_several_same_named_members_need_a_card(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        run_import(
            engine,
            keyring,
            roster_xlsx(
                numbered(
                    [
                        ["王伟", "男", "正式党员", "第二党支部", CHEN_CARD],
                        ["王伟", "男", "正式党员", "第二党支部", LIN_CARD],
                    ]
                )
            ),
        )
        problems = refusal(
            engine, keyring, roster_xlsx(numbered([["王伟", "男", "正式党员", "第二党支部", None]]))
        )
        assert located(problems) == [(2, "姓名", "member_ambiguous")]

    def test_inactive_member_is_not_revived(self, engine: Engine, keyring: Keyring, tree: Tree) -> None:
        with unit_of_work(engine) as session:
            change_member_status(
                session, member_id=tree.zhao, status=MemberStatus.TRANSFERRED_OUT, at=NOW, caller=CLI_CALLER
            )
        problems = refusal(
            engine, keyring, roster_xlsx(numbered([["赵六", "男", "正式党员", "第二党支部", ZHAO_CARD]]))
        )
        assert located(problems) == [(2, "姓名", "member_inactive")]

    def test_a_row_for_someone_who_left_is_refused_not_recreated(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        """The old Excel still lists 王五 after his transfer: no new 王五; another 王五 who is still
        active in the branch is matched instead."""
        with unit_of_work(engine) as session:
            change_member_status(
                session, member_id=tree.wang, status=MemberStatus.TRANSFERRED_OUT, at=NOW, caller=CLI_CALLER
            )
        row = numbered([["王五", "男", "正式党员", "思明区某街道党委/第一党支部", None]])
        assert located(refusal(engine, keyring, roster_xlsx(row))) == [(2, "姓名", "member_inactive")]

        with unit_of_work(engine) as session:
            add_member(
                session,
                name="王五",
                org_id=tree.branch,
                category=MemberCategory.FULL,
                joined_org_at=None,
                now=NOW,
            )
        report = run_import(engine, keyring, roster_xlsx(row))
        assert (report.created, report.updated + report.unchanged) == (0, 1)

    def test_scoped_import_cannot_reach_other_subtrees(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        """Scoped to 思明: the bare 第一党支部 is no longer ambiguous, and 湖里's branch does not exist."""
        report = run_import(
            engine,
            keyring,
            roster_xlsx(numbered([["陈一", "男", "正式党员", "第一党支部", None]])),
            scope=tree.siming,
        )
        assert report.created == 1

        problems = refusal(
            engine,
            keyring,
            roster_xlsx(numbered([["林二", "女", "正式党员", "湖里区某公司党委/第一党支部", None]])),
            scope=tree.siming,
        )
        assert located(problems) == [(2, "所在支部", "branch_unknown")]

    def test_card_of_a_member_outside_the_scope_does_not_name_their_branch(
        self, engine: Engine, keyring: Keyring, tree: Tree
    ) -> None:
        problems = refusal(
            engine,
            keyring,
            roster_xlsx(numbered([["赵六", "男", "正式党员", "第一党支部", ZHAO_CARD]])),
            scope=tree.branch,
        )
        assert located(problems) == [(2, "易通卡号", "member_in_other_branch")]
        assert "第二党支部" not in problems[0]["message"]
