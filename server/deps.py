"""FastAPI dependencies: the request's session, the keyring, settings, clock and caller.

Everything comes from ``app.state``, filled by :func:`server.app.create_app`'s lifespan, so tests
build an app with their own settings and clock instead of patching globals.

API routes take ``ctx: RequestDep``: one :class:`RequestContext` with the unit of work, the caller
behind the bearer token, the instant of the request and the settings. Web pages get the same
context with the signed-in user's caller (``server.web.deps.PageDep``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from server.auth.service import authenticate_token
from server.caller import Caller
from server.clock import Clock
from server.config import ServerSettings
from server.db import read_only, unit_of_work
from server.errors import NotAuthenticated
from server.keyring import Keyring
from server.live import TapFeed


async def write_turn(request: Request) -> AsyncIterator[None]:
    """On SQLite, a request that may write waits for its turn here, in the event loop, and keeps
    it until its unit of work has committed (this dependency is torn down after the session's).

    SQLite takes one writer at a time. Waiting for that inside a worker thread would hold the
    thread, and the request holding the turn needs a free worker thread to finish (FastAPI checks
    a sync route's response in one): with as many writers waiting as there are threads, nothing
    moves. Waiting here holds no thread. On PostgreSQL there is no turn to take.
    """
    async with sqlite_write_turn(request):
        yield


@asynccontextmanager
async def sqlite_write_turn(request: Request) -> AsyncIterator[None]:
    """The turn :func:`write_turn` takes, for a dependency that decides per request whether it
    writes; released however the request ends."""
    turn: anyio.Lock | None = request.app.state.write_turn
    if turn is None:
        yield
        return
    async with turn:
        yield


WriteTurnDep = Annotated[None, Depends(write_turn, scope="function")]


def get_session(request: Request, _turn: WriteTurnDep) -> Iterator[Session]:
    """The request's unit of work: committed once after the route returns, rolled back on error."""
    with unit_of_work(request.app.state.engine) as session:
        yield session


def get_keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


def get_settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def get_tap_feed(request: Request) -> TapFeed:
    feed: TapFeed = request.app.state.tap_feed
    return feed


# scope="function": commit before the response is sent. With the default ("request") scope the
# commit would run after the client already had its 200, and a kiosk would drop taps that a
# failed commit never stored.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
KeyringDep = Annotated[Keyring, Depends(get_keyring)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
TapFeedDep = Annotated[TapFeed, Depends(get_tap_feed)]

_bearer = HTTPBearer(auto_error=False)


def get_caller(
    session: SessionDep,
    keyring: KeyringDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller behind the bearer token; raises NotAuthenticated or InvalidToken."""
    if credentials is None:
        raise NotAuthenticated()
    return authenticate_token(session, keyring=keyring, token=credentials.credentials)


CallerDep = Annotated[Caller, Depends(get_caller, scope="function")]


@dataclass(frozen=True)
class RequestContext:
    """What one request works with: its unit of work, who asks, and when.

    ``now`` is read once per request, so a change and what is shown after it are judged at the
    same instant.
    """

    session: Session
    caller: Caller
    now: datetime
    settings: ServerSettings

    @property
    def tz(self) -> tzinfo:
        return self.settings.tz

    @property
    def year(self) -> int:
        """The local calendar year of ``now`` (the default of yearly reports)."""
        return self.now.astimezone(self.tz).year


def get_request_context(
    session: SessionDep, caller: CallerDep, clock: ClockDep, settings: SettingsDep
) -> RequestContext:
    return RequestContext(session=session, caller=caller, now=clock(), settings=settings)


# scope="function" like the session it holds (see SessionDep).
RequestDep = Annotated[RequestContext, Depends(get_request_context, scope="function")]


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def open_request_context(
    request: Request, credentials: HTTPAuthorizationCredentials | None, *, reads_only: bool
) -> Iterator[RequestContext]:
    """The :class:`RequestContext` of :data:`RequestDep`, for a route that decides per request
    whether it only reads (a JSON ledger) or also writes (a file registered for verification).
    ``reads_only``: on SQLite the unit of work neither waits for nor blocks uploads
    (``server.db.read_only``); a write in it fails. Checking the token writes nothing."""
    engine = request.app.state.engine
    with unit_of_work(read_only(engine) if reads_only else engine) as session:
        caller = get_caller(session, get_keyring(request), credentials)
        yield RequestContext(
            session=session, caller=caller, now=get_clock(request)(), settings=get_settings(request)
        )


def get_read_request_context(request: Request, credentials: BearerDep) -> Iterator[RequestContext]:
    yield from open_request_context(request, credentials, reads_only=True)


ReadRequestDep = Annotated[RequestContext, Depends(get_read_request_context, scope="function")]
"""A :data:`RequestDep` for routes that only read."""
