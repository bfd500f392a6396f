"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio import to_thread
from fastapi import FastAPI
from pydantic import AwareDatetime, BaseModel

from server.attendance.routes import router as attendance_router
from server.booth.service import MAX_PHOTO_BYTES
from server.cards.checks import CardCheckPolicy
from server.cards.issuer import HttpIssuerVerifier, IssuerVerifier
from server.cards.routes import router as cards_router
from server.clock import Clock, utc_now
from server.config import ServerSettings, load_secret_key
from server.db import describe_url, make_engine
from server.deps import ClockDep
from server.dues.routes import DUES_UPLOAD_PATH, MAX_DUES_BYTES
from server.dues.routes import router as dues_router
from server.errors import register_error_handlers
from server.evidence.sealing import EvidenceSealer, load_evidence_key
from server.keyring import Keyring
from server.kiosks.routes import router as kiosks_router
from server.leave.routes import router as leave_router
from server.ledgers.routes import router as ledgers_router
from server.limits import MIB, BodySizeLimit, rate_limiter_for
from server.live import PgTapRelay, TapFeed, is_postgresql
from server.meetings.attachments import MAX_ATTACHMENT_BYTES
from server.reminders.routes import router as reminders_router
from server.roster.routes import MAX_ROSTER_BYTES
from server.roster.routes import router as roster_router
from server.schedule import run_schedule
from server.supervision.routes import router as supervision_router
from server.taps.intake import tap_intake
from server.taps.routes import router as taps_router
from server.taps.strangers import StrangerTally
from server.textguard import TEXT_GUARD
from server.transfers.routes import router as transfers_router
from server.web.app import mount_web_app
from server.web.pages.booth_member import MESSAGE_PATH as BOOTH_MESSAGE_PATH
from server.web.pages.minutes import MINUTES_UPLOAD_PATH

log = logging.getLogger(__name__)

# Routes that take files get a larger body allowance than ECARD_MAX_BODY_BYTES (multipart adds ~1 MiB).
ROSTER_UPLOAD_PATH = "/api/v1/imports/roster"

# How long start-up waits for the live feed's listener; without it, boards here would miss taps
# other processes accept until it connects.
RELAY_START_SECONDS = 10.0


class Health(BaseModel):
    status: str
    server_time: AwareDatetime


def create_app(
    settings: ServerSettings, *, clock: Clock = utc_now, issuer: IssuerVerifier | None = None
) -> FastAPI:
    """Build the API. The engine and keyring are made in the lifespan, not here.

    The database must already be migrated (``ecard server run`` migrates before serving).
    *issuer* checks cards' challenge answers; by default an HTTP client of ``ECARD_ISSUER_URL``
    when that is set, else none (taps then reach ``card-number`` at most).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.clock = clock
        app.state.keyring = Keyring(load_secret_key(settings))
        app.state.evidence_sealer = EvidenceSealer(load_evidence_key(settings))
        # One connection per worker thread: a request never waits for the pool, nor opens its own.
        to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        # And one for each of the tap intake's workers, which are not among those threads.
        app.state.engine = make_engine(
            settings.database_url, pool_size=settings.worker_threads + settings.ingest_workers
        )
        # SQLite: one writing request at a time, waiting in the event loop (server.deps.write_turn).
        app.state.write_turn = anyio.Lock() if app.state.engine.dialect.name == "sqlite" else None
        app.state.tap_feed = TapFeed()
        # On PostgreSQL other server processes may share the database: boards hear their taps too.
        relay = (
            PgTapRelay(settings.database_url, app.state.tap_feed)
            if is_postgresql(settings.database_url)
            else None
        )
        app.state.tap_strangers = StrangerTally()
        app.state.rate_limiter = rate_limiter_for(settings.rate_limits)
        own_issuer = (
            HttpIssuerVerifier(settings.issuer_url, timeout=settings.issuer_timeout)
            if issuer is None and settings.issuer_url
            else None
        )
        app.state.card_policy = CardCheckPolicy(minimum=settings.min_card_check, issuer=issuer or own_issuer)
        intake = tap_intake(
            app.state.engine,
            keyring=app.state.keyring,
            clock=clock,
            max_clock_skew=settings.max_clock_skew,
            on_accepted=app.state.tap_feed.publish,
            card_policy=app.state.card_policy,
            strangers=app.state.tap_strangers,
            sealer=app.state.evidence_sealer,
            workers=settings.ingest_workers,
        )
        app.state.tap_intake = intake
        intake.start()
        log.info("database: %s", describe_url(settings.database_url))
        # The daily sweep, transfer expiry, the unmatched-tap purge…: once per deployment, no cron.
        scheduled = (
            asyncio.create_task(run_schedule(app.state.engine, settings, clock=clock))
            if settings.scheduler
            else None
        )
        log.info("card checks: minimum %s, issuer %s", settings.min_card_check.value, issuer or own_issuer)
        try:
            if relay is not None:
                relay.start()
                if not await asyncio.to_thread(relay.wait_listening, RELAY_START_SECONDS):
                    log.warning("live feed: not listening for other processes' taps yet; retrying")
            yield
        finally:
            if scheduled is not None:
                scheduled.cancel()
            await asyncio.to_thread(intake.stop)
            if relay is not None:
                await asyncio.to_thread(relay.stop)
            app.state.engine.dispose()
            if own_issuer is not None:
                own_issuer.close()

    # TEXT_GUARD: every text value of a request is checked before any route sees it.
    app = FastAPI(
        title="党员e通卡 check-in server", version="1", lifespan=lifespan, dependencies=[TEXT_GUARD]
    )
    register_error_handlers(app)
    # Outermost of ours: an oversized body is refused before any route, form or JSON parser sees it.
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        allowances={
            ROSTER_UPLOAD_PATH: max(settings.max_body_bytes, MAX_ROSTER_BYTES + MIB),
            DUES_UPLOAD_PATH: max(settings.max_body_bytes, MAX_DUES_BYTES + MIB),
            MINUTES_UPLOAD_PATH: max(settings.max_body_bytes, MAX_ATTACHMENT_BYTES + MIB),
            BOOTH_MESSAGE_PATH: max(settings.max_body_bytes, MAX_PHOTO_BYTES + MIB),
        },
    )
    app.include_router(kiosks_router)
    app.include_router(cards_router)
    app.include_router(taps_router)
    app.include_router(attendance_router)
    app.include_router(leave_router)
    app.include_router(ledgers_router)
    app.include_router(reminders_router)
    app.include_router(supervision_router)
    mount_web_app(app)
    app.include_router(roster_router)
    app.include_router(dues_router)
    app.include_router(transfers_router)

    @app.get("/api/v1/health", tags=["health"])
    def health(now: ClockDep) -> Health:
        """Liveness and the server's clock (kiosks compare it with their own)."""
        return Health(status="ok", server_time=now())

    return app
