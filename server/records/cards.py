"""Card binding table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.vocabulary import BindingStatus, CardCheckLevel


class CardBinding(SQLModel, table=True):
    """A card bound to a member. Raw identifiers never reach the database: only keyed digests
    (for lookup) and masked forms (for display)."""

    __tablename__ = "card_binding"
    __table_args__ = (
        CheckConstraint("card_no_hmac IS NOT NULL OR uid_hmac IS NOT NULL", name="has_identifier"),
    )

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    card_no_hmac: str | None = Field(default=None, max_length=64, index=True)
    uid_hmac: str | None = Field(default=None, max_length=64, index=True)
    card_no_masked: str | None = Field(default=None, max_length=32)
    uid_masked: str | None = Field(default=None, max_length=32)
    status: BindingStatus = Field(sa_type=string_enum(BindingStatus))
    bound_at: datetime = Field(sa_type=UtcDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # Since when the card is known to answer the issuer's challenge (declared at binding, or its
    # first verified answer). From then on, a kiosk that asked and got no valid answer has a clone.
    issuer_mac_since: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # The strongest level the card has been verified at: from the evidence it was bound with
    # (its number, --issuer-mac), raised by a tap that checked higher. A read below it from a
    # kiosk that could have done better is a downgrade, refused (server.cards.checks).
    verified_level: CardCheckLevel = Field(default=CardCheckLevel.UID, sa_type=string_enum(CardCheckLevel))
