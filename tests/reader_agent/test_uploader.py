"""The uploader against a scripted HTTP server (httpx.MockTransport): retries, finality, no lost taps."""

from __future__ import annotations

import collections
import logging
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from reader_agent.outbox import Outbox
from reader_agent.signing import KioskKey
from reader_agent.uploader import Backoff, Uploader, UploadOutcome
from schemas import (
    BatchReceipt,
    CardApplication,
    CardFacts,
    ReaderBackend,
    ReaderInfo,
    TapBatch,
    TapDisplay,
    TapPayload,
    TapReceipt,
    TapStatus,
)

CST = timezone(timedelta(hours=8))
CARD_NO = "3104390000000000001"
KEY = KioskKey.generate()

Action = httpx.Response | Exception


class FakeTapServer:
    """Answers ``POST /api/v1/taps`` like the real server: verify, then one receipt per envelope.

    ``script`` holds canned answers (a response to return or an exception to raise) used before
    falling back to normal service; ``verdict`` decides each tap's status.
    """

    def __init__(self, *script: Action) -> None:
        self.script: collections.deque[Action] = collections.deque(script)
        self.requests: list[httpx.Request] = []
        self.received: list[TapPayload] = []
        self.verdict: dict[int, TapStatus] = {}
        self.public_key = Ed25519PublicKey.from_public_bytes(KEY.public_key_raw)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.url.path == "/api/v1/taps"
        if self.script:
            action = self.script.popleft()
            if isinstance(action, Exception):
                raise action
            return action
        batch = TapBatch.model_validate_json(request.content)
        receipts = []
        for index, envelope in enumerate(batch.envelopes):
            self.public_key.verify(envelope.signature_bytes(), envelope.payload_bytes())
            payload = TapPayload.model_validate_json(envelope.payload_bytes())
            self.received.append(payload)
            status = self.verdict.get(payload.seq, TapStatus.ACCEPTED)
            receipts.append(
                TapReceipt(
                    index=index,
                    seq=payload.seq,
                    status=status,
                    code="card_unknown" if status is TapStatus.REJECTED else None,
                    display=TapDisplay(member_name="张*明", event_title="七月主题党日", message="签到成功"),
                )
            )
        answer = BatchReceipt(server_time=datetime.now(UTC), receipts=receipts)
        return httpx.Response(200, json=answer.model_dump(mode="json"))

    @property
    def seqs_received(self) -> list[int]:
        return [payload.seq for payload in self.received]


def make_payload(seq: int) -> TapPayload:
    return TapPayload(
        kiosk_id="kiosk-1",
        seq=seq,
        occurred_at=datetime(2026, 7, 1, 9, 30, tzinfo=CST),
        card=CardFacts(uid="A1B2C3D4", application=CardApplication.TUNION, card_no=CARD_NO, city_code="3930"),
        reader=ReaderInfo(backend=ReaderBackend.SCRIPTED, name="scripted"),
    )


def fast_backoff() -> Backoff:
    return Backoff(0.01, 0.05, random.Random(1))


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "outbox.sqlite3") as opened:
        yield opened


def uploader_for(server: FakeTapServer, outbox: Outbox, **options: float) -> Uploader:
    client = httpx.Client(transport=httpx.MockTransport(server), base_url="http://ecard.test")
    return Uploader(
        client,
        outbox,
        now=lambda: datetime.now(CST),
        retry=fast_backoff(),
        idle_recheck_s=options.get("idle_recheck_s", 5.0),
        incompatible_retry_s=options.get("incompatible_retry_s", 5.0),
        batch_size=int(options.get("batch_size", 200)),
    )


def add_taps(outbox: Outbox, count: int) -> None:
    for _ in range(count):
        outbox.append(make_payload, KEY)


