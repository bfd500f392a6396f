"""An async load generator that behaves like a fleet of kiosks (``benchmarks/bench.py`` drives it).

Each :class:`Kiosk` enrols through the real flow (``POST /api/v1/kiosks/enroll`` with a one-time
code and its own Ed25519 public key), then signs taps exactly as the agent does: a
:class:`~schemas.messages.TapPayload` from a PC/SC reader that read the card's T-Union
application and put the kiosk's challenge to it (about 440 bytes), its canonical bytes signed,
in a :class:`~schemas.messages.SignedEnvelope`, with seq increasing per kiosk. Batches are built
and signed before any clock starts, so the clocks measure the server, not the signing.

Every kiosk sends its own batches one after another (a kiosk waits for its receipt before the
next upload, as the agent's uploader does); kiosks run concurrently. A 5xx answer is counted and
the batch sent again after a short pause (a kiosk keeps its taps and retries); a transport error
likewise. Receipt statuses are counted per status and rejection code.

The uploads go over :class:`KioskConnection`, a few lines of HTTP/1.1 on an asyncio stream, not
httpx: at 50 kiosks sending one-tap batches httpx spent about 14 ms of CPU per request, so this
single process used a whole core and became the bottleneck it was meant to measure (and its
event loop's queueing showed up as server latency). The kiosks' own requests are this simple
(one keep-alive connection, a JSON body with a length, a JSON answer with a length); anything else
in an answer is a transport error. Enrolment and the attendance polls, a few requests a run,
still use httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from schemas.messages import (
    CardApplication,
    CardAuth,
    CardFacts,
    EnrollRequest,
    EnrollResponse,
    ReaderBackend,
    ReaderInfo,
    SignedEnvelope,
    TapBatch,
    TapPayload,
    b64url_encode,
)

READER_NAME = "ACS ACR1252 1S CL Reader PICC 00 00"
KIOSK_TZ = timezone(timedelta(hours=8))
RETRY_PAUSE_S = 0.05
MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class Card:
    member_id: int
    card_no: str
    uid: str


@dataclass
class Kiosk:
    """One enrolled kiosk: its key, identity and next seq."""

    kiosk_id: str
    kid: str
    key: Ed25519PrivateKey
    event_id: int
    next_seq: int = 1

    def sign_tap(self, card: Card, *, at: datetime) -> SignedEnvelope:
        payload = TapPayload(
            kiosk_id=self.kiosk_id,
            seq=self.next_seq,
            occurred_at=at.astimezone(KIOSK_TZ),
            card=CardFacts(
                uid=card.uid,
                application=CardApplication.TUNION,
                card_no=card.card_no,
                city_code="3930",
                auth=CardAuth(
                    key_id=1,
                    nonce=os.urandom(16).hex().upper(),
                    status="9000",
                    response=os.urandom(16).hex().upper(),
                ),
            ),
            reader=ReaderInfo(backend=ReaderBackend.PCSC, name=READER_NAME),
        )
        self.next_seq += 1
        data = payload.to_bytes()
        return SignedEnvelope(
            kid=self.kid, payload=b64url_encode(data), sig=b64url_encode(self.key.sign(data))
        )

    def batches(self, cards: Sequence[Card], batch_size: int) -> list[Batch]:
        """Sign one tap per card, now, and cut them into upload bodies of *batch_size* taps."""
        now = datetime.now(UTC)
        envelopes = [self.sign_tap(card, at=now) for card in cards]
        out: list[Batch] = []
        for start in range(0, len(envelopes), batch_size):
            chunk = envelopes[start : start + batch_size]
            body = TapBatch(envelopes=chunk).model_dump_json().encode()
            out.append(Batch(self, body, [c.member_id for c in cards[start : start + batch_size]]))
        return out


@dataclass(frozen=True)
class Batch:
    kiosk: Kiosk
    body: bytes
    member_ids: list[int]


async def enroll(client: httpx.AsyncClient, code: str, event_id: int) -> Kiosk:
    """Enrol one kiosk with a fresh key, as ``ecard agent enroll`` does."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    request = EnrollRequest(code=code, public_key=b64url_encode(public), agent_version="bench")
    answer = await client.post(
        "/api/v1/kiosks/enroll",
        content=request.model_dump_json(),
        headers={"Content-Type": "application/json"},
    )
    answer.raise_for_status()
    enrolled = EnrollResponse.model_validate_json(answer.content)
    return Kiosk(enrolled.kiosk_id, enrolled.kid, key, event_id, next_seq=enrolled.first_seq)


