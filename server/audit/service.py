"""Append to and read the audit log. Services call :func:`record` in the same unit of work as the
change they audit, so an action and its audit entry are committed (or rolled back) together."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from sqlmodel import Session, col, select

from server.caller import Actor, Scope
from server.records.audit import AuditEntry

GENESIS_HASH = "0" * 64


def _content(entry: AuditEntry) -> bytes:
    # UTC, because the database hands times back in UTC whatever zone they were recorded in.
    return json.dumps(
        [
            entry.at.astimezone(UTC).isoformat(),
            entry.actor,
            entry.actor_name,
            entry.action,
            entry.object_type,
            entry.object_id,
            entry.org_id,
            entry.reason,
            entry.detail,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def _chain_hash(prev_hash: str, entry: AuditEntry) -> str:
    digest = hashes.Hash(hashes.SM3())
    digest.update(bytes.fromhex(prev_hash))
    digest.update(_content(entry))
    return digest.finalize().hex()


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | int,
    org_id: int | None,
    at: datetime,
    reason: str = "",
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry. Never log raw card identifiers in *detail* (mask or hash them)."""
    # The latest row is locked on PostgreSQL so two concurrent writers cannot both chain onto it;
    # SQLite transactions here are BEGIN IMMEDIATE, which already serialises writers.
    last = session.exec(
        select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(1).with_for_update()
    ).first()
    prev_hash = last.entry_hash if last is not None else GENESIS_HASH
    entry = AuditEntry(
        at=at,
        actor=actor.ref,
        actor_name=actor.name,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        org_id=org_id,
        reason=reason,
        detail=json.dumps(dict(detail or {}), ensure_ascii=False, sort_keys=True, default=str),
        prev_hash=prev_hash,
        entry_hash="",
    )
    entry.entry_hash = _chain_hash(prev_hash, entry)
    session.add(entry)
    session.flush()
    return entry


def list_entries(
    session: Session,
    *,
    scope: Scope,
    object_type: str | None = None,
    object_id: str | int | None = None,
    limit: int = 200,
    before_id: int | None = None,
) -> Sequence[AuditEntry]:
    """Newest first, only entries of the scope's organisations (entries without an organisation,
    such as failed sign-ins of unknown names, only for an unscoped caller)."""
    query = (
        select(AuditEntry)
        .where(scope.condition(AuditEntry.org_id))
        .order_by(col(AuditEntry.id).desc())
        .limit(limit)
    )
    if object_type is not None:
        query = query.where(AuditEntry.object_type == object_type)
    if object_id is not None:
        query = query.where(AuditEntry.object_id == str(object_id))
    if before_id is not None:
        query = query.where(col(AuditEntry.id) < before_id)
    return session.exec(query).all()


def verify_chain(session: Session) -> int | None:
    """The id of the first entry whose hash does not follow from its predecessor; None if intact."""
    breaks = chain_breaks(session)
    return breaks[0][0] if breaks else None


def chain_breaks(session: Session) -> list[tuple[int, str]]:
    """Every entry that breaks the chain, with what is wrong: ``prev_hash_mismatch`` (the entry
    before it was deleted, inserted or rewritten) or ``entry_altered`` (its own content changed).
    Unlike :func:`verify_chain` the walk goes on past a break, from each entry's stored hash."""
    breaks: list[tuple[int, str]] = []
    prev_hash = GENESIS_HASH
    for entry in session.exec(select(AuditEntry).order_by(col(AuditEntry.id))):
        assert entry.id is not None
        if entry.prev_hash != prev_hash:
            breaks.append((entry.id, "prev_hash_mismatch"))
        if entry.entry_hash != _chain_hash(entry.prev_hash, entry):
            breaks.append((entry.id, "entry_altered"))
        prev_hash = entry.entry_hash
    return breaks


def chain_head(session: Session) -> tuple[int, str] | None:
    """The latest entry's id and hash (None for an empty log)."""
    last = session.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(1)).first()
    return None if last is None or last.id is None else (last.id, last.entry_hash)
