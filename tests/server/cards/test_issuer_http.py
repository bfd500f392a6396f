"""The HTTP issuer verifier against the simulated issuer on 127.0.0.1, and its wiring into the app."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from firmware_sim.issuer import IssuerServer, SimIssuer, card_key, internal_auth_mac
from schemas.messages import CardAuthAlgorithm, TapBatch
from server.app import create_app
from server.cards.issuer import HttpIssuerVerifier, IssuerMacCheck, IssuerUnavailable
from server.config import ServerSettings
from server.records.taps import Tap
from server.vocabulary import CardCheckLevel
from tests.server.cards.test_checks import MASTER_KEY, data_copy, genuine, read
from tests.server.conftest import TEST_SECRET, FakeClock
from tests.server.factories import EVENT_START, ZHANG_CARD, World

CARD_NO = "3104390012345678901"
CHALLENGE = bytes(range(16))
ANSWER = internal_auth_mac(card_key(MASTER_KEY, CARD_NO), CHALLENGE)


def check(response: bytes = ANSWER) -> IssuerMacCheck:
    return IssuerMacCheck(
        card_no=CARD_NO,
        key_id=1,
        algorithm=CardAuthAlgorithm.SM4_CMAC,
        challenge=CHALLENGE,
        response=response,
    )


@pytest.fixture
def service() -> Iterator[IssuerServer]:
    with IssuerServer(SimIssuer(MASTER_KEY)) as server:
        yield server


@pytest.fixture
def verifier(service: IssuerServer) -> Iterator[HttpIssuerVerifier]:
    client = HttpIssuerVerifier(service.url, timeout=1.0)
    try:
        yield client
    finally:
        client.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class TestHttpIssuerVerifier:
    def test_genuine_answer(self, verifier: HttpIssuerVerifier) -> None:
        assert verifier.verify(check()) is True

    def test_wrong_answer(self, verifier: HttpIssuerVerifier) -> None:
        assert verifier.verify(check(response=bytes(16))) is False

    def test_outage_is_unavailable_not_invalid(
        self, service: IssuerServer, verifier: HttpIssuerVerifier
    ) -> None:
        service.outage = True
        with pytest.raises(IssuerUnavailable, match="HTTP 503"):
            verifier.verify(check())

    def test_slow_issuer_times_out(self, service: IssuerServer) -> None:
        service.delay_s = 0.5
        slow = HttpIssuerVerifier(service.url, timeout=0.1)
        try:
            with pytest.raises(IssuerUnavailable, match="in time"):
                slow.verify(check())
        finally:
            slow.close()

    def test_nobody_listening(self) -> None:
        verifier = HttpIssuerVerifier(f"http://127.0.0.1:{closed_port()}", timeout=1.0)
        try:
            with pytest.raises(IssuerUnavailable, match="cannot reach"):
                verifier.verify(check())
        finally:
            verifier.close()

    @pytest.mark.parametrize("answer", [b"not json", b'{"ok": true}', b'{"valid": "yes"}'])
    def test_unreadable_answer(self, answer: bytes) -> None:
        with _canned_http(200, answer) as url:
            verifier = HttpIssuerVerifier(url, timeout=1.0)
            try:
                with pytest.raises(IssuerUnavailable, match="unreadable"):
                    verifier.verify(check())
            finally:
                verifier.close()

    def test_card_number_is_not_in_the_repr(self) -> None:
        assert CARD_NO not in repr(check())


class _Canned(BaseHTTPRequestHandler):
    status = 200
    body = b""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _canned_http(status: int, body: bytes) -> Iterator[str]:
    """A one-off HTTP server that always answers *status* with *body*; yields its URL."""
    handler = type("Handler", (_Canned,), {"status": status, "body": body})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        host, port = httpd.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()


class TestAppWiring:
    def test_issuer_url_setting_reaches_issuer_mac_over_http(
        self,
        tmp_path: Path,
        database_url: str,
        engine: Engine,
        world: World,
        clock: FakeClock,
        service: IssuerServer,
    ) -> None:
        """ECARD_ISSUER_URL and ECARD_MIN_CARD_CHECK via create_app: a genuine card passes, a copy not."""
        settings = ServerSettings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            secret_key=SecretStr(TEST_SECRET),
            issuer_url=service.url,
            min_card_check=CardCheckLevel.ISSUER_MAC,
        )
        clock.now = EVENT_START + timedelta(minutes=1)
        envelopes = [
            world.keys.seal(world.payload(read(genuine(), world.kiosk_id), at=EVENT_START)),
            world.keys.seal(world.payload(read(data_copy(), world.kiosk_id), at=EVENT_START)),
            world.keys.seal(world.payload(ZHANG_CARD, at=EVENT_START)),
        ]
        with TestClient(create_app(settings, clock=clock)) as client:
            response = client.post("/api/v1/taps", json=TapBatch(envelopes=envelopes).model_dump(mode="json"))
        assert response.status_code == 200, response.text
        codes = [(r["status"], r["code"]) for r in response.json()["receipts"]]
        assert codes == [
            ("accepted", None),
            ("rejected", "issuer_mac_invalid"),
            ("rejected", "weak_card_check"),
        ]
        assert service.requests_served == 1
        with Session(engine) as session:
            levels = list(session.exec(select(Tap.card_check).order_by(col(Tap.id))).all())
        assert levels == [CardCheckLevel.ISSUER_MAC, None, CardCheckLevel.CARD_NUMBER]


class TestSettings:
    def test_default_minimum_is_uid_without_issuer(self) -> None:
        settings = ServerSettings(secret_key=SecretStr(TEST_SECRET))
        assert (settings.min_card_check, settings.issuer_url) == (CardCheckLevel.UID, "")

    def test_minimum_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ECARD_MIN_CARD_CHECK", "card-number")
        monkeypatch.setenv("ECARD_ISSUER_URL", "https://issuer.example/")
        settings = ServerSettings(secret_key=SecretStr(TEST_SECRET))
        assert settings.min_card_check == CardCheckLevel.CARD_NUMBER
        assert settings.issuer_url == "https://issuer.example"

    def test_unknown_level_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="'uid', 'card-number' or 'issuer-mac'"):
            ServerSettings(secret_key=SecretStr(TEST_SECRET), min_card_check="strong")

    def test_issuer_mac_minimum_needs_an_issuer(self) -> None:
        with pytest.raises(ValidationError, match="ECARD_ISSUER_URL"):
            ServerSettings(secret_key=SecretStr(TEST_SECRET), min_card_check=CardCheckLevel.ISSUER_MAC)

    def test_issuer_url_must_be_http(self) -> None:
        with pytest.raises(ValidationError, match="http"):
            ServerSettings(secret_key=SecretStr(TEST_SECRET), issuer_url="issuer.example:8443")


def test_json_body_names_what_the_issuer_needs(service: IssuerServer) -> None:
    """The request the server sends is exactly the simulator's documented API."""
    seen: list[dict[str, Any]] = []
    original = service.answer

    def spy(body: bytes) -> Any:
        seen.append(json.loads(body))
        return original(body)

    service.answer = spy  # type: ignore[method-assign]
    verifier = HttpIssuerVerifier(service.url, timeout=1.0)
    try:
        assert verifier.verify(check())
    finally:
        verifier.close()
    assert seen == [
        {
            "card_no": CARD_NO,
            "key_id": 1,
            "algorithm": "sm4-cmac",
            "challenge": CHALLENGE.hex().upper(),
            "response": ANSWER.hex().upper(),
        }
    ]
