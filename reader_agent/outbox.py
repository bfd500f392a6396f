"""The durable outbox: every signed tap is committed here before the member is told anything.

A row is ``pending`` until the server's receipt for it arrives, then ``sent`` with that receipt
stored next to it. Rows are never deleted on read: delivery is at-least-once and the server
deduplicates by ``(kiosk_id, seq)``.

A third state, ``quarantined``, is for a tap the server keeps refusing while it takes the others
(the uploader finds it by splitting the batch; see ``reader_agent.uploader``). Uploads go oldest
first, so a pending tap nobody will ever take would hold up every tap behind it, forever. Set
aside, it no longer does; it is still kept (a signed tap is evidence, and the fault may be the
server's), counted in the heartbeat so the kiosk health page shows it, and put back in line with
:meth:`Outbox.requeue_quarantined` once the cause is fixed.

Durability choices (the kiosk may lose power at any moment):

* WAL journal with ``synchronous=FULL``: a commit that returned is on disk.
* ``isolation_level=None`` and explicit ``BEGIN IMMEDIATE``: the write lock is taken up front, so
  a transaction never fails half-way with "database is locked" after doing work.
* The seq counter is bumped, the payload built and signed, and the row inserted in ONE
  transaction. A crash before the commit rolls all three back: no signature with that seq ever
  left the process, so the number is free again. A seq that was committed is never handed out
  twice, even if rows were one day pruned, because the counter lives in its own row.

One :class:`Outbox` object may be shared by threads (the run loop appends, the uploader reads and
acknowledges); a lock serialises use of its single connection. Other processes (``ecard agent
status``) may open the same file concurrently; the busy timeout covers their brief locks.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from schemas import SignedEnvelope, TapPayload, TapReceipt


class OutboxError(Exception):
    """The outbox could not be opened, read or written (disk full, corrupt file, too new a schema)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Sealer(Protocol):
    """Turns a payload into a signed envelope (``reader_agent.signing.KioskKey`` is one)."""

    def seal(self, payload: TapPayload) -> SignedEnvelope: ...


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    seq: int
    occurred_at: datetime
    envelope: SignedEnvelope


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    sent: int
    last_seq: int  # 0 when no tap was ever recorded
    oldest_pending_at: datetime | None
    quarantined: int = 0
    oldest_quarantined_seq: int | None = None


