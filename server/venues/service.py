"""Venues, and the one card-check option a venue carries: whether its serial kiosks may check a
card bound with its number by UID alone (``accept_uid_only_reads``, see ``server.cards.checks``)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlmodel import Session, col, select

from server.audit.service import record
from server.caller import Caller
from server.db import in_chunks
from server.errors import VenueNotFound
from server.inputs import clean_text
from server.orgs.service import require_organisation
from server.orgs.tree import ancestor_ids
from server.records.venues import Venue


def add_venue(
    session: Session, *, name: str, org_id: int, now: datetime, accept_uid_only_reads: bool = False
) -> Venue:
    """Add a venue owned by an organisation. Raises OrganisationNotFound."""
    require_organisation(session, org_id)
    venue = Venue(
        name=clean_text(name, field="名称", max_length=200),
        org_id=org_id,
        created_at=now,
        accept_uid_only_reads=accept_uid_only_reads,
    )
    session.add(venue)
    session.flush()
    return venue


def set_uid_only_reads(
    session: Session, *, venue_id: int, accept: bool, caller: Caller, now: datetime
) -> Venue:
    """Whether the venue's serial kiosks may check a card bound with its number by UID alone (a
    magic-UID copy then passes there). Audited (``venue.uid_only_reads``).

    Raises:
        VenueNotFound: no such venue, or outside the caller's scope.
    """
    venue = require_venue(session, venue_id)
    if not caller.sees_org(venue.org_id):
        raise VenueNotFound(f"场地 {venue_id} 不存在")
    before = venue.accept_uid_only_reads
    venue.accept_uid_only_reads = accept
    session.add(venue)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="venue.uid_only_reads",
        object_type="venue",
        object_id=venue_id,
        org_id=venue.org_id,
        at=now,
        detail={"accept_uid_only_reads": accept, "before": before},
    )
    return venue


def list_venues(session: Session, *, caller: Caller) -> list[Venue]:
    """The venues of the caller's organisations, by name."""
    query = select(Venue).where(caller.scope.condition(Venue.org_id))
    return list(session.exec(query.order_by(col(Venue.name), col(Venue.id))).all())


def require_venue(session: Session, venue_id: int) -> Venue:
    venue = session.get(Venue, venue_id)
    if venue is None:
        raise VenueNotFound(f"场地 {venue_id} 不存在")
    return venue


def venue_org_id(session: Session, venue_id: int) -> int:
    """The organisation a venue serves, and so every kiosk at it."""
    return require_venue(session, venue_id).org_id


def usable_venues(session: Session, *, caller: Caller) -> list[Venue]:
    """Venues the caller's events may use, by name."""
    query = select(Venue).order_by(col(Venue.name))
    usable = _usable_org_ids(session, caller)
    if usable is not None:
        query = query.where(col(Venue.org_id).in_(sorted(usable)))
    return list(session.exec(query).all())


def require_usable_venue(session: Session, venue_id: int, *, caller: Caller) -> Venue:
    """The venue, if the caller's events may use it. Raises VenueNotFound (also when not usable)."""
    venue = require_venue(session, venue_id)
    usable = _usable_org_ids(session, caller)
    if usable is not None and venue.org_id not in usable:
        raise VenueNotFound(f"场地 {venue_id} 不存在")
    return venue


def _usable_org_ids(session: Session, caller: Caller) -> frozenset[int] | None:
    """Organisations whose venues the caller may hold events at: their subtree, and the
    organisations above it (a branch meets in its 党委's hall). None: every venue."""
    if caller.scope.org_ids is None or caller.org_id is None:
        return None
    return caller.scope.org_ids | frozenset(ancestor_ids(session, caller.org_id))


def venue_names(session: Session, venue_ids: Collection[int]) -> dict[int, str]:
    """Each venue's name, by id, in one query per chunk of ids (for list pages)."""
    found: dict[int, str] = {}
    for chunk in in_chunks(sorted(venue_ids)):
        rows = session.exec(select(Venue.id, Venue.name).where(col(Venue.id).in_(chunk))).all()
        for venue_id, name in rows:
            assert venue_id is not None
            found[venue_id] = name
    return found
