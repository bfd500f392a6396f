"""The checks a reviewer sees on a transfer request (docs/domain-rules.md §3.2–§3.5, 党章 第九条).

All are derived, never stored: they depend on today's date and on which documents are ticked,
and a stored verdict would be stale by the next page view. The same list drives the guards, so
what the reviewer sees is exactly what stops a forward action.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from server.errors import ApplicantNameRequired, DomainError, LetterExpired, LetterMissing, ProbationOverdue
from server.records.transfers import DocumentKind, IntroductionLetter
from server.transfers.kinds import AUTHORISED_ISSUERS, ISSUER_LABELS
from server.transfers.schemas import CheckResult
from server.vocabulary import MemberCategory, MemberStatus

EXPIRY_WARNING_DAYS = 5
USUAL_MAX_VALIDITY_DAYS = 90  # "最长不超过3个月" (docs/domain-rules.md §3.4)
DUES_LAPSE_MONTHS = 6  # 党章 第九条: six months without dues


class CheckCode(StrEnum):
    APPLICANT_NAME_MISSING = "applicant_name_missing"
    MEMBER_NOT_ACTIVE = "member_not_active"
    LETTER_MISSING = "letter_missing"
    ISSUER_AUTHORISED = "issuer_authorised"
    LETTER_VALID = "letter_valid"
    LETTER_EXPIRING = "letter_expiring"
    LETTER_EXPIRED = "letter_expired"
    LETTER_LONG_VALIDITY = "letter_long_validity"
    PROBATION_DUE_MISSING = "probation_due_missing"
    PROBATION_IN_TERM = "probation_in_term"
    PROBATION_OVERDUE = "probation_overdue"
    DUES_LAPSED = "dues_lapsed"


@dataclass(frozen=True)
class Applicant:
    """What the checks need to know about the person, whoever they are."""

    name: str | None
    member_status: MemberStatus | None  # None: not a member of ours yet
    category: MemberCategory | None  # from the letter when there is one, else from the roster


@dataclass(frozen=True)
class Evaluation:
    checks: list[CheckResult]
    required_documents: frozenset[DocumentKind]
    blocking_error: DomainError | None

    @property
    def blockers(self) -> list[str]:
        return [check.code for check in self.checks if check.severity == "blocker"]

    @property
    def warnings(self) -> list[str]:
        return [check.code for check in self.checks if check.severity == "warning"]


def letter_valid_until(letter: IntroductionLetter) -> date:
    """The last day the letter is valid: validity counts the issue day ("自开具之日起N天内有效")."""
    return letter.issued_on + timedelta(days=letter.valid_days - 1)


def letter_lapsed(letter: IntroductionLetter, today: date) -> bool:
    return today > letter_valid_until(letter)


def overdue_cured(ticked: Collection[DocumentKind]) -> bool:
    """An expired letter may be processed with a 支部证明 *and* the member's own application
    (docs/domain-rules.md §3.4)."""
    return DocumentKind.BRANCH_CERTIFICATE in ticked and DocumentKind.MEMBER_APPLICATION in ticked


class _Collector:
    def __init__(self) -> None:
        self.checks: list[CheckResult] = []
        self.errors: list[DomainError] = []
        self.required: set[DocumentKind] = {DocumentKind.ID_CARD}

    def block(self, code: CheckCode, message: str, error: DomainError) -> None:
        self.checks.append(CheckResult(code=code.value, severity="blocker", message=message))
        self.errors.append(error)

    def warn(self, code: CheckCode, message: str) -> None:
        self.checks.append(CheckResult(code=code.value, severity="warning", message=message))

    def ok(self, code: CheckCode, message: str) -> None:
        self.checks.append(CheckResult(code=code.value, severity="ok", message=message))


def evaluate(
    *,
    applicant: Applicant,
    letter: IntroductionLetter | None,
    probation_due_on: date | None,
    ticked: Collection[DocumentKind],
    today: date,
) -> Evaluation:
    """Every check, in the order a reviewer reads them, with the first blocker's error."""
    found = _Collector()
    if not applicant.name:
        found.block(
            CheckCode.APPLICANT_NAME_MISSING, "未登记持卡人：请填写申请人姓名", ApplicantNameRequired()
        )
    if applicant.member_status is not None and applicant.member_status != MemberStatus.ACTIVE:
        found.warn(CheckCode.MEMBER_NOT_ACTIVE, "此人在系统中的党籍状态不是正常，请核实")
    if letter is None:
        found.block(CheckCode.LETTER_MISSING, "尚未录入组织关系介绍信", LetterMissing())
    else:
        _letter_checks(found, letter, ticked, today)
    if applicant.category == MemberCategory.PROBATIONARY:
        _probation_checks(found, probation_due_on, ticked, today)
    return Evaluation(
        checks=found.checks,
        required_documents=frozenset(found.required),
        blocking_error=found.errors[0] if found.errors else None,
    )


