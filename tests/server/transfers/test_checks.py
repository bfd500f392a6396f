"""The checks a reviewer sees, and the working-day calendar behind the SLA (pure functions)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from server.errors import ApplicantNameRequired, LetterExpired, LetterMissing, ProbationOverdue
from server.records.transfers import DocumentKind, IntroductionLetter
from server.transfers.calendar import make_calendar
from server.transfers.checks import Applicant, Evaluation, evaluate, letter_valid_until
from server.vocabulary import MemberCategory, MemberStatus
from tests.server.transfers.factories import letter

TODAY = date(2025, 4, 15)
KNOWN = Applicant(name="钱七", member_status=MemberStatus.ACTIVE, category=MemberCategory.FULL)
PROBATIONER = Applicant(name="孙八", member_status=None, category=MemberCategory.PROBATIONARY)


def stored(issued_on: date, valid_days: int = 30, dues_paid_to: str | None = None) -> IntroductionLetter:
    data = letter(issued_on=issued_on, valid_days=valid_days, dues_paid_to=dues_paid_to)
    return IntroductionLetter(
        request_id=1, recorded_at=datetime(2025, 1, 1), recorded_by="test", **data.model_dump()
    )


def check(
    *,
    applicant: Applicant = KNOWN,
    letter_row: IntroductionLetter | None = None,
    probation_due_on: date | None = None,
    ticked: set[DocumentKind] | None = None,
) -> Evaluation:
    return evaluate(
        applicant=applicant,
        letter=letter_row,
        probation_due_on=probation_due_on,
        ticked=ticked or set(),
        today=TODAY,
    )


def by_code(evaluation: Evaluation) -> dict[str, tuple[str, str]]:
    return {c.code: (c.severity, c.message) for c in evaluation.checks}


class TestLetterValidity:
    def test_validity_counts_the_issue_day(self) -> None:
        """有效期30天 from 1 March: valid through 30 March."""
        assert letter_valid_until(stored(date(2025, 3, 1))) == date(2025, 3, 30)

    def test_a_letter_within_its_validity_passes(self) -> None:
        evaluation = check(letter_row=stored(date(2025, 4, 1)))
        assert evaluation.blockers == []
        assert by_code(evaluation)["letter_valid"] == ("ok", "介绍信有效期至2025年4月30日")
        assert by_code(evaluation)["issuer_authorised"][0] == "ok"

    def test_the_letter_expired_seven_years_ago_is_flagged_and_blocks(self) -> None:
        """The seed's case: the relationship hung at home; the letter lapsed in 2018."""
        evaluation = check(letter_row=stored(date(2018, 3, 1)))
        severity, message = by_code(evaluation)["letter_expired"]
        assert severity == "blocker"
        assert "2018年3月30日过期（超期7年" in message
        assert "须由原所在党支部出具证明并由本人提出申请，或重新开具介绍信" in message
        assert isinstance(evaluation.blocking_error, LetterExpired)
        assert evaluation.blocking_error.code == "letter_expired"
        assert {
            DocumentKind.BRANCH_CERTIFICATE,
            DocumentKind.MEMBER_APPLICATION,
        } <= evaluation.required_documents

    def test_branch_certificate_and_own_application_together_cure_it(self) -> None:
        only_one = check(letter_row=stored(date(2018, 3, 1)), ticked={DocumentKind.BRANCH_CERTIFICATE})
        assert only_one.blockers == ["letter_expired"]
        both = check(
            letter_row=stored(date(2018, 3, 1)),
            ticked={DocumentKind.BRANCH_CERTIFICATE, DocumentKind.MEMBER_APPLICATION},
        )
        assert both.blockers == []
        severity, message = by_code(both)["letter_expired"]
        assert severity == "warning"  # still shown: the reviewer should know
        assert "已收到原所在党支部证明和本人申请" in message

    def test_a_letter_about_to_lapse_is_a_warning(self) -> None:
        evaluation = check(letter_row=stored(date(2025, 3, 20)))  # valid through 18 April
        assert by_code(evaluation)["letter_expiring"][0] == "warning"
        assert evaluation.blockers == []

    def test_validity_beyond_three_months_is_questioned(self) -> None:
        evaluation = check(letter_row=stored(date(2025, 4, 1), valid_days=180))
        assert by_code(evaluation)["letter_long_validity"][0] == "warning"

    def test_dues_unpaid_for_six_months_is_a_warning(self) -> None:
        """Paid up to October 2024: by 15 April 2025, November to March (five months) are owed…"""
        five = check(letter_row=stored(date(2025, 4, 1), dues_paid_to="2024-10"))
        assert "dues_lapsed" not in by_code(five)
        six = check(letter_row=stored(date(2025, 4, 1), dues_paid_to="2024-09"))
        assert by_code(six)["dues_lapsed"] == (
            "warning",
            "党费已交到2024年9月，已连续6个月未交纳党费（党章第九条），请核实原因",
        )

    def test_no_letter_blocks(self) -> None:
        evaluation = check()
        assert evaluation.blockers == ["letter_missing"]
        assert isinstance(evaluation.blocking_error, LetterMissing)


