"""API bearer tokens: creation (the token is shown once) and authentication."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlmodel import Session, select

from server.auth.models import ApiToken
from server.errors import InvalidToken, OrgRequired
from server.keyring import Keyring, Purpose
from server.orgs.service import organisation_subtree_ids, require_organisation
from server.vocabulary import TokenRole

TOKEN_PREFIX = "ecard_"  # recognisable in a leaked config file or a secret scanner


class OrgViewer(Protocol):
    """Whoever sees only part of the organisation tree: an API token or a signed-in web user."""

    def can_see_org(self, session: Session, org_id: int) -> bool: ...


@dataclass(frozen=True)
class Principal:
    """Who is calling the API: a token's role and, when scoped, its organisation."""

    token_id: int
    role: TokenRole
    org_id: int | None

    def can_see_org(self, session: Session, org_id: int) -> bool:
        """Whether ``org_id`` is inside this principal's organisation subtree."""
        return self.org_id is None or org_id in organisation_subtree_ids(session, self.org_id)


@dataclass(frozen=True)
class CreatedToken:
    record: ApiToken
    token: str


def create_token(
    session: Session, *, keyring: Keyring, role: TokenRole, org_id: int | None, label: str, now: datetime
) -> CreatedToken:
    """Create a token; an ``org_id`` limits it to that organisation's subtree.

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
    return CreatedToken(record=record, token=token)


def authenticate_token(session: Session, *, keyring: Keyring, token: str) -> Principal:
    """The principal for a bearer token. Raises InvalidToken (unknown or revoked)."""
    record = session.exec(
        select(ApiToken).where(ApiToken.token_hash == _token_digest(keyring, token))
    ).first()
    if record is None or record.revoked_at is not None or record.id is None:
        raise InvalidToken()
    return Principal(token_id=record.id, role=record.role, org_id=record.org_id)


def _token_digest(keyring: Keyring, token: str) -> str:
    return keyring.digest(Purpose.API_TOKEN, token.encode())