async def enroll_all(base_url: str, kiosks: Sequence[dict[str, Any]]) -> list[Kiosk]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        return [await enroll(client, k["code"], k["event_id"]) for k in kiosks]


@dataclass
class Tally:
    """What the server answered during one run."""

    statuses: Counter[str] = field(default_factory=Counter)
    http: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    unsent: int = 0  # taps never sent: the run's time budget ran out first
    abandoned: int = 0  # taps sent, never answered (5xx, transport error) by the end of the budget
    latencies_s: list[float] = field(default_factory=list)
    sent_at: dict[int, float] = field(default_factory=dict)  # member id → first send (perf_counter)
    acked_at: dict[int, float] = field(default_factory=dict)  # member id → receipt (perf_counter)

    @property
    def http_5xx(self) -> int:
        return sum(n for code, n in self.http.items() if code >= 500)

    @property
    def taps(self) -> int:
        return sum(self.statuses.values())

    @property
    def all_accepted(self) -> bool:
        return self.taps > 0 and self.statuses.get("accepted", 0) == self.taps

    def as_dict(self) -> dict[str, Any]:
        return {
            "statuses": dict(self.statuses),
            "http": {str(code): n for code, n in sorted(self.http.items())},
            "http_5xx": self.http_5xx,
            "transport_errors": self.transport_errors,
            "unsent_after_budget": self.unsent,
            "abandoned_after_budget": self.abandoned,
        }


class TransportError(Exception):
    """The connection failed, or the answer was not the plain HTTP/1.1 a kiosk expects."""


class KioskConnection:
    """One kiosk's keep-alive HTTP/1.1 connection to one server: ``POST`` a JSON body, read the
    status and the ``Content-Length`` body of the answer. Reconnects after any failure."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"plain http:// URLs only, not {base_url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._authority = f"{self._host}:{self._port}".encode()
        self._timeout = timeout
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = (
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (path.encode(), self._authority, len(body))
        ) + body
        try:
            async with asyncio.timeout(self._timeout):
                if self._streams is None:
                    self._streams = await asyncio.open_connection(self._host, self._port)
                reader, writer = self._streams
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status, length, keep_alive = _parse_head(head)
                answer = await reader.readexactly(length)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            await self.close()
            raise TransportError(str(error) or type(error).__name__) from error
        if not keep_alive:
            await self.close()
        return status, answer

    async def close(self) -> None:
        if self._streams is None:
            return
        writer = self._streams[1]
        self._streams = None
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, body length and keep-alive from an HTTP/1.1 answer's head."""
    status_line, *lines = head[:-4].split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    if version != b"HTTP/1.1" or not rest[:3].isdigit():
        raise TransportError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
    length: int | None = None
    keep_alive = True
    for line in lines:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            keep_alive = value != b"close"
        elif name == b"transfer-encoding":
            raise TransportError("a chunked answer: the server's API answers with a length")
    if length is None:
        raise TransportError("an answer without Content-Length")
    return int(rest[:3]), length, keep_alive