class TestProbation:
    def test_probation_past_its_end_without_a_decision_blocks(self) -> None:
        """Xiamen does not accept letters for a 预备党员 whose probation ended without 转正."""
        evaluation = check(
            applicant=PROBATIONER, letter_row=stored(date(2025, 4, 1)), probation_due_on=date(2025, 1, 10)
        )
        severity, message = by_code(evaluation)["probation_overdue"]
        assert severity == "blocker"
        assert "预备期已于2025年1月10日届满但未见转正决定" in message
        assert isinstance(evaluation.blocking_error, ProbationOverdue)
        assert DocumentKind.PROBATION_DECISION in evaluation.required_documents

    def test_a_decision_on_file_clears_it(self) -> None:
        evaluation = check(
            applicant=PROBATIONER,
            letter_row=stored(date(2025, 4, 1)),
            probation_due_on=date(2025, 1, 10),
            ticked={DocumentKind.PROBATION_DECISION},
        )
        assert evaluation.blockers == []
        assert by_code(evaluation)["probation_overdue"][0] == "warning"

    def test_probation_still_running_passes(self) -> None:
        evaluation = check(
            applicant=PROBATIONER, letter_row=stored(date(2025, 4, 1)), probation_due_on=date(2025, 9, 1)
        )
        assert by_code(evaluation)["probation_in_term"][0] == "ok"

    def test_missing_end_date_is_asked_for(self) -> None:
        evaluation = check(applicant=PROBATIONER, letter_row=stored(date(2025, 4, 1)))
        assert by_code(evaluation)["probation_due_missing"][0] == "warning"

    def test_full_members_have_no_probation_check(self) -> None:
        evaluation = check(letter_row=stored(date(2025, 4, 1)), probation_due_on=date(2020, 1, 1))
        assert not any(code.startswith("probation") for code in by_code(evaluation))


class TestApplicant:
    def test_an_unknown_card_holder_needs_a_name(self) -> None:
        evaluation = check(applicant=Applicant(name=None, member_status=None, category=None))
        assert evaluation.blockers == ["applicant_name_missing", "letter_missing"]
        assert isinstance(evaluation.blocking_error, ApplicantNameRequired)

    def test_a_member_whose_status_is_not_normal_is_flagged(self) -> None:
        suspended = Applicant(name="钱七", member_status=MemberStatus.SUSPENDED, category=MemberCategory.FULL)
        assert by_code(check(applicant=suspended))["member_not_active"][0] == "warning"


class TestWorkCalendar:
    def test_weekends_are_skipped(self) -> None:
        calendar = make_calendar()
        friday = date(2025, 3, 7)
        assert calendar.add_working_days(friday, 5) == date(2025, 3, 14)
        assert calendar.working_days_between(friday, date(2025, 3, 10)) == 1  # Sat, Sun, Mon

    def test_holidays_and_make_up_days(self) -> None:
        """国庆 2025: 1–8 October off, Sunday 28 September and Saturday 11 October worked."""
        calendar = make_calendar(
            holidays=[date(2025, 10, d) for d in range(1, 9)],
            makeup_workdays=[date(2025, 9, 28), date(2025, 10, 11)],
        )
        assert calendar.is_working_day(date(2025, 9, 28))
        assert not calendar.is_working_day(date(2025, 10, 6))
        # From Friday 26 September: 28 Sep, 29, 30, then 9 Oct, 10 Oct.
        assert calendar.add_working_days(date(2025, 9, 26), 5) == date(2025, 10, 10)

    @pytest.mark.parametrize("count", [0, 1, 5, 23])
    def test_counting_back_matches_adding(self, count: int) -> None:
        calendar = make_calendar(holidays=[date(2025, 5, 1), date(2025, 5, 2)])
        start = date(2025, 4, 25)
        assert calendar.working_days_between(start, calendar.add_working_days(start, count)) == count
