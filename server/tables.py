"""Every table, imported in one place so ``SQLModel.metadata`` is complete (migrations, tests)."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlmodel import SQLModel

from server.attendance.models import Attendance
from server.audit.models import AuditEntry
from server.auth.models import ApiToken
from server.cards.models import CardBinding
from server.events.models import Event, EventKindTag, EventOrganisation
from server.kiosks.models import EnrollmentCode, EnrolSession, Kiosk, KioskHeartbeat, KioskKey
from server.leave.models import LeaveRequest
from server.orgs.models import CommitteeSeat, Member, MemberExemption, MembershipPeriod, Organisation
from server.taps.models import Tap
from server.transfers.models import IntroductionLetter, TransferDocument, TransferRequest
from server.users.models import LoginAttempt, User, WebSession
from server.venues.models import Venue

__all__ = [
    "ApiToken",
    "Attendance",
    "AuditEntry",
    "CardBinding",
    "CommitteeSeat",
    "EnrolSession",
    "EnrollmentCode",
    "Event",
    "EventKindTag",
    "EventOrganisation",
    "IntroductionLetter",
    "Kiosk",
    "KioskHeartbeat",
    "KioskKey",
    "LeaveRequest",
    "LoginAttempt",
    "Member",
    "MemberExemption",
    "MembershipPeriod",
    "Organisation",
    "Tap",
    "TransferDocument",
    "TransferRequest",
    "User",
    "Venue",
    "WebSession",
    "metadata",
]

metadata: MetaData = SQLModel.metadata
