"""The web sub-application: its pages, static files, error pages and security headers."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.textguard import TEXT_GUARD
from server.web.errors import register_web_error_handlers

STATIC_DIR = Path(__file__).parent / "static"

# Everything is served from here: no CDN, no inline script. htmx's own indicator <style> is
# switched off in base.html (htmx-config), so style-src needs no 'unsafe-inline' either.
_SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
_NO_STORE = (b"cache-control", b"no-store")  # pages show personal data; never keep them in caches


def page_routers() -> list[APIRouter]:
    """Every page module's router. To add a section, add its router here (see server.web)."""
    from server.web.pages import (
        audit,
        auth,
        board,
        booth,
        booth_member,
        dashboard,
        events,
        kiosks,
        leave,
        ledgers,
        members,
        minutes,
        roster,
        supervision,
        transfers,
    )

    return [
        auth.router,
        dashboard.router,
        events.router,
        minutes.router,
        board.router,
        ledgers.router,
        members.router,
        leave.router,
        supervision.router,
        roster.router,
        transfers.router,
        kiosks.router,
        audit.router,
        booth.router,
        booth_member.router,
    ]


def create_web_app(state: State) -> FastAPI:
    """The secretary web app, sharing the API app's state (engine, settings, clock, live feed)."""
    web = FastAPI(
        openapi_url=None, docs_url=None, redoc_url=None, title="党员e通卡 web", dependencies=[TEXT_GUARD]
    )
    # The parent's lifespan fills its state; a mounted app's lifespan never runs, so share it.
    web.state = state
    register_web_error_handlers(web)
    web.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in page_routers():
        web.include_router(router)
    web.add_middleware(SecurityHeaders)
    return web


def mount_web_app(app: FastAPI) -> None:
    """Serve the web app under ``/web`` of ``app``, and send ``/`` there."""
    app.mount("/web", create_web_app(app.state))

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/web/", status_code=307)


class SecurityHeaders:
    """Adds the security headers to every response, and ``no-store`` to everything but static files.

    Pure ASGI (not BaseHTTPMiddleware), so streaming responses (the live board) pass untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_static = scope["path"].startswith(f"{scope.get('root_path', '')}/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_SECURITY_HEADERS)
                if not is_static:
                    headers.append(_NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
