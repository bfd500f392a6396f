"""Jinja2 rendering for the web app: the shared page context, filters, toasts and redirects.

Every page goes through :func:`render`, which adds what ``base.html`` needs: the signed-in user
(``viewer``), the CSRF token, the navigation and any toast carried over a redirect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context

from server.config import ServerSettings
from server.users.service import WebUser
from server.vocabulary import UserRole

TEMPLATES_DIR = Path(__file__).parent / "templates"
TOAST_COOKIE = "ecard_toast"


@dataclass(frozen=True)
class NavItem:
    key: str
    label: str
    href: str
    roles: tuple[UserRole, ...] = (UserRole.SECRETARY, UserRole.ORGANISER, UserRole.ADMIN)


NAVIGATION: tuple[NavItem, ...] = (
    NavItem("dashboard", "仪表盘", "/web/"),
    NavItem("events", "活动", "/web/events"),
    NavItem("ledgers", "台账", "/web/ledgers"),
    NavItem("members", "党员与卡", "/web/members"),
    NavItem("transfers", "转入申请", "/web/transfers"),
    NavItem("kiosks", "签到机", "/web/kiosks"),
    NavItem("audit", "审计日志", "/web/audit"),
)

ROLE_LABELS: Mapping[UserRole, str] = {
    UserRole.SECRETARY: "支部书记",
    UserRole.ORGANISER: "组织员",
    UserRole.ADMIN: "管理员",
}


@cache
def templates() -> Jinja2Templates:
    """The template environment, built on first use (not at import)."""
    environment = Jinja2Templates(directory=TEMPLATES_DIR)
    environment.env.filters["local"] = _local_time
    environment.env.globals["ROLE_LABELS"] = ROLE_LABELS
    return environment


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render a page (or an htmx fragment) with the shared context.

    ``context`` may set ``nav`` (a :data:`NAVIGATION` key) to highlight the current section.
    """
    viewer: WebUser | None = getattr(request.state, "viewer", None)
    toast = _read_toast(request)
    full_context: dict[str, Any] = {
        "viewer": viewer,
        "csrf_token": viewer.csrf_token if viewer is not None else "",
        "navigation": [item for item in NAVIGATION if viewer is not None and viewer.role in item.roles],
        "nav": "",
        "toast": toast,
        **(context or {}),
    }
    response = templates().TemplateResponse(
        request, template, full_context, status_code=status_code, headers=dict(headers or {})
    )
    if toast is not None:
        response.delete_cookie(TOAST_COOKIE, path="/web")
    return response


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def toast_header(message: str, level: str = "success") -> dict[str, str]:
    """An ``HX-Trigger`` header that makes ``base.html`` show a toast (ASCII-escaped JSON, since
    header values are Latin-1)."""
    return {"HX-Trigger": json.dumps({"toast": {"message": message, "level": level}})}


def redirect(request: Request, url: str, *, toast: str | None = None, level: str = "success") -> Response:
    """After a successful form post: go to ``url`` and show ``toast`` there.

    htmx requests get ``HX-Redirect`` (htmx then loads the page); plain posts get 303 See Other.
    The toast rides in a short-lived cookie that the next :func:`render` reads and clears.
    """
    response: Response
    if is_htmx(request):
        response = Response(status_code=200, headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    if toast is not None:
        response.set_cookie(
            TOAST_COOKIE,
            quote(json.dumps({"message": toast, "level": level}, ensure_ascii=False)),
            max_age=60,
            path="/web",
            httponly=True,
            samesite="lax",
            secure=cookies_secure(request),
        )
    return response


def cookies_secure(request: Request) -> bool:
    """Whether cookies get the Secure flag: as configured, else when this request used HTTPS."""
    settings: ServerSettings = request.app.state.settings
    if settings.secure_cookies is not None:
        return settings.secure_cookies
    return request.url.scheme == "https"


def _read_toast(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(TOAST_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(unquote(raw))
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("message"), str):
        return None
    level = value.get("level")
    return {"message": value["message"], "level": level if level in ("success", "error", "info") else "info"}


@pass_context
def _local_time(context: Context, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """``{{ event.start_at | local }}``: the server's display timezone (ECARD_TIMEZONE)."""
    if value is None:
        return "—"
    request: Request = context["request"]
    tz: tzinfo = request.app.state.settings.tz
    return value.astimezone(tz).strftime(fmt)
