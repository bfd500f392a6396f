"""Tap table: the immutable record of every envelope the server was sent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from schemas.messages import TapMode
from server.db import UtcDateTime, string_enum
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
    kiosk_id: str | None = Field(default=None, foreign_key="kiosk.id", max_length=64, index=True)
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
