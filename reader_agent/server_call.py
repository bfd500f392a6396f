"""The agent's one-off setup calls to the server (``enroll``, ``rotate-key``): POST one JSON
request, read one JSON answer, and turn every way that can fail into one error with a code.

The codes are the server's own (``{"error": code, "detail": ...}``), else ``server_unreachable``,
``server_bad_response`` or ``http_<status>`` when the server's answer carries no code. The
background senders (uploader, heartbeat) share :func:`refusal` and :func:`retry_after_s`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

AnswerT = TypeVar("AnswerT", bound=BaseModel)


class ServerCallError(Exception):
    """A setup call failed: a stable ``code`` for scripts, a ``message`` for the installer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def post_for_answer(
    client: httpx.Client,
    path: str,
    request: BaseModel,
    *,
    answer: type[AnswerT],
    error: type[ServerCallError],
    server_messages: Mapping[str, str],
    unreachable: str,
    unreadable: str,
    refused: str,
) -> AnswerT:
    """POST *request* to *path* and return the server's answer parsed as *answer*.

    Args:
        error: raised for every failure (the caller's own subclass, so callers keep theirs).
        server_messages: what an installer reads for each code the server may answer with;
            another code shows the server's ``detail``, else ``"<refused> (HTTP <status>)"``.
        unreachable: the start of the message when the server cannot be reached.
        unreadable: the message when the answer is not an *answer*.
    """
    try:
        response = client.post(
            path, content=request.model_dump_json().encode(), headers={"Content-Type": "application/json"}
        )
    except httpx.TransportError as exc:
        raise error("server_unreachable", f"{unreachable}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        code, detail = refusal(response)
        raise error(code, server_messages.get(code) or detail or f"{refused} (HTTP {response.status_code})")
    try:
        return answer.model_validate_json(response.content)
    except ValidationError as exc:
        raise error("server_bad_response", unreadable) from exc


MAX_RETRY_AFTER_S = 3600.0
"""The longest a ``Retry-After`` is honoured for: a confused proxy must not silence a kiosk for days."""


def retry_after_s(response: httpx.Response, *, now: datetime) -> float | None:
    """How long the server asked us to wait (``Retry-After``: seconds or an HTTP date), else None.

    Capped at :data:`MAX_RETRY_AFTER_S`; a date in the past is 0. *now* is the kiosk's clock, for a date.
    """
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return min(float(value[:8]), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER_S)


def refusal(response: httpx.Response) -> tuple[str, str | None]:
    """The server's ``error`` code (else ``http_<status>``) and ``detail`` (else None) of an answer."""
    code = f"http_{response.status_code}"
    detail = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            code = body["error"]
        if isinstance(body.get("detail"), str):
            detail = body["detail"]
    return code, detail
