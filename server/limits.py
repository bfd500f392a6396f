"""Request size and rate limits: what an unauthenticated (or over-eager) caller may cost the server.

* :class:`BodySizeLimit` is a pure ASGI middleware. A body above ``ECARD_MAX_BODY_BYTES`` (more on
  the few routes that take files) is answered 413 ``payload_too_large`` before any of it is parsed:
  at once when ``Content-Length`` says so, and while streaming otherwise, so a missing or lying
  length (a chunked body) stops at the limit too.
* :class:`RateLimiter` keeps token buckets keyed by (limit, key) in bounded memory: at most
  ``max_keys`` buckets, the least recently used dropped first. Time is passed in. A refusal is
  :class:`server.errors.RateLimited` (429 ``rate_limited`` with ``Retry-After``).
* The FastAPI dependencies below (:data:`EnrollLimit`, :data:`TapsLimit`, ...) charge the
  request's source address (:func:`server.proxies.client_address`). Per-caller budgets are charged
  in the route once it knows the caller (:func:`enforce_limit`, :func:`limit_card_lookup`).
  Per-kiosk budgets are checked before the envelopes' signatures are (:func:`check_limit`) and
  charged only for what the kiosk's key signed (:func:`charge_limit`), so nobody can spend a
  kiosk's budget by sending in its name.

Where they apply: enrollment and key rotation (one budget), heartbeats and tap upload
(``server/kiosks/routes.py``, ``server/taps/routes.py``), transfer filing
(``server/transfers/routes.py`` and the web page), and card binding on the web (a card number
that is already bound is a lookup). The login lockout is the users service's own (persistent,
per account and per :func:`client_address`).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.caller import Caller
from server.clock import Clock
from server.config import RateLimits
from server.errors import PayloadTooLarge, RateLimited
from server.proxies import client_address

MIB = 1024 * 1024


class Limit(StrEnum):
    """A rate limit's name; :class:`server.config.RateLimits` holds its requests per minute."""

    ENROLL_PER_SOURCE = "enroll_per_source"
    TAPS_PER_SOURCE = "taps_per_source"
    TAPS_PER_KIOSK = "taps_per_kiosk"
    HEARTBEATS_PER_SOURCE = "heartbeats_per_source"
    HEARTBEATS_PER_KIOSK = "heartbeats_per_kiosk"
    TRANSFERS_PER_SOURCE = "transfers_per_source"
    TRANSFERS_PER_CALLER = "transfers_per_caller"
    LOOKUPS_PER_SOURCE = "lookups_per_source"
    LOOKUPS_PER_CALLER = "lookups_per_caller"


# ---------------------------------------------------------------------------------------------
# Rate limits


@dataclass
class _Bucket:
    tokens: float
    at: datetime


