"""Serving the API with uvicorn: migrate, start, and say when the socket is listening."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from server.app import create_app
from server.config import ServerSettings, load_secret_key
from server.db import describe_url, make_engine
from server.migrate import migrate

log = logging.getLogger("server")

GRACEFUL_SHUTDOWN_SECONDS = 3


def serve(settings: ServerSettings, *, host: str, port: int, log_level: str = "info") -> None:
    """Migrate the database, then serve until interrupted (blocks).

    Raises:
        ConfigError: the server secret cannot be read or created.
    """
    load_secret_key(settings)  # fail before binding a port when the secret is unusable
    engine = make_engine(settings.database_url)
    try:
        revision = migrate(engine)
    finally:
        engine.dispose()
    log.info("database %s at revision %s", describe_url(settings.database_url), revision)

    config = uvicorn.Config(
        create_app(settings),
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
    server = uvicorn.Server(config)
    threading.Thread(
        target=_announce_when_listening, args=(server,), name="ready-announcer", daemon=True
    ).start()
    server.run()


def _announce_when_listening(server: uvicorn.Server) -> None:
    # uvicorn has no "listening" hook, and the app's lifespan runs before the socket is bound.
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    for listener in server.servers:
        for sock in listener.sockets:
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            log.info("ecard server ready on http://%s:%d", shown, port)
