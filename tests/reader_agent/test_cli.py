"""``ecard agent enroll|run|status`` over real HTTP, with ``run`` as a real process stopped by SIGTERM.

The server here is a small stdlib stand-in that keeps to the wire contract (``schemas``): the
real server is built separately and has its own end-to-end test.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from typer.testing import CliRunner

from reader_agent.cli import app
from schemas import (
    BatchReceipt,
    CardApplication,
    CardFacts,
    EnrollRequest,
    EnrollResponse,
    TapBatch,
    TapDisplay,
    TapPayload,
    TapReceipt,
    TapStatus,
)
from schemas.messages import b64url_decode, key_id

GOOD_CODE = "ENROLL-0001"
CARD_NO = "3104390000000000001"
TUNION = CardFacts(uid="A1B2C3D4", application=CardApplication.TUNION, card_no=CARD_NO, city_code="3930")
UID_ONLY = CardFacts(uid="04A1B2C3D4E5F6", application=CardApplication.UID_ONLY)

# Short retry and poll intervals so the tests do not wait on production pacing.
FAST_ENV = {
    "ECARD_AGENT_POLL_TIMEOUT_S": "0.1",
    "ECARD_AGENT_UPLOAD_RETRY_INITIAL_S": "0.1",
    "ECARD_AGENT_UPLOAD_RETRY_MAX_S": "0.3",
    "ECARD_AGENT_UPLOAD_IDLE_RECHECK_S": "0.5",
}


class StubServer:
    """Enrollment and tap ingest as the contract describes them, over real HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        self.codes: dict[str, str | None] = {GOOD_CODE: None, "EXPIRED-0001": "enrollment_code_expired"}
        self.keys: dict[str, Ed25519PublicKey] = {}
        self.down = False
        self.received: list[TapPayload] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, answer = stub.handle(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def handle(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if path == "/api/v1/kiosks/enroll":
                return self.enroll(EnrollRequest.model_validate_json(body))
            if path == "/api/v1/taps":
                if self.down:
                    return 503, {"error": "unavailable", "detail": "maintenance"}
                return self.taps(TapBatch.model_validate_json(body))
            return 404, {"error": "not_found", "detail": path}

    def enroll(self, request: EnrollRequest) -> tuple[int, dict[str, Any]]:
        if request.code not in self.codes:
            return 400, {"error": "enrollment_code_invalid", "detail": "no such code"}
        problem = self.codes[request.code]
        if problem:
            return 400, {"error": problem, "detail": problem}
        raw = b64url_decode(request.public_key)
        kid = key_id(raw)
        self.keys[kid] = Ed25519PublicKey.from_public_bytes(raw)
        self.codes[request.code] = "enrollment_code_used"
        answer = EnrollResponse(
            kiosk_id="kiosk-7",
            kid=kid,
            kiosk_name="一楼大厅",
            venue_name="思明区党群服务中心",
            server_time=datetime.now(UTC),
        )
        return 200, answer.model_dump(mode="json")

    def taps(self, batch: TapBatch) -> tuple[int, dict[str, Any]]:
        receipts = []
        for index, envelope in enumerate(batch.envelopes):
            self.keys[envelope.kid].verify(envelope.signature_bytes(), envelope.payload_bytes())
            payload = TapPayload.model_validate_json(envelope.payload_bytes())
            duplicate = any(seen.seq == payload.seq for seen in self.received)
            if not duplicate:
                self.received.append(payload)
            receipts.append(
                TapReceipt(
                    index=index,
                    seq=payload.seq,
                    status=TapStatus.DUPLICATE if duplicate else TapStatus.ACCEPTED,
                    display=TapDisplay(member_name="张*明", event_title="七月主题党日", message="签到成功"),
                )
            )
        return 200, BatchReceipt(server_time=datetime.now(UTC), receipts=receipts).model_dump(mode="json")

    def received_seqs(self) -> list[int]:
        with self._lock:
            return [payload.seq for payload in self.received]


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "kiosk"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env=FAST_ENV)


@pytest.fixture
def enrolled(runner: CliRunner, stub: StubServer, state_dir: Path) -> Path:
    result = runner.invoke(
        app, ["enroll", "--server", stub.url, "--code", GOOD_CODE, "--state-dir", str(state_dir)]
    )
    assert result.exit_code == 0, result.stderr
    return state_dir


def status_of(runner: CliRunner, state_dir: Path) -> dict[str, Any]:
    result = runner.invoke(app, ["status", "--state-dir", str(state_dir), "--json"])
    assert result.exit_code == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def card_line(card: CardFacts) -> str:
    return json.dumps({"card": card.model_dump(mode="json", exclude_none=True)}) + "\n"


# Runs the agent with its stdout wrapped so that each write() call is noted, one JSON string a line,
# in the file named by ECARD_TEST_WRITES_LOG.
_RECORD_WRITES = """
import io, json, os, runpy, sys

class RecordedWrites(io.TextIOBase):
    def __init__(self, inner, log):
        self._inner, self._log = inner, log

    def write(self, text):
        self._log.write(json.dumps(text) + "\\n")
        self._log.flush()
        return self._inner.write(text)

    def flush(self):
        self._inner.flush()

sys.stdout = RecordedWrites(sys.stdout, open(os.environ["ECARD_TEST_WRITES_LOG"], "w"))
runpy.run_module("reader_agent", run_name="__main__", alter_sys=True)
"""


class AgentProcess:
    """``python -m reader_agent run`` as a child process; stdout lines are collected on a thread.
    With *writes_log*, the agent's writes to stdout are noted there, one per line."""

    def __init__(self, state_dir: Path, reader: str, *extra: str, writes_log: Path | None = None) -> None:
        env = {**os.environ, **FAST_ENV, "PYTHONUNBUFFERED": "1"}
        entry = ["-m", "reader_agent"]
        if writes_log is not None:
            env["ECARD_TEST_WRITES_LOG"] = str(writes_log)
            entry = ["-c", _RECORD_WRITES]
        argv = [
            sys.executable,
            *entry,
            "run",
            "--reader",
            reader,
            "--state-dir",
            str(state_dir),
        ]
        self.proc = subprocess.Popen(
            [*argv, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._stderr_lines: list[str] = []
        # Both pipes are drained by threads (never by communicate(), which would race them for lines).
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True),
            threading.Thread(
                target=self._pump, args=(self.proc.stderr, self._stderr_lines.append), daemon=True
            ),
        ]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream: IO[str] | None, sink: Callable[[str], None]) -> None:
        assert stream is not None
        for line in stream:
            sink(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self._stderr_lines)

    def next_line(self, timeout: float = 10.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            self.terminate()
            raise AssertionError(f"no output within {timeout} s; stderr:\n{self.stderr}") from None

    def next_json(self, timeout: float = 10.0) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.next_line(timeout))
        return parsed

    def terminate(self) -> int:
        """SIGTERM, wait for the exit, and for both pipes to be read to the end."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for pump in self._pumps:
            pump.join(timeout=5)
        return self.proc.returncode


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    """Every agent process a test starts is terminated afterwards."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.terminate()


