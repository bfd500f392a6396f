"""The SQLite outbox: seq allocation, durability across crashes, pending/sent bookkeeping."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from reader_agent.outbox import MIGRATIONS, SCHEMA_VERSION, Outbox, OutboxError
from reader_agent.signing import KioskKey
from schemas import (
    CardApplication,
    CardFacts,
    ReaderBackend,
    ReaderInfo,
    SignedEnvelope,
    TapDisplay,
    TapPayload,
    TapReceipt,
    TapStatus,
)

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 7, 1, 9, 30, tzinfo=CST)
KEY = KioskKey.generate()


def make_payload(seq: int) -> TapPayload:
    return TapPayload(
        kiosk_id="kiosk-1",
        seq=seq,
        occurred_at=NOW + timedelta(seconds=seq),
        card=CardFacts(uid="A1B2C3D4", application=CardApplication.UID_ONLY),
        reader=ReaderInfo(backend=ReaderBackend.SCRIPTED, name="scripted"),
    )


def receipt(index: int, seq: int, status: TapStatus = TapStatus.ACCEPTED) -> TapReceipt:
    return TapReceipt(index=index, seq=seq, status=status, display=TapDisplay(message="签到成功"))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite3"


@pytest.fixture
def outbox(path: Path) -> Iterator[Outbox]:
    with Outbox.open(path) as opened:
        yield opened


class TestSeqAllocation:
    def test_starts_at_one_and_increases(self, outbox: Outbox) -> None:
        """The first tap is seq 1 and each next tap gets the next number."""
        seqs = [outbox.append(make_payload, KEY).seq for _ in range(3)]
        assert seqs == [1, 2, 3]

    def test_survives_reopening(self, path: Path) -> None:
        """After the agent restarts, numbering continues where it stopped."""
        with Outbox.open(path) as first:
            first.append(make_payload, KEY)
            first.append(make_payload, KEY)
        with Outbox.open(path) as second:
            assert second.append(make_payload, KEY).seq == 3
            assert second.stats().last_seq == 3

    def test_replacement_device_continues_the_kiosk_numbering(self, outbox: Outbox) -> None:
        """Enrolled as a replacement, the first tap carries the seq the server asked for."""
        outbox.continue_from(42)
        assert outbox.append(make_payload, KEY).seq == 42

    def test_continuing_never_moves_numbering_backwards(self, outbox: Outbox) -> None:
        """A stale first_seq cannot make a seq be used twice."""
        for _ in range(3):
            outbox.append(make_payload, KEY)
        outbox.continue_from(2)
        assert outbox.append(make_payload, KEY).seq == 4

    def test_stored_envelope_is_the_signed_payload(self, outbox: Outbox) -> None:
        """What the outbox keeps is exactly the signed envelope, carrying the allocated seq."""
        entry = outbox.append(make_payload, KEY)
        (stored,) = outbox.pending_batch(10)
        assert stored == entry
        assert TapPayload.model_validate_json(stored.envelope.payload_bytes()).seq == entry.seq
        assert stored.occurred_at == make_payload(1).occurred_at

    def test_failure_inside_the_transaction_stores_nothing(self, outbox: Outbox) -> None:
        """A crash while signing rolls the seq back with the row: nothing half-made is kept."""
        outbox.append(make_payload, KEY)

        class BrokenSealer:
            def seal(self, payload: TapPayload) -> SignedEnvelope:
                raise RuntimeError(f"HSM unplugged while signing tap {payload.seq}")

        with pytest.raises(RuntimeError):
            outbox.append(make_payload, BrokenSealer())
        assert outbox.pending_count() == 1
        # The failed tap never existed outside the rolled-back transaction, so its number is free.
        assert outbox.append(make_payload, KEY).seq == 2
        assert [entry.seq for entry in outbox.pending_batch(10)] == [1, 2]

    def test_payload_must_carry_the_allocated_seq(self, outbox: Outbox) -> None:
        """A payload builder that ignores the allocated seq is refused, and nothing is stored."""
        with pytest.raises(ValueError, match="seq"):
            outbox.append(lambda seq: make_payload(seq + 1), KEY)
        assert outbox.stats().last_seq == 0

    def test_threads_never_share_a_seq(self, outbox: Outbox) -> None:
        """Concurrent appends through one outbox get distinct, gap-free numbers."""
        results: list[int] = []
        lock = threading.Lock()

        def worker() -> None:
            for _ in range(50):
                seq = outbox.append(make_payload, KEY).seq
                with lock:
                    results.append(seq)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(results) == list(range(1, 201))

    def test_two_connections_never_share_a_seq(self, path: Path) -> None:
        """Two outbox objects on one file (as two processes would be) still never hand out one seq twice."""
        first, second = Outbox.open(path), Outbox.open(path)
        try:
            seqs = [box.append(make_payload, KEY).seq for _ in range(20) for box in (first, second)]
        finally:
            first.close()
            second.close()
        assert sorted(seqs) == list(range(1, 41))


CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timezone
    from pathlib import Path
    from reader_agent.outbox import Outbox
    from reader_agent.signing import KioskKey
    from schemas import CardApplication, CardFacts, ReaderBackend, ReaderInfo, TapPayload

    path, hang_at = Path(sys.argv[1]), int(sys.argv[2])
    key = KioskKey.generate()

    class Sealer:
        def seal(self, payload):
            if payload.seq == hang_at:
                print(f"sealing {payload.seq}", flush=True)
                time.sleep(60)
            return key.seal(payload)

    def make(seq):
        return TapPayload(
            kiosk_id="kiosk-1", seq=seq, occurred_at=datetime.now(timezone.utc),
            card=CardFacts(uid="A1B2C3D4", application=CardApplication.UID_ONLY),
            reader=ReaderInfo(backend=ReaderBackend.SCRIPTED, name="scripted"),
        )

    outbox = Outbox.open(path)
    while True:
        print(f"committed {outbox.append(make, Sealer()).seq}", flush=True)
    """
)