async def _send(connection: KioskConnection, batch: Batch, tally: Tally, stop_at: float) -> None:
    """Upload one batch until the server answers it (retrying 5xx and transport errors, but not
    once the run's budget is spent: then the batch is abandoned and counted as such)."""
    started = time.perf_counter()
    for member_id in batch.member_ids:
        tally.sent_at.setdefault(member_id, started)
    for attempt in range(MAX_ATTEMPTS):
        if attempt > 0 and time.perf_counter() >= stop_at:
            break
        try:
            status_code, answer = await connection.post("/api/v1/taps", batch.body)
        except TransportError:
            tally.transport_errors += 1
            await asyncio.sleep(RETRY_PAUSE_S)
            continue
        tally.http[status_code] += 1
        if status_code >= 500 or status_code == 429:
            await asyncio.sleep(RETRY_PAUSE_S)
            continue
        done = time.perf_counter()
        tally.latencies_s.append(done - started)
        if status_code != 200:
            tally.statuses[f"http_{status_code}"] += len(batch.member_ids)
            return
        for receipt in json.loads(answer)["receipts"]:
            status = receipt["status"]
            tally.statuses[status if receipt.get("code") is None else f"{status}:{receipt['code']}"] += 1
        for member_id in batch.member_ids:
            tally.acked_at[member_id] = done
        return
    tally.abandoned += len(batch.member_ids)


async def _kiosk_loop(
    connection: KioskConnection, batches: Sequence[Batch], tally: Tally, stop_at: float
) -> None:
    try:
        for batch in batches:
            if time.perf_counter() >= stop_at:
                tally.unsent += len(batch.member_ids)
                continue
            await _send(connection, batch, tally, stop_at)
    finally:
        await connection.close()


async def run_fleet(
    base_urls: Sequence[str],
    per_kiosk: Sequence[Sequence[Batch]],
    *,
    budget_s: float,
    tally: Tally | None = None,
    timeout: float = 120,
) -> tuple[Tally, float]:
    """Every kiosk sends its batches back to back, all kiosks at once, each on its own connection;
    kiosk i talks to server ``i % len(base_urls)``. No kiosk starts a batch after *budget_s*
    seconds (the rest count as ``unsent``), so a server that collapses cannot hold the bench up for
    ever. Returns the tally and the wall time from first send to last receipt."""
    tally = tally if tally is not None else Tally()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _kiosk_loop(
                KioskConnection(base_urls[i % len(base_urls)], timeout=timeout),
                batches,
                tally,
                started + budget_s,
            )
            for i, batches in enumerate(per_kiosk)
        )
    )
    return tally, time.perf_counter() - started


@dataclass
class Visibility:
    """When each member first showed up in a sign-in sheet, and how many polls that took."""

    seen_at: dict[int, float] = field(default_factory=dict)
    polls: int = 0
    poll_errors: int = 0
    poll_s: list[float] = field(default_factory=list)


async def poll_attendance(
    base_url: str,
    token: str,
    event_ids: Sequence[int],
    acked: Mapping[int, float],
    fleet_done: asyncio.Event,
    visibility: Visibility,
    *,
    gap_s: float,
    grace_s: float,
) -> None:
    """Poll ``GET /api/v1/events/{id}/attendance`` for each event in turn, a pause of *gap_s*
    between rounds, until the fleet is done and every member whose tap was acknowledged is
    present (or *grace_s* after the fleet is done). A member counts as visible when the answer
    listing them arrives."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
        give_up: float | None = None
        while True:
            if fleet_done.is_set():
                if not acked.keys() - visibility.seen_at.keys():
                    return
                give_up = give_up or time.perf_counter() + grace_s
                if time.perf_counter() > give_up:
                    return
            for event_id in event_ids:
                started = time.perf_counter()
                try:
                    answer = await client.get(f"/api/v1/events/{event_id}/attendance")
                except httpx.TransportError:
                    visibility.poll_errors += 1
                    continue
                arrived = time.perf_counter()
                visibility.polls += 1
                visibility.poll_s.append(arrived - started)
                if answer.status_code != 200:
                    visibility.poll_errors += 1
                    continue
                for presence in answer.json()["present"]:
                    visibility.seen_at.setdefault(presence["member_id"], arrived)
            await asyncio.sleep(gap_s)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0–100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
