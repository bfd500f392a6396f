"""Sign-in and sign-out.

The sign-in form is protected against login CSRF (a forged form signing the victim in to the
attacker's account) by a double-submit token: a random cookie that the form must repeat.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from server.deps import ClockDep, SessionDep
from server.errors import CsrfFailed, status_for
from server.proxies import client_address
from server.users.service import SignedIn, sign_in, sign_out
from server.web.deps import CSRF_FIELD, SESSION_COOKIE, CurrentUser
from server.web.errors import local_path
from server.web.templating import cookies_secure, redirect, render

router = APIRouter()

LOGIN_CSRF_COOKIE = "ecard_login_csrf"


@router.get("/login")
def login_form(request: Request, next_page: Annotated[str, Query(alias="next")] = "/web/") -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(request, "login.html", {"next": local_path(next_page), "login_csrf": token})
    _set_login_csrf_cookie(request, response, token)
    return response


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=100)] = "",
    next_page: Annotated[str, Form(alias="next", max_length=2000)] = "/web/",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected, csrf_token):
        refused = CsrfFailed()
        return _login_page_with_error(request, refused.code, refused.message, 403, username, next_page)
    ip = client_address(request)  # X-Forwarded-For only from ECARD_TRUSTED_PROXIES
    outcome = sign_in(session, username=username, password=password, ip=ip, now=clock())
    if not isinstance(outcome, SignedIn):
        # Returned, not raised: the failed attempt must be committed for the rate limit to count it.
        error = outcome.error
        return _login_page_with_error(
            request, error.code, error.message, status_for(error), username, next_page
        )
    response = RedirectResponse(local_path(next_page), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        outcome.session_token,
        path="/web",
        httponly=True,
        samesite="lax",
        secure=cookies_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/web")
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, clock: ClockDep, viewer: CurrentUser) -> Response:
    sign_out(session, web_session_id=viewer.session_id, caller=viewer.caller, now=clock())
    response = redirect(request, "/web/login", toast="您已安全退出", level="info")
    response.delete_cookie(SESSION_COOKIE, path="/web")
    return response


def _login_page_with_error(
    request: Request, code: str, message: str, status: int, username: str, next_path: str
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {
            "next": local_path(next_path),
            "login_csrf": token,
            "error": {"code": code, "message": message},
            "username": username[:64],
        },
        status_code=status,
    )
    _set_login_csrf_cookie(request, response, token)
    return response


def _set_login_csrf_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path="/web",
        httponly=True,
        samesite="lax",
        secure=cookies_secure(request),
        max_age=3600,
    )
