"""Evidence tables: what each stored tap was signed with (sealed), on its kiosk's hash chain, and
every ledger export with its verification code."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, LargeBinary, Text
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime
from server.records.taps import TAP_ID_TYPE


class TapEvidence(SQLModel, table=True):
    """The signed bytes of one stored tap, sealed, and its link in its kiosk's chain.

    ``sealed`` is the payload the kiosk signed, encrypted with AES-GCM under the evidence key
    (``ECARD_EVIDENCE_KEY`` or ``evidence.key``, never in the database); the associated data binds
    it to this row (tap id, kiosk, seq, kid, payload digest), so a blob moved to another row no
    longer opens. It holds the card identifiers, so the purge of unmatched taps erases it
    (``purged_at``); the signature (not identifying) stays. ``chain_hash`` is SM3 over
    ``prev_hash`` and the tap's immutable fields (never its decision, which may be taken again, nor
    the sealed blob, which may be purged): the kiosk's previous row's hash, or all zeros.
    """

    __tablename__ = "tap_evidence"
    # A kiosk's chain head is its row with the greatest tap id: one seek in this index, however
    # long the kiosk's history (ingest reads the heads of every run's kiosks).
    __table_args__ = (Index("ix_tap_evidence_kiosk_id_tap_id", "kiosk_id", "tap_id"),)

    tap_id: int = Field(primary_key=True, foreign_key="tap.id", sa_type=TAP_ID_TYPE)
    kiosk_id: str = Field(foreign_key="kiosk.id", max_length=64)
    signature: str = Field(max_length=100, description="base64url Ed25519 signature, as sent")
    nonce: bytes | None = Field(default=None, sa_type=LargeBinary)
    sealed: bytes | None = Field(default=None, sa_type=LargeBinary)
    purged_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    prev_hash: str = Field(max_length=64)
    chain_hash: str = Field(max_length=64, unique=True)


class LedgerExport(SQLModel, table=True):
    """One exported ledger file (CSV, XLSX or PDF) and the verification code printed on it.

    ``parameters`` (JSON) say how to build the same ledger again (kind, ids, period, as-of time);
    ``content`` (JSON) is the document as exported, so a later check can name the rows that
    changed; ``chain_heads`` (JSON) are the heads of the tap chains and of the audit chain then.
    """

    __tablename__ = "ledger_export"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    kind: str = Field(max_length=16)
    fmt: str = Field(max_length=8)
    org_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    parameters: str = Field(sa_type=Text)
    content_digest: str = Field(max_length=64)
    content: str = Field(sa_type=Text)
    chain_heads: str = Field(sa_type=Text)
    exported_at: datetime = Field(sa_type=UtcDateTime)
    exported_by: str = Field(max_length=100)
    exported_by_name: str = Field(default="", max_length=100)
