"""Cross-package fixtures, and the rule that under CI=true a skipped test fails the run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import psycopg

PG_ADMIN_URL = os.environ.get(
    "ECARD_TEST_PG_URL", "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres"
)


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if _under_ci() and skipped and exitstatus == 0:
        if reporter:
            reporter.write_line(f"CI=true: {skipped} skipped test(s) count as failures", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _pg_reachable() -> str | None:
    """None when the server answers; otherwise why not."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg missing: {exc}"
    try:
        with psycopg.connect(_libpq_url(PG_ADMIN_URL), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"


def _libpq_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin URL of the test PostgreSQL server (skips — a failure under CI — when it is down)."""
    problem = _pg_reachable()
    if problem:
        pytest.skip(problem)
    return PG_ADMIN_URL


@pytest.fixture
def pg_database_url(pg_server: str) -> Iterator[str]:
    """A fresh, EMPTY PostgreSQL database for one test, dropped afterwards.

    For tests that migrate it themselves (``ecard server run``/``migrate``, the migration tests);
    a test that wants the schema already there takes ``pg_migrated_database_url``.
    """
    url, drop = create_pg_database(pg_server, prefix="ecard_test_")
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def pg_migrated_database_url(pg_server: str, pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, already at the head revision, dropped afterwards.

    Cloned from the session's template (milliseconds) instead of running every migration per test.
    """
    url, drop = create_pg_database(pg_server, prefix="ecard_test_", template=pg_template)
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> str:
    """The name of a template database migrated to head, built once per migration set.

    Named after the head revision and a hash of the migration files, so editing a migration makes
    a new one (and the old ones are dropped). Built under an advisory lock so two pytest
    processes never build or drop templates at the same time.
    """
    import psycopg

    name = _template_name()
    admin = _libpq_url(pg_server)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (TEMPLATE_LOCK_KEY,))
        try:
            existing = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (TEMPLATE_PREFIX,)
                )
            ]
            for stale in existing:
                if stale != name:  # an older migration set, or a build that died half-way
                    conn.execute(f'ALTER DATABASE "{stale}" IS_TEMPLATE false')
                    conn.execute(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)')
            if name not in existing:
                _build_template(conn, pg_server, name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (TEMPLATE_LOCK_KEY,))
    return name


# Any fixed 64-bit number; it only has to be the same in every pytest process.
TEMPLATE_LOCK_KEY = 0x65CA_2D7E_5700
TEMPLATE_PREFIX = "ecard_tpl_"


def _template_name() -> str:
    """``ecard_tpl_<head revision>_<hash of the migration files>``, within PostgreSQL's 63 bytes."""
    import hashlib
    import re

    from server.migrate import MIGRATIONS_DIR, head_revision

    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS_DIR.rglob("*.py")):
        digest.update(path.relative_to(MIGRATIONS_DIR).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    revision = re.sub(r"[^a-z0-9_]", "_", (head_revision() or "base").lower())[:32]
    return f"{TEMPLATE_PREFIX}{revision}_{digest.hexdigest()[:12]}"


def _build_template(conn: psycopg.Connection[tuple[object, ...]], pg_server: str, name: str) -> None:
    """Migrate a scratch database, then rename it into place, so a half-built one never has ``name``."""
    from server.db import make_engine
    from server.migrate import migrate

    building = f"{TEMPLATE_PREFIX}build_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE DATABASE "{building}"')
    try:
        engine = make_engine(f"{pg_server.rpartition('/')[0]}/{building}")
        try:
            migrate(engine)
        finally:
            engine.dispose()  # a template cannot be copied (or renamed) while anyone is connected
        conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
    except BaseException:
        conn.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
        raise
    # Nobody may connect to it (a connection would block every clone), and only we may drop it.
    conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')


def create_pg_database(
    pg_server: str, *, prefix: str, template: str | None = None
) -> tuple[str, Callable[[], None]]:
    """Create a uniquely named database (a copy of ``template`` if given); returns its URL and a dropper."""
    import psycopg

    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = _libpq_url(pg_server)
    source = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{source}')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{pg_server.rpartition('/')[0]}/{name}", drop
