"""Tap table: the immutable record of every envelope the server was sent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, UniqueConstraint, func, select, text
from sqlmodel import Field, Session, SQLModel

from schemas.messages import TapMode
from server.db import UtcDateTime, bulk_insert, string_enum
from server.vocabulary import CardCheckLevel, CardCheckNote, RejectionCode, TapOutcome, TapRedecision

# Taps outgrow 2^31 long before anything else; SQLite only auto-numbers an INTEGER primary key.
TAP_ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class Tap(SQLModel, table=True):
    """One received envelope, accepted or rejected, written once and never updated.

    The raw payload is never stored (it holds raw card identifiers): only its keyed digest, for
    replay detection, and the keyed card digests, for audit. The receipt's display fields are kept
    so a replay gets the very same answer.
    """

    __tablename__ = "tap"
    # claimed_seq is the seq for the first envelope that took a (kiosk, seq) slot and NULL for every
    # other row (conflicts, rejects before the slot was checked). NULLs are distinct in a unique
    # constraint on both SQLite and PostgreSQL, so this enforces "one original per kiosk and seq"
    # while still storing the conflicting rows.
    __table_args__ = (
        UniqueConstraint("kiosk_id", "claimed_seq"),
        # A venue's taps in a time span: what an event entered afterwards, or a 签退 that arrived
        # before its 签到, is decided again against (server.attendance.derive).
        Index("ix_tap_kiosk_occurred", "kiosk_id", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=TAP_ID_TYPE)
    received_at: datetime = Field(sa_type=UtcDateTime)
    kid: str = Field(max_length=64)
    # Indexed as the leading column of (kiosk_id, claimed_seq) and (kiosk_id, occurred_at).
    kiosk_id: str | None = Field(default=None, foreign_key="kiosk.id", max_length=64)
    seq: int | None = Field(default=None, sa_type=BigInteger)
    claimed_seq: int | None = Field(default=None, sa_type=BigInteger)
    payload_digest: str = Field(max_length=64, index=True)
    occurred_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    mode: TapMode | None = Field(default=None, sa_type=string_enum(TapMode))
    card_no_hmac: str | None = Field(default=None, max_length=64)
    uid_hmac: str | None = Field(default=None, max_length=64)
    reader_backend: str | None = Field(default=None, max_length=32)
    # The card check the tap passed (server.cards.checks); NULL when it passed none.
    card_check: CardCheckLevel | None = Field(default=None, sa_type=string_enum(CardCheckLevel))
    card_check_note: CardCheckNote | None = Field(default=None, sa_type=string_enum(CardCheckNote))
    # The issuer challenge this tap's card answered (hex), kept so no later tap can reuse it.
    auth_challenge: str | None = Field(default=None, max_length=32, unique=True, index=True)
    # For a check-in tap, what it counts as now (server.attendance.derive): set at ingest when it
    # was accepted, and again when something that could match it appeared later (``redecision``,
    # ``redecided_at``; audited ``tap.redecide``). The receipt fields below never change.
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    event_id: int | None = Field(default=None, foreign_key="event.id", index=True)
    redecision: TapRedecision | None = Field(default=None, sa_type=string_enum(TapRedecision))
    redecided_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    outcome: TapOutcome = Field(sa_type=string_enum(TapOutcome))
    code: RejectionCode | None = Field(default=None, sa_type=string_enum(RejectionCode))
    display_member_name: str | None = Field(default=None, max_length=100)
    display_event_title: str | None = Field(default=None, max_length=200)
    display_message: str = Field(max_length=200)


@dataclass(slots=True)
class NewTap:
    """A tap row while ingest decides it, before it is written: plain attributes (an ORM object
    costs far more to build and change than deciding the tap does), written with many others in
    one statement by :func:`insert_new_taps`. Its fields are :class:`Tap`'s columns; its id is
    taken from :func:`allocate_tap_ids` up front, so rows that refer to it need not wait."""

    received_at: datetime
    kid: str
    payload_digest: str
    outcome: TapOutcome
    display_message: str
    id: int | None = None
    kiosk_id: str | None = None
    seq: int | None = None
    claimed_seq: int | None = None
    occurred_at: datetime | None = None
    mode: TapMode | None = None
    card_no_hmac: str | None = None
    uid_hmac: str | None = None
    reader_backend: str | None = None
    card_check: CardCheckLevel | None = None
    card_check_note: CardCheckNote | None = None
    auth_challenge: str | None = None
    member_id: int | None = None
    event_id: int | None = None
    redecision: TapRedecision | None = None
    redecided_at: datetime | None = None
    code: RejectionCode | None = None
    display_member_name: str | None = None
    display_event_title: str | None = None


NEW_TAP_FIELDS = tuple(f.name for f in fields(NewTap))
TAP_TABLE = SQLModel.metadata.tables[Tap.__tablename__]


def allocate_tap_ids(session: Session, count: int) -> list[int]:
    """*count* unused tap ids, ascending. PostgreSQL takes them from the table's sequence; SQLite
    numbers a new row one above the largest id, as it would itself, which is safe because a
    transaction that writes holds SQLite's only write lock (``server.db``) until it ends."""
    if count <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        # One row (an array), not one row per id: a run of 350 taps spent more on rows than on ids.
        taken = session.execute(
            text(
                "SELECT array_agg(nextval(pg_get_serial_sequence('tap', 'id'))) "
                "FROM generate_series(1, :count)"
            ),
            {"count": count},
        ).scalar_one()
        return sorted(int(value) for value in taken)
    top = session.execute(select(func.max(TAP_TABLE.c.id))).scalar() or 0
    return list(range(top + 1, top + 1 + count))


def insert_new_taps(session: Session, rows: Sequence[NewTap]) -> None:
    """Write *rows* (each with its id) in one multi-row INSERT."""
    bulk_insert(session, TAP_TABLE, [{name: getattr(row, name) for name in NEW_TAP_FIELDS} for row in rows])
