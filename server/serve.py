"""Serving the API with uvicorn: migrate, start one or several worker processes, and say when the
socket answers.

With ``--workers N`` (PostgreSQL only) uvicorn binds the socket in this process and spawns N
workers that share it. A spawned worker builds its app from scratch through
:func:`app_from_environment`, so this process first exports the settings it resolved (``--db``
included) as ``ECARD_*`` variables: every worker then runs with exactly the parent's settings.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine, text
from uvicorn.supervisors import Multiprocess

from server.app import create_app
from server.config import ConfigError, ServerSettings, load_secret_key
from server.db import describe_url, make_engine
from server.jobs import job_lock_key
from server.live import is_postgresql
from server.migrate import migrate

log = logging.getLogger("server")

GRACEFUL_SHUTDOWN_SECONDS = 3
APP_FACTORY = "server.serve:app_from_environment"
# Not a setting (ServerSettings ignores it): how the parent passes --log-level to its workers.
WORKER_LOG_LEVEL_ENV = "ECARD_SERVE_WORKER_LOG_LEVEL"
_HEALTH_PATH = "/api/v1/health"


def configure_logging(level: str) -> None:
    """One line per record on stderr (``ecard server run`` and each worker process)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if level.lower() != "debug":
        logging.getLogger("alembic").setLevel(logging.WARNING)  # per-step chatter; we log the outcome


def serve(
    settings: ServerSettings, *, host: str, port: int, log_level: str = "info", workers: int = 1
) -> None:
    """Migrate the database, then serve until interrupted (blocks).

    Raises:
        ConfigError: the server secret cannot be read or created, or ``workers`` > 1 on SQLite.
    """
    if workers > 1 and not is_postgresql(settings.database_url):
        raise ConfigError(
            f"--workers {workers} needs PostgreSQL (ECARD_DATABASE_URL=postgresql+psycopg://…). "
            "On SQLite the server is one process by design: the database is one file that one "
            "writer at a time may change, and the live board and the scheduled purge run inside "
            "that process. Run one process, or move to PostgreSQL."
        )
    load_secret_key(settings)  # fail before binding a port when the secret is unusable
    # Once, here: N workers migrating at the same time would race each other.
    engine = make_engine(settings.database_url)
    try:
        with _sole_migrator(engine):
            revision = migrate(engine)
    finally:
        engine.dispose()
    log.info("database %s at revision %s", describe_url(settings.database_url), revision)
    if workers > 1:
        _serve_workers(settings, host=host, port=port, log_level=log_level, workers=workers)
        return

    server = uvicorn.Server(_uvicorn_config(settings, create_app(settings), host, port, log_level))
    threading.Thread(
        target=_announce_when_listening, args=(server,), name="ready-announcer", daemon=True
    ).start()
    server.run()


@contextmanager
def _sole_migrator(engine: Engine) -> Iterator[None]:
    """On PostgreSQL, wait until no other ``ecard server run`` (another host, a restart racing
    this one) is migrating the database."""
    if engine.dialect.name != "postgresql":
        yield  # one process by design; SQLite's own write lock serialises any other writer
        return
    key = {"key": job_lock_key("migrate")}
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
        connection.commit()  # a session-level lock outlives the transaction; the snapshot may go
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
            connection.commit()


def app_from_environment() -> FastAPI:
    """The app of one worker process, from ``ECARD_*`` as the parent exported them (uvicorn's
    factory ``server.serve:app_from_environment``)."""
    configure_logging(os.environ.get(WORKER_LOG_LEVEL_ENV, "info"))
    return create_app(ServerSettings())


def settings_environment(settings: ServerSettings) -> dict[str, str | None]:
    """The ``ECARD_*`` variables that build ``settings`` again (None: the variable must be unset)."""
    dumped = settings.model_dump(mode="json")
    env: dict[str, str | None] = {}
    for name in ServerSettings.model_fields:
        value = getattr(settings, name)
        key = f"ECARD_{name.upper()}"
        if value is None:
            env[key] = None
        elif isinstance(value, SecretStr):
            env[key] = value.get_secret_value()
        elif isinstance(dumped[name], str):
            env[key] = dumped[name]
        else:
            env[key] = json.dumps(dumped[name])
    return env


def _serve_workers(settings: ServerSettings, *, host: str, port: int, log_level: str, workers: int) -> None:
    # Spawned workers inherit this environment (and none of this process's objects).
    for key, value in settings_environment(settings).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    os.environ[WORKER_LOG_LEVEL_ENV] = log_level
    config = _uvicorn_config(settings, APP_FACTORY, host, port, log_level, workers=workers)
    sock = config.bind_socket()
    threading.Thread(
        target=_announce_when_answering, args=(sock,), name="ready-announcer", daemon=True
    ).start()
    log.info("starting %d worker processes", workers)
    Multiprocess(config, sockets=[sock]).run()


def _uvicorn_config(
    settings: ServerSettings, app: FastAPI | str, host: str, port: int, log_level: str, *, workers: int = 1
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
        workers=workers,
        host=host,
        port=port,
        log_config=None,
        log_level=log_level,
        # Open live-board streams (SSE) never finish on their own; without a bound, a stop would
        # wait for every browser to go away. Boards reconnect and re-read, so cutting them is safe.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        # uvicorn believes X-Forwarded-* from 127.0.0.1 by default: anyone on the host (or a proxy
        # passing the client's own header through) could pick their address and scheme. Only the
        # configured proxies are believed (server.proxies does the same for the client address).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=[str(network) for network in settings.trusted_proxies] or None,
    )


def _announce_when_listening(server: uvicorn.Server) -> None:
    # uvicorn has no "listening" hook, and the app's lifespan runs before the socket is bound.
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    for listener in server.servers:
        for sock in listener.sockets:
            _announce(sock.getsockname())


def _announce_when_answering(sock: socket.socket) -> None:
    # The parent binds the socket before any worker has started its app: ready means a worker
    # answered on it.
    address = sock.getsockname()
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address[0], address[0])
    while True:
        connection = http.client.HTTPConnection(host, address[1], timeout=2)
        try:
            connection.request("GET", _HEALTH_PATH)
            if connection.getresponse().status == 200:
                break
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    _announce(address)


def _announce(address: tuple[str, int] | tuple[str, int, int, int]) -> None:
    host, port = address[:2]
    shown = f"[{host}]" if ":" in host else host
    log.info("ecard server ready on http://%s:%d", shown, port)
