"""Server fixtures: a fresh, migrated database per test on SQLite and on PostgreSQL.

Tests that take ``database_url`` (or anything built on it) run twice: ``[sqlite]`` on a file in
the test's tmp dir, ``[pg]`` on a fresh PostgreSQL database of their own.

A test that takes ``engine`` gets a database already at head, copied from a template migrated
once per session (running every migration per test was most of the suite's database cost);
``engine`` still calls ``migrate``, which then finds nothing to do. A test that takes only
``database_url`` gets an EMPTY database, because it migrates through the code under test
(``ecard server run``, ``ecard server migrate``, the CLI).
"""

from __future__ import annotations

import shutil
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
    """Migrated when the test also takes ``engine`` (see the module docstring), else empty."""
    migrated = "engine" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "ecard.sqlite"
        if migrated:
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_migrated_database_url" if migrated else "pg_database_url")
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; tests get copies of it."""
    path = tmp_path_factory.mktemp("sqlite-template") / "ecard.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate(engine)
    finally:
        engine.dispose()  # the last connection checkpoints the WAL into the file we copy
    return path


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> ServerSettings:
    # The scheduled jobs (a sweep at start-up) would race the tests' own writes; their own tests
    # turn them on (tests/server/supervision/test_jobs.py).
    return ServerSettings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=SecretStr(TEST_SECRET),
        scheduler=False,
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
