"""A simulated card issuer (发卡机构): per-card keys and the service that checks cards' answers.

Real T-Union card keys live in the issuer's secure module (docs/card-protocols.md §6.3), so neither the
kiosk nor the server can check a card's answer to a challenge: the server asks the issuer. This
module plays the issuer for tests and demos. It holds the master key; cards made with
:func:`firmware_sim.cards.issued_card` carry the key diversified from it.

Key scheme (PBOC-style diversification, with SM4 instead of 3DES)::

    D        = the last 16 digits of the card number as 8 BCD bytes
    card key = SM4-ECB(master key, D ‖ (D XOR FF…FF))
    answer   = SM4-CMAC(card key, 16-byte challenge)          (INTERNAL AUTHENTICATE, 00 88)

HTTP API (what ``server.cards.issuer.HttpIssuerVerifier`` calls)::

    POST /v1/internal-auth/verify
    {"card_no": "<19 digits>", "key_id": 1, "algorithm": "sm4-cmac",
     "challenge": "<32 hex>", "response": "<hex>"}
    -> 200 {"valid": true|false}      false also for a key id or algorithm the card does not have
    -> 400 {"error": "malformed", "detail": "..."}
    -> 503 {"error": "unavailable"}   while an outage is simulated

Card numbers are never logged whole.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

log = logging.getLogger(__name__)

MASTER_KEY_BYTES = 16
DEFAULT_KEY_ID = 1
SM4_CMAC = "sm4-cmac"
VERIFY_PATH = "/v1/internal-auth/verify"
MAX_REQUEST_BYTES = 4096

_CARD_NO = re.compile(r"^[0-9]{19}$")
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")


def diversification_data(card_no: str) -> bytes:
    """``D ‖ ~D`` for a 19-digit card number (D = its last 16 digits in BCD)."""
    if not _CARD_NO.match(card_no):
        raise ValueError("a T-Union card number has 19 digits")
    d = bytes.fromhex(card_no[-16:])
    return d + bytes(b ^ 0xFF for b in d)


def card_key(master_key: bytes, card_no: str) -> bytes:
    """The card's own INTERNAL AUTHENTICATE key, diversified from the issuer's master key."""
    if len(master_key) != MASTER_KEY_BYTES:
        raise ValueError("an SM4 master key has 16 bytes")
    encryptor = Cipher(algorithms.SM4(master_key), modes.ECB()).encryptor()
    return encryptor.update(diversification_data(card_no)) + encryptor.finalize()


def internal_auth_mac(key: bytes, challenge: bytes) -> bytes:
    """The card's 16-byte answer to *challenge*: SM4-CMAC under its key."""
    mac = cmac.CMAC(algorithms.SM4(key))
    mac.update(challenge)
    return mac.finalize()


class SimIssuer:
    """The issuer's verification logic: derives the card key and compares answers."""

    def __init__(self, master_key: bytes, *, key_id: int = DEFAULT_KEY_ID) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise ValueError("an SM4 master key has 16 bytes")
        self._master_key = master_key
        self.key_id = key_id

    def __repr__(self) -> str:
        return f"SimIssuer(key_id={self.key_id}, master_key=<hidden>)"

    def card_key(self, card_no: str) -> bytes:
        return card_key(self._master_key, card_no)

    def verify(self, *, card_no: str, key_id: int, algorithm: str, challenge: bytes, response: bytes) -> bool:
        """True when *response* is this issuer's card *card_no* answering *challenge*."""
        if key_id != self.key_id or algorithm != SM4_CMAC:
            return False
        expected = internal_auth_mac(self.card_key(card_no), challenge)
        return hmac.compare_digest(expected, response)


class MalformedRequest(ValueError):
    """The request body is not a verification request."""


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    card_no: str
    key_id: int
    algorithm: str
    challenge: bytes
    response: bytes

    @classmethod
    def from_json(cls, body: bytes) -> VerifyRequest:
        try:
            data: Any = json.loads(body)
        except ValueError as exc:
            raise MalformedRequest("body is not JSON") from exc
        if not isinstance(data, dict):
            raise MalformedRequest("body is not a JSON object")
        card_no, key_id = data.get("card_no"), data.get("key_id")
        algorithm, challenge, response = data.get("algorithm"), data.get("challenge"), data.get("response")
        if not isinstance(card_no, str) or not _CARD_NO.match(card_no):
            raise MalformedRequest("card_no must be 19 digits")
        if not isinstance(key_id, int) or isinstance(key_id, bool) or not 0 <= key_id <= 255:
            raise MalformedRequest("key_id must be an integer 0..255")
        if not isinstance(algorithm, str):
            raise MalformedRequest("algorithm must be a string")
        if not isinstance(challenge, str) or len(challenge) != 32 or not _HEX.match(challenge):
            raise MalformedRequest("challenge must be 16 bytes of hex")
        if not isinstance(response, str) or not _HEX.match(response) or len(response) > 128:
            raise MalformedRequest("response must be 1..64 bytes of hex")
        return cls(card_no, key_id, algorithm, bytes.fromhex(challenge), bytes.fromhex(response))


class IssuerServer:
    """The simulated issuer's HTTP service on a background thread. Use as a context manager.

    Fault injection for the server's error handling: :attr:`outage` answers every request with
    503, :attr:`delay_s` holds each answer back (longer than the caller's timeout = unreachable).
    """

    def __init__(self, issuer: SimIssuer, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.issuer = issuer
        self.outage = False
        self.delay_s = 0.0
        self.requests_served = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> IssuerServer:
        if self._thread is None:
            # A short poll interval: stop() waits for the serving loop to notice, once per test.
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="sim-issuer",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> IssuerServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def answer(self, body: bytes) -> tuple[HTTPStatus, dict[str, Any]]:
        """Status and JSON body for one POST to the verify path."""
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.requests_served += 1
        if self.outage:
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "unavailable"}
        try:
            request = VerifyRequest.from_json(body)
        except MalformedRequest as exc:
            return HTTPStatus.BAD_REQUEST, {"error": "malformed", "detail": str(exc)}
        valid = self.issuer.verify(
            card_no=request.card_no,
            key_id=request.key_id,
            algorithm=request.algorithm,
            challenge=request.challenge,
            response=request.response,
        )
        log.info("card ****%s answer %s", request.card_no[-4:], "valid" if valid else "INVALID")
        return HTTPStatus.OK, {"valid": valid}


def _handler_for(server: IssuerServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            if self.path != VERIFY_PATH:
                self._send(HTTPStatus.NOT_FOUND, {"error": "not_found"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_REQUEST_BYTES:
                self._send(HTTPStatus.BAD_REQUEST, {"error": "malformed", "detail": "bad Content-Length"})
                return
            status, body = server.answer(self.rfile.read(length))
            self._send(status, body)

        def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                # The caller gave up (its timeout is shorter than a simulated delay): nobody to tell.
                log.debug("caller left before the answer")

        def log_message(self, format: str, *args: Any) -> None:
            # The default writes every request line to stderr; the answer is logged above instead.
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
