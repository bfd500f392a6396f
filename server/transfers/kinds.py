"""Closed vocabularies of the transfer domain (stored by value; never rename a stored value)."""

from __future__ import annotations

from enum import StrEnum


class TransferSource(StrEnum):
    KIOSK_TAP = "kiosk_tap"  # a card tapped at a kiosk in transfer-in mode
    GUEST_TAP = "guest_tap"  # filed by a secretary from a guest's check-in (see service docstring)
    API = "api"
    WEB = "web"


class IssuerKind(StrEnum):
    """Who issued the 介绍信. Only bodies with transfer authority may (domain §3.2, Xiamen practice)."""

    BASIC_COMMITTEE = "basic_committee"  # 基层党委（具有审批预备党员权限）
    ORG_DEPARTMENT = "org_department"  # 县级以上党委组织部 (letters from outside Fujian)
    GENERAL_BRANCH = "general_branch"  # 党总支: refused
    BRANCH = "branch"  # 党支部: refused


AUTHORISED_ISSUERS: frozenset[IssuerKind] = frozenset({IssuerKind.BASIC_COMMITTEE, IssuerKind.ORG_DEPARTMENT})

ISSUER_LABELS: dict[IssuerKind, str] = {
    IssuerKind.BASIC_COMMITTEE: "基层党委",
    IssuerKind.ORG_DEPARTMENT: "县级以上党委组织部",
    IssuerKind.GENERAL_BRANCH: "党总支",
    IssuerKind.BRANCH: "党支部",
}


class DocumentKind(StrEnum):
    """Papers the reviewer checks and ticks (domain §3.4, §3.6, §3.7)."""

    BRANCH_CERTIFICATE = "branch_certificate"  # 原所在党支部出具的证明 (overdue letter)
    MEMBER_APPLICATION = "member_application"  # 本人申请 (overdue letter)
    PROBATION_DECISION = "probation_decision"  # 转正或延长预备期的决定 (预备期已满)
    ID_CARD = "id_card"  # 居民身份证 (核对身份证号与介绍信一致)
    MEMBERSHIP_FORM_COPY = "membership_form_copy"  # 入党志愿书或党员基本情况登记表复印件（档案未到时）


DOCUMENT_LABELS: dict[DocumentKind, str] = {
    DocumentKind.BRANCH_CERTIFICATE: "原所在党支部出具的证明（介绍信超期）",
    DocumentKind.MEMBER_APPLICATION: "本人书面申请（介绍信超期）",
    DocumentKind.PROBATION_DECISION: "转正或延长预备期的决定",
    DocumentKind.ID_CARD: "居民身份证（与介绍信身份证号一致）",
    DocumentKind.MEMBERSHIP_FORM_COPY: "入党志愿书或党员基本情况登记表复印件（人事档案未到时）",
}

SOURCE_LABELS: dict[TransferSource, str] = {
    TransferSource.KIOSK_TAP: "签到机刷卡申请",
    TransferSource.GUEST_TAP: "外单位党员参加活动后发起",
    TransferSource.API: "接口录入",
    TransferSource.WEB: "网页录入",
}
