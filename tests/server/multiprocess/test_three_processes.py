"""Three ``ecard server run`` processes on one PostgreSQL database behave as one server.

Each process has its own port and data directory (as on three hosts) and shares the database,
the secret key and the evidence key. They start together on an empty database, so they also
show that migrating is serialised. Then: a tap accepted by B shows on a live board streamed by A;
failed sign-ins spread over the three lock the account on all of them; a web session opened on A
works on B and C and ends everywhere when C signs out; the scheduled purge runs once a round.
Last, ``--workers 2`` starts and serves, and SQLite refuses it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import re
import secrets
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from ecard_cli.stack import ECARD, Child, free_port, server_env
from schemas.messages import BatchReceipt, EnrollRequest, EnrollResponse, TapBatch
from server.cli import admin_app
from server.config import RateLimits, ServerSettings
from server.serve import settings_environment
from tests.conftest import create_pg_database
from tests.server.signing import KioskKeys, card, tap_payload

READY = re.compile(r"ecard server ready on (http://\S+)")
ROUND = re.compile(r"job purge_unmatched_taps: (ran|skipped) round (\d+)( \(start-up\))?")
CSRF_IN_PAGE = re.compile(r'"X-CSRF-Token": "([^"]+)"')
CARD_NO = "3104390000000000001"
UID = "A1B2C301"
ADMIN_PASSWORD = "a-long-admin-password-for-tests"
PURGE_INTERVAL_SECONDS = 2  # each round's winner then keeps it claimed for 0.5 s
START_SECONDS = 90.0


@dataclass
class Server:
    name: str
    child: Child
    url: str


@dataclass
class Cluster:
    servers: dict[str, Server]
    env: dict[str, str]
    database_url: str
    event_id: int
    kiosk_code: str

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]


def wait_ready(child: Child, deadline: float) -> str:
    """The base URL from the server's ready line."""
    while (left := deadline - time.monotonic()) > 0:
        line = child.next_line(min(left, 1.0))
        if line is not None and (match := READY.search(line)):
            return match.group(1)
        if line is None and not child.alive():
            break
    raise AssertionError(f"{child.name} not ready:\n{child.transcript()}")


def start_servers(env: dict[str, str], names: list[str], *extra: str) -> dict[str, Server]:
    """Start one ``ecard server run`` per name at once, each with its own data directory."""
    children = {}
    for name in names:
        own = dict(env, ECARD_DATA_DIR=str(Path(env["ECARD_DATA_DIR"]) / name))
        argv = [*ECARD, "server", "run", "--host", "127.0.0.1", "--port", "0", *extra]
        children[name] = Child(f"server {name}", argv, own).start()
    deadline = time.monotonic() + START_SECONDS
    try:
        return {name: Server(name, child, wait_ready(child, deadline)) for name, child in children.items()}
    except BaseException:
        for child in children.values():
            child.stop()
        raise


