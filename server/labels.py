"""Chinese labels for the vocabularies, as printed in ledgers (kept apart from the stored values)."""

from __future__ import annotations

from server.vocabulary import (
    AttendanceSource,
    Cadence,
    CardCheckLevel,
    EventKind,
    ExemptionReason,
    LeaveStatus,
    MemberCategory,
    MemberStatus,
    OrgKind,
    PresenceRole,
    ReminderAction,
    ReminderLevel,
    ReminderState,
    RuleFamily,
)

EVENT_KIND_LABELS: dict[EventKind, str] = {
    EventKind.BRANCH_GENERAL: "支部党员大会",
    EventKind.COMMITTEE: "支委会",
    EventKind.GROUP: "党小组会",
    EventKind.LECTURE: "党课",
    EventKind.THEME_DAY: "主题党日",
    EventKind.REVIEW_MEETING: "组织生活会",
    EventKind.APPRAISAL: "民主评议党员",
    EventKind.OTHER: "其他活动",
}

CATEGORY_LABELS: dict[MemberCategory, str] = {
    MemberCategory.FULL: "正式",
    MemberCategory.PROBATIONARY: "预备",
}

STATUS_LABELS: dict[MemberStatus, str] = {
    MemberStatus.ACTIVE: "在册",
    MemberStatus.TRANSFERRED_OUT: "已转出",
    MemberStatus.SUSPENDED: "停止党籍",
    MemberStatus.LEFT: "已出党",
}

ORG_KIND_LABELS: dict[OrgKind, str] = {
    OrgKind.BASIC_COMMITTEE: "基层党委",
    OrgKind.GENERAL_BRANCH: "党总支",
    OrgKind.BRANCH: "党支部",
    OrgKind.JOINT_BRANCH: "联合党支部",
    OrgKind.TEMPORARY_BRANCH: "临时党支部",
    OrgKind.PARTY_GROUP: "党小组",
}

EXEMPTION_LABELS: dict[ExemptionReason, str] = {
    ExemptionReason.ILLNESS: "患病住院或病休",
    ExemptionReason.MATERNITY: "孕产期、哺乳期",
    ExemptionReason.ELDERLY_IMMOBILE: "年老体弱、行动不便",
    ExemptionReason.AWAY_APPROVED: "经党组织同意外出",
    ExemptionReason.SUSPENDED_BY_APPROVAL: "经批准暂停组织生活",
}

SOURCE_LABELS: dict[AttendanceSource, str] = {
    AttendanceSource.TAP: "刷卡",
    AttendanceSource.MANUAL: "补录",
    AttendanceSource.ASSIGNED: "刷卡（书记归入）",
}

PRESENCE_ROLE_LABELS: dict[PresenceRole, str] = {
    PresenceRole.EXPECTED: "应到",
    PresenceRole.GUEST: "列席",
    PresenceRole.EXEMPT: "免于参加者到会",
}

COUNTING_RULE = (
    "应到 = 实到 + 请假 + 缺席（请假者计入应到）；出席率 = 实到 ÷ 应到；"
    "列席及免于参加者到会单列，不计入应到、实到"
)
"""How every ledger counts, printed on each (docs/ledgers.md)."""

LEAVE_LABELS: dict[LeaveStatus, str] = {
    LeaveStatus.PENDING: "待审批",
    LeaveStatus.APPROVED: "已准假",
    LeaveStatus.REJECTED: "不予准假",
    LeaveStatus.WITHDRAWN: "已撤回",
}

CADENCE_LABELS: dict[Cadence, str] = {
    Cadence.MONTHLY: "每月",
    Cadence.QUARTERLY: "每季度",
    Cadence.YEARLY: "每年",
}

CARD_CHECK_LABELS: dict[CardCheckLevel, str] = {
    CardCheckLevel.UID: "仅UID",
    CardCheckLevel.CARD_NUMBER: "卡号",
    CardCheckLevel.ISSUER_MAC: "发卡机构认证",
}

REMINDER_LEVEL_LABELS: dict[ReminderLevel, str] = {
    ReminderLevel.NOTICE: "提示",
    ReminderLevel.WARNING: "警示",
    ReminderLevel.ALERT: "严重",
}

RULE_FAMILY_LABELS: dict[RuleFamily, str] = {
    RuleFamily.ORG_SETUP: "组织设置",
    RuleFamily.ORG_LIFE: "组织生活",
    RuleFamily.DUES: "党费收缴",
    RuleFamily.DEVELOPMENT: "发展党员",
}

REMINDER_STATE_LABELS: dict[ReminderState, str] = {
    ReminderState.OPEN: "待处理",
    ReminderState.ACKNOWLEDGED: "整改中",
    ReminderState.RESOLVED: "已解决",
}

REMINDER_ACTION_LABELS: dict[ReminderAction, str] = {
    ReminderAction.OPENED: "发现问题",
    ReminderAction.LEVEL_CHANGED: "程度变化",
    ReminderAction.ACKNOWLEDGED: "已知悉",
    ReminderAction.RESOLVED: "已解决",
    ReminderAction.REOPENED: "再次出现",
    ReminderAction.ESCALATED: "上报督办",
    ReminderAction.SENT_DOWN: "督办转回",
}


def kinds_label(kinds: list[EventKind]) -> str:
    return "、".join(EVENT_KIND_LABELS[kind] for kind in kinds)