def run_child_until(path: Path, hang_at: int, stop_line: str) -> list[int]:
    """Run an appending process, SIGKILL it once it prints *stop_line*; return the seqs it committed."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(hang_at)], stdout=subprocess.PIPE, text=True
    )
    committed: list[int] = []
    timer = threading.Timer(30, child.kill)  # never hang the suite
    timer.start()
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("committed "):
                committed.append(int(line.split()[1]))
            if line.strip() == stop_line:
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(timeout=10)
        timer.cancel()
    return committed


class TestCrashes:
    def test_kill_between_allocation_and_commit(self, path: Path) -> None:
        """A process killed while a tap's seq is allocated but not committed leaves no trace of that tap.

        Every tap reported committed is there; the killed one is not; numbering resumes right after
        the last committed tap, so no seq that ever reached the outbox (or the server) is reused.
        """
        committed = run_child_until(path, hang_at=5, stop_line="sealing 5")
        assert committed == [1, 2, 3, 4]
        with Outbox.open(path) as outbox:
            assert [entry.seq for entry in outbox.pending_batch(100)] == [1, 2, 3, 4]
            assert outbox.append(make_payload, KEY).seq == 5
            assert outbox.stats().last_seq == 5

    def test_kill_at_any_moment_keeps_every_committed_tap(self, path: Path) -> None:
        """A process killed mid-stream (wherever it was) loses no committed tap and no seq repeats."""
        committed = run_child_until(path, hang_at=0, stop_line="committed 60")
        with Outbox.open(path) as outbox:
            stored = [entry.seq for entry in outbox.pending_batch(1000)]
            next_seq = outbox.append(make_payload, KEY).seq
        assert set(committed) <= set(stored)
        assert stored == list(range(1, len(stored) + 1))
        assert next_seq == len(stored) + 1


class TestPendingAndSent:
    def test_batch_is_oldest_first_and_reading_changes_nothing(self, outbox: Outbox) -> None:
        """A batch holds the oldest pending taps in seq order; fetching it twice gives the same batch."""
        for _ in range(5):
            outbox.append(make_payload, KEY)
        first = outbox.pending_batch(3)
        assert [entry.seq for entry in first] == [1, 2, 3]
        assert outbox.pending_batch(3) == first
        assert outbox.pending_count() == 5

    def test_mark_sent_stores_the_receipt(self, outbox: Outbox) -> None:
        """A receipted tap leaves the pending set and keeps its receipt, rejected ones included."""
        for _ in range(3):
            outbox.append(make_payload, KEY)
        changed = outbox.mark_sent(
            [(1, receipt(0, 1)), (2, receipt(1, 2, TapStatus.REJECTED))], now=NOW + timedelta(minutes=1)
        )
        assert changed == 2
        assert [entry.seq for entry in outbox.pending_batch(10)] == [3]
        assert outbox.pending_count() == 1
        stored = outbox.receipt(2)
        assert stored is not None
        assert stored.status is TapStatus.REJECTED
        assert outbox.receipt(3) is None
        assert outbox.receipt(99) is None

    def test_first_receipt_wins(self, outbox: Outbox) -> None:
        """A tap resent after a lost answer keeps the receipt the member was first shown."""
        outbox.append(make_payload, KEY)
        outbox.mark_sent([(1, receipt(0, 1, TapStatus.ACCEPTED))], now=NOW)
        assert outbox.mark_sent([(1, receipt(0, 1, TapStatus.DUPLICATE))], now=NOW) == 0
        stored = outbox.receipt(1)
        assert stored is not None
        assert stored.status is TapStatus.ACCEPTED

    def test_sent_taps_are_kept(self, path: Path) -> None:
        """Nothing is deleted: sent taps stay on disk with their receipts after a restart."""
        with Outbox.open(path) as outbox:
            outbox.append(make_payload, KEY)
            outbox.append(make_payload, KEY)
            outbox.mark_sent([(1, receipt(0, 1))], now=NOW)
        with Outbox.open(path) as outbox:
            stats = outbox.stats()
            assert (stats.pending, stats.sent, stats.last_seq) == (1, 1, 2)
            assert stats.oldest_pending_at == make_payload(2).occurred_at
            assert outbox.receipt(1) is not None


class TestQuarantine:
    def test_a_quarantined_tap_is_kept_but_no_longer_pending(self, path: Path) -> None:
        """Set aside with its problem: out of the upload line, counted in the stats, still on disk."""
        with Outbox.open(path) as outbox:
            for _ in range(3):
                outbox.append(make_payload, KEY)
            assert outbox.quarantine(2, problem="http_422: invalid_request", now=NOW)
            assert not outbox.quarantine(2, problem="again", now=NOW)  # already set aside
            assert not outbox.quarantine(99, problem="unknown", now=NOW)
            assert [entry.seq for entry in outbox.pending_batch(10)] == [1, 3]
        with Outbox.open(path) as outbox:
            stats = outbox.stats()
            assert (stats.pending, stats.quarantined, stats.oldest_quarantined_seq) == (2, 1, 2)
            assert outbox.quarantined() == [(2, "http_422: invalid_request")]
            assert outbox.is_quarantined(2)
            assert not outbox.is_quarantined(1)

    def test_only_a_pending_tap_can_be_quarantined(self, outbox: Outbox) -> None:
        """A tap with its receipt is final: it is never set aside afterwards."""
        outbox.append(make_payload, KEY)
        outbox.mark_sent([(1, receipt(0, 1))], now=NOW)
        assert not outbox.quarantine(1, problem="late", now=NOW)
        assert outbox.stats().quarantined == 0

    def test_requeue_puts_them_back_in_line(self, outbox: Outbox) -> None:
        for _ in range(3):
            outbox.append(make_payload, KEY)
        outbox.quarantine(1, problem="x", now=NOW)
        outbox.quarantine(3, problem="y", now=NOW)
        assert outbox.requeue_quarantined() == 2
        assert [entry.seq for entry in outbox.pending_batch(10)] == [1, 2, 3]
        stats = outbox.stats()
        assert (stats.quarantined, stats.oldest_quarantined_seq) == (0, None)

    def test_an_outbox_of_the_first_schema_is_migrated_with_its_taps(self, path: Path) -> None:
        """An outbox written before quarantine existed opens with every tap and receipt intact."""
        db = sqlite3.connect(path, isolation_level=None)
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.close()
        with Outbox(sqlite3.connect(path, isolation_level=None, check_same_thread=False)) as legacy:
            legacy.append(make_payload, KEY)
            legacy.append(make_payload, KEY)
            legacy.mark_sent([(1, receipt(0, 1))], now=NOW)
        with Outbox.open(path) as outbox:
            stats = outbox.stats()
            assert (stats.pending, stats.sent, stats.last_seq, stats.quarantined) == (1, 1, 2, 0)
            assert outbox.receipt(1) is not None
            assert outbox.quarantine(2, problem="x", now=NOW)
        with sqlite3.connect(path) as check:
            assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2


class TestFile:
    def test_uses_wal_and_records_schema_version(self, path: Path) -> None:
        """The file is in WAL mode and carries its schema version for later migrations."""
        Outbox.open(path).close()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION

    def test_file_is_private(self, path: Path) -> None:
        """The outbox holds raw card numbers, so its files are readable by their owner only."""
        previous = os.umask(0)
        try:
            with Outbox.open(path) as outbox:
                outbox.append(make_payload, KEY)
                modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.glob("outbox.sqlite3*")}
        finally:
            os.umask(previous)
        assert "outbox.sqlite3-wal" in modes
        assert set(modes.values()) == {0o600}

    def test_refuses_a_newer_schema(self, path: Path) -> None:
        """An outbox written by a newer agent is not touched by an older one."""
        Outbox.open(path).close()
        with sqlite3.connect(path) as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(OutboxError) as excinfo:
            Outbox.open(path)
        assert excinfo.value.code == "outbox_schema_too_new"

    def test_not_a_database(self, path: Path) -> None:
        """A file that is not SQLite is reported with a stable code."""
        path.write_bytes(b"this is not a database" * 100)
        with pytest.raises(OutboxError) as excinfo:
            Outbox.open(path)
        assert excinfo.value.code == "outbox_unavailable"

    def test_write_after_close_is_an_outbox_error(self, path: Path) -> None:
        """A failing write surfaces as OutboxError, never as a raw sqlite3 exception."""
        outbox = Outbox.open(path)
        outbox.close()
        with pytest.raises(OutboxError) as excinfo:
            outbox.append(make_payload, KEY)
        assert excinfo.value.code == "outbox_write_failed"