def admin(env: dict[str, str], *args: str, stdin: str | None = None) -> dict[str, Any]:
    """``ecard admin ARGS --json`` in this process (a subprocess each would cost a second)."""
    result = CliRunner().invoke(admin_app, [*args, "--json"], env=env, input=stdin)
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.fixture(scope="module")
def cluster(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    database_url, drop = create_pg_database(pg_server, prefix="ecard_mp_")
    data = tmp_path_factory.mktemp("cluster")
    env = server_env(database_url, data, secrets.token_hex(32))
    env.update(
        ECARD_EVIDENCE_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        ECARD_PURGE_INTERVAL_SECONDS=str(PURGE_INTERVAL_SECONDS),
    )
    servers: dict[str, Server] = {}
    try:
        servers = start_servers(env, ["A", "B", "C"])
        branch = admin(env, "org", "add", "第一党支部", "--kind", "branch")
        member = admin(env, "member", "add", "张三明", "--org", str(branch["id"]))
        admin(env, "member", "add", "李四", "--org", str(branch["id"]))
        admin(env, "card", "bind", str(member["id"]), "--card-no", CARD_NO, "--uid", UID)
        venue = admin(env, "venue", "add", "党员活动室", "--org", str(branch["id"]))
        now = datetime.now(UTC)
        event = admin(
            env, "event", "add", "主题党日", "--org", str(branch["id"]), "--venue", str(venue["id"]),
            "--kind", "theme_day", "--start", (now - timedelta(minutes=10)).isoformat(),
            "--end", (now + timedelta(hours=2)).isoformat(),
        )  # fmt: skip
        kiosk = admin(env, "kiosk", "add", "一号机", "--venue", str(venue["id"]))
        for user in ("boss", "target"):
            admin(env, "user", "add", user, "--role", "admin", stdin=ADMIN_PASSWORD + "\n")
        yield Cluster(servers, env, database_url, event["id"], kiosk["enrollment_code"])
    finally:
        for server in servers.values():
            server.child.stop()
        drop()


def login_form(http: httpx.Client) -> str:
    """Open the sign-in page; returns the login CSRF token (the form repeats its cookie)."""
    response = http.get("/web/login")
    assert response.status_code == 200, response.text
    token = http.cookies.get("ecard_login_csrf")
    assert token
    return token


def sign_in(base_url: str, username: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        token = login_form(http)
        return http.post(
            "/web/login",
            data={"username": username, "password": password, "csrf_token": token, "next": "/web/"},
        )


def web_get(base_url: str, session_token: str, path: str = "/web/") -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=10, cookies={"ecard_session": session_token}) as http:
        return http.get(path)


class BoardStream:
    """Reads a live board's SSE stream in a thread; hands over each ``board`` message's data."""

    def __init__(self, base_url: str, session_token: str, event_id: int) -> None:
        self.messages: queue.Queue[str] = queue.Queue()
        self._url = f"{base_url}/web/events/{event_id}/board/stream"
        self._cookies = {"ecard_session": session_token}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        # Ends when the server stops (the fixture's teardown) or the stream ends after a minute.
        with contextlib.suppress(httpx.HTTPError):
            self._read_messages()

    def _read_messages(self) -> None:
        with (
            httpx.Client(cookies=self._cookies, timeout=httpx.Timeout(10, read=60)) as http,
            http.stream("GET", self._url) as response,
        ):
            kind, data = "", []
            for line in response.iter_lines():
                if line.startswith("event:"):
                    kind = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    data.append(line.removeprefix("data:").removeprefix(" "))
                elif not line:
                    if kind == "board":
                        self.messages.put("\n".join(data))
                    kind, data = "", []

    def next(self, timeout: float) -> str:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no board message within {timeout} s") from None

    def maybe_next(self, timeout: float) -> str | None:
        """The next message if one comes within ``timeout`` (None: none came)."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None


@pytest.mark.pg
@pytest.mark.e2e
def test_a_tap_accepted_by_b_reaches_a_board_streamed_by_a_within_a_second(cluster: Cluster) -> None:
    signed_in = sign_in(cluster["A"].url, "boss", ADMIN_PASSWORD)
    assert signed_in.status_code == 303, signed_in.text
    board = BoardStream(cluster["A"].url, signed_in.cookies["ecard_session"], cluster.event_id)
    assert 'data-present="0"' in board.next(timeout=10)  # the board as the stream opens

    keys = KioskKeys()
    with httpx.Client(base_url=cluster["B"].url, timeout=10) as http:
        enrolled = http.post(
            "/api/v1/kiosks/enroll",
            json=EnrollRequest(code=cluster.kiosk_code, public_key=keys.public_b64).model_dump(),
        )
        assert enrolled.status_code == 200, enrolled.text
        kiosk_id = EnrollResponse.model_validate(enrolled.json()).kiosk_id
        payload = tap_payload(kiosk_id=kiosk_id, seq=1, at=datetime.now(UTC), card_facts=card(CARD_NO, UID))
        batch = TapBatch(envelopes=[keys.seal(payload)])
        uploaded = http.post("/api/v1/taps", json=batch.model_dump(mode="json"))
    accepted_at = time.monotonic()
    assert uploaded.status_code == 200, cluster["B"].child.transcript()
    (receipt,) = BatchReceipt.model_validate(uploaded.json()).receipts
    assert receipt.status.value == "accepted", receipt

    shown = board.next(timeout=1.0)
    assert time.monotonic() - accepted_at < 1.0
    assert 'data-present="1"' in shown
    assert "张三明" in shown
    assert "签到成功" in shown
    extra = board.maybe_next(timeout=0.5)  # exactly once: no second copy of the notice
    assert extra is None, extra


@pytest.mark.pg
@pytest.mark.e2e
def test_failed_sign_ins_spread_over_the_processes_lock_the_account_on_all(cluster: Cluster) -> None:
    for name in ["A", "B", "C", "A", "B"]:  # ACCOUNT_FAILURE_LIMIT failures, one process at a time
        refused = sign_in(cluster[name].url, "target", "wrong-password")
        assert refused.status_code == 401, (name, refused.status_code)
    for name in ["C", "A", "B"]:  # now even the right password is refused everywhere
        locked = sign_in(cluster[name].url, "target", ADMIN_PASSWORD)
        assert locked.status_code == 429, (name, locked.status_code)
        assert "login_rate_limited" in locked.text


@pytest.mark.pg
@pytest.mark.e2e
def test_a_web_session_opened_on_a_works_on_b_and_c_and_signing_out_on_c_ends_it(cluster: Cluster) -> None:
    signed_in = sign_in(cluster["A"].url, "boss", ADMIN_PASSWORD)
    assert signed_in.status_code == 303, signed_in.text
    token = signed_in.cookies["ecard_session"]
    pages = {name: web_get(cluster[name].url, token) for name in ["A", "B", "C"]}
    assert {name: page.status_code for name, page in pages.items()} == {"A": 200, "B": 200, "C": 200}

    csrf = CSRF_IN_PAGE.search(pages["C"].text)
    assert csrf, "the page carries the session's CSRF token"
    with httpx.Client(base_url=cluster["C"].url, timeout=10, cookies={"ecard_session": token}) as http:
        signed_out = http.post("/web/logout", headers={"X-CSRF-Token": csrf.group(1)})
    assert signed_out.status_code in (302, 303), signed_out.text

    for name in ["A", "B", "C"]:
        after = web_get(cluster[name].url, token)
        assert after.status_code in (302, 303, 307), (name, after.status_code)
        assert "/web/login" in after.headers["location"]


@pytest.mark.pg
@pytest.mark.e2e
def test_the_purge_runs_once_a_round_across_the_processes(cluster: Cluster) -> None:
    first = int(time.time() // PURGE_INTERVAL_SECONDS) + 1
    last = first + 2
    time.sleep((last + 1) * PURGE_INTERVAL_SECONDS - time.time())  # round `last` has begun by now

    def rounds() -> dict[int, list[tuple[str, str]]]:
        outcomes: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for name, server in cluster.servers.items():
            for line in list(server.child.output):
                if (match := ROUND.search(line)) and first <= int(match.group(2)) <= last:
                    assert not match.group(3), f"{name} restarted during the test:\n{line}"
                    outcomes[int(match.group(2))].append((name, match.group(1)))
        return outcomes

    # A loaded machine may still be running a round's purge: give each process time to log it.
    deadline = time.monotonic() + 30
    outcomes = rounds()
    while time.monotonic() < deadline and any(len(outcomes.get(n, [])) < 3 for n in range(first, last + 1)):
        time.sleep(0.2)
        outcomes = rounds()
    assert sorted(outcomes) == list(range(first, last + 1)), dict(outcomes)
    for number, seen in outcomes.items():
        assert sorted(name for name, _ in seen) == ["A", "B", "C"], (number, seen)
        assert [outcome for _, outcome in seen].count("ran") == 1, (number, seen)


@pytest.mark.pg
@pytest.mark.e2e
def test_two_workers_start_and_serve(cluster: Cluster) -> None:
    (server,) = start_servers(cluster.env, ["W"], "--workers", "2").values()
    try:
        health = httpx.get(f"{server.url}/api/v1/health", timeout=10)
        assert health.status_code == 200, health.text
        assert sign_in(server.url, "boss", ADMIN_PASSWORD).status_code == 303
        assert server.child.alive()
    finally:
        server.child.stop()
    assert "starting 2 worker processes" in "".join(server.child.output)


@pytest.mark.e2e
def test_sqlite_refuses_several_workers(tmp_path: Path) -> None:
    env = server_env(f"sqlite:///{tmp_path / 'ecard.sqlite'}", tmp_path, secrets.token_hex(32))
    port = str(free_port())
    argv = [*ECARD, "server", "run", "--port", port, "--workers", "2"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--workers 2 needs PostgreSQL" in proc.stderr
    assert not (tmp_path / "ecard.sqlite").exists()  # refused before migrating anything


def test_workers_get_the_settings_the_parent_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``--workers`` exports into the environment builds the same settings again."""
    settings = ServerSettings(
        data_dir=tmp_path,
        database_url="postgresql://u:p@db.internal/ecard",
        secret_key=SecretStr(secrets.token_hex(32)),
        evidence_key=SecretStr(base64.b64encode(secrets.token_bytes(32)).decode()),
        trusted_proxies=[ip_network("10.0.0.0/8"), ip_network("127.0.0.1")],
        rate_limits=RateLimits(taps_per_kiosk=99),
        transfer_holidays=[date(2026, 10, 1)],
        enrollment_code_ttl=timedelta(hours=2),
        secure_cookies=None,
        purge_interval_seconds=60,
    )
    for key in [key for key in os.environ if key.startswith("ECARD_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ECARD_SECURE_COOKIES", "true")  # unset in the parent: the export removes it
    for key, value in settings_environment(settings).items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    assert ServerSettings() == settings
