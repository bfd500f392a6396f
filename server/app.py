"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import AwareDatetime, BaseModel

from server.attendance.routes import router as attendance_router
from server.clock import Clock, utc_now
from server.config import ServerSettings, load_secret_key
from server.db import describe_url, make_engine
from server.deps import ClockDep
from server.errors import register_error_handlers
from server.keyring import Keyring
from server.kiosks.routes import router as kiosks_router
from server.taps.routes import router as taps_router

log = logging.getLogger(__name__)


class Health(BaseModel):
    status: str
    server_time: AwareDatetime


def create_app(settings: ServerSettings, *, clock: Clock = utc_now) -> FastAPI:
    """Build the API. The engine and keyring are made in the lifespan, not here.

    The database must already be migrated (``ecard server run`` migrates before serving).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.clock = clock
        app.state.keyring = Keyring(load_secret_key(settings))
        app.state.engine = make_engine(settings.database_url)
        log.info("database: %s", describe_url(settings.database_url))
        try:
            yield
        finally:
            app.state.engine.dispose()

    app = FastAPI(title="党员e通卡 check-in server", version="1", lifespan=lifespan)
    register_error_handlers(app)
    app.include_router(kiosks_router)
    app.include_router(taps_router)
    app.include_router(attendance_router)

    @app.get("/api/v1/health", tags=["health"])
    def health(now: ClockDep) -> Health:
        """Liveness and the server's clock (kiosks compare it with their own)."""
        return Health(status="ok", server_time=now())

    return app
