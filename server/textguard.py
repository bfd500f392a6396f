"""The text check at the HTTP boundary: every path, query, form and JSON text value of a request
goes through :func:`server.inputs.check_text` before the route sees it.

:data:`TEXT_GUARD` is an app-wide dependency of the API app and of the web app, so it runs before
each route's own dependencies and before its parameters are validated. A refusal is an
:class:`~server.errors.InvalidText` that each app renders its own way: 422
``{"error": "invalid_text", "detail": …, "field": …}`` from the API, the error page (or an htmx
toast) from the web app. Names in JSON bodies are dotted paths (``letter.issuer_name``,
``items[2].name``); form file parts are not text and are not read here.

Not checked here: the kiosk wire endpoints (:data:`WIRE_PATHS`). A tap batch carries many
envelopes and one bad envelope must fail only itself, so the wire models bound their own strings
(``schemas.messages``) and the ingest gives that envelope its own receipt.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from server.inputs import REFUSED_CHARACTERS, check_text

WIRE_PATHS = frozenset(
    {"/api/v1/taps", "/api/v1/kiosks/enroll", "/api/v1/kiosks/heartbeat", "/api/v1/kiosks/rotate-key"}
)
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_SHOWN_NAME_LENGTH = 64


async def check_request_text(request: Request) -> None:
    """Raise InvalidText for a path, query, form or JSON value (or JSON key) holding a refused
    character; wire endpoints pass untouched."""
    route = request.scope.get("route")
    if getattr(route, "path", None) in WIRE_PATHS:
        return
    for name, value in request.path_params.items():
        if isinstance(value, str):
            _check(value, name, "路径参数")
    for name, value in request.query_params.multi_items():
        _check(name, name, "查询参数名")
        _check(value, name, "查询参数")
    if getattr(route, "body_field", None) is None:
        return  # the route reads no body: nothing in it reaches the application
    if request.headers.get("content-type", "").lower().startswith(_FORM_TYPES):
        form = await request.form()  # already parsed for the route: Starlette keeps it
        for name, field_value in form.multi_items():
            if isinstance(field_value, str):
                _check(field_value, name, "表单字段")
        return
    try:
        body = await request.json()  # already parsed for the route when it is JSON
    except ValueError:
        return  # not JSON: the route's own validation refuses it
    _check_json(body)


TEXT_GUARD = Depends(check_request_text)


def _check(value: str, name: str, where: str) -> None:
    shown = REFUSED_CHARACTERS.sub("?", name)[:_SHOWN_NAME_LENGTH]
    check_text(value, field=shown, label=f"{where}“{shown}”")


def _check_json(body: Any) -> None:
    # Depth-first without recursion: a deeply nested body must not exhaust the stack.
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            _check(value, path or "(请求内容)", "请求内容中的")
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                _check(str(key), child, "请求内容中的字段名")
                pending.append((child, item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