class RateLimiter:
    """Token buckets, one per (limit, key): ``per_minute`` requests a minute, bursts up to the same.

    A limit of 0 is no limit. Memory is bounded by *max_keys* buckets; when full, the bucket used
    least recently is dropped (an idle key loses nothing: its bucket would have refilled anyway).
    Thread-safe: sync routes run in a thread pool.
    """

    def __init__(self, rates: Mapping[str, int], *, max_keys: int) -> None:
        self._rates = dict(rates)
        self._max_keys = max_keys
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, limit: str, key: str, *, now: datetime) -> int | None:
        """Seconds to wait before *key* may make a request under *limit*, or None; charges nothing."""
        with self._lock:
            if (limit, key) not in self._buckets:
                return None  # a full bucket; not created, so claimed keys cannot evict real ones
            return self._wait(limit, key, now=now, cost=0.0)

    def hit(self, limit: str, key: str, *, now: datetime) -> int | None:
        """Charge one request to *key*; the seconds to wait instead when its budget is spent."""
        with self._lock:
            return self._wait(limit, key, now=now, cost=1.0)

    def charge(self, limit: str, key: str, *, now: datetime) -> None:
        """Charge one request that has already been served (the budget may go below zero)."""
        with self._lock:
            self._wait(limit, key, now=now, cost=1.0, force=True)

    def _wait(self, limit: str, key: str, *, now: datetime, cost: float, force: bool = False) -> int | None:
        per_minute = self._rates.get(limit, 0)
        if per_minute <= 0:
            return None
        refill = per_minute / 60.0  # tokens a second
        bucket = self._bucket(limit, key, now=now, capacity=float(per_minute))
        elapsed = max(0.0, (now - bucket.at).total_seconds())  # a clock set back refills nothing
        bucket.tokens = min(float(per_minute), bucket.tokens + elapsed * refill)
        bucket.at = max(bucket.at, now)
        needed = max(cost, 1.0)
        if bucket.tokens >= needed or force:
            bucket.tokens -= cost
            return None
        return max(1, int(-(-(needed - bucket.tokens) // refill)))  # ceil, in whole seconds

    def _bucket(self, limit: str, key: str, *, now: datetime, capacity: float) -> _Bucket:
        slot = (limit, key)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = _Bucket(tokens=capacity, at=now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(slot)
        return bucket


def rate_limiter_for(limits: RateLimits) -> RateLimiter:
    """The app's limiter, from ``ECARD_RATE_LIMITS``."""
    rates = {name: int(value) for name, value in limits.model_dump().items() if name in set(Limit)}
    return RateLimiter(rates, max_keys=limits.max_keys)


def _limiter_and_now(request: Request) -> tuple[RateLimiter, datetime]:
    limiter: RateLimiter = request.app.state.rate_limiter
    clock: Clock = request.app.state.clock
    return limiter, clock()


def enforce_limit(request: Request, limit: Limit, key: str) -> None:
    """Charge one request to *key* under *limit*, or raise RateLimited when its budget is spent."""
    limiter, now = _limiter_and_now(request)
    wait = limiter.hit(limit, key, now=now)
    if wait is not None:
        raise RateLimited(wait)


def check_limit(request: Request, limit: Limit, key: str) -> None:
    """Raise RateLimited if *key* has no budget left under *limit*; charges nothing.

    For keys the request only claims (a kiosk's ``kid`` before its signature is checked): check
    first, and :func:`charge_limit` once the claim is proven, so nobody can spend a kiosk's budget
    by sending envelopes in its name.
    """
    limiter, now = _limiter_and_now(request)
    wait = limiter.check(limit, key, now=now)
    if wait is not None:
        raise RateLimited(wait)


def charge_limit(request: Request, limit: Limit, key: str) -> None:
    """Charge one served request to *key* under *limit* (see :func:`check_limit`)."""
    limiter, now = _limiter_and_now(request)
    limiter.charge(limit, key, now=now)


def _per_source(limit: Limit) -> Callable[[Request], Awaitable[None]]:
    # Async: the limiter is in memory, so checking it takes no worker thread (a sync dependency
    # would cost every request a trip through the thread pool).
    async def dependency(request: Request) -> None:
        enforce_limit(request, limit, client_address(request))

    dependency.__name__ = f"limit_{limit.value}"
    return dependency


def limit_transfer_filing(request: Request, caller: Caller) -> None:
    """Charge a 组织关系转入 filing to its source address and to its caller (token or user).

    Call it first thing in every route that files a transfer (API and web): filing looks a card
    number up, so this also bounds how fast anyone can probe card numbers that way.
    """
    enforce_limit(request, Limit.TRANSFERS_PER_SOURCE, client_address(request))
    enforce_limit(request, Limit.TRANSFERS_PER_CALLER, caller.actor.ref)


def limit_card_lookup(request: Request, caller: Caller) -> None:
    """Charge a lookup by card number (or anything that says whether a card is bound) to its
    source address and to its caller."""
    enforce_limit(request, Limit.LOOKUPS_PER_SOURCE, client_address(request))
    enforce_limit(request, Limit.LOOKUPS_PER_CALLER, caller.actor.ref)


# Route dependencies: add ``_: EnrollLimit`` to a route's parameters (or put the Depends in the
# route decorator's ``dependencies=[...]``). Each charges the request's source address.
EnrollLimit = Annotated[None, Depends(_per_source(Limit.ENROLL_PER_SOURCE))]
TapsLimit = Annotated[None, Depends(_per_source(Limit.TAPS_PER_SOURCE))]
HeartbeatsLimit = Annotated[None, Depends(_per_source(Limit.HEARTBEATS_PER_SOURCE))]
TransfersLimit = Annotated[None, Depends(_per_source(Limit.TRANSFERS_PER_SOURCE))]
LookupsLimit = Annotated[None, Depends(_per_source(Limit.LOOKUPS_PER_SOURCE))]


# ---------------------------------------------------------------------------------------------
# Body size


class BodySizeLimit:
    """Refuse request bodies above a size with 413, before the application reads them.

    *allowances* maps exact paths to a larger limit (file uploads). The check is on the declared
    ``Content-Length`` first, then on the bytes actually received, so a chunked body or a length
    that lies is cut off at the limit: the refusal is sent, the application is told the client
    went away, and whatever it answers after that is dropped.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, allowances: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.allowances = dict(allowances or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.allowances.get(str(scope.get("path", "")).rstrip("/") or "/", self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and (declared < 0 or declared > limit):
            await _refuse(send, limit)
            return

        received = 0
        cut = False  # the body went over the limit: the application sees a disconnect
        refused = False  # and we answered 413 (unless the application had started its answer)
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, cut, refused
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    cut = True
                    if not response_started:
                        refused = True
                        await _refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return  # our 413 already went out; drop the application's answer to the "disconnect"
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # Code that reads the body outside FastAPI's parser may raise ClientDisconnect on
            # the cut; the 413 is already out, so that is the end of it, not a server error.
            if not refused:
                raise


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1  # unreadable: refuse rather than guess
    return None


async def _refuse(send: Send, limit: int) -> None:
    error = PayloadTooLarge(f"请求内容过大，上限为{_size(limit)}")
    body = json.dumps({"error": error.code, "detail": error.message}, ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.http_status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _size(limit: int) -> str:
    if limit >= MIB and limit % MIB == 0:
        return f" {limit // MIB} MiB"
    if limit >= 1024 and limit % 1024 == 0:
        return f" {limit // 1024} KiB"
    return f" {limit} 字节"
