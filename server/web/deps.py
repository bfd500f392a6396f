"""Dependencies for web pages: the signed-in user (with CSRF check) and scope/role guards.

``CurrentUser`` is the one way a page learns who is asking:

* no valid session cookie → :class:`~server.errors.LoginRequired`, which the web error handler
  turns into a redirect to the sign-in page (``HX-Redirect`` for htmx requests);
* any method other than GET/HEAD/OPTIONS must carry the session's CSRF token, in the form field
  ``csrf_token`` or the ``X-CSRF-Token`` header (``base.html`` makes htmx send the header) →
  else :class:`~server.errors.CsrfFailed`.

Scope: a user sees their organisation's subtree only. Pages look an object up, then call
:func:`ensure_visible` with the object's organisation and the NotFound error to raise, so an
object outside the subtree looks exactly like one that does not exist, also when someone types
its URL.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request

from server.deps import ClockDep, SessionDep
from server.errors import CsrfFailed, Forbidden, LoginRequired, NotFound
from server.users.service import WebUser, resolve_session
from server.vocabulary import UserRole

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
) -> WebUser:
    """The signed-in user; raises LoginRequired, or CsrfFailed for an unsafe request without the
    session's token."""
    token = request.cookies.get(SESSION_COOKIE)
    viewer = resolve_session(session, token=token, now=clock()) if token else None
    if viewer is None:
        raise LoginRequired()
    if request.method not in _SAFE_METHODS and (
        sent_csrf is None or not secrets.compare_digest(sent_csrf, viewer.csrf_token)
    ):
        raise CsrfFailed()
    request.state.viewer = viewer  # for render(): the layout shows who is signed in
    return viewer


# scope="function": the session lookup shares the page's unit of work (see server.deps.SessionDep).
CurrentUser = Annotated[WebUser, Depends(get_current_user, scope="function")]


def ensure_visible(viewer: WebUser, org_id: int | None, not_found: NotFound) -> None:
    """Raise ``not_found`` unless ``org_id`` is in the viewer's subtree."""
    if not viewer.sees_org(org_id):
        raise not_found


def ensure_role(viewer: WebUser, *roles: UserRole) -> None:
    """Raise Forbidden unless the viewer has one of ``roles``."""
    if viewer.role not in roles:
        raise Forbidden("您的角色无权进行此操作")
