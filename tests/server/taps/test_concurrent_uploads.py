"""No 5xx under load (#11 item 2): many kiosks uploading at once to a real HTTP server, on SQLite
and PostgreSQL, each tap its own request. Every request is answered 200 and every tap accepted;
none waits for long. (Before: SQLite answered "database is locked", and a full worker-thread pool
waiting for SQLite's one writer could stop the server altogether.)"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine

from ecard_cli.stack import free_port
from server.app import create_app
from server.config import ServerSettings
from server.keyring import Keyring
from tests.server.conftest import FakeClock
from tests.server.factories import EVENT_START, LI_CARD, ZHANG_CARD, World

UPLOADS = 300  # more at once than the server has worker threads or pooled connections


@pytest.fixture
def server_url(settings: ServerSettings, engine: Engine, clock: FakeClock) -> Iterator[str]:
    clock.now = EVENT_START + timedelta(minutes=30)
    limits = {"taps_per_source": 0, "taps_per_kiosk": 0}
    app = create_app(
        settings.model_copy(update={"rate_limits": settings.rate_limits.model_copy(update=limits)}),
        clock=clock,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def _upload_all(url: str, items: list[dict[str, object]]) -> list[tuple[int, str, float]]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(item: dict[str, object]) -> tuple[int, str, float]:
            started = time.monotonic()
            response = await client.post("/api/v1/taps", json={"schema_version": 1, "envelopes": [item]})
            status = response.json()["receipts"][0]["status"] if response.status_code == 200 else ""
            return response.status_code, status, time.monotonic() - started

        return await asyncio.gather(*(one(item) for item in items))


def test_many_kiosks_at_once_all_get_answers(server_url: str, world: World, keyring: Keyring) -> None:
    items = [
        world.keys.seal(
            world.payload(ZHANG_CARD if n % 2 else LI_CARD, at=EVENT_START + timedelta(seconds=n))
        ).model_dump(mode="json")
        for n in range(UPLOADS)
    ]

    # A thread of its own: another test's browser driver may leave an event loop in this one.
    with ThreadPoolExecutor(max_workers=1) as own_loop:
        answers = own_loop.submit(asyncio.run, _upload_all(server_url, items)).result()

    assert Counter(code for code, _status, _seconds in answers) == {200: UPLOADS}
    assert Counter(status for _code, status, _seconds in answers) == {"accepted": UPLOADS}
    assert max(seconds for _code, _status, seconds in answers) < 30
