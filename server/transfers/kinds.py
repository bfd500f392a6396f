"""The transfer vocabularies as people read them (labels), and which letter issuers may transfer.

The stored values themselves live with their tables in ``server.records.transfers``."""

from __future__ import annotations

from server.records.transfers import DocumentKind, IssuerKind, TransferSource

AUTHORISED_ISSUERS: frozenset[IssuerKind] = frozenset({IssuerKind.BASIC_COMMITTEE, IssuerKind.ORG_DEPARTMENT})

ISSUER_LABELS: dict[IssuerKind, str] = {
    IssuerKind.BASIC_COMMITTEE: "基层党委",
    IssuerKind.ORG_DEPARTMENT: "县级以上党委组织部",
    IssuerKind.GENERAL_BRANCH: "党总支",
    IssuerKind.BRANCH: "党支部",
}


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