# Migration N takes the schema from user_version N to N+1. Append; never edit a shipped step.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE seq_counter (
            only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
            last_seq INTEGER NOT NULL CHECK (last_seq >= 0)
        )
        """,
        "INSERT INTO seq_counter (only_row, last_seq) VALUES (1, 0)",
        """
        CREATE TABLE taps (
            seq INTEGER PRIMARY KEY CHECK (seq >= 1),
            occurred_at TEXT NOT NULL,
            envelope TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent')),
            receipt TEXT,
            sent_at TEXT,
            CHECK ((status = 'sent') = (receipt IS NOT NULL))
        )
        """,
        "CREATE INDEX taps_pending ON taps (seq) WHERE status = 'pending'",
    ),
    # 1 -> 2: the quarantined state. SQLite cannot alter a CHECK, so the table is rebuilt.
    (
        """
        CREATE TABLE taps_v2 (
            seq INTEGER PRIMARY KEY CHECK (seq >= 1),
            occurred_at TEXT NOT NULL,
            envelope TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'quarantined')),
            receipt TEXT,
            sent_at TEXT,
            quarantined_at TEXT,
            problem TEXT,
            CHECK ((status = 'sent') = (receipt IS NOT NULL)),
            CHECK ((status = 'quarantined') = (quarantined_at IS NOT NULL))
        )
        """,
        "INSERT INTO taps_v2 (seq, occurred_at, envelope, status, receipt, sent_at)"
        " SELECT seq, occurred_at, envelope, status, receipt, sent_at FROM taps",
        "DROP TABLE taps",
        "ALTER TABLE taps_v2 RENAME TO taps",
        "CREATE INDEX taps_pending ON taps (seq) WHERE status = 'pending'",
        "CREATE INDEX taps_quarantined ON taps (seq) WHERE status = 'quarantined'",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

BUSY_TIMEOUT_MS = 5000


class Outbox:
    """Signed taps waiting for, or holding, the server's receipt."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> Outbox:
        """Open (creating and migrating as needed) the outbox at *path*.

        Raises:
            OutboxError: ``outbox_unavailable`` when the file cannot be opened as SQLite in WAL
                mode, ``outbox_schema_too_new`` when a newer agent wrote it.
        """
        try:
            # Payloads hold raw card numbers: create the file private to this user. SQLite gives
            # the -wal and -shm files the same permissions as the database file.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise OutboxError("outbox_unavailable", f"cannot open outbox {path}: {exc.strerror}") from exc
        try:
            db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
        except sqlite3.Error as exc:
            raise OutboxError("outbox_unavailable", f"cannot open outbox {path}: {exc}") from exc
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError("outbox_unavailable", f"outbox {path} cannot use WAL (journal mode {mode})")
            db.execute("PRAGMA synchronous = FULL")
            _migrate(db, path)
        except sqlite3.Error as exc:
            db.close()
            raise OutboxError("outbox_unavailable", f"cannot open outbox {path}: {exc}") from exc
        except OutboxError:
            db.close()
            raise
        return cls(db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def append(self, make_payload: Callable[[int], TapPayload], sealer: Sealer) -> OutboxEntry:
        """Number, sign and store one tap, atomically.

        Args:
            make_payload: builds the tap's payload for the seq allocated to it.
            sealer: signs the payload.

        Returns:
            The committed entry; once this returns the tap survives a power cut.

        Raises:
            OutboxError: ``outbox_write_failed``; nothing was stored and no seq was consumed.
            Whatever *make_payload* or *sealer* raise, likewise with nothing stored.
        """
        with self._write() as db:
            (seq,) = db.execute(
                "UPDATE seq_counter SET last_seq = last_seq + 1 WHERE only_row = 1 RETURNING last_seq"
            ).fetchone()
            payload = make_payload(seq)
            if payload.seq != seq:
                raise ValueError(f"payload carries seq {payload.seq}, outbox allocated {seq}")
            envelope = sealer.seal(payload)
            db.execute(
                "INSERT INTO taps (seq, occurred_at, envelope) VALUES (?, ?, ?)",
                (seq, payload.occurred_at.isoformat(), envelope.model_dump_json()),
            )
        return OutboxEntry(seq=seq, occurred_at=payload.occurred_at, envelope=envelope)

    def pending_batch(self, limit: int) -> list[OutboxEntry]:
        """The oldest *limit* pending taps, in seq order. Reading does not change them."""
        with self._read() as db:
            rows = db.execute(
                "SELECT seq, occurred_at, envelope FROM taps WHERE status = 'pending' ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [self._entry(seq, occurred_at, envelope) for seq, occurred_at, envelope in rows]

    def mark_sent(self, receipts: Sequence[tuple[int, TapReceipt]], *, now: datetime) -> int:
        """Store each ``(seq, receipt)`` and mark the tap sent; returns how many pending taps changed.

        A tap that is already sent keeps its first receipt: that is what the member was shown.
        """
        if not receipts:
            return 0
        with self._write() as db:
            changed = 0
            for seq, receipt in receipts:
                cursor = db.execute(
                    "UPDATE taps SET status = 'sent', receipt = ?, sent_at = ?"
                    " WHERE seq = ? AND status = 'pending'",
                    (receipt.model_dump_json(), now.isoformat(), seq),
                )
                changed += cursor.rowcount
        return changed

    def quarantine(self, seq: int, *, problem: str, now: datetime) -> bool:
        """Set pending tap *seq* aside (kept, never deleted), with why; False if it was not pending.

        *problem* is the server's answer in a few words (``http_422: ...``); it holds no card data.
        """
        with self._write() as db:
            cursor = db.execute(
                "UPDATE taps SET status = 'quarantined', quarantined_at = ?, problem = ?"
                " WHERE seq = ? AND status = 'pending'",
                (now.isoformat(), problem[:500], seq),
            )
        return cursor.rowcount == 1

    def requeue_quarantined(self) -> int:
        """Put every quarantined tap back in line for upload (once the cause is fixed); returns how many."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE taps SET status = 'pending', quarantined_at = NULL WHERE status = 'quarantined'"
            )
        return cursor.rowcount

    def quarantined(self) -> list[tuple[int, str]]:
        """Every quarantined tap's seq and the problem that set it aside, oldest first."""
        with self._read() as db:
            rows = db.execute(
                "SELECT seq, coalesce(problem, '') FROM taps WHERE status = 'quarantined' ORDER BY seq"
            ).fetchall()
        return [(int(seq), str(problem)) for seq, problem in rows]

    def is_quarantined(self, seq: int) -> bool:
        with self._read() as db:
            row = db.execute("SELECT status FROM taps WHERE seq = ?", (seq,)).fetchone()
        return row is not None and row[0] == "quarantined"

    def continue_from(self, first_seq: int) -> None:
        """Make the next tap carry at least *first_seq* (a replacement device continuing a kiosk's
        numbering); never moves the counter backwards."""
        with self._write() as db:
            db.execute(
                "UPDATE seq_counter SET last_seq = max(last_seq, ?) WHERE only_row = 1", (first_seq - 1,)
            )

    def receipt(self, seq: int) -> TapReceipt | None:
        """The server's receipt for tap *seq*, or None while it is pending (or unknown)."""
        with self._read() as db:
            row = db.execute("SELECT receipt FROM taps WHERE seq = ?", (seq,)).fetchone()
        if row is None or row[0] is None:
            return None
        try:
            return TapReceipt.model_validate_json(row[0])
        except ValidationError as exc:
            raise OutboxError("outbox_corrupt", f"stored receipt of tap {seq} is unreadable") from exc

    def pending_count(self) -> int:
        with self._read() as db:
            (count,) = db.execute("SELECT count(*) FROM taps WHERE status = 'pending'").fetchone()
        return int(count)

    def stats(self) -> OutboxStats:
        with self._read() as db:
            pending, sent = db.execute(
                "SELECT count(*) FILTER (WHERE status = 'pending'),"
                " count(*) FILTER (WHERE status = 'sent') FROM taps"
            ).fetchone()
            # By seq, not min(occurred_at): the text of timestamps with different UTC offsets
            # does not sort by time.
            oldest_row = db.execute(
                "SELECT occurred_at FROM taps WHERE status = 'pending' ORDER BY seq LIMIT 1"
            ).fetchone()
            quarantined, oldest_quarantined = db.execute(
                "SELECT count(*), min(seq) FROM taps WHERE status = 'quarantined'"
            ).fetchone()
            (last_seq,) = db.execute("SELECT last_seq FROM seq_counter").fetchone()
        oldest = oldest_row[0] if oldest_row else None
        return OutboxStats(
            pending=int(pending),
            sent=int(sent),
            last_seq=int(last_seq),
            oldest_pending_at=datetime.fromisoformat(oldest) if oldest else None,
            quarantined=int(quarantined),
            oldest_quarantined_seq=int(oldest_quarantined) if oldest_quarantined is not None else None,
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise OutboxError("outbox_write_failed", f"cannot write the outbox: {exc}") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                # ROLLBACK itself fails when SQLite already rolled back (e.g. SQLITE_FULL); the
                # transaction is gone either way.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise OutboxError("outbox_write_failed", f"cannot write the outbox: {exc}") from exc
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise OutboxError("outbox_read_failed", f"cannot read the outbox: {exc}") from exc

    @staticmethod
    def _entry(seq: int, occurred_at: str, envelope: str) -> OutboxEntry:
        try:
            return OutboxEntry(
                seq=seq,
                occurred_at=datetime.fromisoformat(occurred_at),
                envelope=SignedEnvelope.model_validate_json(envelope),
            )
        except (ValueError, ValidationError) as exc:
            raise OutboxError("outbox_corrupt", f"stored tap {seq} is unreadable") from exc


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise OutboxError(
                "outbox_schema_too_new",
                f"outbox {path} has schema {version}; this agent knows up to {SCHEMA_VERSION} (downgrade?)",
            )
        for step in MIGRATIONS[version:]:
            for statement in step:
                db.execute(statement)
        # user_version lives in the database header and is part of this transaction.
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
