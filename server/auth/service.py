"""API bearer tokens: creation (the token is shown once) and authentication."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from server.audit.service import record as audit
from server.caller import Actor, Caller
from server.errors import InvalidToken, OrgRequired, TokenNotFound
from server.keyring import Keyring, Purpose
from server.orgs.service import require_organisation, subtree_scope
from server.records.auth import ApiToken
from server.vocabulary import TokenRole, UserRole

TOKEN_PREFIX = "ecard_"  # recognisable in a leaked config file or a secret scanner

TOKEN_ROLES: dict[TokenRole, UserRole] = {
    TokenRole.ADMIN: UserRole.ADMIN,
    TokenRole.SECRETARY: UserRole.SECRETARY,
}
"""The caller role a token acts with (one role vocabulary for tokens, web users and the CLI)."""


def token_actor(token_id: int) -> Actor:
    """How the audit log names a token's caller (one spelling for every domain)."""
    return Actor(f"token:{token_id}", f"API令牌 {token_id}")


@dataclass(frozen=True)
class CreatedToken:
    record: ApiToken
    token: str


def create_token(
    session: Session,
    *,
    keyring: Keyring,
    role: TokenRole,
    org_id: int | None,
    label: str,
    caller: Caller,
    now: datetime,
) -> CreatedToken:
    """Create a token; an ``org_id`` limits it to that organisation's subtree. Audited
    (``token.create``; the token itself is never written anywhere but the answer).

    Raises:
        OrgRequired: a secretary token without an organisation.
        OrganisationNotFound: no such organisation.
    """
    if role == TokenRole.SECRETARY and org_id is None:
        raise OrgRequired()
    if org_id is not None:
        require_organisation(session, org_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(
        token_hash=_token_digest(keyring, token), role=role, org_id=org_id, label=label[:200], created_at=now
    )
    session.add(record)
    session.flush()
    assert record.id is not None
    audit(
        session,
        actor=caller.actor,
        action="token.create",
        object_type="api_token",
        object_id=record.id,
        org_id=org_id,
        at=now,
        detail={"role": role.value, "label": record.label},
    )
    return CreatedToken(record=record, token=token)


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token, newest first (digests only: a token cannot be read back)."""
    return list(session.exec(select(ApiToken).order_by(col(ApiToken.id).desc())).all())


def revoke_token(session: Session, token_id: int, *, reason: str, caller: Caller, now: datetime) -> ApiToken:
    """Revoke a token from now on (a leaked config file, a secretary who left); audited
    (``token.revoke``). Revoking a revoked token changes nothing.

    Raises:
        TokenNotFound: no such token.
    """
    record = session.get(ApiToken, token_id)
    if record is None:
        raise TokenNotFound(f"令牌 {token_id} 不存在")
    if record.revoked_at is None:
        record.revoked_at = now
        session.add(record)
        audit(
            session,
            actor=caller.actor,
            action="token.revoke",
            object_type="api_token",
            object_id=token_id,
            org_id=record.org_id,
            at=now,
            reason=reason,
        )
    return record


def authenticate_token(session: Session, *, keyring: Keyring, token: str) -> Caller:
    """The caller behind a bearer token, with its scope resolved (the token's organisation
    subtree, or everything). Raises InvalidToken (unknown or revoked)."""
    record = session.exec(
        select(ApiToken).where(ApiToken.token_hash == _token_digest(keyring, token))
    ).first()
    if record is None or record.revoked_at is not None or record.id is None:
        raise InvalidToken()
    return Caller(
        actor=token_actor(record.id),
        role=TOKEN_ROLES[record.role],
        org_id=record.org_id,
        scope=subtree_scope(session, record.org_id),
        # Tokens have always taken committee-level transfer actions inside their subtree.
        may_approve=True,
    )


def _token_digest(keyring: Keyring, token: str) -> str:
    return keyring.digest(Purpose.API_TOKEN, token.encode())
