"""The run loop with a ScriptedReader and a scripted server: what the member sees, and what is kept."""

from __future__ import annotations

import collections
import json
import logging
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from reader_agent.agent import Agent
from reader_agent.feedback import Feedback, FeedbackStatus
from reader_agent.outbox import Outbox
from reader_agent.readers import CardTimeout, Reader, ReaderDisconnected, ReaderError, ReaderUnavailable
from reader_agent.readers.scripted import ScriptedReader
from reader_agent.uploader import Backoff, Uploader
from schemas import CardApplication, CardFacts, ReaderBackend, TapMode, TapStatus
from tests.reader_agent.test_uploader import KEY, FakeTapServer

CST = timezone(timedelta(hours=8))
CARD_NO = "3104390000000000001"
UID = "A1B2C3D4"
TUNION = CardFacts(uid=UID, application=CardApplication.TUNION, card_no=CARD_NO, city_code="3930")
UID_ONLY = CardFacts(uid="04A1B2C3D4E5F6", application=CardApplication.UID_ONLY)


def server_down(times: int = 1000) -> FakeTapServer:
    return FakeTapServer(*[httpx.ConnectError("connection refused") for _ in range(times)])


class Kiosk:
    """One agent run: its reader(s), outbox, uploader and the feedback lines it printed."""

    def __init__(
        self,
        outbox_path: Path,
        server: FakeTapServer,
        readers: Iterable[Reader | ReaderError] = (),
        mode: TapMode = TapMode.CHECKIN,
        on_line: Callable[[Feedback], None] | None = None,
    ) -> None:
        self.outbox_path = outbox_path
        self._on_line = on_line
        self.outbox = Outbox.open(outbox_path)
        self.server = server
        self._opens: collections.deque[Reader | ReaderError] = collections.deque(readers)
        self.lines: queue.Queue[Feedback] = queue.Queue()
        client = httpx.Client(transport=httpx.MockTransport(server), base_url="http://ecard.test")
        self.uploader = Uploader(
            client,
            self.outbox,
            now=lambda: datetime.now(CST),
            retry=Backoff(0.01, 0.05, random.Random(3)),
            idle_recheck_s=0.2,
        )
        self.agent = Agent(
            open_reader=self._open_reader,
            outbox=self.outbox,
            uploader=self.uploader,
            sealer=KEY,
            kiosk_id="kiosk-1",
            mode=mode,
            emit=self.emit,
            now=lambda: datetime.now(CST),
            poll_timeout_s=0.05,
            receipt_wait_s=1.0,
            reader_retry=Backoff(0.01, 0.05, random.Random(4)),
        )
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.agent.run, args=(self.stop_event,), daemon=True)

    def _open_reader(self) -> Reader:
        if not self._opens:
            return ScriptedReader()
        opened = self._opens.popleft()
        if isinstance(opened, ReaderError):
            raise opened
        return opened

    def emit(self, line: Feedback) -> None:
        if self._on_line is not None:
            self._on_line(line)
        self.lines.put(line)

    def start(self) -> Kiosk:
        self.uploader.start()
        self.thread.start()
        return self

    def next_line(self, timeout: float = 5.0) -> Feedback:
        return self.lines.get(timeout=timeout)

    def next_card_line(self, timeout: float = 5.0) -> Feedback:
        """The next line answering a card presentation (ready/error status lines skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line.about_a_card:
                return line

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        self.uploader.stop()
        self.outbox.close()


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite3"


@pytest.fixture
def kiosks() -> Iterator[list[Kiosk]]:
    """Every kiosk a test starts is stopped afterwards, even when the test fails."""
    started: list[Kiosk] = []
    yield started
    for kiosk in started:
        if kiosk.thread.is_alive():
            kiosk.stop()


def run_kiosk(
    kiosks: list[Kiosk],
    outbox_path: Path,
    server: FakeTapServer,
    readers: Iterable[Reader | ReaderError] = (),
    mode: TapMode = TapMode.CHECKIN,
    on_line: Callable[[Feedback], None] | None = None,
) -> Kiosk:
    kiosk = Kiosk(outbox_path, server, readers, mode=mode, on_line=on_line)
    kiosks.append(kiosk)
    return kiosk.start()


class TestFeedback:
    def test_online_tap_shows_the_servers_answer(self, kiosks: list[Kiosk], outbox_path: Path) -> None:
        """With the server up, the member sees their masked name, the event and the server's message."""
        reader = ScriptedReader([TUNION])
        kiosk = run_kiosk(kiosks, outbox_path, FakeTapServer(), [reader])
        assert kiosk.next_line().status is FeedbackStatus.READY
        line = kiosk.next_card_line()
        assert (line.status, line.seq, line.member_name, line.event_title) == (
            FeedbackStatus.ACCEPTED,
            1,
            "张*明",
            "七月主题党日",
        )
        assert line.message == "签到成功"
        assert line.pending == 0
        assert line.card == "3104********0001"
        as_json = json.loads(line.to_json())
        assert {"seq", "status", "code", "member_name", "event_title", "message", "pending"} <= set(as_json)
        assert "张*明" in line.to_text()
        assert CARD_NO not in line.to_text() + line.to_json()

    def test_offline_tap_is_recorded_and_counted(self, kiosks: list[Kiosk], outbox_path: Path) -> None:
        """Server down: each tap says "recorded offline" and how many wait, without a long wait."""
        reader = ScriptedReader()
        kiosk = run_kiosk(kiosks, outbox_path, server_down(), [reader])
        kiosk.next_line()  # ready
        answers = []
        for card in (TUNION, UID_ONLY):
            started = time.monotonic()
            reader.feed(card)
            answers.append(kiosk.next_card_line())
            assert time.monotonic() - started < 1.0
        assert [(a.status, a.seq, a.pending) for a in answers] == [
            (FeedbackStatus.OFFLINE, 1, 1),
            (FeedbackStatus.OFFLINE, 2, 2),
        ]
        assert "已离线记录，2 条待上传" in answers[1].message
        assert answers[1].card == "**********E5F6"

    def test_tap_is_on_disk_before_the_member_is_told(self, kiosks: list[Kiosk], outbox_path: Path) -> None:
        """At the moment a feedback line is printed, its tap is already committed to the outbox file."""
        seen_on_disk: list[bool] = []

        def check_disk(line: Feedback) -> None:
            if line.seq is not None:
                with sqlite3.connect(outbox_path) as db:
                    (count,) = db.execute("SELECT count(*) FROM taps WHERE seq = ?", (line.seq,)).fetchone()
                seen_on_disk.append(count == 1)

        kiosk = run_kiosk(
            kiosks, outbox_path, server_down(), [ScriptedReader([TUNION, TUNION])], on_line=check_disk
        )
        kiosk.next_card_line()
        kiosk.next_card_line()
        assert seen_on_disk == [True, True]

    def test_rejected_tap_shows_the_reason(self, kiosks: list[Kiosk], outbox_path: Path) -> None:
        """A rejection is shown with its stable code, and is final."""
        server = FakeTapServer()
        server.verdict[1] = TapStatus.REJECTED
        kiosk = run_kiosk(kiosks, outbox_path, server, [ScriptedReader([UID_ONLY])])
        line = kiosk.next_card_line()
        assert (line.status, line.code) == (FeedbackStatus.REJECTED, "card_unknown")
        assert "(card_unknown)" in line.to_text()

    def test_unreadable_card_asks_to_tap_again(self, kiosks: list[Kiosk], outbox_path: Path) -> None:
        """A failed read is not a tap: the member is asked to tap again and the next card works."""
        kiosk = run_kiosk(
            kiosks, outbox_path, FakeTapServer(), [ScriptedReader([CardTimeout("gone"), TUNION])]
        )
        failed = kiosk.next_card_line()
        assert (failed.status, failed.seq, failed.code) == (FeedbackStatus.READ_FAILED, None, "card_timeout")
        assert "读卡失败，请重新刷卡" in failed.message
        assert kiosk.next_card_line().status is FeedbackStatus.ACCEPTED
        assert kiosk.outbox.stats().last_seq == 1

    def test_transfer_mode_and_reader_travel_in_the_payload(
        self, kiosks: list[Kiosk], outbox_path: Path
    ) -> None:
        """The signed payload carries the run's mode, the reader, and local time with its UTC offset."""
        server = FakeTapServer()
        kiosk = run_kiosk(
            kiosks,
            outbox_path,
            server,
            [ScriptedReader([TUNION], name="front desk")],
            mode=TapMode.TRANSFER_IN,
        )
        kiosk.next_card_line()
        (payload,) = server.received
        assert payload.mode is TapMode.TRANSFER_IN
        assert (payload.reader.backend, payload.reader.name) == (ReaderBackend.SCRIPTED, "front desk")
        assert payload.occurred_at.utcoffset() == timedelta(hours=8)
        assert payload.card == TUNION

    def test_outbox_failure_is_never_reported_as_success(
        self, kiosks: list[Kiosk], outbox_path: Path
    ) -> None:
        """If the tap cannot be stored, the member is told it was NOT recorded."""
        reader = ScriptedReader()
        kiosk = run_kiosk(kiosks, outbox_path, FakeTapServer(), [reader])
        kiosk.next_line()  # ready
        kiosk.outbox.close()  # the disk went away
        reader.feed(TUNION)
        line = kiosk.next_card_line()
        assert (line.status, line.code, line.seq) == (
            FeedbackStatus.NOT_RECORDED,
            "outbox_write_failed",
            None,
        )
        assert "未能记录" in line.message


