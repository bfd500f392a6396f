"""Size and rate limits: unauthenticated input costs the server nothing, and honest kiosks never
hit a limit.

* Bodies above ``ECARD_MAX_BODY_BYTES`` get 413 ``payload_too_large`` before any parser sees them,
  on every endpoint, authenticated or not, whether the length is declared or the body is chunked;
  on a real server, a 50 MB body does not raise the process's peak memory.
* Enrollment, tap upload, heartbeats and transfer filing are rate-limited per source (and per
  kiosk or caller): 429 ``rate_limited`` with ``Retry-After``; the budget comes back with time.
* Envelopes sent in a kiosk's name without its key do not spend that kiosk's budget.
* Unknown, used and expired enrollment codes get one answer; the audit log keeps which it was.

The clock is a :class:`FakeClock`, so nothing sleeps.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, col
from sqlmodel import select as sql_select

from schemas.messages import EnrollRequest, SignedEnvelope, TapBatch, b64url_encode
from server.app import create_app
from server.auth.service import create_token
from server.caller import CLI_CALLER
from server.config import RateLimits, ServerSettings
from server.db import unit_of_work
from server.errors import EnrollmentCodeInvalid
from server.keyring import Keyring
from server.kiosks.service import issue_enrollment_code
from server.limits import Limit, RateLimiter, rate_limiter_for
from server.records.audit import AuditEntry
from server.vocabulary import TokenRole
from tests.security.conftest import B_CARD, Realm
from tests.server import conftest as server_fixtures
from tests.server.conftest import TEST_SECRET, FakeClock
from tests.server.factories import EVENT_START, ZHANG_CARD, World
from tests.server.kiosks.messages import heartbeat
from tests.server.signing import KioskKeys
from tests.server.test_serve import READY, SERVER_COMMAND

# The server suite's fixtures, on SQLite and PostgreSQL: a migrated database, a world, a fake clock.
database_url = server_fixtures.database_url
settings = server_fixtures.settings
engine = server_fixtures.engine
keyring = server_fixtures.keyring
clock = server_fixtures.clock
world = server_fixtures.world

MIB = 1024 * 1024
ENROLL = "/api/v1/kiosks/enroll"
TAPS = "/api/v1/taps"
HEARTBEAT = "/api/v1/kiosks/heartbeat"
TRANSFERS = "/api/v1/transfers"
TOO_LARGE = {"error": "payload_too_large"}


def make_settings(tmp_path: Path, database_url: str, **limits: int) -> ServerSettings:
    return ServerSettings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=SecretStr(TEST_SECRET),
        rate_limits=RateLimits(**limits),
    )


@pytest.fixture
def serve(tmp_path: Path, database_url: str, engine: Engine, clock: FakeClock) -> Iterator[Any]:
    """``serve(**rate_limits)``: the real app in-process with those limits (the rest default)."""
    clients: list[TestClient] = []

    def start(**limits: int) -> TestClient:
        client = TestClient(create_app(make_settings(tmp_path, database_url, **limits), clock=clock))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def bearer(
    engine: Engine, keyring: Keyring, org_id: int | None, *, role: TokenRole = TokenRole.ADMIN
) -> dict[str, str]:
    with unit_of_work(engine) as session:
        created = create_token(
            session,
            keyring=keyring,
            role=role,
            org_id=org_id,
            label="limits",
            caller=CLI_CALLER,
            now=EVENT_START,
        )
    return {"Authorization": f"Bearer {created.token}"}


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body of *total* bytes with no Content-Length: the client streams it chunked."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"x" * piece


def batch_of(*envelopes: SignedEnvelope) -> dict[str, Any]:
    return TapBatch(envelopes=list(envelopes)).model_dump(mode="json")


def assert_rate_limited(response: Any) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "rate_limited"
    assert body["detail"] == "请求过于频繁，请稍后再试"
    assert int(response.headers["Retry-After"]) >= 1
    assert body["retry_after"] == int(response.headers["Retry-After"])


# ---------------------------------------------------------------------------------------------
# Body size


class TestBodySize:
    @pytest.mark.parametrize(
        ("method", "path", "authenticated"),
        [
            ("POST", TAPS, False),
            ("POST", ENROLL, False),
            ("POST", HEARTBEAT, False),
            ("POST", "/web/login", False),
            ("POST", TRANSFERS, True),
            ("POST", "/api/v1/members/1/enrol-sessions", True),
            ("POST", "/web/members/1/cards", False),
            ("GET", "/api/v1/health", False),
        ],
    )
    def test_declared_oversize_is_refused_before_parsing(
        self,
        serve: Any,
        engine: Engine,
        keyring: Keyring,
        world: World,
        method: str,
        path: str,
        authenticated: bool,
    ) -> None:
        """Content-Length above the limit: 413 with a Chinese message, whatever the route and caller."""
        client = serve()
        headers = {"Content-Type": "application/json"}
        if authenticated:
            headers |= bearer(engine, keyring, None)
        response = client.request(method, path, content=b"{" + b" " * (2 * MIB), headers=headers)
        assert response.status_code == 413, response.text
        assert response.json() == {**TOO_LARGE, "detail": "请求内容过大，上限为 1 MiB"}

    @pytest.mark.parametrize("path", [TAPS, ENROLL, "/web/login"])
    def test_chunked_oversize_is_cut_off(self, serve: Any, world: World, path: str) -> None:
        """No Content-Length (a chunked body): counted as it streams, refused at the limit."""
        client = serve()
        response = client.post(path, content=chunks(3 * MIB), headers={"Content-Type": "application/json"})
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "payload_too_large"

    def test_authenticated_chunked_oversize(
        self, serve: Any, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """A valid token does not buy a bigger body."""
        client = serve()
        headers = {"Content-Type": "application/json", **bearer(engine, keyring, None)}
        response = client.post(TRANSFERS, content=chunks(3 * MIB), headers=headers)
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"

    def test_body_under_the_limit_reaches_the_route(self, serve: Any, world: World) -> None:
        """Just under the limit: the route answers (here: the JSON is not a batch, 422)."""
        client = serve()
        response = client.post(
            TAPS, content=b"{" + b" " * (MIB - 10) + b"}", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422
        assert response.json()["error"] == "invalid_request"

    def test_roster_upload_has_a_larger_allowance(
        self, serve: Any, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """The 花名册 route takes files up to its own cap: a 3 MiB file is read (and found unreadable)."""
        client = serve()
        response = client.post(
            "/api/v1/imports/roster",
            files={"file": ("roster.xlsx", b"not a workbook" * (3 * MIB // 14), "application/octet-stream")},
            headers=bearer(engine, keyring, None),
        )
        assert response.status_code != 413, response.text
        assert response.status_code < 500


@pytest.fixture
def real_server(tmp_path: Path) -> Iterator[tuple[str, int, int]]:
    """``ecard server run`` on a SQLite file: (host, port, pid). The body limit sits in front of
    every database, so one is enough for the memory measurement."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECARD_")}
    env["ECARD_DATA_DIR"] = str(tmp_path / "data")
    database = f"sqlite:///{tmp_path / 'ecard.sqlite'}"
    process = subprocess.Popen(
        [*SERVER_COMMAND, "run", "--host", "127.0.0.1", "--port", "0", "--db", database],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    stderr = process.stderr
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        while True:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                pytest.fail("server did not report ready within 30 s:\n" + "".join(seen))
            seen.append(line)
            if match := READY.search(line):
                break
        url = urlsplit(match.group(1))
        assert url.hostname is not None
        assert url.port is not None
        yield url.hostname, url.port, process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def send_raw(host: str, port: int, head: bytes, body: Iterator[bytes]) -> tuple[bytes, int]:
    """Send a request over a plain socket, stopping as soon as the server answers; returns the
    answer and how many body bytes went out before it."""
    sent = 0
    with socket.create_connection((host, port), timeout=20) as sock:
        sock.sendall(head)
        for piece in body:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return answer, sent


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read peak memory")
class TestBodySizeOnARealServer:
    def test_fifty_megabytes_cost_nothing(self, real_server: tuple[str, int, int]) -> None:
        """A 50 MB unauthenticated body, chunked and with a lying length: 413 both times, the
        server stops reading near the limit, and its peak memory does not grow by the body."""
        host, port, pid = real_server
        before = peak_rss(pid)
        total = 50 * 1024 * 1024

        chunked_head = (
            f"POST {TAPS} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        framed = (b"%x\r\n%s\r\n" % (len(piece), piece) for piece in chunks(total))
        answer, sent = send_raw(host, port, chunked_head, framed)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"payload_too_large" in answer
        assert sent < 16 * MIB, f"the server kept reading: {sent} bytes went out"

        declared_head = (
            f"POST {ENROLL} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {total}\r\n\r\n"
        ).encode()
        answer, sent = send_raw(host, port, declared_head, chunks(total))
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent < 16 * MIB

        grown = peak_rss(pid) - before
        assert grown < 20 * MIB, f"peak memory grew by {grown / MIB:.1f} MiB"


# ---------------------------------------------------------------------------------------------
# Enrollment


def enroll_body(code: str, keys: KioskKeys | None = None) -> dict[str, object]:
    keys = keys or KioskKeys()
    return EnrollRequest(code=code, public_key=keys.public_b64, agent_version="1.0").model_dump(mode="json")


class TestEnrollment:
    def test_unknown_used_and_expired_codes_get_one_answer(
        self, serve: Any, engine: Engine, world: World, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Same status, code and message for all three; the audit log says which it was."""
        client = serve()
        enrolled = client.post(ENROLL, json=enroll_body(world.spare_code))
        assert enrolled.status_code == 200
        with caplog.at_level(logging.WARNING, logger="server.kiosks.service"):
            unknown = client.post(ENROLL, json=enroll_body("ZZZZ-ZZZZ-ZZZZ"))
        used = client.post(ENROLL, json=enroll_body(world.spare_code))

        with unit_of_work(engine) as session:
            fresh = issue_enrollment_code(
                session,
                keyring=Keyring(TEST_SECRET.encode()),
                kiosk_id=world.kiosk_id,
                now=clock.now,
                code_ttl=timedelta(hours=1),
                caller=CLI_CALLER,
            )
        clock.advance(hours=2)
        expired = client.post(ENROLL, json=enroll_body(fresh.code))

        answers = [(r.status_code, r.json(), r.headers.get("content-type")) for r in (unknown, used, expired)]
        assert answers[0] == answers[1] == answers[2]
        assert answers[0][:2] == (
            400,
            {"error": "enrollment_code_invalid", "detail": EnrollmentCodeInvalid.default_message},
        )

        with Session(engine) as session:
            refusals = session.exec(
                sql_select(AuditEntry)
                .where(AuditEntry.action == "kiosk.enroll_refused")
                .order_by(col(AuditEntry.id))
            ).all()
        assert [(entry.object_id, json.loads(entry.detail)["reason"]) for entry in refusals] == [
            (enrolled.json()["kiosk_id"], "used"),
            (world.kiosk_id, "expired"),
        ]
        assert all(json.loads(entry.detail)["source"] == "testclient" for entry in refusals)
        # A code nobody issued names no kiosk: logged with its source, no row (anyone could add rows).
        assert "enrollment refused: unknown code from testclient" in caplog.text

    def test_guessing_is_rate_limited_per_source(self, serve: Any, world: World, clock: FakeClock) -> None:
        """Ten tries a minute by default; the eleventh is 429 with Retry-After, even with a good code."""
        client = serve()
        for attempt in range(10):
            response = client.post(ENROLL, json=enroll_body(f"ZZZZ-ZZZZ-ZZ{attempt:02d}"))
            assert response.status_code == 400
        assert_rate_limited(client.post(ENROLL, json=enroll_body(world.spare_code)))
        clock.advance(
            seconds=int(client.post(ENROLL, json=enroll_body(world.spare_code)).headers["Retry-After"])
        )
        assert client.post(ENROLL, json=enroll_body(world.spare_code)).status_code == 200


# ---------------------------------------------------------------------------------------------
# Taps and heartbeats


class TestKioskTraffic:
    def test_taps_per_kiosk(self, serve: Any, world: World, clock: FakeClock) -> None:
        """A kiosk's own signed batches spend its budget; at the end, 429 with Retry-After."""
        client = serve(taps_per_kiosk=3)
        for _ in range(3):
            envelope = world.keys.seal(world.payload(ZHANG_CARD, at=clock.now))
            assert client.post(TAPS, json=batch_of(envelope)).status_code == 200
        refused = client.post(TAPS, json=batch_of(world.keys.seal(world.payload(ZHANG_CARD, at=clock.now))))
        assert_rate_limited(refused)
        clock.advance(seconds=int(refused.headers["Retry-After"]))
        assert (
            client.post(
                TAPS, json=batch_of(world.keys.seal(world.payload(ZHANG_CARD, at=clock.now)))
            ).status_code
            == 200
        )

    def test_forged_envelopes_do_not_spend_a_kiosks_budget(
        self, serve: Any, world: World, clock: FakeClock
    ) -> None:
        """Envelopes in a kiosk's name, signed by another key: refused per envelope, and the real
        kiosk still uploads."""
        client = serve(taps_per_kiosk=2)
        forger = KioskKeys()
        for _ in range(10):
            forged = forger.sign_bytes(world.payload(ZHANG_CARD, at=clock.now).to_bytes(), kid=world.keys.kid)
            response = client.post(TAPS, json=batch_of(forged))
            assert response.status_code == 200
            assert response.json()["receipts"][0]["code"] == "bad_signature"
        envelope = world.keys.seal(world.payload(ZHANG_CARD, at=clock.now))
        assert client.post(TAPS, json=batch_of(envelope)).status_code == 200

    def test_replays_do_not_spend_a_kiosks_budget(self, serve: Any, world: World, clock: FakeClock) -> None:
        """Someone replaying a kiosk's own batch gets duplicates; the kiosk's budget is untouched."""
        client = serve(taps_per_kiosk=2)
        sent = batch_of(world.keys.seal(world.payload(ZHANG_CARD, at=clock.now)))
        assert client.post(TAPS, json=sent).status_code == 200
        for _ in range(5):
            response = client.post(TAPS, json=sent)
            assert response.status_code == 200
            assert response.json()["receipts"][0]["status"] == "duplicate"
        envelope = world.keys.seal(world.payload(ZHANG_CARD, at=clock.now))
        assert client.post(TAPS, json=batch_of(envelope)).status_code == 200

    def test_taps_per_source(self, serve: Any, world: World, clock: FakeClock) -> None:
        """Unknown kiosks or not, one source gets so many uploads a minute."""
        client = serve(taps_per_source=5)
        stranger = KioskKeys()
        for _ in range(5):
            envelope = stranger.seal(world.payload(ZHANG_CARD, at=clock.now))
            assert client.post(TAPS, json=batch_of(envelope)).status_code == 200
        assert_rate_limited(
            client.post(TAPS, json=batch_of(stranger.seal(world.payload(ZHANG_CARD, at=clock.now))))
        )

    def test_heartbeats_per_kiosk(self, serve: Any, world: World, clock: FakeClock) -> None:
        """Heartbeats: the kiosk's signed ones spend its budget."""
        client = serve(heartbeats_per_kiosk=2)
        for counter in (1, 2):
            envelope = heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now, counter=counter)
            assert client.post(HEARTBEAT, json=envelope.model_dump(mode="json")).status_code == 200, counter
        envelope = heartbeat(world.keys, kiosk_id=world.kiosk_id, sent_at=clock.now, counter=3)
        assert_rate_limited(client.post(HEARTBEAT, json=envelope.model_dump(mode="json")))

    def test_unauthenticated_heartbeats_per_source(self, serve: Any, world: World, clock: FakeClock) -> None:
        client = serve(heartbeats_per_source=3)
        junk = SignedEnvelope(kid=world.keys.kid, payload=b64url_encode(b"{}"), sig=b64url_encode(b"\0" * 64))
        for _ in range(3):
            assert client.post(HEARTBEAT, json=junk.model_dump(mode="json")).status_code != 429
        assert_rate_limited(client.post(HEARTBEAT, json=junk.model_dump(mode="json")))


class TestTransferFiling:
    def test_filing_is_limited_per_caller(
        self, serve: Any, engine: Engine, keyring: Keyring, world: World, clock: FakeClock
    ) -> None:
        """Each filing (accepted or not) is charged to the token; then 429 with Retry-After."""
        client = serve(transfers_per_caller=3)
        token = bearer(engine, keyring, world.branch_id, role=TokenRole.SECRETARY)
        for _ in range(3):
            response = client.post(TRANSFERS, json={"card_number": "3104393000000099999"}, headers=token)
            assert response.status_code != 429, response.text
        assert_rate_limited(
            client.post(TRANSFERS, json={"card_number": "3104393000000099999"}, headers=token)
        )
        # Another caller from the same source is not held up by the first one's budget.
        other = bearer(engine, keyring, world.other_branch_id, role=TokenRole.SECRETARY)
        assert client.post(TRANSFERS, json={}, headers=other).status_code != 429

    def test_filing_is_limited_per_source(
        self, serve: Any, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        client = serve(transfers_per_source=2, transfers_per_caller=0)
        for _ in range(2):
            token = bearer(engine, keyring, world.branch_id, role=TokenRole.SECRETARY)
            assert client.post(TRANSFERS, json={}, headers=token).status_code != 429
        token = bearer(engine, keyring, world.branch_id, role=TokenRole.SECRETARY)
        assert_rate_limited(client.post(TRANSFERS, json={}, headers=token))


# ---------------------------------------------------------------------------------------------
# The limiter itself


class TestRateLimiter:
    def test_a_flash_event_through_ten_kiosks_is_never_refused(self, clock: FakeClock) -> None:
        """1,000 taps through 10 kiosks behind one NAT in a minute, each tap its own upload (the
        worst case: the agent batches when it can), plus their heartbeats: nothing refused."""
        limiter = rate_limiter_for(RateLimits())
        start = clock.now
        for tap in range(1000):
            now = start + timedelta(seconds=tap * 0.06)
            assert limiter.hit(Limit.TAPS_PER_SOURCE, "203.0.113.1", now=now) is None
            assert limiter.check(Limit.TAPS_PER_KIOSK, f"kiosk-{tap % 10}", now=now) is None
            limiter.charge(Limit.TAPS_PER_KIOSK, f"kiosk-{tap % 10}", now=now)
            if tap % 100 == 0:
                for kiosk in range(10):
                    assert limiter.hit(Limit.HEARTBEATS_PER_SOURCE, "203.0.113.1", now=now) is None
                    assert limiter.hit(Limit.HEARTBEATS_PER_KIOSK, f"kiosk-{kiosk}", now=now) is None

    def test_memory_is_bounded(self, clock: FakeClock) -> None:
        """A flood of distinct sources keeps at most max_keys buckets; claimed keys make none."""
        limiter = RateLimiter({"x": 5}, max_keys=100)
        for source in range(10_000):
            limiter.hit("x", f"198.51.100.{source}", now=clock.now)
            limiter.check("x", f"claimed-{source}", now=clock.now)
        assert len(limiter) == 100

    def test_retry_after_and_refill(self, clock: FakeClock) -> None:
        limiter = RateLimiter({"x": 6}, max_keys=10)  # one token every 10 s
        for _ in range(6):
            assert limiter.hit("x", "k", now=clock.now) is None
        assert limiter.hit("x", "k", now=clock.now) == 10
        assert limiter.hit("x", "k", now=clock.advance(seconds=9)) == 1
        assert limiter.hit("x", "k", now=clock.advance(seconds=1)) is None
        assert limiter.hit("x", "other", now=clock.now) is None  # per key
        assert RateLimiter({"x": 0}, max_keys=10).hit("x", "k", now=clock.now) is None  # 0: no limit

    def test_a_clock_set_back_refills_nothing(self, clock: FakeClock) -> None:
        limiter = RateLimiter({"x": 1}, max_keys=10)
        assert limiter.hit("x", "k", now=clock.now) is None
        assert limiter.hit("x", "k", now=clock.now - timedelta(hours=1)) is not None


def test_settings_read_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``ECARD_MAX_BODY_BYTES`` and ``ECARD_RATE_LIMITS`` (JSON; unnamed limits keep their defaults)."""
    monkeypatch.setenv("ECARD_MAX_BODY_BYTES", str(2 * MIB))
    monkeypatch.setenv("ECARD_RATE_LIMITS", json.dumps({"enroll_per_source": 3}))
    settings = ServerSettings(data_dir=tmp_path)
    assert settings.max_body_bytes == 2 * MIB
    assert settings.rate_limits.enroll_per_source == 3
    assert settings.rate_limits.taps_per_kiosk == RateLimits().taps_per_kiosk
    monkeypatch.setenv("ECARD_RATE_LIMITS", json.dumps({"enrol_per_source": 3}))
    with pytest.raises(ValueError, match="enrol_per_source"):
        ServerSettings(data_dir=tmp_path)


class TestCardLookups:
    def test_binding_attempts_that_probe_card_numbers_are_limited(self, fresh_realm: Realm) -> None:
        """Binding answers card_already_bound for a number bound elsewhere: a lookup, so after
        ``lookups_per_caller`` tries a minute the secretary gets 429 with Retry-After."""
        side = fresh_realm.a
        budget = RateLimits().lookups_per_caller

        def probe() -> Any:
            return side.web.post(
                f"/web/members/{side.member_id}/cards",
                data={"card_no": B_CARD.card_no, "uid": "", "csrf_token": side.csrf},
                follow_redirects=False,
            )

        answers = {probe().status_code for _ in range(budget)}
        assert 429 not in answers
        refused = probe()
        assert refused.status_code == 429
        assert "请求过于频繁" in refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        fresh_realm.clock.advance(seconds=int(refused.headers["Retry-After"]))
        assert probe().status_code != 429
