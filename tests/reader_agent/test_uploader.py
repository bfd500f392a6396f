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
    falling back to normal service; ``verdict`` decides each tap's status. A batch holding a seq
    in ``refuse`` is refused whole with a 422 (an old server that does not know a field, say);
    a seq in ``confuse`` gets a receipt naming another seq.
    """

    def __init__(self, *script: Action) -> None:
        self.script: collections.deque[Action] = collections.deque(script)
        self.requests: list[httpx.Request] = []
        self.received: list[TapPayload] = []
        self.verdict: dict[int, TapStatus] = {}
        self.refuse: set[int] = set()
        self.confuse: set[int] = set()
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
        payloads = [TapPayload.model_validate_json(e.payload_bytes()) for e in batch.envelopes]
        if any(payload.seq in self.refuse for payload in payloads):
            return httpx.Response(422, json={"error": "invalid_request", "detail": "请求内容不符合接口约定"})
        receipts = []
        for index, (envelope, payload) in enumerate(zip(batch.envelopes, payloads, strict=True)):
            self.public_key.verify(envelope.signature_bytes(), envelope.payload_bytes())
            self.received.append(payload)
            status = self.verdict.get(payload.seq, TapStatus.ACCEPTED)
            receipts.append(
                TapReceipt(
                    index=index,
                    seq=payload.seq + 1000 if payload.seq in self.confuse else payload.seq,
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

    def batch_sizes(self) -> list[int]:
        return [len(TapBatch.model_validate_json(r.content).envelopes) for r in self.requests]


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
        """A server that refuses every batch (422) takes nothing, so nothing is quarantined: every
        tap is kept, it is reported as an error, and the card number never reaches the log."""
        echo = {"detail": [{"loc": ["body", "envelopes", 0], "msg": "bad", "input": CARD_NO}]}
        server = FakeTapServer(*[httpx.Response(422, json=echo) for _ in range(50)])
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
        assert outbox.stats().quarantined == 0
        # The batch and its halves down to single taps, once; then the long pause, not a retry loop.
        assert len(server.requests) == 5

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
        """A receipt whose seq does not match its index is ignored, and that tap is sent again alone."""
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
        assert (result.outcome, result.sent, result.missing) == (UploadOutcome.DELIVERED, 2, 0)
        assert server.batch_sizes() == [2, 1]
        assert outbox.pending_count() == 0

    def test_unreadable_receipt_keeps_taps(self, outbox: Outbox) -> None:
        """A 200 that is not a BatchReceipt (a proxy's HTML page, say) marks nothing sent."""
        server = FakeTapServer(httpx.Response(200, text="<html>captive portal</html>"))
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 1)
        result = uploader.upload_once()
        assert (result.outcome, result.code) == (UploadOutcome.INCOMPATIBLE, "bad_receipt")
        assert outbox.pending_count() == 1