class TestReaderFailures:
    def test_disconnect_closes_and_reopens(self, kiosks: list[Kiosk], outbox_path: Path) -> None:
        """A lost reader is reported once, closed, reopened, and taps continue with the next seq."""
        first = ScriptedReader([TUNION, ReaderDisconnected("USB unplugged")])
        second = ScriptedReader([UID_ONLY])
        kiosk = run_kiosk(kiosks, outbox_path, FakeTapServer(), [first, second])
        statuses = [kiosk.next_line() for _ in range(5)]
        assert [(line.status, line.seq) for line in statuses] == [
            (FeedbackStatus.READY, None),
            (FeedbackStatus.ACCEPTED, 1),
            (FeedbackStatus.READER_ERROR, None),
            (FeedbackStatus.READY, None),
            (FeedbackStatus.ACCEPTED, 2),
        ]
        assert statuses[2].code == "reader_disconnected"
        assert "重新连接" in statuses[2].message
        assert first.closed

    def test_unavailable_reader_is_reported_once_while_retrying(
        self, kiosks: list[Kiosk], outbox_path: Path
    ) -> None:
        """Repeated failures to open the reader print one line, then "ready" once it is back."""
        opens: list[Reader | ReaderError] = [ReaderUnavailable("pcscd not running") for _ in range(4)]
        kiosk = run_kiosk(kiosks, outbox_path, FakeTapServer(), [*opens, ScriptedReader([TUNION])])
        lines = [kiosk.next_line() for _ in range(3)]
        assert [line.status for line in lines] == [
            FeedbackStatus.READER_ERROR,
            FeedbackStatus.READY,
            FeedbackStatus.ACCEPTED,
        ]
        assert lines[0].code == "reader_unavailable"
        assert "seq" not in json.loads(lines[0].to_json())  # a status line, not an answer to a card

    def test_stop_closes_the_reader(self, kiosks: list[Kiosk], outbox_path: Path) -> None:
        """Setting the stop event ends the loop promptly, closes the reader and reports what is pending."""
        reader = ScriptedReader()
        kiosk = run_kiosk(kiosks, outbox_path, server_down(), [reader])
        kiosk.next_line()  # ready
        reader.feed(TUNION)
        kiosk.next_card_line()
        started = time.monotonic()
        kiosk.stop()
        assert time.monotonic() - started < 2
        assert reader.closed
        stopped = kiosk.lines.get(timeout=1)
        assert (stopped.status, stopped.pending) == (FeedbackStatus.STOPPED, 1)


