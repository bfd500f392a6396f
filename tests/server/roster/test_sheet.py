"""Reading a 花名册 workbook (no database): finding the header, mapping columns, checking each cell."""

from __future__ import annotations

from io import BytesIO

import pytest
from openpyxl import Workbook

from server.errors import RosterUnreadable
from server.roster.schemas import ProblemCode
from server.roster.sheet import RosterContent, branch_path_keys, name_key, read_roster
from server.vocabulary import Gender, MemberCategory
from tests.server.roster.workbooks import CHEN_CARD, HEADER, LIN_CARD, numbered, roster_xlsx


def only_problem(content: RosterContent) -> tuple[int | None, str | None, ProblemCode]:
    assert len(content.problems) == 1, content.problems
    problem = content.problems[0]
    return problem.row, problem.column, problem.code


class TestLayout:
    def test_title_row_synonyms_and_ignored_columns(self) -> None:
        """A title above the header, headers in other words and with markers, extra columns ignored."""
        data = roster_xlsx(
            [[1, "陈一", "男", "正式党员", "第一党支部", CHEN_CARD, "350203199001011234"]],
            header=["序号", "*名字", "性 别", "类别", "所在党支部", "易通卡号（19位）", "身份证号"],
            title="第一党支部党员花名册",
        )
        content = read_roster(data)

        assert content.problems == []
        assert content.sheets == ["花名册"]
        assert content.ignored_columns == ["序号", "身份证号"]
        [row] = content.rows
        assert row.row == 3  # as Excel numbers it: title, header, then this
        assert (row.name, row.gender, row.category) == ("陈一", Gender.MALE, MemberCategory.FULL)
        assert row.branch_path == ("第一党支部",)
        assert row.card_no == CHEN_CARD

    def test_columns_in_any_order_and_blank_rows_skipped(self) -> None:
        data = roster_xlsx(
            [
                [LIN_CARD, "某党委/第二党支部", "预备", "林二"],
                [None, None, None, None],
                ["", "第一党支部", "正式", "王五"],
            ],
            header=["卡号", "党组织", "政治面貌", "姓名"],
        )
        content = read_roster(data)

        assert content.problems == []
        assert [(r.row, r.name, r.card_no) for r in content.rows] == [
            (2, "林二", LIN_CARD),
            (4, "王五", None),
        ]
        assert content.rows[0].branch_path == ("某党委", "第二党支部")
        assert content.rows[0].category == MemberCategory.PROBATIONARY

    def test_instruction_sheet_is_skipped(self) -> None:
        data = roster_xlsx(
            numbered([["陈一", "男", "正式党员", "第一党支部", CHEN_CARD]]), before=["填表说明"]
        )
        content = read_roster(data)

        assert content.ignored_sheets == ["填表说明"]
        assert content.sheets == ["花名册"]
        assert len(content.rows) == 1

    def test_no_header_anywhere(self) -> None:
        data = roster_xlsx([["陈一", "正式党员"]], header=["名单", "备注"])
        assert only_problem(read_roster(data)) == (None, "姓名", ProblemCode.HEADER_NOT_FOUND)

    def test_missing_required_column_is_named(self) -> None:
        data = roster_xlsx([["陈一", "正式党员"]], header=["姓名", "党员类别"])
        content = read_roster(data)

        assert only_problem(content) == (1, "所在支部", ProblemCode.COLUMN_MISSING)
        assert "所在支部" in content.problems[0].message
        assert content.rows == []

    def test_two_columns_for_one_field(self) -> None:
        data = roster_xlsx(
            [["陈一", "陈一", "正式党员", "第一党支部"]], header=["姓名", "名字", "党员类别", "支部"]
        )
        assert only_problem(read_roster(data)) == (1, "名字", ProblemCode.COLUMN_REPEATED)

    def test_header_only_is_an_empty_roster(self) -> None:
        assert only_problem(read_roster(roster_xlsx([]))) == (None, None, ProblemCode.ROSTER_EMPTY)


