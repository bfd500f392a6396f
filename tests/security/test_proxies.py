"""Trusted proxies: ``X-Forwarded-For`` names the client only when the direct peer is one of
``ECARD_TRUSTED_PROXIES`` (default: none), for the login lockout and every per-source limit.

Before: the login limiter keyed on whatever uvicorn made of ``X-Forwarded-For`` from any local
peer, so a client on the host (or passing through a proxy that forwards the header as sent)
could pick a fresh address per attempt and never be locked out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.messages import EnrollRequest
from server.app import create_app
from server.config import ServerSettings
from server.db import unit_of_work
from server.proxies import resolve_client
from server.records.users import LoginAttempt
from server.users.service import ADDRESS_FAILURE_LIMIT
from tests.server import conftest as server_fixtures
from tests.server.conftest import TEST_SECRET, FakeClock
from tests.server.signing import KioskKeys

# The server suite's fixtures, on SQLite and PostgreSQL: a migrated database and a fake clock.
database_url = server_fixtures.database_url
settings = server_fixtures.settings
engine = server_fixtures.engine
clock = server_fixtures.clock

PROXY = "10.0.0.5"
CLIENT = "198.51.100.7"
OTHER_CLIENT = "198.51.100.8"
TRUSTED = [ip_network("10.0.0.0/24"), ip_network("2001:db8::/32")]


class TestResolveClient:
    def test_untrusted_peer_is_the_client_whatever_it_claims(self) -> None:
        assert resolve_client("203.0.113.9", [CLIENT], TRUSTED) == "203.0.113.9"
        assert resolve_client("127.0.0.1", [CLIENT], []) == "127.0.0.1"  # default: nobody trusted

    def test_trusted_peer_passes_on_the_address_it_saw(self) -> None:
        assert resolve_client(PROXY, [CLIENT], TRUSTED) == CLIENT

    def test_walks_from_the_right_past_trusted_hops_only(self) -> None:
        """The client may send its own header: what it typed sits left of the first untrusted hop."""
        assert resolve_client(PROXY, ["1.2.3.4, 203.0.113.9, 10.0.0.7"], TRUSTED) == "203.0.113.9"
        assert resolve_client(PROXY, ["1.2.3.4", "203.0.113.9, 10.0.0.7"], TRUSTED) == "203.0.113.9"

    def test_garbage_hop_stops_the_walk(self) -> None:
        assert resolve_client(PROXY, ["203.0.113.9, not-an-ip"], TRUSTED) == PROXY
        assert resolve_client(PROXY, ["unknown, 10.0.0.7"], TRUSTED) == "10.0.0.7"

    def test_no_header_from_a_trusted_peer_is_the_peer(self) -> None:
        assert resolve_client(PROXY, [], TRUSTED) == PROXY

    def test_ipv6_and_ports(self) -> None:
        assert resolve_client("2001:db8::1", ["[2001:db9::9]:443, 2001:db8::2"], TRUSTED) == "2001:db9::9"
        assert resolve_client("::ffff:10.0.0.5", ["203.0.113.9:5123"], TRUSTED) == "203.0.113.9"


class TestSettings:
    def test_addresses_and_networks_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("ECARD_TRUSTED_PROXIES", '["127.0.0.1", "10.1.2.3/8", "::1"]')
        loaded = ServerSettings(data_dir=tmp_path)
        assert [str(network) for network in loaded.trusted_proxies] == [
            "127.0.0.1/32",
            "10.0.0.0/8",
            "::1/128",
        ]

    def test_default_trusts_nobody(self, tmp_path: Path) -> None:
        assert ServerSettings(data_dir=tmp_path).trusted_proxies == []

    def test_not_an_address_is_refused(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("ECARD_TRUSTED_PROXIES", '["nginx"]')
        with pytest.raises(ValidationError, match="not an IP address"):
            ServerSettings(data_dir=tmp_path)

    def test_uvicorn_believes_forwarded_headers_only_from_the_trusted_proxies(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """uvicorn's own default believes X-Forwarded-* from 127.0.0.1; ``ecard server run`` does not."""
        import server.serve

        seen: list[uvicorn.Config] = []

        class NotServing:
            started = False
            should_exit = True

            def __init__(self, config: uvicorn.Config) -> None:
                seen.append(config)

            def run(self) -> None:
                pass

        monkeypatch.setattr(uvicorn, "Server", NotServing)
        plain = ServerSettings(data_dir=tmp_path, secret_key=SecretStr(TEST_SECRET))
        server.serve.serve(plain, host="127.0.0.1", port=0)
        behind_nginx = plain.model_copy(update={"trusted_proxies": [ip_network("10.0.0.0/8")]})
        server.serve.serve(behind_nginx, host="127.0.0.1", port=0)
        assert seen[0].proxy_headers is False
        assert (seen[1].proxy_headers, seen[1].forwarded_allow_ips) == (True, ["10.0.0.0/8"])


