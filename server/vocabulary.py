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


class Gender(StrEnum):
    MALE = "male"  # 男
    FEMALE = "female"  # 女


class BindingStatus(StrEnum):
    ACTIVE = "active"
    LOST = "lost"  # 挂失
    REPLACED = "replaced"
    REVOKED = "revoked"


class KioskStatus(StrEnum):
    PENDING = "pending"  # created, waiting for its enrollment code to be used
    ACTIVE = "active"
    REVOKED = "revoked"


class EnrolSessionStatus(StrEnum):
    """A bind-card-by-tap request; a pending one past its expiry counts as expired (not stored)."""

    PENDING = "pending"
    BOUND = "bound"
    CANCELLED = "cancelled"


class EventKind(StrEnum):
    BRANCH_GENERAL = "branch_general"  # 支部党员大会
    COMMITTEE = "committee"  # 支委会
    GROUP = "group"  # 党小组会
    LECTURE = "lecture"  # 党课
    THEME_DAY = "theme_day"  # 主题党日
    REVIEW_MEETING = "review_meeting"  # 组织生活会
    APPRAISAL = "appraisal"  # 民主评议党员 (yearly; often held with the 组织生活会: tag the event with both)
    OTHER = "other"


class ExemptionReason(StrEnum):
    """Why a member is temporarily not expected at organisational life (docs/domain-rules.md §1.4):
    approved by the branch, each has a period. Exempt members are left out of 应到 and of the vote
    basis."""

    ILLNESS = "illness"  # 患病住院或病休
    MATERNITY = "maternity"  # 孕产期、哺乳期
    ELDERLY_IMMOBILE = "elderly_immobile"  # 年老体弱、行动不便
    AWAY_APPROVED = "away_approved"  # 经党组织同意外出（出差、学习、务工）
    SUSPENDED_BY_APPROVAL = "suspended_by_approval"  # 经上级批准暂停组织生活（如不能正常表达意志）


class CommitteeRole(StrEnum):
    SECRETARY = "secretary"  # 书记
    DEPUTY_SECRETARY = "deputy_secretary"  # 副书记
    ORGANISATION = "organisation"  # 组织委员
    PROPAGANDA = "propaganda"  # 宣传委员
    DISCIPLINE = "discipline"  # 纪检委员
    MEMBER = "member"  # 委员


class LeaveStatus(StrEnum):
    PENDING = "pending"  # 待审批
    APPROVED = "approved"  # 已准假
    REJECTED = "rejected"  # 不予准假
    WITHDRAWN = "withdrawn"  # 本人撤回


class AttendanceSource(StrEnum):
    """How a presence was established."""

    TAP = "tap"  # 刷卡
    MANUAL = "manual"  # 记录人补录（须填写理由，记入审计日志）
    ASSIGNED = "assigned"  # 书记将窗口外的刷卡记录归入活动（记入审计日志）


class PresenceRole(StrEnum):
    """In what capacity someone present at an event was there (docs/ledgers.md, 签到表)."""

    EXPECTED = "expected"  # 应到 and came: counts in 实到
    GUEST = "guest"  # 列席: not invited (another organisation's member; no seat at a 支委会)
    EXEMPT = "exempt"  # 免于参加者到会: exempt from organisational life, came anyway


class Cadence(StrEnum):
    """How often a kind of meeting must be held (支部条例 第十一至十七条)."""

    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"


class ReminderLevel(StrEnum):
    NOTICE = "notice"  # 提示
    WARNING = "warning"  # 警示
    ALERT = "alert"  # 严重


class TokenRole(StrEnum):
    ADMIN = "admin"
    SECRETARY = "secretary"  # always scoped to an organisation


class UserRole(StrEnum):
    """What a web user may do; where is set by the user's organisation (their subtree)."""

    SECRETARY = "secretary"  # 支部书记: the branch's events, ledgers, members, first review of transfers
    ORGANISER = "organiser"  # 基层党委组织员: also approves and receives transfers for the subtree
    ADMIN = "admin"  # also users and kiosks; without an organisation, the whole system
    REPRESENTATIVE = "representative"  # 党代表: only the 留言亭 inbox of their own representative record
    # A party member on their own phone, through a 留言亭 link (server.booth): never a web account.
    MEMBER = "member"


