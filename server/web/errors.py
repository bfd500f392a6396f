"""Error pages for the web app, aware of htmx.

* A refusal during an htmx request (a form posted with ``hx-post``) answers 200 with
  ``HX-Reswap: none`` and a toast: the page stays as it is, with what the user typed, and the
  message appears on top. htmx would ignore the body of a 4xx anyway.
* Otherwise a full error page with the real status code.
* Not signed in: to the sign-in page, coming back to the page asked for afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from server.errors import (
    UNAVAILABLE,
    DomainError,
    LoginRequired,
    ServiceUnavailable,
    status_for,
    unavailable_code,
)
from server.web.form_tokens import RepeatedSubmission
from server.web.templating import is_htmx, redirect, render, toast_header

log = logging.getLogger(__name__)

# Refusals about one form field, by code: the toast marks that field in the form that was sent
# (server/web/static/app.js), beside the message. Errors that carry ``field`` name it themselves.
_FIELDS_BY_CODE: dict[str, tuple[str, ...]] = {
    "card_already_bound": ("card_no",),
    "transfer_card_taken": ("card_no",),
    "invalid_time_range": ("end_at",),
    "reason_required": ("reason",),
    "applicant_name_required": ("claimed_name",),
    "placement_required": ("placement_org_id",),
    "invalid_placement": ("placement_org_id",),
    "letter_issuer_not_committee": ("issuer_kind",),
    "letter_expired": ("issued_on", "valid_days"),
}

_HTTP_MESSAGES = {
    404: "页面不存在，或您无权查看",
    405: "不支持此操作",
}


def register_web_error_handlers(web: FastAPI) -> None:
    web.add_exception_handler(LoginRequired, _login_required)
    web.add_exception_handler(RepeatedSubmission, _repeated_submission)
    web.add_exception_handler(DomainError, _domain_error)
    web.add_exception_handler(RequestValidationError, _invalid_form)
    web.add_exception_handler(HTTPException, _http_error)
    for trouble in UNAVAILABLE:
        web.add_exception_handler(trouble, _unavailable)
    web.add_exception_handler(Exception, _unexpected)


def login_url(next_path: str) -> str:
    return f"/web/login?next={quote(next_path, safe='/')}"


def _login_required(request: Request, _exc: Exception) -> Response:
    # Come back to the page after signing in; for an htmx call or a post, to the page it came from.
    if is_htmx(request):
        back = local_path(request.headers.get("HX-Current-URL", "/web/"))
        return Response(status_code=200, headers={"HX-Redirect": login_url(back)})
    back = local_path(str(request.url)) if request.method == "GET" else "/web/"
    return RedirectResponse(login_url(back), status_code=303)


ALREADY_SENT = "这份表单刚才已经提交过，没有重复办理"


def _repeated_submission(request: Request, exc: Exception) -> Response:
    """A form sent again with a used token: nothing was done; answer like the first time."""
    assert isinstance(exc, RepeatedSubmission)
    if exc.redirect_to is not None:
        return redirect(request, exc.redirect_to, toast=exc.toast, level=exc.toast_level)
    if is_htmx(request):  # the first answer already changed the page; leave it as it is
        return Response(status_code=200, headers={"HX-Reswap": "none", **toast_header(ALREADY_SENT, "info")})
    back = local_path(request.headers.get("referer", "/web/"))
    return redirect(request, back, toast=ALREADY_SENT, level="info")


def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    response = _refusal(request, status_for(exc), exc.code, exc.message, fields=_fields_of(exc))
    response.headers.update(exc.headers())
    return response


def _invalid_form(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields = sorted({str(error.get("loc", ("", ""))[-1]) for error in exc.errors()})
    log.info("web form refused: %s %s fields=%s", request.method, request.url.path, fields)
    message = "表单填写不完整或格式不正确，请检查后重试"
    return _refusal(request, 400, "invalid_request", message, fields=fields)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = _HTTP_MESSAGES.get(exc.status_code, "请求无法完成")
    code = "not_found" if exc.status_code == 404 else "http_error"
    return _refusal(request, exc.status_code, code, message)


def _unavailable(request: Request, exc: Exception) -> Response:
    response = _refusal(request, 503, unavailable_code(exc), ServiceUnavailable.message)
    response.headers["Retry-After"] = str(ServiceUnavailable.retry_after)
    return response


def _unexpected(request: Request, _exc: Exception) -> Response:
    # Starlette logs the traceback itself after this answer; the user gets a page, not a bare 500.
    return _refusal(request, 500, "internal_error", "服务器内部错误，请稍后重试；如果一直出现，请联系管理员")


def _fields_of(exc: DomainError) -> Sequence[str]:
    named = getattr(exc, "field", None)
    if isinstance(named, str) and named:
        return (named,)
    if exc.code == "invalid_card_identifier":
        return ("uid",) if exc.message.startswith("UID") else ("card_no",)
    return _FIELDS_BY_CODE.get(exc.code, ())


def _refusal(
    request: Request, status: int, code: str, message: str, *, fields: Sequence[str] = ()
) -> Response:
    if is_htmx(request):
        headers = {"HX-Reswap": "none", **toast_header(message, "error", fields=fields)}
        return Response(status_code=200, headers=headers)
    return render(
        request,
        "error.html",
        {"status": status, "code": code, "message": message},
        status_code=status,
    )


def local_path(url: str) -> str:
    """Path and query of a web-app URL, dropping scheme and host; anything else is the dashboard.

    Used for "come back here after signing in", so a crafted link cannot send a user elsewhere.
    """
    parts = urlsplit(url)
    if not parts.path.startswith("/web/") and parts.path != "/web":
        return "/web/"
    return parts.path + (f"?{parts.query}" if parts.query else "")