def start_agent(
    agents: list[AgentProcess], state_dir: Path, reader: str, *extra: str, writes_log: Path | None = None
) -> AgentProcess:
    agent = AgentProcess(state_dir, reader, *extra, writes_log=writes_log)
    agents.append(agent)
    return agent


class TestEnroll:
    def test_enroll_creates_a_private_key_and_identity(
        self, runner: CliRunner, stub: StubServer, state_dir: Path
    ) -> None:
        """Enrollment registers a fresh key (file mode 0600, directory 0700) and remembers the kiosk."""
        result = runner.invoke(
            app, ["enroll", "--server", stub.url + "/", "--code", GOOD_CODE, "--state-dir", str(state_dir)]
        )
        assert result.exit_code == 0, result.stderr
        assert "一楼大厅" in result.stdout
        assert "kiosk-7" in result.stdout
        assert stat.S_IMODE((state_dir / "kiosk_key.pem").stat().st_mode) == 0o600
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        assert list(stub.keys) == [status_of(runner, state_dir)["kid"]]
        status = status_of(runner, state_dir)
        assert (status["kiosk_id"], status["pending"], status["last_seq"]) == ("kiosk-7", 0, 0)
        assert status["server_url"] == stub.url

    def test_refused_code_then_retry_keeps_the_key(
        self, runner: CliRunner, stub: StubServer, state_dir: Path
    ) -> None:
        """A refused code explains itself; a retry with a good code registers the same key."""
        refused = runner.invoke(
            app, ["enroll", "--server", stub.url, "--code", "EXPIRED-0001", "--state-dir", str(state_dir)]
        )
        assert refused.exit_code == 1
        assert "enrollment_code_expired" in refused.stderr
        assert "注册码已过期" in refused.stderr
        assert not (state_dir / "enrollment.json").exists()
        first_key = (state_dir / "kiosk_key.pem").read_bytes()

        accepted = runner.invoke(
            app, ["enroll", "--server", stub.url, "--code", GOOD_CODE, "--state-dir", str(state_dir)]
        )
        assert accepted.exit_code == 0, accepted.stderr
        assert (state_dir / "kiosk_key.pem").read_bytes() == first_key

    def test_second_enrollment_is_refused(self, runner: CliRunner, stub: StubServer, enrolled: Path) -> None:
        """An enrolled kiosk does not enroll again over its own outbox."""
        stub.codes["ENROLL-0002"] = None
        again = runner.invoke(
            app, ["enroll", "--server", stub.url, "--code", "ENROLL-0002", "--state-dir", str(enrolled)]
        )
        assert again.exit_code == 1
        assert "already_enrolled" in again.stderr

    def test_unreachable_server(self, runner: CliRunner, state_dir: Path) -> None:
        """No server at the URL is a clear error, not a traceback."""
        result = runner.invoke(
            app,
            ["enroll", "--server", "http://127.0.0.1:9", "--code", GOOD_CODE, "--state-dir", str(state_dir)],
        )
        assert result.exit_code == 1
        assert "server_unreachable" in result.stderr


