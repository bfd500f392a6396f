"""Idempotent form posts: a repeated submit of the same form changes nothing.

Every POST form of the web app carries a hidden ``form_token``, a random value the page made
(``static/forms.js`` adds it to each ``form[method=post]``). :func:`claim_submission` runs for
every signed-in unsafe request, in one place (``server.web.deps.get_current_user``, after the
CSRF check):

* a token this user has not sent before is written to ``form_submission`` in the request's own
  unit of work, so it is stored exactly when what the form changed is stored; a refusal rolls
  both back, and the corrected form can be sent again with the same token;
* :func:`server.web.templating.redirect` notes where the answer sent the user
  (:func:`note_redirect`), so a repeat can be sent there too;
* a token already stored raises :class:`RepeatedSubmission` before the route runs: the web error
  handler answers like the first time (the same redirect and message), or, when the first answer
  was a page of its own, says that the form was already sent.

Two copies racing (PostgreSQL): the second insert waits on the unique (user, token) index until
the first commits and then fails; it is answered from the stored row. On SQLite requests that
may write take turns (``server.deps.write_turn``), so the second simply finds the row.

A form without a token (a script, an old page) is processed as before.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Final

from fastapi import Request
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from server.records.form_tokens import FormSubmission

FORM_TOKEN_FIELD: Final = "form_token"
KEEP_FOR: Final = timedelta(days=1)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_STATE_KEY: Final = "form_submission"


class RepeatedSubmission(Exception):
    """The form was already sent with this token; nothing was done this time."""

    def __init__(self, *, redirect_to: str | None, toast: str | None, toast_level: str) -> None:
        super().__init__("form already submitted")
        self.redirect_to = redirect_to
        self.toast = toast
        self.toast_level = toast_level


async def sent_form_token(request: Request) -> str | None:
    """The ``form_token`` of an unsafe form request, or None (absent or not a token)."""
    if request.method not in _UNSAFE_METHODS:
        return None
    if not request.headers.get("content-type", "").lower().startswith(_FORM_TYPES):
        return None
    value = (await request.form()).get(FORM_TOKEN_FIELD)  # Starlette keeps the parsed form
    if not isinstance(value, str) or _TOKEN.fullmatch(value) is None:
        return None
    return value


def claim_submission(session: Session, request: Request, *, user_id: int, token: str, now: datetime) -> None:
    """Record ``token`` as used by ``user_id`` for this request, or raise RepeatedSubmission.

    The row joins the request's unit of work; forgotten tokens older than :data:`KEEP_FOR` go.
    """
    session.execute(delete(FormSubmission).where(col(FormSubmission.created_at) < now - KEEP_FOR))
    earlier = _find(session, user_id, token)
    if earlier is None:
        claim = FormSubmission(user_id=user_id, token=token, path=request.url.path[:300], created_at=now)
        try:
            with session.begin_nested():
                session.add(claim)
                session.flush()
        except IntegrityError:
            earlier = _find(session, user_id, token)  # a copy sent at the same time just committed
            if earlier is None:
                raise
        else:
            setattr(request.state, _STATE_KEY, claim)
            return
    same_form = earlier.path == request.url.path[:300]
    raise RepeatedSubmission(
        redirect_to=earlier.redirect_to if same_form else None,
        toast=earlier.toast if same_form else None,
        toast_level=earlier.toast_level or "success",
    )


def note_redirect(request: Request, url: str, *, toast: str | None, level: str) -> None:
    """Remember where this request's answer sends the user, for a repeat of its form."""
    claim: FormSubmission | None = getattr(request.state, _STATE_KEY, None)
    if claim is None or len(url) > 2000:
        return
    claim.redirect_to = url
    claim.toast = toast[:500] if toast is not None else None
    claim.toast_level = level[:16]


def _find(session: Session, user_id: int, token: str) -> FormSubmission | None:
    return session.exec(
        select(FormSubmission).where(FormSubmission.user_id == user_id, FormSubmission.token == token)
    ).first()
