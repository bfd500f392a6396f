"""Dependencies for web pages: the signed-in user (with CSRF check), the page's request context
and the role guard.

``CurrentUser`` is the one way a page learns who is asking (``PageDep`` builds on it):

* no valid session cookie → :class:`~server.errors.LoginRequired`, which the web error handler
  turns into a redirect to the sign-in page (``HX-Redirect`` for htmx requests);
* any method other than GET/HEAD/OPTIONS must carry the session's CSRF token, in the form field
  ``csrf_token`` or the ``X-CSRF-Token`` header (``base.html`` makes htmx send the header) →
  else :class:`~server.errors.CsrfFailed`.

``PageDep`` is the same :class:`~server.deps.RequestContext` the API routes get (unit of work,
caller, instant, settings), with the signed-in user's caller; pages pass ``ctx.caller`` to the
services, which decide scope and write the audit entries.

Scope: a user sees their organisation's subtree only. The services decide it from the caller and
raise NotFound for an object outside it, so such an object looks exactly like one that does not
exist, also when someone types its URL.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request

from server.caller import Caller
from server.deps import ClockDep, RequestContext, SessionDep, SettingsDep
from server.errors import CsrfFailed, Forbidden, LoginRequired
from server.users.service import WebUser, resolve_session
from server.vocabulary import UserRole
from server.web.form_tokens import claim_submission, sent_form_token

SESSION_COOKIE = "ecard_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _sent_csrf_token(request: Request) -> str | None:
    # Async because reading the form body is; the session lookup below stays in a worker thread.
    if request.method in _SAFE_METHODS:
        return None
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def get_current_user(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    sent_csrf: Annotated[str | None, Depends(_sent_csrf_token)],
    form_token: Annotated[str | None, Depends(sent_form_token)],
) -> WebUser:
    """The signed-in user; raises LoginRequired, or CsrfFailed for an unsafe request without the
    session's token, or RepeatedSubmission for a form sent again with a used ``form_token``
    (see :mod:`server.web.form_tokens`)."""
    token = request.cookies.get(SESSION_COOKIE)
    viewer = resolve_session(session, token=token, now=clock()) if token else None
    if viewer is None:
        raise LoginRequired()
    if request.method not in _SAFE_METHODS and (
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, so a 500).
        sent_csrf is None
        or not secrets.compare_digest(sent_csrf.encode(errors="replace"), viewer.csrf_token.encode())
    ):
        raise CsrfFailed()
    if form_token is not None:
        claim_submission(session, request, user_id=viewer.user_id, token=form_token, now=clock())
    request.state.viewer = viewer  # for render(): the layout shows who is signed in
    return viewer


# scope="function": the session lookup shares the page's unit of work (see server.deps.SessionDep).
CurrentUser = Annotated[WebUser, Depends(get_current_user, scope="function")]


def get_page_context(
    session: SessionDep, user: CurrentUser, clock: ClockDep, settings: SettingsDep
) -> RequestContext:
    return RequestContext(session=session, caller=user.caller, now=clock(), settings=settings)


PageDep = Annotated[RequestContext, Depends(get_page_context, scope="function")]


def ensure_role(caller: Caller, *roles: UserRole) -> None:
    """Raise Forbidden unless the caller has one of ``roles``."""
    if not caller.has_role(*roles):
        raise Forbidden("您的角色无权进行此操作")
