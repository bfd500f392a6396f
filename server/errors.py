"""Domain errors: every refusal the API or the admin CLI can give, with a stable code.

Services raise these and know nothing about HTTP. Each class carries its HTTP status as the
class attribute ``http_status``, inherited from its base: NotFound 404, InvalidInput 400,
Conflict 409, Forbidden 403, and DomainError itself 400. A class sets it only where it differs
from its base (the numbers in parentheses below); :func:`status_for` reads it, and
:func:`register_error_handlers` renders every error as ``{"error": code, "detail": message}``.
Per-tap problems are not errors: they are receipts (see ``server.vocabulary.RejectionCode``).

* DomainError (400)
  + NotFound (404): organisation_not_found, member_not_found, venue_not_found, event_not_found,
    kiosk_not_found
  + InvalidInput (400): invalid_card_identifier, invalid_time_range, org_required,
    invalid_text (422, with ``field``)
  + Conflict (409): card_already_bound, kiosk_revoked, public_key_in_use
  + enrollment_code_invalid (unknown, used and expired codes alike), bad_public_key
  + not_authenticated (401), invalid_token (401); Forbidden (403)
  + roster_unreadable, roster_invalid (with ``problems``), roster_too_large (413) (InvalidInput)
  + database_not_empty (Conflict)
  + user_not_found (NotFound), username_taken (Conflict), weak_password (InvalidInput)
  + invalid_credentials (401), login_rate_limited (429), login_required (401), csrf_failed (403)
  + rate_limited (429, with ``Retry-After``), payload_too_large (413)
  + transfer_not_found (NotFound); transfer_transition_not_allowed, transfer_already_pending,
    already_member, letter_missing, letter_expired, probation_overdue, transfer_cure_missing,
    transfer_card_taken, transfer_release_required (Conflict); letter_issuer_not_committee, reason_required,
    placement_required, invalid_placement, applicant_name_required (InvalidInput);
    transfer_level_forbidden (Forbidden)
  + unknown_kiosk, bad_signature (401); malformed (422, with ``field``), kiosk_mismatch
    (InvalidInput); key_retired, stale_heartbeat, enrol_session_closed (Conflict);
    enrol_session_not_found (NotFound)
  + leave_request_not_found, binding_not_found, tap_not_found, committee_seat_not_found,
    exemption_not_found (NotFound); invalid_period (InvalidInput); leave_already_requested,
    leave_not_pending, leave_too_late, member_not_expected, already_present, binding_not_active,
    tap_not_unmatched, tap_purged, tap_card_unbound, member_not_active, already_ended (Conflict)
  + export_code_not_found (NotFound); invalid_export_code, export_code_missing (InvalidInput)
  + meeting_record_not_found, attachment_not_found (NotFound); minutes_locked,
    too_many_attachments (Conflict); minutes_incomplete, attachment_type_refused,
    invalid_recurrence (InvalidInput); attachment_too_large (413); sign_off_forbidden (Forbidden)
  + dues_unreadable (InvalidInput), dues_file_too_large (413); development_record_not_found
    (NotFound); development_stage_out_of_order (Conflict); development_date_in_future,
    development_date_before_previous (InvalidInput)
  + notify_target_not_found (NotFound), invalid_notify_address (InvalidInput)
  + reminder_not_found, job_not_found (NotFound); reminder_not_open, reminder_not_escalated,
    job_busy (Conflict)
  + booth_link_invalid, representative_not_found, booth_message_not_found (NotFound);
    booth_link_used, booth_link_expired (410), booth_session_ended (401), booth_message_limit (429),
    booth_message_closed (Conflict)

Apart from these, :class:`ServiceUnavailable` (``shutting_down``; and ``database_unavailable``
for SQLAlchemy's OperationalError and pool timeout) answers 503 with ``Retry-After``: the server,
not the request, is the problem.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)


class DomainError(Exception):
    code: ClassVar[str] = "domain_error"
    default_message: ClassVar[str] = "操作失败"
    # Inherited by every subclass; set it only where a class's status differs from its base's.
    http_status: ClassVar[int] = 400

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def extra(self) -> dict[str, Any]:
        """More JSON fields for the error body, next to ``error`` and ``detail`` (none by default)."""
        return {}

    def headers(self) -> dict[str, str]:
        """HTTP headers for the refusal (none by default; ``Retry-After`` for rate limits)."""
        return {}


class NotFound(DomainError):
    code = "not_found"
    default_message = "未找到"
    http_status = 404


class OrganisationNotFound(NotFound):
    code = "organisation_not_found"
    default_message = "党组织不存在"


class MemberNotFound(NotFound):
    code = "member_not_found"
    default_message = "党员不存在"


class TokenNotFound(NotFound):
    code = "token_not_found"
    default_message = "令牌不存在"


class VenueNotFound(NotFound):
    code = "venue_not_found"
    default_message = "场地不存在"


class EventNotFound(NotFound):
    code = "event_not_found"
    default_message = "活动不存在"


class KioskNotFound(NotFound):
    code = "kiosk_not_found"
    default_message = "终端不存在"


class InvalidInput(DomainError):
    code = "invalid_input"
    default_message = "输入不正确"
    http_status = 400


class InvalidCardIdentifier(InvalidInput):
    code = "invalid_card_identifier"
    default_message = "卡号须为19位数字，UID须为6至20位十六进制字符，且至少提供其中一项"


class InvalidTimeRange(InvalidInput):
    code = "invalid_time_range"
    default_message = "时间范围不正确：结束时间须晚于开始时间，签到窗口须在结束前打开"


class OrgRequired(InvalidInput):
    code = "org_required"
    default_message = "该角色的令牌必须指定党组织"


class InvalidText(InvalidInput):
    """Text holding a character no field may hold (see :func:`server.inputs.check_text`)."""

    code = "invalid_text"
    default_message = "输入含有不允许的字符（空字符、控制字符或无效的Unicode字符）"
    http_status = 422

    def __init__(self, field: str, *, label: str | None = None) -> None:
        # field: the name a program knows (a JSON path, a parameter); label: how to say it to people.
        super().__init__(f"{label or field}含有不允许的字符（空字符、控制字符或无效的Unicode字符）")
        self.field = field

    def extra(self) -> dict[str, Any]:
        return {"field": self.field}


class Conflict(DomainError):
    code = "conflict"
    default_message = "与现有数据冲突"
    http_status = 409


class CardAlreadyBound(Conflict):
    code = "card_already_bound"
    default_message = "该卡已绑定到其他党员"


class KioskRevoked(Conflict):
    code = "kiosk_revoked"
    default_message = "终端已停用，不能再登记"


class PublicKeyInUse(Conflict):
    code = "public_key_in_use"
    default_message = "该公钥已被其他终端使用"


class EnrollmentCodeInvalid(DomainError):
    """An unknown, used or expired enrollment code: one answer for all three, so a guesser learns
    nothing. ``reason`` (unknown, used, expired) and ``kiosk_id`` are for the audit log only."""

    code = "enrollment_code_invalid"
    default_message = "登记码无效、已使用或已过期，请向管理员重新生成"

    def __init__(
        self, message: str | None = None, *, reason: str = "unknown", kiosk_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.kiosk_id = kiosk_id


class BadPublicKey(DomainError):
    code = "bad_public_key"
    default_message = "公钥格式不正确（须为32字节Ed25519公钥的base64url编码）"


class NotAuthenticated(DomainError):
    code = "not_authenticated"
    default_message = "需要登录令牌（Authorization: Bearer …）"
    http_status = 401


class InvalidToken(DomainError):
    code = "invalid_token"
    default_message = "令牌无效或已撤销"
    http_status = 401


class Forbidden(DomainError):
    code = "forbidden"
    default_message = "无权访问"
    http_status = 403


# --- web users and sign-in (server/users, server/web) ---


class UserNotFound(NotFound):
    code = "user_not_found"
    default_message = "用户不存在"


class UsernameTaken(Conflict):
    code = "username_taken"
    default_message = "用户名已被使用"


class WeakPassword(InvalidInput):
    code = "weak_password"
    default_message = "密码至少10个字符，且不能全是同一字符"


class InvalidCredentials(DomainError):
    code = "invalid_credentials"
    default_message = "用户名或密码错误"
    http_status = 401


class LoginRateLimited(DomainError):
    code = "login_rate_limited"
    default_message = "登录失败次数过多，请15分钟后再试"
    http_status = 429


class RateLimited(DomainError):
    """Too many requests from one source, kiosk or caller; ``retry_after`` says when to come back."""

    code = "rate_limited"
    default_message = "请求过于频繁，请稍后再试"
    http_status = 429

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    def extra(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class PayloadTooLarge(DomainError):
    """A request body above the configured size, refused before it is read."""

    code = "payload_too_large"
    default_message = "请求内容过大"
    http_status = 413


class LoginRequired(DomainError):
    code = "login_required"
    default_message = "请先登录"
    http_status = 401


class CsrfFailed(DomainError):
    code = "csrf_failed"
    default_message = "页面已过期或来源不明，请刷新页面后重试"
    http_status = 403


# --- roster import and synthetic data (server/roster, server/synth) ---


class RosterUnreadable(InvalidInput):
    code = "roster_unreadable"
    default_message = "无法读取花名册：请上传 Excel 2007 及以后的 .xlsx 文件"


class RosterInvalid(InvalidInput):
    """The roster has errors; nothing was imported. ``problems`` lists each one by row and column."""

    code = "roster_invalid"
    default_message = "花名册有错误，未导入任何数据"

    def __init__(self, message: str | None = None, *, problems: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.problems = [dict(problem) for problem in problems]

    def extra(self) -> dict[str, Any]:
        return {"problems": self.problems}


class RosterTooLarge(InvalidInput):
    code = "roster_too_large"
    default_message = "花名册文件过大"
    http_status = 413


class DatabaseNotEmpty(Conflict):
    code = "database_not_empty"
    default_message = "数据库中已有党组织；合成数据只能写入空数据库"


# --- 组织关系转入 (server/transfers) ---


class TransferNotFound(NotFound):
    code = "transfer_not_found"
    default_message = "转入申请不存在"


class TransferTransitionNotAllowed(Conflict):
    code = "transfer_transition_not_allowed"
    default_message = "转入申请当前的状态不允许此操作"


class TransferAlreadyPending(Conflict):
    code = "transfer_already_pending"
    default_message = "此人已有一件正在办理的转入申请"


class AlreadyMember(Conflict):
    code = "already_member"
    default_message = "此人的组织关系已在本组织，无需转入"


class LetterMissing(Conflict):
    code = "letter_missing"
    default_message = "尚未录入组织关系介绍信，不能办理"


class LetterExpired(Conflict):
    code = "letter_expired"
    default_message = "介绍信已过期：须由原所在党支部出具证明并由本人提出申请，或重新开具介绍信"


class ProbationOverdue(Conflict):
    code = "probation_overdue"
    default_message = "预备期已满但未见转正决定：须出示转正或延长预备期的决定后才能接收"


class TransferCureMissing(Conflict):
    code = "transfer_cure_missing"
    default_message = "恢复办理须先勾选支部证明和本人申请，或录入重新开具的介绍信"


class TransferCardTaken(Conflict):
    code = "transfer_card_taken"
    default_message = "申请人刷的卡已绑定到其他党员，请核实后再接收"


class TransferReleaseRequired(Conflict):
    code = "transfer_release_required"
    default_message = "此党员的组织关系在其他党组织，须经原组织同意转出后才能接收"


class LetterIssuerNotCommittee(InvalidInput):
    code = "letter_issuer_not_committee"
    default_message = (
        "介绍信须由具有审批预备党员权限的基层党委或县级以上党委组织部开具；党支部、党总支开具的介绍信不予接收"
    )


class ReasonRequired(InvalidInput):
    code = "reason_required"
    default_message = "请填写理由"


class PlacementRequired(InvalidInput):
    code = "placement_required"
    default_message = "请选择接收的党支部"


class InvalidPlacement(InvalidInput):
    code = "invalid_placement"
    default_message = "接收的党支部须是本组织下属的党支部或党小组"


class ApplicantNameRequired(InvalidInput):
    code = "applicant_name_required"
    default_message = "请填写申请人姓名"


class TransferLevelForbidden(Forbidden):
    code = "transfer_level_forbidden"
    default_message = "此操作须由接收党委（基层党委）的组织员办理"


# --- kiosk heartbeats, key rotation, enrol-by-tap sessions (server/kiosks) ---


class UnknownKioskKey(DomainError):
    code = "unknown_kiosk"
    default_message = "签名密钥不属于任何已登记的终端"
    http_status = 401


class BadSignature(DomainError):
    code = "bad_signature"
    default_message = "签名无效"
    http_status = 401


class MalformedMessage(InvalidInput):
    code = "malformed"
    default_message = "签名内容无法识别"
    http_status = 422

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message or (f"签名内容无法识别：{field} 不符合约定" if field else None))
        self.field = field

    def extra(self) -> dict[str, Any]:
        return {"field": self.field} if self.field else {}


class KioskMismatch(InvalidInput):
    code = "kiosk_mismatch"
    default_message = "消息中的终端与签名密钥的终端不一致"


class KeyRetired(Conflict):
    code = "key_retired"
    default_message = "该密钥已轮换停用，请使用新密钥"


class StaleHeartbeat(Conflict):
    code = "stale_heartbeat"
    default_message = "心跳早于已收到的心跳（重放或时钟回拨），已忽略"


class EnrolSessionNotFound(NotFound):
    code = "enrol_session_not_found"
    default_message = "刷卡绑定请求不存在"


class EnrolSessionClosed(Conflict):
    code = "enrol_session_closed"
    default_message = "刷卡绑定请求已结束（已绑定、已取消或已过期）"


# --- ledgers: members, cards, events, leave, attendance (server/orgs, cards, events, leave,
# attendance, ledgers, reminders) ---


class LeaveRequestNotFound(NotFound):
    code = "leave_request_not_found"
    default_message = "请假申请不存在"


class CardBindingNotFound(NotFound):
    code = "binding_not_found"
    default_message = "卡绑定记录不存在"


class TapNotFound(NotFound):
    code = "tap_not_found"
    default_message = "刷卡记录不存在"


class CommitteeSeatNotFound(NotFound):
    code = "committee_seat_not_found"
    default_message = "支委任职记录不存在"


class ExemptionNotFound(NotFound):
    code = "exemption_not_found"
    default_message = "免于参加组织生活的记录不存在"


class InvalidPeriod(InvalidInput):
    code = "invalid_period"
    default_message = "期间格式不正确：应为 2026（年）、2026-Q3（季度）或 2026-07（月）"


class LeaveAlreadyRequested(Conflict):
    code = "leave_already_requested"
    default_message = "该党员已就此活动请假（待审批或已批准）"


class LeaveNotPending(Conflict):
    code = "leave_not_pending"
    default_message = "该请假申请已处理，不能再次审批"


class LeaveTooLate(Conflict):
    code = "leave_too_late"
    default_message = "请假须在活动开始前提出；缺席原因请由记录人补录说明"


class MemberNotExpected(Conflict):
    code = "member_not_expected"
    default_message = "该党员不在此活动的应到名单中"


class AlreadyPresent(Conflict):
    code = "already_present"
    default_message = "该党员已签到，无需补录"


class BindingNotActive(Conflict):
    code = "binding_not_active"
    default_message = "该卡绑定已不是有效状态"


class TapNotUnmatched(Conflict):
    code = "tap_not_unmatched"
    default_message = "只有未匹配到活动的刷卡记录才能归入活动"


class TapPurged(Conflict):
    code = "tap_purged"
    default_message = "该刷卡记录已超过保存期限，卡号摘要已清除，无法归入活动"


class TapCardUnbound(Conflict):
    code = "tap_card_unbound"
    default_message = "刷卡时该卡未绑定任何党员，无法归入活动"


class MemberNotActive(Conflict):
    code = "member_not_active"
    default_message = "该党员当前不在册（已转出、停止党籍或出党）"


class AlreadyEnded(Conflict):
    code = "already_ended"
    default_message = "该记录已结束"


# Status codes FastAPI/Starlette raise themselves (unknown route, wrong method, bad body).
_HTTP_EXCEPTION_CODES = {404: "not_found", 405: "method_not_allowed", 401: "not_authenticated"}


class ExportCodeNotFound(NotFound):
    code = "export_code_not_found"
    default_message = "核验码不存在，或该台账不属于您可查看的党组织"


class InvalidExportCode(InvalidInput):
    code = "invalid_export_code"
    default_message = "核验码格式不正确：应为16位字母数字，如 7K3M-Q9XA-2B4C-D8EF"


class ExportCodeMissing(InvalidInput):
    code = "export_code_missing"
    default_message = "文件中没有找到核验码（只有导出的 PDF、XLSX、CSV 台账带核验码）"


# --- meeting records and event series (会议记录, 周期活动) ---


class MeetingRecordNotFound(NotFound):
    code = "meeting_record_not_found"
    default_message = "会议记录不存在"


class AttachmentNotFound(NotFound):
    code = "attachment_not_found"
    default_message = "附件不存在"


class MinutesLocked(Conflict):
    code = "minutes_locked"
    default_message = "会议记录已签发锁定，不能再修改"


class MinutesIncomplete(InvalidInput):
    code = "minutes_incomplete"
    default_message = "会议内容还没有填写，不能签发"


class SignOffForbidden(Forbidden):
    code = "sign_off_forbidden"
    default_message = "只有支部书记可以签发会议记录"


class AttachmentTooLarge(DomainError):
    code = "attachment_too_large"
    default_message = "附件太大"
    http_status = 413


class AttachmentTypeRefused(InvalidInput):
    code = "attachment_type_refused"
    default_message = "只能上传 JPEG、PNG 照片或 PDF 扫描件"


class TooManyAttachments(Conflict):
    code = "too_many_attachments"
    default_message = "附件数量已达上限"


class InvalidRecurrence(InvalidInput):
    code = "invalid_recurrence"
    default_message = "重复规则不正确"


# --- party dues and member development (党费, 发展党员) ---


class DuesUnreadable(InvalidInput):
    code = "dues_unreadable"
    default_message = "无法读取党费文件：请上传 .xlsx 收缴表或银行流水 CSV"


class DuesFileTooLarge(InvalidInput):
    code = "dues_file_too_large"
    default_message = "党费文件太大"
    http_status = 413


class DevelopmentRecordNotFound(NotFound):
    code = "development_record_not_found"
    default_message = "发展党员记录不存在"


class DevelopmentStageOutOfOrder(Conflict):
    code = "development_stage_out_of_order"
    default_message = "发展阶段须按 入党申请人→入党积极分子→发展对象→预备党员→正式党员 的顺序逐级确定"


class DevelopmentDateInFuture(InvalidInput):
    code = "development_date_in_future"
    default_message = "日期不能晚于今天"


class DevelopmentDateBeforePrevious(InvalidInput):
    code = "development_date_before_previous"
    default_message = "日期不能早于上一阶段的日期"


# --- notifications (邮件、群机器人) ---


class NotifyTargetNotFound(NotFound):
    code = "notify_target_not_found"
    default_message = "未设置该通知渠道"


class InvalidNotifyAddress(InvalidInput):
    code = "invalid_notify_address"
    default_message = "通知地址不正确：邮箱须形如 name@example.com，群机器人地址须以 https:// 或 http:// 开头"


# 督查督办 and scheduled jobs (server.supervision)


class ReminderNotFound(NotFound):
    code = "reminder_not_found"
    default_message = "提醒不存在"


class ReminderNotOpen(Conflict):
    code = "reminder_not_open"
    default_message = "该提醒已知悉或已解决"


class ReminderNotEscalated(Conflict):
    code = "reminder_not_escalated"
    default_message = "该提醒不在督办队列中"


class JobNotFound(NotFound):
    code = "job_not_found"
    default_message = "没有这个定时任务"


class JobBusy(Conflict):
    code = "job_busy"
    default_message = "该任务正在另一个进程中运行，请稍后再试"


# --- 留言亭 (member links, messages, representatives) ---


class BoothLinkInvalid(NotFound):
    code = "booth_link_invalid"
    default_message = "链接无效，请在留言亭重新刷卡获取新的二维码"


class BoothLinkUsed(DomainError):
    code = "booth_link_used"
    default_message = "此链接已经使用过，不能再次打开。请在留言亭重新刷卡获取新的二维码"
    http_status = 410


class BoothLinkExpired(DomainError):
    code = "booth_link_expired"
    default_message = "此链接已过期，请在留言亭重新刷卡获取新的二维码"
    http_status = 410


class BoothSessionEnded(DomainError):
    code = "booth_session_ended"
    default_message = "本次留言页面已关闭或已超时，请在留言亭重新刷卡"
    http_status = 401


class BoothMessageLimit(DomainError):
    code = "booth_message_limit"
    default_message = "今日留言次数已达上限，请明天再来"
    http_status = 429


class RepresentativeNotFound(NotFound):
    code = "representative_not_found"
    default_message = "党代表不存在"


class BoothMessageNotFound(NotFound):
    code = "booth_message_not_found"
    default_message = "留言不存在"


class BoothPhotoNotFound(NotFound):
    code = "booth_photo_not_found"
    default_message = "照片不存在"


class BoothMessageClosed(Conflict):
    code = "booth_message_closed"
    default_message = "该留言已办结，不能再操作"


class ServiceUnavailable(Exception):
    """The server cannot take the request now, though nothing about the request is wrong (it is
    shutting down; its database is unreachable or has no connection free): 503 with
    ``Retry-After``, so a kiosk keeps its taps and sends them again. Not a DomainError: those
    are refusals of the request itself."""

    code: ClassVar[str] = "service_unavailable"
    message: ClassVar[str] = "服务暂时不可用，请稍后再试"
    retry_after: ClassVar[int] = 5


UNAVAILABLE: tuple[type[Exception], ...] = (ServiceUnavailable, OperationalError, PoolTimeout)
"""What is answered 503: the server's own trouble. OperationalError: the database refused or
dropped the connection; PoolTimeout: no pooled connection was free in time."""


def unavailable_code(exc: Exception) -> str:
    """The code of the 503 answer to *exc* (one of :data:`UNAVAILABLE`); the database's trouble is
    logged with the driver's first line only: SQLAlchemy's text would add the statement and its
    parameters (card digests, names) to the log."""
    if isinstance(exc, ServiceUnavailable):
        return exc.code
    orig = getattr(exc, "orig", None) or exc
    first_line = (str(orig).splitlines() or [""])[0][:200]
    log.error("database unavailable: %s: %s", type(orig).__name__, first_line)
    return "database_unavailable"


def status_for(error: DomainError) -> int:
    return type(error).http_status


def register_error_handlers(app: FastAPI) -> None:
    """Render domain, validation and HTTP errors in the one ``{"error", "detail"}`` shape."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.requests import Request
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def domain_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        headers = {"WWW-Authenticate": "Bearer"} if status_for(exc) == 401 else {}
        return JSONResponse(
            {"error": exc.code, "detail": exc.message, **exc.extra()},
            status_code=status_for(exc),
            headers={**headers, **exc.headers()},
        )

    def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # Echoing pydantic's "input" would send raw card data back out (and into client logs):
        # keep where and why only.
        problems = [
            {
                "loc": list(error.get("loc", ())),
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
            for error in exc.errors()
        ]
        return JSONResponse(
            {"error": "invalid_request", "detail": "请求格式不正确", "problems": problems}, status_code=422
        )

    def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = _HTTP_EXCEPTION_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"error": unavailable_code(exc), "detail": ServiceUnavailable.message},
            status_code=503,
            headers={"Retry-After": str(ServiceUnavailable.retry_after)},
        )

    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    for trouble in UNAVAILABLE:
        app.add_exception_handler(trouble, unavailable)
