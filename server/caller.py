"""Who calls a service: the one caller type for API tokens, web users and the admin CLI.

Services that read or write an organisation's data take ``caller: Caller`` as a required keyword
argument, so forgetting it is a type error rather than unscoped access. The caller's
:class:`Scope` is resolved once, when the token or web session is authenticated, and every
service asks the same question of it (``caller.sees_org(org_id)``) instead of re-walking the
organisation tree per call.

A ground-floor module: it imports only the vocabulary (and SQLAlchemy, for scope conditions), so
every domain (organisations and audit included) can depend on it. The organisations service
resolves a scope (``server.orgs.service.subtree_scope``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, true
from sqlmodel import col

from server.vocabulary import UserRole


@dataclass(frozen=True)
class Actor:
    """Who acts, as the audit log names them: ``ref`` is stable ('user:7', 'token:3', 'cli',
    'kiosk:K-000001'), ``name`` is for people."""

    ref: str
    name: str = ""


CLI_ACTOR = Actor("cli", "命令行管理员")


@dataclass(frozen=True)
class Scope:
    """The organisations a caller may see: the ids of a subtree, or ``None`` for all of them.

    Build one with ``server.orgs.service.subtree_scope`` (or use :data:`UNSCOPED`); an object
    outside the scope is reported as not found, exactly like one that does not exist.
    """

    org_ids: frozenset[int] | None

    def sees(self, org_id: int | None) -> bool:
        """Whether ``org_id`` is inside the scope (an object without an organisation is not,
        unless the scope is every organisation)."""
        return self.org_ids is None or (org_id is not None and org_id in self.org_ids)

    def condition(self, org_column: Any) -> ColumnElement[bool]:
        """The SQL condition "*org_column* is inside the scope", for queries that list rows."""
        return true() if self.org_ids is None else col(org_column).in_(sorted(self.org_ids))

    def sees_any(self, org_ids: Iterable[int]) -> bool:
        """Whether any of ``org_ids`` is inside (an event held jointly by several organisations)."""
        return self.org_ids is None or any(org_id in self.org_ids for org_id in org_ids)


UNSCOPED = Scope(None)
"""Every organisation: an administrator without an organisation, and the admin CLI."""


@dataclass(frozen=True)
class Caller:
    """Who is asking, and what they may see and do.

    ``org_id`` is where the caller stands (the root of their scope, and the default organisation
    of pages and queries that need one); ``scope`` is what they may see. ``may_approve`` allows
    the committee-level transfer actions (approve, receive) on requests whose receiving 基层党委
    is inside the scope. It is a field rather than a function of ``role`` because API tokens have
    always been allowed those actions whatever their role: the token's scope alone decides.
    """

    actor: Actor
    role: UserRole
    org_id: int | None
    scope: Scope
    may_approve: bool

    def sees_org(self, org_id: int | None) -> bool:
        return self.scope.sees(org_id)

    def has_role(self, *roles: UserRole) -> bool:
        return self.role in roles


CLI_CALLER = Caller(actor=CLI_ACTOR, role=UserRole.ADMIN, org_id=None, scope=UNSCOPED, may_approve=True)
"""The admin CLI: whoever runs ``ecard admin`` on the server already holds the database."""
