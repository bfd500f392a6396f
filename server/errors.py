"""Domain errors: every refusal the API or the admin CLI can give, with a stable code.

Services raise these and know nothing about HTTP. :data:`HTTP_STATUS` is the one table that maps
codes to statuses; :func:`register_error_handlers` renders every error as
``{"error": code, "detail": message}``. Per-tap problems are not errors: they are receipts
(see ``server.vocabulary.RejectionCode``).

* DomainError
  + NotFound: organisation_not_found, member_not_found, venue_not_found, event_not_found,
    kiosk_not_found
  + InvalidInput: invalid_card_identifier, invalid_time_range, org_required
  + Conflict: card_already_bound, kiosk_revoked, public_key_in_use
  + enrollment_code_invalid, enrollment_code_expired, enrollment_code_used, bad_public_key
  + not_authenticated, invalid_token, forbidden
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from fastapi import FastAPI


class DomainError(Exception):
    code: ClassVar[str] = "domain_error"
    default_message: ClassVar[str] = "操作失败"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class NotFound(DomainError):
    code = "not_found"
    default_message = "未找到"


class OrganisationNotFound(NotFound):
    code = "organisation_not_found"
    default_message = "党组织不存在"


class MemberNotFound(NotFound):
    code = "member_not_found"
    default_message = "党员不存在"


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


class InvalidCardIdentifier(InvalidInput):
    code = "invalid_card_identifier"
    default_message = "卡号须为19位数字，UID须为6至20位十六进制字符，且至少提供其中一项"


class InvalidTimeRange(InvalidInput):
    code = "invalid_time_range"
    default_message = "时间范围不正确：结束时间须晚于开始时间，签到窗口须在结束前打开"


class OrgRequired(InvalidInput):
    code = "org_required"
    default_message = "该角色的令牌必须指定党组织"


class Conflict(DomainError):
    code = "conflict"
    default_message = "与现有数据冲突"


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
    code = "enrollment_code_invalid"
    default_message = "登记码无效"


class EnrollmentCodeExpired(DomainError):
    code = "enrollment_code_expired"
    default_message = "登记码已过期，请重新生成"


class EnrollmentCodeUsed(DomainError):
    code = "enrollment_code_used"
    default_message = "登记码已被使用"


class BadPublicKey(DomainError):
    code = "bad_public_key"
    default_message = "公钥格式不正确（须为32字节Ed25519公钥的base64url编码）"


class NotAuthenticated(DomainError):
    code = "not_authenticated"
    default_message = "需要登录令牌（Authorization: Bearer …）"


class InvalidToken(DomainError):
    code = "invalid_token"
    default_message = "令牌无效或已撤销"


class Forbidden(DomainError):
    code = "forbidden"
    default_message = "无权访问"


# The one code -> HTTP status table. A test checks every DomainError subclass has a row.
HTTP_STATUS: dict[str, int] = {
    NotFound.code: 404,
    OrganisationNotFound.code: 404,
    MemberNotFound.code: 404,
    VenueNotFound.code: 404,
    EventNotFound.code: 404,
    KioskNotFound.code: 404,
    InvalidInput.code: 400,
    InvalidCardIdentifier.code: 400,
    InvalidTimeRange.code: 400,
    OrgRequired.code: 400,
    Conflict.code: 409,
    CardAlreadyBound.code: 409,
    KioskRevoked.code: 409,
    PublicKeyInUse.code: 409,
    EnrollmentCodeInvalid.code: 400,
    EnrollmentCodeExpired.code: 410,
    EnrollmentCodeUsed.code: 409,
    BadPublicKey.code: 400,
    NotAuthenticated.code: 401,
    InvalidToken.code: 401,
    Forbidden.code: 403,
}

# Status codes FastAPI/Starlette raise themselves (unknown route, wrong method, bad body).
_HTTP_EXCEPTION_CODES = {404: "not_found", 405: "method_not_allowed", 401: "not_authenticated"}


def status_for(error: DomainError) -> int:
    return HTTP_STATUS.get(error.code, 400)


def register_error_handlers(app: FastAPI) -> None:
    """Render domain, validation and HTTP errors in the one ``{"error", "detail"}`` shape."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.requests import Request
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def domain_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        headers = {"WWW-Authenticate": "Bearer"} if status_for(exc) == 401 else None
        return JSONResponse(
            {"error": exc.code, "detail": exc.message}, status_code=status_for(exc), headers=headers
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

    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
