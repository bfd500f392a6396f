"""The server's closed vocabularies: kinds, categories, statuses and stable rejection codes.

Kept free of SQLModel/FastAPI imports so the CLI can offer these as choices without loading the
server stack. Values are stored as plain strings (not native database enums), so later issues add
values without a migration; never rename or reuse a stored value.
"""

from __future__ import annotations

from enum import StrEnum


class OrgKind(StrEnum):
    BASIC_COMMITTEE = "basic_committee"  # 基层党委
    GENERAL_BRANCH = "general_branch"  # 党总支
    BRANCH = "branch"  # 党支部
    JOINT_BRANCH = "joint_branch"  # 联合党支部
    TEMPORARY_BRANCH = "temporary_branch"  # 临时党支部
    PARTY_GROUP = "party_group"  # 党小组


class MemberCategory(StrEnum):
    FULL = "full"  # 正式党员
    PROBATIONARY = "probationary"  # 预备党员


class MemberStatus(StrEnum):
    """Only ``active`` members are expected at events; the rest arrive with later workflows."""

    ACTIVE = "active"
    TRANSFERRED_OUT = "transferred_out"
    SUSPENDED = "suspended"  # 停止党籍
    LEFT = "left"


class BindingStatus(StrEnum):
    ACTIVE = "active"
    LOST = "lost"  # 挂失
    REPLACED = "replaced"
    REVOKED = "revoked"


class KioskStatus(StrEnum):
    PENDING = "pending"  # created, waiting for its enrollment code to be used
    ACTIVE = "active"
    REVOKED = "revoked"


class EventKind(StrEnum):
    BRANCH_GENERAL = "branch_general"  # 支部党员大会
    COMMITTEE = "committee"  # 支委会
    GROUP = "group"  # 党小组会
    LECTURE = "lecture"  # 党课
    THEME_DAY = "theme_day"  # 主题党日
    REVIEW_MEETING = "review_meeting"  # 组织生活会
    OTHER = "other"


class TokenRole(StrEnum):
    ADMIN = "admin"
    SECRETARY = "secretary"  # always scoped to an organisation


class TapOutcome(StrEnum):
    """What was decided about a stored tap; a replay is answered from the stored row, never stored."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


class RejectionCode(StrEnum):
    """Why a tap was rejected: stable codes that kiosks and reports rely on."""

    UNKNOWN_KIOSK = "unknown_kiosk"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"
    KIOSK_MISMATCH = "kiosk_mismatch"
    REVOKED_KIOSK = "revoked_kiosk"
    SEQ_CONFLICT = "seq_conflict"
    CLOCK_SKEW = "clock_skew"
    UNSUPPORTED_MODE = "unsupported_mode"
    UNKNOWN_CARD = "unknown_card"
    NO_EVENT = "no_event"