class TestRunErrors:
    def test_not_enrolled(self, runner: CliRunner, state_dir: Path) -> None:
        """Running before enrolling says what to do."""
        result = runner.invoke(app, ["run", "--reader", "scripted", "--state-dir", str(state_dir)])
        assert result.exit_code == 1
        assert "not_enrolled" in result.stderr

    def test_lost_outbox_is_refused(self, runner: CliRunner, enrolled: Path) -> None:
        """An enrolled kiosk whose outbox vanished does not restart seq at 1 over its old taps."""
        (enrolled / "outbox.sqlite3").unlink()
        result = runner.invoke(app, ["run", "--reader", "scripted", "--state-dir", str(enrolled)])
        assert result.exit_code == 1
        assert "outbox_missing" in result.stderr

    def test_unknown_backend(self, runner: CliRunner, enrolled: Path) -> None:
        """A misspelt reader backend is a usage error listing the choices."""
        result = runner.invoke(app, ["run", "--reader", "pcsx:ACR", "--state-dir", str(enrolled)])
        assert result.exit_code == 2
        assert "pcsc" in result.stderr

    def test_unusable_reader_target(self, runner: CliRunner, enrolled: Path) -> None:
        """A target the backend cannot parse is a usage error, not something to retry forever."""
        result = runner.invoke(app, ["run", "--reader", "serial:/dev/null", "--state-dir", str(enrolled)])
        assert result.exit_code == 2
        assert "bad_reader_spec" in result.stderr

    def test_state_dir_is_required(self, runner: CliRunner) -> None:
        """Without --state-dir or ECARD_AGENT_STATE_DIR the agent refuses to guess."""
        result = runner.invoke(app, ["status"])
        assert result.exit_code == 2
        assert "ECARD_AGENT_STATE_DIR" in result.stderr


