"""Transfer-in tables (request, introduction letter, ticked documents) and their stored vocabularies."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.records.taps import TAP_ID_TYPE
from server.vocabulary import MemberCategory


class TransferSource(StrEnum):
    KIOSK_TAP = "kiosk_tap"  # a card tapped at a kiosk in transfer-in mode
    GUEST_TAP = "guest_tap"  # filed by a secretary from a guest's check-in (see service docstring)
    API = "api"
    WEB = "web"


class IssuerKind(StrEnum):
    """Who issued the 介绍信. Only bodies with transfer authority may (docs/domain-rules.md §3.2,
    Xiamen practice)."""

    BASIC_COMMITTEE = "basic_committee"  # 基层党委（具有审批预备党员权限）
    ORG_DEPARTMENT = "org_department"  # 县级以上党委组织部 (letters from outside Fujian)
    GENERAL_BRANCH = "general_branch"  # 党总支: refused
    BRANCH = "branch"  # 党支部: refused


class DocumentKind(StrEnum):
    """Papers the reviewer checks and ticks (docs/domain-rules.md §3.4–§3.6)."""

    BRANCH_CERTIFICATE = "branch_certificate"  # 原所在党支部出具的证明 (overdue letter)
    MEMBER_APPLICATION = "member_application"  # 本人申请 (overdue letter)
    PROBATION_DECISION = "probation_decision"  # 转正或延长预备期的决定 (预备期已满)
    ID_CARD = "id_card"  # 居民身份证 (核对身份证号与介绍信一致)
    MEMBERSHIP_FORM_COPY = "membership_form_copy"  # 入党志愿书或党员基本情况登记表复印件（档案未到时）


class TransferState(StrEnum):
    # Waiting for the organisation the member belongs to now (or, for a card nobody here holds,
    # for the holder's own tap): see docs/transfers.md, "Between organisations".
    AWAITING_SOURCE = "awaiting_source"  # 待原组织同意转出（原支部）
    SOURCE_BRANCH_AGREED = "source_branch_agreed"  # 原支部已同意，待原党委同意转出
    SOURCE_REFUSED = "source_refused"  # 原组织不同意转出
    SUBMITTED = "submitted"  # 已提交，待支部审核
    RETURNED = "returned"  # 已退回补正
    REJECTED = "rejected"  # 不予接收
    BRANCH_ACCEPTED = "branch_accepted"  # 支部已同意，待党委审批
    COMMITTEE_APPROVED = "committee_approved"  # 党委已审批，待接收
    RECEIVED = "received"  # 已接收，待寄回回执
    CLOSED = "closed"  # 已办结（回执已寄回）
    EXPIRED = "expired"  # 介绍信已过期
    WITHDRAWN = "withdrawn"  # 本人已撤回


class TransferAction(StrEnum):
    SOURCE_AGREE = "source_agree"  # the member's branch agrees to let them go (支部同意转出)
    RELEASE = "release"  # the member's 基层党委 releases them (党委同意转出)
    REFUSE_RELEASE = "refuse_release"  # the member's organisation refuses, with a reason
    CONFIRM_BY_TAP = "confirm_by_tap"  # the holder of a card nobody here holds tapped it (system)
    BRANCH_ACCEPT = "branch_accept"
    RETURN = "return"
    REJECT = "reject"
    RESUBMIT = "resubmit"
    COMMITTEE_APPROVE = "committee_approve"
    RECEIVE = "receive"
    CLOSE = "close"
    EXPIRE = "expire"
    REVIVE = "revive"
    WITHDRAW = "withdraw"


DUES_MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


class TransferRequest(SQLModel, table=True):
    """One 组织关系转入 application to an organisation of ours.

    The applicant is a known member (``member_id``) or a person unknown to the system, known by
    the name they gave and, when they tapped a card, by its keyed digests (never raw identifiers).
    """

    __tablename__ = "transfer_request"
    # pending_key is "m:<member id>" or "c:<card digest>" while the request is pending and NULL
    # otherwise. NULLs are distinct in a unique constraint (SQLite and PostgreSQL), so this allows
    # any number of finished requests but only one pending request per person and organisation,
    # even when two kiosks race (the loser's savepoint retries and finds the winner's request).
    __table_args__ = (UniqueConstraint("to_org_id", "pending_key"),)

    id: int | None = Field(default=None, primary_key=True)
    state: TransferState = Field(sa_type=string_enum(TransferState), index=True)
    state_since: datetime = Field(sa_type=UtcDateTime, description="When the current state began (SLA).")
    submitted_at: datetime = Field(sa_type=UtcDateTime, index=True)
    source: TransferSource = Field(sa_type=string_enum(TransferSource))
    created_by: str = Field(max_length=100, description="Audit actor ref of whoever filed it.")
    to_org_id: int = Field(foreign_key="organisation.id", index=True)
    committee_id: int = Field(
        foreign_key="organisation.id", index=True, description="The receiving 基层党委 (approves, receives)."
    )
    placement_org_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    claimed_name: str | None = Field(default=None, max_length=100)
    card_no_hmac: str | None = Field(default=None, max_length=64)
    uid_hmac: str | None = Field(default=None, max_length=64)
    card_masked: str | None = Field(default=None, max_length=32)
    evidence_tap_id: int | None = Field(default=None, foreign_key="tap.id", sa_type=TAP_ID_TYPE)
    probation_due_on: date | None = Field(default=None, description="预备期满日期, for a 预备党员.")
    note: str = Field(default="", max_length=500)
    pending_key: str | None = Field(default=None, max_length=80)
    received_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # Between organisations: where the member was when the request was filed (their branch and its
    # 基层党委), which must release them; NULL when nobody else's consent was needed.
    from_org_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    from_committee_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    released_at: datetime | None = Field(
        default=None,
        sa_type=UtcDateTime,
        description="When the member's identity became the receiving side's to see: the source's "
        "release, the holder's own tap for a card nobody held, or filing when no consent was needed.",
    )
    member_confirmed_at: datetime | None = Field(
        default=None, sa_type=UtcDateTime, description="The member's own tap at a receiving venue's kiosk."
    )
    member_confirm_tap_id: int | None = Field(default=None, foreign_key="tap.id", sa_type=TAP_ID_TYPE)


class IntroductionLetter(SQLModel, table=True):
    """The 党员组织关系介绍信 (paper or electronic) a request rests on.

    A re-issued letter is a new row; the old one gets ``superseded_at`` and stays for the record.
    """

    __tablename__ = "introduction_letter"

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="transfer_request.id", index=True)
    letter_no: str = Field(max_length=50)
    issuer_name: str = Field(max_length=200)
    issuer_kind: IssuerKind = Field(sa_type=string_enum(IssuerKind))
    from_org_name: str = Field(max_length=200)
    to_org_name: str = Field(max_length=200)
    member_category: MemberCategory = Field(sa_type=string_enum(MemberCategory))
    dues_paid_to: str = Field(max_length=7, description="党费已交到 YYYY-MM.")
    issued_on: date
    valid_days: int
    recorded_at: datetime = Field(sa_type=UtcDateTime)
    recorded_by: str = Field(max_length=100)
    superseded_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class TransferDocument(SQLModel, table=True):
    """A document the reviewer has seen and ticked; unticking deletes the row (the audit log keeps both)."""

    __tablename__ = "transfer_document"
    __table_args__ = (UniqueConstraint("request_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="transfer_request.id", index=True)
    kind: DocumentKind = Field(sa_type=string_enum(DocumentKind))
    ticked_at: datetime = Field(sa_type=UtcDateTime)
    ticked_by: str = Field(max_length=100)
    ticked_by_name: str = Field(default="", max_length=100)
    note: str = Field(default="", max_length=200)