def _letter_checks(
    found: _Collector, letter: IntroductionLetter, ticked: Collection[DocumentKind], today: date
) -> None:
    # The issuer is refused when the letter is recorded (letter_issuer_not_committee), so a stored
    # letter always passes; it is still listed so the reviewer sees it was checked.
    if letter.issuer_kind in AUTHORISED_ISSUERS:
        found.ok(
            CheckCode.ISSUER_AUTHORISED,
            f"开具单位为{ISSUER_LABELS[letter.issuer_kind]}（{letter.issuer_name}）",
        )

    valid_until = letter_valid_until(letter)
    if today > valid_until:
        lapsed = f"介绍信已于{_day(valid_until)}过期（超期{_duration(valid_until, today)}）"
        found.required.update({DocumentKind.BRANCH_CERTIFICATE, DocumentKind.MEMBER_APPLICATION})
        if overdue_cured(ticked):
            found.warn(CheckCode.LETTER_EXPIRED, f"{lapsed}；已收到原所在党支部证明和本人申请")
        else:
            found.block(
                CheckCode.LETTER_EXPIRED,
                f"{lapsed}：须由原所在党支部出具证明并由本人提出申请，或重新开具介绍信",
                LetterExpired(f"{lapsed}：须补齐支部证明和本人申请，或重新开具介绍信"),
            )
    elif (valid_until - today).days < EXPIRY_WARNING_DAYS:
        found.warn(CheckCode.LETTER_EXPIRING, f"介绍信将于{_day(valid_until)}到期，请尽快办理")
    else:
        found.ok(CheckCode.LETTER_VALID, f"介绍信有效期至{_day(valid_until)}")

    if letter.valid_days > USUAL_MAX_VALIDITY_DAYS:
        found.warn(
            CheckCode.LETTER_LONG_VALIDITY, f"有效期{letter.valid_days}天，超过通常的3个月上限，请核实"
        )

    unpaid_months = _months_unpaid(letter.dues_paid_to, today)
    if unpaid_months >= DUES_LAPSE_MONTHS:
        year, month = letter.dues_paid_to.split("-")
        found.warn(
            CheckCode.DUES_LAPSED,
            f"党费已交到{year}年{int(month)}月，已连续{unpaid_months}个月未交纳党费（党章第九条），请核实原因",
        )


def _probation_checks(
    found: _Collector, probation_due_on: date | None, ticked: Collection[DocumentKind], today: date
) -> None:
    if probation_due_on is None:
        found.warn(CheckCode.PROBATION_DUE_MISSING, "预备党员：请填写预备期满日期，以核对是否已按期转正")
    elif today > probation_due_on:
        found.required.add(DocumentKind.PROBATION_DECISION)
        if DocumentKind.PROBATION_DECISION in ticked:
            found.warn(
                CheckCode.PROBATION_OVERDUE,
                f"预备期已于{_day(probation_due_on)}届满；已核对转正或延长预备期的决定",
            )
        else:
            found.block(
                CheckCode.PROBATION_OVERDUE,
                f"预备期已于{_day(probation_due_on)}届满但未见转正决定；厦门不接收预备期满未转正的介绍信，"
                "须出示转正或延长预备期的决定",
                ProbationOverdue(),
            )
    else:
        found.ok(CheckCode.PROBATION_IN_TERM, f"预备期至{_day(probation_due_on)}，尚未届满")


def _months_unpaid(dues_paid_to: str, today: date) -> int:
    """Whole months after the paid-up month that have ended by today (paid to 2025-01: on 1 April,
    February and March are unpaid)."""
    year, month = (int(part) for part in dues_paid_to.split("-"))
    return max(0, (today.year - year) * 12 + today.month - month - 1)


def _duration(start: date, end: date) -> str:
    months = (end.year - start.year) * 12 + end.month - start.month - (end.day < start.day)
    if months <= 0:
        return f"{(end - start).days}天"
    years, months = divmod(months, 12)
    return (f"{years}年" if years else "") + (f"{months}个月" if months else "")


def _day(value: date) -> str:
    return f"{value.year}年{value.month}月{value.day}日"