class TestRun:
    def test_online_taps_then_sigterm(
        self, runner: CliRunner, stub: StubServer, enrolled: Path, agents: list[AgentProcess], tmp_path: Path
    ) -> None:
        """Each tap prints one JSON line with the server's answer; SIGTERM stops cleanly."""
        script = tmp_path / "taps.jsonl"
        script.write_text(card_line(TUNION))
        agent = start_agent(agents, enrolled, f"scripted:{script}", "--json")
        ready = agent.next_json()
        assert ready["status"] == "ready"
        assert "seq" not in ready
        first = agent.next_json()
        with script.open("a") as fh:
            fh.write(card_line(UID_ONLY))
        second = agent.next_json()
        assert [(line["seq"], line["status"], line["member_name"]) for line in (first, second)] == [
            (1, "accepted", "张*明"),
            (2, "accepted", "张*明"),
        ]
        assert (first["event_title"], first["message"], first["pending"]) == ("七月主题党日", "签到成功", 0)
        assert agent.terminate() == 0
        stopped = agent.next_json()
        assert stopped["status"] == "stopped"
        assert CARD_NO not in agent.stderr
        assert status_of(runner, enrolled)["last_seq"] == 2
        assert stub.received_seqs() == [1, 2]
        assert stub.received[0].kiosk_id == "kiosk-7"

    def test_each_feedback_line_is_written_whole(
        self, stub: StubServer, enrolled: Path, agents: list[AgentProcess], tmp_path: Path
    ) -> None:
        """A kiosk's supervisor often reads stdout and stderr from one pipe. A line written in two
        pieces (print() writes the text, then its newline) can get another thread's log line in
        between, and is then no longer JSON: each feedback line must be one write."""
        script = tmp_path / "taps.jsonl"
        script.write_text(card_line(TUNION))
        writes_log = tmp_path / "writes.jsonl"
        agent = start_agent(agents, enrolled, f"scripted:{script}", "--json", writes_log=writes_log)
        assert agent.next_json()["status"] == "ready"
        assert agent.next_json()["seq"] == 1
        assert agent.terminate() == 0
        writes: list[str] = [json.loads(line) for line in writes_log.read_text().splitlines()]
        assert len(writes) == 3, writes  # ready, the tap, stopped
        assert [json.loads(text)["status"] for text in writes] == ["ready", "accepted", "stopped"]
        assert all(text.endswith("\n") and text.count("\n") == 1 for text in writes), writes

    def test_offline_then_restart_uploads_the_backlog(
        self, runner: CliRunner, stub: StubServer, enrolled: Path, agents: list[AgentProcess], tmp_path: Path
    ) -> None:
        """Taps made while the server is down are kept across a restart and uploaded once it is back."""
        stub.down = True
        script = tmp_path / "taps.jsonl"
        script.write_text(card_line(TUNION) + card_line(UID_ONLY))
        offline = start_agent(agents, enrolled, f"scripted:{script}", "--json")
        offline.next_json()  # ready
        answers = [offline.next_json(), offline.next_json()]
        assert [(a["seq"], a["status"], a["pending"]) for a in answers] == [
            (1, "offline", 1),
            (2, "offline", 2),
        ]
        assert "2 条待上传" in answers[1]["message"]
        assert offline.terminate() == 0
        assert "http_503" in offline.stderr  # the uploader said why
        assert status_of(runner, enrolled)["pending"] == 2

        stub.down = False
        online = start_agent(agents, enrolled, "scripted", "--json")
        deadline = time.monotonic() + 15
        while stub.received_seqs() != [1, 2] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stub.received_seqs() == [1, 2]
        assert online.terminate() == 0
        assert status_of(runner, enrolled)["pending"] == 0

    def test_text_lines_show_masked_cards_only(
        self, stub: StubServer, enrolled: Path, agents: list[AgentProcess], tmp_path: Path
    ) -> None:
        """Without --json a person-readable line appears; neither it nor the log holds the card number."""
        stub.down = True
        script = tmp_path / "taps.jsonl"
        script.write_text(card_line(TUNION))
        agent = start_agent(agents, enrolled, f"scripted:{script}")
        assert agent.next_line().startswith("[就绪]")
        line = agent.next_line()
        assert line.startswith("[离线] #1")
        assert "****0001" in line
        assert "1 条待上传" in line
        agent.terminate()
        assert CARD_NO not in line + agent.stderr
        assert TUNION.uid not in line + agent.stderr

    def test_one_agent_per_state_dir(self, enrolled: Path, agents: list[AgentProcess]) -> None:
        """A second agent on the same state directory is refused while the first runs."""
        first = start_agent(agents, enrolled, "scripted", "--json")
        assert first.next_json()["status"] == "ready"
        second = start_agent(agents, enrolled, "scripted", "--json")
        assert second.proc.wait(timeout=15) == 1
        second.terminate()
        assert "agent_already_running" in second.stderr


class TestRequeue:
    def test_status_counts_quarantined_taps_and_requeue_puts_them_back(
        self, runner: CliRunner, enrolled: Path
    ) -> None:
        """What the kiosk health page tells an admin to do: see the set-aside taps, then requeue them."""
        from reader_agent.outbox import Outbox
        from reader_agent.signing import KioskKey
        from reader_agent.state import StateDir
        from tests.reader_agent.test_outbox import make_payload

        key = KioskKey.generate()
        with Outbox.open(StateDir(enrolled).outbox_path) as outbox:
            for _ in range(3):
                outbox.append(make_payload, key)
            outbox.quarantine(2, problem="http_422: malformed", now=datetime.now(UTC))
        before = status_of(runner, enrolled)
        assert (before["pending"], before["quarantined"], before["oldest_quarantined_seq"]) == (2, 1, 2)

        result = runner.invoke(app, ["requeue", "--state-dir", str(enrolled)])
        assert result.exit_code == 0, result.stderr
        assert "seq 2: http_422: malformed" in result.stdout
        assert "requeued 1" in result.stdout
        after = status_of(runner, enrolled)
        assert (after["pending"], after["quarantined"], after["oldest_quarantined_seq"]) == (3, 0, None)
