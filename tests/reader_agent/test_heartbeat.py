"""The heartbeat sender against a scripted server (httpx.MockTransport): what it signs and sends,
how it reads the answers, and its thread."""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from reader_agent.feedback import Feedback, FeedbackStatus
from reader_agent.heartbeat import HeartbeatOutcome, HeartbeatResult, HeartbeatSender, ReaderWatch
from reader_agent.outbox import Outbox, OutboxError, OutboxStats
from schemas import HeartbeatAck, HeartbeatPayload, ReaderState, SignedEnvelope, TapMode
from tests.reader_agent.test_uploader import KEY, make_payload

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=CST)

Action = httpx.Response | Exception


class FakeHealthServer:
    """Verifies each heartbeat like the server; answers with canned actions, else an ack."""

    def __init__(self, *script: Action, offset_ms: int = 0) -> None:
        self.script: collections.deque[Action] = collections.deque(script)
        self.received: list[HeartbeatPayload] = []
        self.offset_ms = offset_ms
        self._public_key = Ed25519PublicKey.from_public_bytes(KEY.public_key_raw)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/kiosks/heartbeat"
        envelope = SignedEnvelope.model_validate_json(request.content)
        assert envelope.kid == KEY.kid
        self._public_key.verify(envelope.signature_bytes(), envelope.payload_bytes())
        self.received.append(HeartbeatPayload.model_validate_json(envelope.payload_bytes()))
        if self.script:
            action = self.script.popleft()
            if isinstance(action, Exception):
                raise action
            return action
        ack = HeartbeatAck(server_time=NOW, clock_offset_ms=self.offset_ms)
        return httpx.Response(200, json=ack.model_dump(mode="json"))


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "outbox.sqlite3") as opened:
        yield opened


def sender(
    server: FakeHealthServer,
    outbox: Outbox,
    *,
    now: datetime = NOW,
    monotonic: Iterator[float] | None = None,
    interval_s: float = 60,
    on_result: Callable[[HeartbeatResult], None] | None = None,
    outbox_stats: Callable[[], OutboxStats] | None = None,
) -> HeartbeatSender:
    ticks = monotonic or itertools.count(0, 0.1)
    watch = ReaderWatch()
    return HeartbeatSender(
        httpx.Client(transport=httpx.MockTransport(server), base_url="http://ecard.test"),
        KEY,
        kiosk_id="kiosk-1",
        mode=TapMode.ENROL,
        agent_version="1.0",
        interval_s=interval_s,
        outbox_stats=outbox_stats or outbox.stats,
        reader_state=lambda: watch.state,
        reader_name="pcsc:ACR122",
        now=lambda: now,
        monotonic=lambda: next(ticks),
        on_result=on_result,
    )