@pytest.fixture
def through(tmp_path: Path, database_url: str, engine: Engine, clock: FakeClock) -> Iterator[Any]:
    """``through(peer, trusted=[...])``: a client whose requests arrive from *peer*."""
    clients: list[TestClient] = []

    def start(peer: str, *, trusted: list[str]) -> TestClient:
        app_settings = ServerSettings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            secret_key=SecretStr(TEST_SECRET),
            trusted_proxies=trusted,
        )
        client = TestClient(create_app(app_settings, clock=clock), client=(peer, 41234))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def try_login(client: TestClient, forwarded_for: str) -> int:
    page = client.get("/web/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None
    response = client.post(
        "/web/login",
        data={"username": "nobody", "password": "wrong", "csrf_token": match.group(1)},
        headers={"X-Forwarded-For": forwarded_for},
        follow_redirects=False,
    )
    status: int = response.status_code
    return status


def recorded_addresses(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(LoginAttempt.ip).order_by(col(LoginAttempt.id))).all())


def lock_out(engine: Engine, address: str, now: datetime) -> None:
    """The failures that lock an address out, as earlier attempts would have left them."""
    with unit_of_work(engine) as session:
        session.add_all(
            LoginAttempt(at=now, user_id=None, ip=address, succeeded=False)
            for _ in range(ADDRESS_FAILURE_LIMIT)
        )


class TestLoginLockout:
    def test_forwarded_for_is_ignored_from_an_untrusted_peer(
        self, through: Any, engine: Engine, clock: FakeClock
    ) -> None:
        """Default settings: the attempt is recorded under the peer, and a locked-out peer stays
        locked out whatever address it claims."""
        client = through(PROXY, trusted=[])
        assert try_login(client, CLIENT) == 401
        assert recorded_addresses(engine) == [PROXY]
        lock_out(engine, PROXY, clock.now)
        assert try_login(client, OTHER_CLIENT) == 429
        assert try_login(client, "203.0.113.99") == 429

    def test_forwarded_for_is_honoured_from_a_trusted_proxy(
        self, through: Any, engine: Engine, clock: FakeClock
    ) -> None:
        """Behind nginx: each client is locked out on its own, the proxy's address never is."""
        client = through(PROXY, trusted=["10.0.0.0/24"])
        assert try_login(client, CLIENT) == 401
        assert recorded_addresses(engine) == [CLIENT]
        lock_out(engine, CLIENT, clock.now)
        assert try_login(client, CLIENT) == 429
        assert try_login(client, f"{CLIENT}, {OTHER_CLIENT}") == 401  # the proxy appended OTHER_CLIENT
        assert try_login(client, OTHER_CLIENT) == 401

    def test_a_client_cannot_pick_its_address_through_the_proxy(
        self, through: Any, engine: Engine, clock: FakeClock
    ) -> None:
        """A header the client sent itself sits left of what the proxy appended: ignored."""
        client = through(PROXY, trusted=["10.0.0.0/24"])
        lock_out(engine, CLIENT, clock.now)
        assert try_login(client, f"203.0.113.50, {CLIENT}") == 429


def enroll_from(client: TestClient, source: str) -> int:
    """An enrollment guess that claims to come from *source*; its status code."""
    body = EnrollRequest(code="ZZZZ-ZZZZ-ZZZZ", public_key=KioskKeys().public_b64).model_dump(mode="json")
    response = client.post("/api/v1/kiosks/enroll", json=body, headers={"X-Forwarded-For": source})
    status: int = response.status_code
    return status


class TestPerSourceLimits:
    def test_enrollment_limit_is_per_forwarded_client(self, through: Any) -> None:
        """Through a trusted proxy each client has its own enrollment budget."""
        client = through(PROXY, trusted=[PROXY])
        assert [enroll_from(client, CLIENT) for _ in range(10)] == [400] * 10
        assert enroll_from(client, CLIENT) == 429
        assert enroll_from(client, OTHER_CLIENT) == 400

    def test_enrollment_limit_ignores_forwarded_for_from_an_untrusted_peer(self, through: Any) -> None:
        """Without trusted proxies, claiming a new address per guess buys nothing."""
        client = through(PROXY, trusted=[])
        assert [enroll_from(client, f"198.51.100.{n}") for n in range(10)] == [400] * 10
        assert enroll_from(client, "198.51.100.77") == 429
