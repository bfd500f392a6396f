"""Every table, imported in one place so ``SQLModel.metadata`` is complete (migrations, tests)."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlmodel import SQLModel

from server.records.attendance import Attendance
from server.records.audit import AuditEntry
from server.records.auth import ApiToken
from server.records.booth import BoothLink, BoothMessage, BoothReply, Representative
from server.records.cards import CardBinding
from server.records.development import DevelopmentRecord
from server.records.dues import DuesMonth
from server.records.events import Event, EventKindTag, EventOrganisation
from server.records.evidence import LedgerExport, TapEvidence
from server.records.form_tokens import FormSubmission
from server.records.kiosks import EnrollmentCode, EnrolSession, Kiosk, KioskHeartbeat, KioskKey
from server.records.leave import LeaveRequest
from server.records.meetings import MeetingAttachment, MeetingAttachmentContent, MeetingRecord
from server.records.notify import Delivery, DeliveryAttempt, NotifyOptOut, NotifyTarget
from server.records.orgs import CommitteeSeat, Member, MemberExemption, MembershipPeriod, Organisation
from server.records.supervision import JobRun, Reminder, ReminderHistory
from server.records.taps import Tap
from server.records.transfers import IntroductionLetter, TransferDocument, TransferRequest
from server.records.users import LoginAttempt, User, WebSession
from server.records.venues import Venue

__all__ = [
    "ApiToken",
    "Attendance",
    "AuditEntry",
    "BoothLink",
    "BoothMessage",
    "BoothReply",
    "CardBinding",
    "CommitteeSeat",
    "Delivery",
    "DeliveryAttempt",
    "DevelopmentRecord",
    "DuesMonth",
    "EnrolSession",
    "EnrollmentCode",
    "Event",
    "EventKindTag",
    "EventOrganisation",
    "FormSubmission",
    "IntroductionLetter",
    "JobRun",
    "Kiosk",
    "KioskHeartbeat",
    "KioskKey",
    "LeaveRequest",
    "LedgerExport",
    "LoginAttempt",
    "MeetingAttachment",
    "MeetingAttachmentContent",
    "MeetingRecord",
    "Member",
    "MemberExemption",
    "MembershipPeriod",
    "NotifyOptOut",
    "NotifyTarget",
    "Organisation",
    "Reminder",
    "ReminderHistory",
    "Representative",
    "Tap",
    "TapEvidence",
    "TransferDocument",
    "TransferRequest",
    "User",
    "Venue",
    "WebSession",
    "metadata",
]

metadata: MetaData = SQLModel.metadata