class TapOutcome(StrEnum):
    """What was decided about a stored tap; a replay is answered from the stored row, never stored."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


class TapRedecision(StrEnum):
    """Who decided what a check-in tap counts as after its receipt (the receipt itself never changes)."""

    SYSTEM = "system"  # 系统重新判定：后到的刷卡、补建的活动或补绑的卡使其计入某次活动（或改计）
    ASSIGNED = "assigned"  # 书记将窗口外的刷卡记录归入活动


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
    CARD_LOST = "card_lost"  # the card was reported lost (挂失)
    CARD_REPLACED = "card_replaced"  # the member has been issued a new card; this one is retired
    CARD_REVOKED = "card_revoked"  # the binding was revoked (e.g. consent withdrawn)
    RETIRED_KEY = "retired_key"  # signed by a rotated-out key, with a seq after the rotation
    NO_ENROL_SESSION = "no_enrol_session"  # enrol mode, but nobody is waiting to bind a card here
    ENROL_AMBIGUOUS = "enrol_ambiguous"  # several bind requests wait at this kiosk: which one?
    CARD_ALREADY_BOUND = "card_already_bound"  # enrol mode: the card belongs to another member
    CARD_MISMATCH = "card_mismatch"  # card number and UID do not both match the binding: a clone
    ISSUER_MAC_INVALID = "issuer_mac_invalid"  # the card's answer to the challenge is wrong or missing
    ISSUER_MAC_REPLAYED = "issuer_mac_replayed"  # the challenge was answered in an earlier tap
    ISSUER_UNAVAILABLE = "issuer_unavailable"  # issuer-mac required, but the issuer did not answer
    WEAK_CARD_CHECK = "weak_card_check"  # checked below the deployment's ECARD_MIN_CARD_CHECK
    ALREADY_MEMBER = "already_member"  # transfer-in mode, but the member already belongs here
    CARD_DOWNGRADE = "card_downgrade"  # read below the level its binding was verified at: a clone
    BOOTH_LIMIT = "booth_limit"  # message mode: the card opened the 留言亭 too often today
    MEMBER_INACTIVE = "member_inactive"  # message mode: the card's member is not an active member


class CardCheckLevel(StrEnum):
    """How strongly a tapped card was shown to be the bound card, weakest first
    (docs/card-protocols.md §6.2)."""

    UID = "uid"  # the UID alone: copyable onto magic cards, low assurance
    CARD_NUMBER = "card-number"  # T-Union card number and UID both match the binding
    ISSUER_MAC = "issuer-mac"  # and the card answered a fresh challenge under its issuer key

    @property
    def rank(self) -> int:
        return _CARD_CHECK_RANKS[self]


# Asked for on every tap's card check: a table, not a search through the members each time.
_CARD_CHECK_RANKS: dict[CardCheckLevel, int] = {level: rank for rank, level in enumerate(CardCheckLevel)}


class CardCheckNote(StrEnum):
    """Why a tap reached a lower card-check level than its card offered."""

    ISSUER_UNAVAILABLE = "issuer_unavailable"  # the card answered, but the issuer could not be asked


class RuleFamily(StrEnum):
    """The four families of supervision rules (docs/supervision.md)."""

    ORG_SETUP = "org_setup"  # 组织设置
    ORG_LIFE = "org_life"  # 组织生活
    DUES = "dues"  # 党费
    DEVELOPMENT = "development"  # 发展党员


class ReminderState(StrEnum):
    """A stored reminder's life: ``open`` until someone acknowledges it; ``resolved`` when the sweep
    no longer finds its condition. Escalation is not a state: an open reminder is *also* in the
    superior's 督办 queue while ``escalated_to`` is set."""

    OPEN = "open"  # 待处理
    ACKNOWLEDGED = "acknowledged"  # 已知悉，整改中
    RESOLVED = "resolved"  # 已解决


class ReminderAction(StrEnum):
    """What a reminder's history records."""

    OPENED = "opened"
    LEVEL_CHANGED = "level_changed"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    ESCALATED = "escalated"
    SENT_DOWN = "sent_down"


class NotifyChannel(StrEnum):
    """How a reminder leaves the server (server.notify)."""

    EMAIL = "email"
    WEBHOOK = "webhook"  # a group robot (企业微信 / 钉钉 style)


class DeliveryState(StrEnum):
    """A message in the notification outbox."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"  # gave up after the last attempt, or the recipient was removed or opted out


class BoothTopic(StrEnum):
    """What a 留言亭 message is about, as the member chose it (the yearly summary counts by it)."""

    PROBLEM = "problem"  # 反映问题
    SUGGESTION = "suggestion"  # 意见建议
    HELP = "help"  # 困难求助
    OTHER = "other"  # 其他


class BoothMessageStatus(StrEnum):
    """Where a 留言亭 message stands (docs: the representative reads, replies, forwards, closes)."""

    NEW = "new"  # 待阅
    READ = "read"  # 已阅
    ANSWERED = "answered"  # 已回复
    FORWARDED = "forwarded"  # 已转交
    CLOSED = "closed"  # 已办结