class TestSplitAndQuarantine:
    def test_a_refused_tap_is_found_and_set_aside(self, outbox: Outbox) -> None:
        """A batch refused because of one tap is halved down to that tap, which is quarantined
        (kept, with the server's answer); every other tap is delivered in the same round."""
        server = FakeTapServer()
        server.refuse.add(3)
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 8)
        result = uploader.upload_once()
        assert (result.outcome, result.sent, result.quarantined) == (UploadOutcome.DELIVERED, 7, 1)
        assert sorted(server.seqs_received) == [1, 2, 4, 5, 6, 7, 8]
        assert server.batch_sizes() == [8, 4, 2, 2, 1, 1, 4]  # [1-8] [1-4] [1,2] [3,4] [3] [4] [5-8]
        assert outbox.pending_count() == 0
        assert outbox.is_quarantined(3)
        assert outbox.receipt(3) is None
        ((seq, problem),) = outbox.quarantined()
        assert seq == 3
        assert problem.startswith("http_422")
        stats = outbox.stats()
        assert (stats.quarantined, stats.oldest_quarantined_seq) == (1, 3)

    def test_the_outbox_moves_on_past_a_quarantined_tap(self, outbox: Outbox) -> None:
        """Later rounds no longer send the quarantined tap; new taps go straight through."""
        server = FakeTapServer()
        server.refuse.add(1)
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 2)
        assert uploader.upload_once().quarantined == 1
        add_taps(outbox, 1)
        requests_before = len(server.requests)
        assert uploader.upload_once().sent == 1
        assert server.batch_sizes()[requests_before:] == [1]
        assert uploader.upload_once().outcome is UploadOutcome.IDLE

    def test_a_lone_refused_tap_waits_for_evidence(self, outbox: Outbox) -> None:
        """A single pending tap that is refused is not quarantined (it may be the server that is
        wrong); once a new tap gets through beside it, it is."""
        server = FakeTapServer()
        server.refuse.add(1)
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 1)
        assert uploader.upload_once().outcome is UploadOutcome.INCOMPATIBLE
        assert outbox.pending_count() == 1
        add_taps(outbox, 1)
        result = uploader.upload_once()
        assert (result.sent, result.quarantined) == (1, 1)
        assert outbox.is_quarantined(1)

    def test_a_tap_that_never_gets_a_matching_receipt_is_quarantined(self, outbox: Outbox) -> None:
        """Sent alone and still answered with a receipt for another seq: set aside, not resent forever."""
        server = FakeTapServer()
        server.confuse.add(2)
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 3)
        result = uploader.upload_once()
        assert (result.sent, result.quarantined) == (2, 1)
        assert outbox.is_quarantined(2)
        assert outbox.quarantined()[0][1].startswith("bad_receipt")

    def test_requeued_taps_are_uploaded_again(self, outbox: Outbox) -> None:
        """Once the cause is fixed, quarantined taps go back in line and are delivered."""
        server = FakeTapServer()
        server.refuse.add(1)
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 2)
        uploader.upload_once()
        server.refuse.clear()
        assert outbox.requeue_quarantined() == 1
        assert uploader.upload_once().sent == 1
        assert outbox.stats().quarantined == 0
        assert outbox.receipt(1) is not None

    def test_a_body_too_large_halves_later_batches(self, outbox: Outbox) -> None:
        """A 413 for a full batch splits it, and later rounds send half as many at once."""
        server = FakeTapServer(
            httpx.Response(413, json={"error": "payload_too_large", "detail": "请求内容过大"})
        )
        uploader = uploader_for(server, outbox, batch_size=4)
        add_taps(outbox, 4)
        assert uploader.upload_once().sent == 4
        add_taps(outbox, 4)
        uploader.upload_once()
        assert server.batch_sizes() == [4, 2, 2, 2]

    def test_server_errors_never_quarantine(self, outbox: Outbox) -> None:
        """A 5xx is the server's trouble: the round stops, every tap stays pending."""
        server = FakeTapServer(httpx.Response(500))
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 4)
        assert uploader.upload_once().outcome is UploadOutcome.RETRY
        assert outbox.pending_count() == 4
        assert outbox.stats().quarantined == 0


class TestRateLimited:
    def test_retry_after_is_reported(self, outbox: Outbox) -> None:
        """A 429 is transient and carries the server's Retry-After (seconds, or an HTTP date)."""
        server = FakeTapServer(httpx.Response(429, headers={"Retry-After": "7"}))
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 1)
        result = uploader.upload_once()
        assert (result.outcome, result.code, result.retry_after_s) == (UploadOutcome.RETRY, "http_429", 7.0)
        assert outbox.pending_count() == 1

    def test_waits_at_least_retry_after_even_when_woken(self, outbox: Outbox) -> None:
        """After a 429 the uploader waits the server's Retry-After; a new tap does not cut it short."""
        server = FakeTapServer(httpx.Response(429, headers={"Retry-After": "1"}))
        uploader = uploader_for(server, outbox)
        add_taps(outbox, 1)
        started = time.monotonic()
        uploader.start()
        try:
            time.sleep(0.2)
            uploader.wake()
            time.sleep(0.2)
            assert len(server.requests) == 1
            assert uploader.wait_for_receipt(1, timeout=5) is not None
        finally:
            uploader.stop()
        assert time.monotonic() - started >= 1.0
        assert len(server.requests) == 2


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
