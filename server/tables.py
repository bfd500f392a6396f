"""Every table, imported in one place so ``SQLModel.metadata`` is complete (migrations, tests)."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlmodel import SQLModel

from server.attendance.models import Attendance
from server.audit.models import AuditEntry
from server.auth.models import ApiToken
from server.cards.models import CardBinding
from server.events.models import Event
from server.kiosks.models import EnrollmentCode, Kiosk
from server.orgs.models import Member, Organisation
from server.taps.models import Tap
from server.venues.models import Venue

__all__ = [
    "ApiToken",
    "Attendance",
    "AuditEntry",
    "CardBinding",
    "EnrollmentCode",
    "Event",
    "Kiosk",
    "Member",
    "Organisation",
    "Tap",
    "Venue",
    "metadata",
]

metadata: MetaData = SQLModel.metadata
