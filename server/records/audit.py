"""The audit log table: who did what to which object, hash-chained so that edits to history show."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, Text
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime

AUDIT_ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntry(SQLModel, table=True):
    """One audited action. Rows are only ever appended.

    ``entry_hash`` is SM3 over the previous entry's hash and this entry's canonical content
    (国密 SM3, as 密评 expects for integrity of important records), so rewriting or deleting an
    old row breaks every hash after it (see ``service.verify_chain``).
    """

    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True, sa_type=AUDIT_ID_TYPE)
    at: datetime = Field(sa_type=UtcDateTime, index=True)
    actor: str = Field(max_length=100, description="Who: 'user:7', 'token:3', 'cli', 'kiosk:K-000001'.")
    actor_name: str = Field(default="", max_length=100)
    action: str = Field(max_length=64, index=True, description="Stable verb, e.g. 'transfer.accept'.")
    object_type: str = Field(max_length=64)
    object_id: str = Field(max_length=64)
    org_id: int | None = Field(
        default=None, foreign_key="organisation.id", index=True, description="Scopes who may read it."
    )
    reason: str = Field(default="", max_length=500)
    detail: str = Field(default="{}", sa_type=Text, description="JSON object; never raw card identifiers.")
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64, unique=True)
