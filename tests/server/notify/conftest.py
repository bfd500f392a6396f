"""Real local receivers for the notification channels: an SMTP server (aiosmtpd) and a group-robot
webhook (``http.server`` in a thread) that checks each request's signature the way
docs/notifications.md tells a receiver to."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

ROBOT_KEY = "robot-key-5d1e0c7a"  # a 企业微信 robot's URL carries its key: it must never be shown


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 OK"


@dataclass
class SmtpServer:
    host: str
    port: int
    inbox: _Inbox

    @property
    def messages(self) -> list[EmailMessage]:
        return [message for _, message in self.inbox.messages]

    def recipients(self) -> list[list[str]]:
        return [list(envelope.rcpt_tos) for envelope, _ in self.inbox.messages]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(host="127.0.0.1", port=port, inbox=inbox)
    finally:
        controller.stop()


@dataclass
class Robot:
    """A group robot that accepts requests signed with ``secret``; it answers 500 to the first
    ``fail_first`` well-signed requests, 401 to badly signed ones."""

    secret: str
    fail_first: int = 0
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    def accepted(self) -> list[dict[str, Any]]:
        return [body for body, status in zip(self.received, self.answers, strict=True) if status == 200]


def _verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    # The receiver check of docs/notifications.md.
    expected = (
        "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"\n" + body, hashlib.sha256).hexdigest()
    )
    return hmac.compare_digest(expected, signature)


@pytest.fixture
def robot() -> Iterator[Robot]:
    state = Robot(secret="shared-secret-for-the-robot-0001")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            timestamp = self.headers.get("X-Ecard-Timestamp", "")
            signature = self.headers.get("X-Ecard-Signature", "")
            with lock:
                if not _verify(state.secret, timestamp, body, signature) or ROBOT_KEY not in self.path:
                    status, answer = 401, {"errcode": 40001, "errmsg": "invalid signature"}
                elif len([s for s in state.answers if s != 401]) < state.fail_first:
                    status, answer = 500, {"errcode": -1, "errmsg": "busy"}
                else:
                    status, answer = 200, {"errcode": 0, "errmsg": "ok"}
                state.received.append(json.loads(body))
                state.answers.append(status)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/cgi-bin/webhook/send?key={ROBOT_KEY}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
