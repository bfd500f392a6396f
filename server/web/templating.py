"""Jinja2 rendering for the web app: the shared page context, filters, toasts and redirects.

Every page goes through :func:`render`, which adds what ``base.html`` needs: the signed-in user
(``viewer``), the CSRF token, the navigation and any toast carried over a redirect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
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
from server.web.form_tokens import note_redirect
from server.web.kiosk_text import shown_problems

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
    NavItem("leave", "请假", "/web/leave"),
    NavItem("supervision", "督查督办", "/web/supervision"),
    NavItem("transfers", "转入申请", "/web/transfers"),
    NavItem("kiosks", "签到机", "/web/kiosks"),
    NavItem("audit", "审计日志", "/web/audit"),
    NavItem(
        "booth",
        "留言亭",
        "/web/booth",
        (UserRole.REPRESENTATIVE, UserRole.SECRETARY, UserRole.ORGANISER, UserRole.ADMIN),
    ),
)

ROLE_LABELS: Mapping[UserRole, str] = {
    UserRole.SECRETARY: "支部书记",
    UserRole.ORGANISER: "组织员",
    UserRole.ADMIN: "管理员",
    UserRole.REPRESENTATIVE: "党代表",
    UserRole.MEMBER: "党员",
}


@cache
def templates() -> Jinja2Templates:
    """The template environment, built on first use (not at import)."""
    environment = Jinja2Templates(directory=TEMPLATES_DIR)
    environment.env.filters["local"] = _local_time
    # One date style on every page (docs: 2026年12月6日 09:30 in prose, 12月6日 in tables).
    environment.env.filters["date"] = _date
    environment.env.filters["datetime"] = _datetime
    environment.env.filters["short_date"] = _short_date
    environment.env.filters["short_datetime"] = _short_datetime
    environment.env.filters["time"] = _time
    environment.env.filters["month"] = month_text
    environment.env.globals["span"] = _span
    environment.env.globals["kiosk_problems"] = shown_problems
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


def toast_header(message: str, level: str = "success", *, fields: Sequence[str] = ()) -> dict[str, str]:
    """An ``HX-Trigger`` header that makes ``base.html`` show a toast (ASCII-escaped JSON, since
    header values are Latin-1). ``fields``: the form fields the message is about; ``app.js``
    marks them in the form that was sent."""
    toast: dict[str, object] = {"message": message, "level": level}
    if fields:
        toast["fields"] = list(fields)
    return {"HX-Trigger": json.dumps({"toast": toast})}


def redirect(request: Request, url: str, *, toast: str | None = None, level: str = "success") -> Response:
    """After a successful form post: go to ``url`` and show ``toast`` there.

    htmx requests get ``HX-Redirect`` (htmx then loads the page); plain posts get 303 See Other.
    The toast rides in a short-lived cookie that the next :func:`render` reads and clears.
    """
    note_redirect(request, url, toast=toast, level=level)  # a repeat of this form answers the same
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


def _zone(context: Context) -> tzinfo:
    request: Request = context["request"]
    tz: tzinfo = request.app.state.settings.tz
    return tz


def _this_year(context: Context) -> int:
    request: Request = context["request"]
    now: datetime = request.app.state.clock()
    return now.astimezone(_zone(context)).year


def _as_local(context: Context, value: date) -> date:
    """A datetime in the display timezone; a plain date as it is (it has no zone)."""
    return value.astimezone(_zone(context)) if isinstance(value, datetime) else value


def date_text(value: date, *, with_year: bool = True) -> str:
    """2026年12月6日, or 12月6日 (no zero padding: that is how people write dates)."""
    day = f"{value.month}月{value.day}日"
    return f"{value.year}年{day}" if with_year else day


@pass_context
def _date(context: Context, value: date | None) -> str:
    """``{{ member.joined_org_at | date }}``: 2026年12月6日."""
    if value is None:
        return "—"
    return date_text(_as_local(context, value))


@pass_context
def _datetime(context: Context, value: datetime | None) -> str:
    """``{{ event.start_at | datetime }}``: 2026年12月6日 09:30, for prose and details."""
    if value is None:
        return "—"
    local = value.astimezone(_zone(context))
    return f"{date_text(local)} {local:%H:%M}"


@pass_context
def _short_date(context: Context, value: date | None) -> str:
    """For tables: 12月6日 (with the year when it is not this year's)."""
    if value is None:
        return "—"
    local = _as_local(context, value)
    return date_text(local, with_year=local.year != _this_year(context))


@pass_context
def _short_datetime(context: Context, value: datetime | None) -> str:
    """For tables: 12月6日 09:30 (with the year when it is not this year's)."""
    if value is None:
        return "—"
    local = value.astimezone(_zone(context))
    return f"{date_text(local, with_year=local.year != _this_year(context))} {local:%H:%M}"


@pass_context
def _time(context: Context, value: datetime | None, *, seconds: bool = False) -> str:
    """09:30 (or 09:30:12 where the second matters: a tap on the board)."""
    if value is None:
        return "—"
    return value.astimezone(_zone(context)).strftime("%H:%M:%S" if seconds else "%H:%M")


def month_text(value: str | date | None) -> str:
    """``2025-03`` (a month input's value) or a date: 2025年3月."""
    if value is None or value == "":
        return "—"
    if isinstance(value, date):
        return f"{value.year}年{value.month}月"
    year, _, month = value.partition("-")
    if not (year.isdigit() and month.isdigit()):
        return value
    return f"{int(year)}年{int(month)}月"


@pass_context
def _span(context: Context, start: datetime, end: datetime) -> str:
    """A meeting's time: 2026年12月6日 09:30–11:30, naming the end's day only when it differs."""
    zone = _zone(context)
    first, last = start.astimezone(zone), end.astimezone(zone)
    if first.date() == last.date():
        return f"{date_text(first)} {first:%H:%M}–{last:%H:%M}"
    end_day = date_text(last, with_year=last.year != first.year)
    return f"{date_text(first)} {first:%H:%M} 至 {end_day} {last:%H:%M}"


@pass_context
def _local_time(context: Context, value: datetime | None, fmt: str | None = None) -> str:
    """``{{ event.start_at | local }}``: the older filter, kept for templates not yet moved to the
    ones above; without a format it writes the house style (2026年12月6日 09:30)."""
    if value is None:
        return "—"
    if fmt is None:
        return _datetime(context, value)
    return value.astimezone(_zone(context)).strftime(fmt)