class TestUploadOnce:
    def test_server_error_then_success(self, outbox: Outbox) -> None:
        """A 500 keeps the taps pending; the retry delivers them and stores the receipts."""
        server = FakeTapServer(httpx.Response(500, json={"error": "internal", "detail": "boom"}))
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 2)

        failed = uploader.upload_once()
        assert failed.outcome is UploadOutcome.RETRY
        assert failed.code == "http_500"
        assert outbox.pending_count() == 2

        delivered = uploader.upload_once()
        assert delivered.outcome is UploadOutcome.DELIVERED
        assert delivered.sent == 2
        assert outbox.pending_count() == 0
        stored = outbox.receipt(1)
        assert stored is not None
        assert stored.display.member_name == "张*明"
        assert uploader.upload_once().outcome is UploadOutcome.IDLE

    def test_timeout_keeps_taps(self, outbox: Outbox) -> None:
        """A request that times out is retried later; nothing is marked sent."""
        server = FakeTapServer(httpx.ReadTimeout("slow"))
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 1)
        result = uploader.upload_once()
        assert (result.outcome, result.code) == (UploadOutcome.RETRY, "server_timeout")
        assert outbox.pending_count() == 1

    def test_connection_error_keeps_taps(self, outbox: Outbox) -> None:
        """No route to the server is transient too."""
        server = FakeTapServer(httpx.ConnectError("refused"))
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 1)
        result = uploader.upload_once()
        assert (result.outcome, result.code) == (UploadOutcome.RETRY, "server_unreachable")
        assert outbox.pending_count() == 1

    def test_overloaded_server_is_transient(self, outbox: Outbox) -> None:
        """429 and 408 are 4xx, but they mean "later", not "never"."""
        server = FakeTapServer(httpx.Response(429), httpx.Response(408))
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 1)
        assert uploader.upload_once().outcome is UploadOutcome.RETRY
        assert uploader.upload_once().outcome is UploadOutcome.RETRY
        assert uploader.upload_once().outcome is UploadOutcome.DELIVERED

    def test_whole_batch_refused_keeps_taps_and_says_so_loudly(
        self, outbox: Outbox, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A 422 keeps every tap, is reported as an error, and never copies the card number into the log."""
        echo = {"detail": [{"loc": ["body", "envelopes", 0], "msg": "bad", "input": CARD_NO}]}
        server = FakeTapServer(httpx.Response(422, json=echo))
        uploader = uploader_for(server, outbox, incompatible_retry_s=60)
        add_taps(outbox, 3)
        with caplog.at_level(logging.INFO):
            uploader.start()
            try:
                deadline = time.monotonic() + 5
                while uploader.last_result is None and time.monotonic() < deadline:
                    time.sleep(0.01)
            finally:
                uploader.stop()
        result = uploader.last_result
        assert result is not None
        assert (result.outcome, result.code) == (UploadOutcome.INCOMPATIBLE, "http_422")
        assert outbox.pending_count() == 3
        errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
        assert errors
        assert "http_422" in errors[0].getMessage()
        assert "body.envelopes.0: bad" in errors[0].getMessage()
        assert CARD_NO not in caplog.text
        assert len(server.requests) == 1  # the long pause, not a quick retry loop

    def test_rejected_receipt_is_final(self, outbox: Outbox) -> None:
        """A rejected tap is stored with its reason and never sent again."""
        server = FakeTapServer()
        server.verdict[1] = TapStatus.REJECTED
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 2)
        assert uploader.upload_once().sent == 2
        stored = outbox.receipt(1)
        assert stored is not None
        assert (stored.status, stored.code) == (TapStatus.REJECTED, "card_unknown")
        add_taps(outbox, 1)
        uploader.upload_once()
        assert server.seqs_received == [1, 2, 3]

    def test_batches_go_oldest_first_within_the_size_limit(self, outbox: Outbox) -> None:
        """Five taps with a batch size of two go out as three requests, in seq order."""
        server = FakeTapServer()
        uploader = uploader_for(server, outbox, batch_size=2)
        add_taps(outbox, 5)
        while uploader.upload_once().outcome is UploadOutcome.DELIVERED:
            pass
        assert [len(TapBatch.model_validate_json(r.content).envelopes) for r in server.requests] == [2, 2, 1]
        assert server.seqs_received == [1, 2, 3, 4, 5]

    def test_receipt_for_the_wrong_seq_is_not_trusted(self, outbox: Outbox) -> None:
        """A receipt whose seq does not match its index leaves that tap pending."""
        confused = BatchReceipt(
            server_time=datetime.now(UTC),
            receipts=[
                TapReceipt(index=0, seq=1, status=TapStatus.ACCEPTED, display=TapDisplay(message="ok")),
                TapReceipt(index=1, seq=7, status=TapStatus.ACCEPTED, display=TapDisplay(message="ok")),
            ],
        )
        server = FakeTapServer(httpx.Response(200, json=confused.model_dump(mode="json")))
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 2)
        result = uploader.upload_once()
        assert (result.outcome, result.sent, result.missing) == (UploadOutcome.DELIVERED, 1, 1)
        assert [entry.seq for entry in outbox.pending_batch(10)] == [2]

    def test_unreadable_receipt_keeps_taps(self, outbox: Outbox) -> None:
        """A 200 that is not a BatchReceipt (a proxy's HTML page, say) marks nothing sent."""
        server = FakeTapServer(httpx.Response(200, text="<html>captive portal</html>"))
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 1)
        result = uploader.upload_once()
        assert (result.outcome, result.code) == (UploadOutcome.INCOMPATIBLE, "bad_receipt")
        assert outbox.pending_count() == 1


class TestBackgroundThread:
    def test_retries_until_the_server_answers(self, outbox: Outbox) -> None:
        """Transient failures are retried on their own until every tap has its receipt."""
        server = FakeTapServer(httpx.Response(503), httpx.ConnectError("down"), httpx.Response(502))
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 2)
        uploader.start()
        try:
            deadline = time.monotonic() + 5
            while outbox.pending_count() and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            uploader.stop()
        assert outbox.pending_count() == 0
        assert len(server.requests) == 4

    def test_wake_delivers_a_new_tap_at_once(self, outbox: Outbox) -> None:
        """An idle uploader woken for a new tap brings its receipt back well within the member's wait."""
        server = FakeTapServer()
        uploader = uploader_for(server, outbox, idle_recheck_s=60)
        uploader.start()
        try:
            time.sleep(0.05)  # let it go idle
            entry = outbox.append(make_payload, KEY)
            started = time.monotonic()
            uploader.wake()
            received = uploader.wait_for_receipt(entry.seq, timeout=2)
            assert received is not None
            assert received.status is TapStatus.ACCEPTED
            assert time.monotonic() - started < 1
        finally:
            uploader.stop()

    def test_waiting_member_is_released_when_the_server_is_down(self, outbox: Outbox) -> None:
        """When the attempt for a new tap fails, the wait ends early instead of running out the clock."""
        server = FakeTapServer(*[httpx.ConnectError("down") for _ in range(50)])
        uploader = uploader_for(server, outbox, idle_recheck_s=60)
        uploader.start()
        try:
            entry = outbox.append(make_payload, KEY)
            started = time.monotonic()
            uploader.wake()
            assert uploader.wait_for_receipt(entry.seq, timeout=3) is None
            assert time.monotonic() - started < 1.5
        finally:
            uploader.stop()
        assert outbox.pending_count() == 1

    def test_resumes_pending_taps_after_restart(self, tmp_path: Path) -> None:
        """Taps left pending by a previous run are uploaded by the next one without any new tap."""
        path = tmp_path / "outbox.sqlite3"
        with Outbox.open(path) as outbox:
            offline = uploader_for(FakeTapServer(httpx.ConnectError("down")), outbox)
            add_taps(outbox, 3)
            assert offline.upload_once().outcome is UploadOutcome.RETRY
        server = FakeTapServer()
        with Outbox.open(path) as outbox:
            uploader = uploader_for(server, outbox)
            uploader.start()
            try:
                assert uploader.wait_for_receipt(3, timeout=5) is not None
            finally:
                uploader.stop()
            assert outbox.pending_count() == 0
        assert server.seqs_received == [1, 2, 3]


class TestBackoff:
    def test_grows_with_jitter_up_to_the_cap(self) -> None:
        """Delays double per failure, stay within [half, full] of the ceiling, and stop at the cap."""
        backoff = Backoff(1.0, 8.0, random.Random(7))
        delays = [backoff.next_delay() for _ in range(6)]
        for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
            assert ceiling / 2 <= delay <= ceiling
        backoff.reset()
        assert backoff.next_delay() <= 1.0

    def test_jitter_spreads_kiosks(self) -> None:
        """Two kiosks failing at the same moment do not retry in lockstep."""
        first, second = Backoff(1.0, 60.0, random.Random(1)), Backoff(1.0, 60.0, random.Random(2))
        assert [first.next_delay() for _ in range(5)] != [second.next_delay() for _ in range(5)]