class TestRestart:
    def test_restart_uploads_what_the_last_run_left(self, kiosks: list[Kiosk], outbox_path: Path) -> None:
        """Taps recorded offline are uploaded by the next run, and numbering continues after them."""
        offline = run_kiosk(kiosks, outbox_path, server_down(), [ScriptedReader([TUNION, UID_ONLY])])
        assert offline.next_card_line().status is FeedbackStatus.OFFLINE
        assert offline.next_card_line().status is FeedbackStatus.OFFLINE
        offline.stop()

        server = FakeTapServer()
        reader = ScriptedReader()
        online = run_kiosk(kiosks, outbox_path, server, [reader])
        deadline = time.monotonic() + 5
        while online.outbox.pending_count() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.seqs_received == [1, 2]
        reader.feed(TUNION)
        line = online.next_card_line()
        assert (line.status, line.seq, line.pending) == (FeedbackStatus.ACCEPTED, 3, 0)


def test_no_raw_card_identifier_in_logs(
    kiosks: list[Kiosk], outbox_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Across online, offline and failed taps, logs and feedback show only masked card identifiers."""
    caplog.set_level(logging.DEBUG)
    reader = ScriptedReader([TUNION, CardTimeout("card left mid-read")])
    kiosk = run_kiosk(kiosks, outbox_path, server_down(), [reader])
    lines = [kiosk.next_card_line(), kiosk.next_card_line()]
    kiosk.stop()
    shown = caplog.text + "".join(line.to_text() + line.to_json() for line in lines)
    assert "****0001" in shown
    assert CARD_NO not in shown
    assert UID not in shown
