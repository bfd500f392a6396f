"""Notification tables: where messages go (targets, opt-outs) and the outbox (deliveries, attempts).

A message is queued as a :class:`Delivery` in the transaction that decides to send it, and sent
later by ``server.notify.service.deliver_due``; each try is a :class:`DeliveryAttempt`. The
``dedupe_key`` names the message's identity (a recipient's digest of one day, a notice of one
event at one time and place), so a run that decides the same thing again queues nothing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.vocabulary import DeliveryState, NotifyChannel

__all__ = [
    "AttemptOutcome",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryKind",
    "DeliveryState",
    "NotifyChannel",
    "NotifyOptOut",
    "NotifyTarget",
]


class AttemptOutcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # failed, another attempt is scheduled
    FAILED = "failed"  # failed, and it was the last attempt


class DeliveryKind(StrEnum):
    DIGEST = "digest"  # 每日提醒汇总
    MEETING_NOTICE = "meeting_notice"  # 会议通知
    MESSAGE = "message"  # anything else queued by a caller


class NotifyTarget(SQLModel, table=True):
    """Where one recipient is reached on one channel: an organisation's group robot (URL and the
    shared secret that signs each request) or a web user's e-mail address.

    ``recipient`` is ``org:<id>`` or ``user:<id>``, the same key the opt-outs and deliveries use.
    The secret is kept here for signing only: screens, logs and the CLI show it masked.
    """

    __tablename__ = "notify_target"
    __table_args__ = (UniqueConstraint("recipient", "channel"),)

    id: int | None = Field(default=None, primary_key=True)
    recipient: str = Field(max_length=64)
    channel: NotifyChannel = Field(sa_type=string_enum(NotifyChannel))
    org_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    user_id: int | None = Field(default=None, foreign_key="web_user.id", index=True)
    address: str = Field(max_length=500)
    secret: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class NotifyOptOut(SQLModel, table=True):
    """A recipient who asked not to be reached on a channel; nothing is queued for them there."""

    __tablename__ = "notify_opt_out"

    recipient: str = Field(max_length=64, primary_key=True)
    channel: NotifyChannel = Field(sa_type=string_enum(NotifyChannel), primary_key=True)
    created_at: datetime = Field(sa_type=UtcDateTime)


class Delivery(SQLModel, table=True):
    """One message in the outbox. ``address`` is where it went (or will go): the e-mail address,
    or the robot's URL as of the last attempt; the webhook secret is read from the target when
    sending and never copied here. ``last_error`` is a short reason without secrets."""

    __tablename__ = "delivery"
    __table_args__ = (Index("ix_delivery_state_next_attempt", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: NotifyChannel = Field(sa_type=string_enum(NotifyChannel))
    kind: DeliveryKind = Field(sa_type=string_enum(DeliveryKind))
    recipient: str = Field(max_length=64, index=True)
    target_id: int | None = Field(default=None, foreign_key="notify_target.id", index=True)
    org_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    address: str = Field(max_length=500)
    subject: str = Field(max_length=200)
    body: str = Field(sa_type=Text)
    dedupe_key: str = Field(max_length=255, unique=True)
    state: DeliveryState = Field(sa_type=string_enum(DeliveryState))
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(sa_type=UtcDateTime)
    last_error: str = Field(default="", max_length=500)
    created_at: datetime = Field(sa_type=UtcDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    failed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class DeliveryAttempt(SQLModel, table=True):
    """One try at sending a delivery: when, how it ended, and the HTTP status or error."""

    __tablename__ = "delivery_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="delivery.id", index=True)
    at: datetime = Field(sa_type=UtcDateTime)
    outcome: AttemptOutcome = Field(sa_type=string_enum(AttemptOutcome))
    http_status: int | None = Field(default=None)
    error: str = Field(default="", max_length=500)
