"""Venues."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from server.errors import VenueNotFound
from server.inputs import clean_text
from server.orgs.service import require_organisation
from server.venues.models import Venue


def add_venue(session: Session, *, name: str, org_id: int, now: datetime) -> Venue:
    """Add a venue owned by an organisation. Raises OrganisationNotFound."""
    require_organisation(session, org_id)
    venue = Venue(name=clean_text(name, field="名称", max_length=200), org_id=org_id, created_at=now)
    session.add(venue)
    session.flush()
    return venue


def require_venue(session: Session, venue_id: int) -> Venue:
    venue = session.get(Venue, venue_id)
    if venue is None:
        raise VenueNotFound(f"场地 {venue_id} 不存在")
    return venue