class TestBeatOnce:
    def test_reports_the_outbox_and_measures_the_round_trip(self, outbox: Outbox) -> None:
        """Two taps waiting, the oldest 90 s old; the second heartbeat carries the first's round trip."""
        outbox.append(make_payload, KEY)
        outbox.append(make_payload, KEY)
        oldest = outbox.stats().oldest_pending_at
        assert oldest is not None
        server = FakeHealthServer()
        heartbeats = sender(
            server, outbox, now=oldest + timedelta(seconds=90), monotonic=iter([10.0, 10.25, 11.0, 11.1])
        )

        first = heartbeats.beat_once()
        second = heartbeats.beat_once()

        assert (first.outcome, first.round_trip_ms, second.round_trip_ms) == (
            HeartbeatOutcome.ACKNOWLEDGED,
            250,
            100,
        )
        sent = server.received
        assert [p.counter for p in sent] == [1, 2]
        assert sent[0].boot_id == sent[1].boot_id == heartbeats.boot_id
        assert (sent[0].previous_round_trip_ms, sent[1].previous_round_trip_ms) == (None, 250)
        assert (sent[0].outbox_pending, sent[0].oldest_pending_age_s, sent[0].last_seq) == (2, 90.0, 2)
        assert (sent[0].mode, sent[0].reader_state, sent[0].reader_name) == (
            TapMode.ENROL,
            ReaderState.STARTING,
            "pcsc:ACR122",
        )
        assert sent[0].sent_at == oldest + timedelta(seconds=90)

    def test_an_empty_outbox(self, outbox: Outbox) -> None:
        server = FakeHealthServer()
        sender(server, outbox).beat_once()
        assert (server.received[0].outbox_pending, server.received[0].oldest_pending_age_s) == (0, None)

    @pytest.mark.parametrize(
        ("action", "outcome", "code"),
        [
            (httpx.ConnectError("refused"), HeartbeatOutcome.FAILED, "server_unreachable"),
            (httpx.ReadTimeout("slow"), HeartbeatOutcome.FAILED, "server_timeout"),
            (httpx.Response(503, json={"error": "x"}), HeartbeatOutcome.FAILED, "http_503"),
            (
                httpx.Response(409, json={"error": "stale_heartbeat", "detail": "…"}),
                HeartbeatOutcome.REFUSED,
                "stale_heartbeat",
            ),
            (httpx.Response(409, json={"error": "kiosk_revoked"}), HeartbeatOutcome.REFUSED, "kiosk_revoked"),
            (httpx.Response(200, content=b"not json"), HeartbeatOutcome.REFUSED, "bad_ack"),
        ],
    )
    def test_answers_are_classified(
        self, outbox: Outbox, action: Action, outcome: HeartbeatOutcome, code: str
    ) -> None:
        """Trouble reaching the server is FAILED (try again next time); a 'no' is REFUSED."""
        heartbeats = sender(FakeHealthServer(action), outbox)
        result = heartbeats.beat_once()
        assert (result.outcome, result.code) == (outcome, code)
        assert result.ack is None

    def test_reports_quarantined_taps(self, outbox: Outbox) -> None:
        """Taps set aside because the server kept refusing them are counted, with the oldest seq."""
        for _ in range(4):
            outbox.append(make_payload, KEY)
        outbox.quarantine(3, problem="http_422", now=NOW)
        outbox.quarantine(2, problem="http_422", now=NOW)
        server = FakeHealthServer()
        sender(server, outbox).beat_once()
        sent = server.received[0]
        assert (sent.outbox_pending, sent.outbox_quarantined, sent.oldest_quarantined_seq) == (2, 2, 2)

    def test_an_empty_outbox_reports_no_quarantine(self, outbox: Outbox) -> None:
        server = FakeHealthServer()
        sender(server, outbox).beat_once()
        assert (server.received[0].outbox_quarantined, server.received[0].oldest_quarantined_seq) == (0, None)

    def test_rate_limited_is_a_failure_with_the_wait(self, outbox: Outbox) -> None:
        """A 429 is FAILED (not refused) and carries the server's Retry-After."""
        limited = httpx.Response(429, headers={"Retry-After": "120"}, json={"error": "rate_limited"})
        result = sender(FakeHealthServer(limited), outbox).beat_once()
        assert (result.outcome, result.code, result.retry_after_s) == (
            HeartbeatOutcome.FAILED,
            "http_429",
            120,
        )

    def test_a_clock_outside_the_contract_is_a_failed_heartbeat(self, outbox: Outbox) -> None:
        """A kiosk whose clock was never set (1970) sends nothing the server would refuse as malformed."""
        server = FakeHealthServer()
        result = sender(server, outbox, now=datetime(1970, 1, 1, tzinfo=CST)).beat_once()
        assert (result.outcome, result.code, result.detail) == (
            HeartbeatOutcome.FAILED,
            "heartbeat_invalid",
            "sent_at",
        )
        assert server.received == []

    def test_an_unreadable_outbox_is_a_failed_heartbeat(self, outbox: Outbox) -> None:
        server = FakeHealthServer()

        def broken() -> OutboxStats:
            raise OutboxError("outbox_read_failed", "disk gone")

        result = sender(server, outbox, outbox_stats=broken).beat_once()
        assert (result.outcome, result.code) == (HeartbeatOutcome.FAILED, "outbox_read_failed")
        assert server.received == []

    def test_clock_warning_is_logged_once(self, outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
        """A kiosk 45 s off is told once, not at every heartbeat."""
        done = threading.Event()
        count = [0]

        def counted(_result: HeartbeatResult) -> None:
            count[0] += 1
            if count[0] >= 3:
                done.set()

        heartbeats = sender(FakeHealthServer(offset_ms=45_000), outbox, interval_s=0.01, on_result=counted)
        with caplog.at_level(logging.WARNING, logger="reader_agent.heartbeat"):
            heartbeats.start()
            assert done.wait(5)
            heartbeats.stop()
        warnings = [r.getMessage() for r in caplog.records if "clock" in r.getMessage()]
        assert len(warnings) == 1
        assert "+45.0 s" in warnings[0]


class TestThread:
    def test_sends_every_interval_until_stopped(self, outbox: Outbox) -> None:
        server = FakeHealthServer()
        results: list[HeartbeatResult] = []
        enough = threading.Event()

        def collect(result: HeartbeatResult) -> None:
            results.append(result)
            if len(results) >= 3:
                enough.set()

        heartbeats = sender(server, outbox, interval_s=0.02, on_result=collect)
        heartbeats.start()
        assert enough.wait(5)
        heartbeats.stop()
        sent = len(server.received)
        assert [p.counter for p in server.received] == list(range(1, sent + 1))
        assert all(r.outcome is HeartbeatOutcome.ACKNOWLEDGED for r in results)

    def test_waits_retry_after_before_the_next_heartbeat(self, outbox: Outbox) -> None:
        """After a 429 the next heartbeat waits the server's Retry-After, not just the interval."""
        server = FakeHealthServer(httpx.Response(429, headers={"Retry-After": "1"}))
        results: list[HeartbeatResult] = []
        second = threading.Event()

        def collect(result: HeartbeatResult) -> None:
            results.append(result)
            if len(results) == 2:
                second.set()

        heartbeats = sender(server, outbox, interval_s=0.02, on_result=collect)
        started = time.monotonic()
        heartbeats.start()
        try:
            assert second.wait(5)
        finally:
            heartbeats.stop()
        assert time.monotonic() - started >= 1.0
        assert [r.outcome for r in results[:2]] == [HeartbeatOutcome.FAILED, HeartbeatOutcome.ACKNOWLEDGED]

    def test_interval_must_be_positive(self, outbox: Outbox) -> None:
        with pytest.raises(ValueError, match="interval_s"):
            sender(FakeHealthServer(), outbox, interval_s=0)


class TestReaderWatch:
    def test_follows_the_run_loop(self) -> None:
        watch = ReaderWatch()
        seen = [watch.state]
        for line in (
            Feedback(FeedbackStatus.READER_ERROR, "x", code="reader_unavailable"),
            Feedback(FeedbackStatus.READER_ERROR, "x", code="reader_disconnected"),
            Feedback(FeedbackStatus.READER_ERROR, "x", code="reader_error"),
            Feedback(FeedbackStatus.OFFLINE, "x", seq=1),  # a card was read: the reader works
            Feedback(FeedbackStatus.STOPPED, "x"),
        ):
            watch.observe(line)
            seen.append(watch.state)
        assert seen == [
            ReaderState.STARTING,
            ReaderState.UNAVAILABLE,
            ReaderState.DISCONNECTED,
            ReaderState.FAILED,
            ReaderState.READY,
            ReaderState.READY,
        ]
