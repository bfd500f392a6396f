"""Server fixtures: a fresh, migrated database per test on SQLite and on PostgreSQL.

Tests that take ``engine`` (or anything built on it) run twice: ``[sqlite]`` on a file in the
test's tmp dir, ``[pg]`` on a fresh PostgreSQL database from ``pg_database_url``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from server.app import create_app
from server.config import ServerSettings
from server.db import make_engine
from server.keyring import Keyring
from server.migrate import migrate
from tests.server.factories import EVENT_START, World, build_world

TEST_SECRET = "test-only-secret-3f9c2b7e1a6d4c8b9e0f1a2b3c4d5e6f"


class FakeClock:
    """A settable clock for ``create_app(clock=...)`` and services' ``now``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ecard.sqlite'}"
    url: str = request.getfixturevalue("pg_database_url")
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> ServerSettings:
    return ServerSettings(
        data_dir=tmp_path / "data", database_url=database_url, secret_key=SecretStr(TEST_SECRET)
    )


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(TEST_SECRET.encode())


@pytest.fixture
def engine(settings: ServerSettings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(EVENT_START - timedelta(hours=1))


@pytest.fixture
def world(engine: Engine, keyring: Keyring, clock: FakeClock) -> World:
    return build_world(engine, keyring, now=clock.now)


@pytest.fixture
def client(settings: ServerSettings, engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    """The real app over HTTP in-process (``engine`` makes sure the database is migrated)."""
    with TestClient(create_app(settings, clock=clock)) as test_client:
        yield test_client