class TestCells:
    @pytest.mark.parametrize(
        ("row", "column", "code"),
        [
            (["", "男", "正式党员", "第一党支部", CHEN_CARD], "姓名", ProblemCode.NAME_MISSING),
            (["陈" * 101, "男", "正式党员", "第一党支部", CHEN_CARD], "姓名", ProblemCode.NAME_TOO_LONG),
            (["陈一", "未知", "正式党员", "第一党支部", CHEN_CARD], "性别", ProblemCode.GENDER_INVALID),
            (["陈一", "男", "", "第一党支部", CHEN_CARD], "党员类别", ProblemCode.CATEGORY_MISSING),
            (["陈一", "男", "积极分子", "第一党支部", CHEN_CARD], "党员类别", ProblemCode.CATEGORY_INVALID),
            (["陈一", "男", "正式党员", "  ", CHEN_CARD], "所在支部", ProblemCode.BRANCH_MISSING),
            (
                ["陈一", "男", "正式党员", "第一党支部", "31043930000010"],
                "易通卡号",
                ProblemCode.CARD_NO_INVALID,
            ),
            (
                ["陈一", "男", "正式党员", "第一党支部", "3104-3930-0000-1000-00X"],
                "易通卡号",
                ProblemCode.CARD_NO_INVALID,
            ),
            (
                ["陈一", "男", "正式党员", "第一党支部", 3104393000001000001],
                "易通卡号",
                ProblemCode.CARD_NO_NOT_TEXT,
            ),
        ],
    )
    def test_each_bad_cell_is_reported_at_its_row_and_column(
        self, row: list[object], column: str, code: ProblemCode
    ) -> None:
        content = read_roster(
            roster_xlsx(numbered([["林二", "女", "预备党员", "第一党支部", LIN_CARD], row]))
        )

        assert only_problem(content) == (3, column, code)
        assert [r.name for r in content.rows] == ["林二"]  # the good row still parses
        assert content.problems[0].message  # Chinese text for the secretary

    def test_uid_column(self) -> None:
        header = [*HEADER, "UID"]
        good = read_roster(
            roster_xlsx([[1, "陈一", "男", "正式党员", "第一党支部", "", "04 a1 b2 c3"]], header=header)
        )
        assert good.rows[0].uid == "04A1B2C3"
        assert good.rows[0].card_no is None

        bad = read_roster(
            roster_xlsx([[1, "陈一", "男", "正式党员", "第一党支部", "", "XYZ"]], header=header)
        )
        assert only_problem(bad) == (2, "UID", ProblemCode.UID_INVALID)
        numeric = read_roster(
            roster_xlsx([[1, "陈一", "男", "正式党员", "第一党支部", "", 12345678]], header=header)
        )
        assert only_problem(numeric) == (2, "UID", ProblemCode.UID_NOT_TEXT)

    def test_card_number_spaces_and_full_width_digits_are_tolerated(self) -> None:
        content = read_roster(
            roster_xlsx(
                numbered(
                    [["陈一", "男", "正式党员", "第一党支部", "３１０４ ３９３０ ００００ １０００ ００１"]]
                )
            )
        )
        assert content.rows[0].card_no == CHEN_CARD

    def test_card_numbers_stay_out_of_reprs(self) -> None:
        content = read_roster(roster_xlsx(numbered([["陈一", "男", "正式党员", "第一党支部", CHEN_CARD]])))
        assert CHEN_CARD not in repr(content.rows[0])


class TestNames:
    def test_padding_between_chinese_characters_is_dropped(self) -> None:
        assert name_key("王　伟") == name_key("王 伟") == "王伟"
        assert name_key(" John  Smith ") == "John Smith"
        assert name_key("买买提·艾力") == "买买提·艾力"

    def test_branch_paths(self) -> None:
        assert branch_path_keys("某党委 ／ 第一党支部（退休）") == ("某党委", "第一党支部(退休)")
        assert branch_path_keys("第一党支部") == ("第一党支部",)


class TestUnreadable:
    def test_old_xls_gets_a_save_as_hint(self) -> None:
        with pytest.raises(RosterUnreadable) as excinfo:
            read_roster(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512)
        assert excinfo.value.code == "roster_unreadable"
        assert ".xlsx" in excinfo.value.message

    @pytest.mark.parametrize("data", [b"", "姓名,所在支部\n陈一,第一党支部\n".encode(), b"PK\x03\x04broken"])
    def test_not_a_workbook(self, data: bytes) -> None:
        with pytest.raises(RosterUnreadable):
            read_roster(data)

    def test_workbook_without_sheets_of_members(self) -> None:
        workbook = Workbook()
        buffer = BytesIO()
        workbook.save(buffer)
        assert only_problem(read_roster(buffer.getvalue()))[2] == ProblemCode.HEADER_NOT_FOUND
