"""会议记录: an event's agenda, minutes and resolutions, its attachments, and the secretary's sign-off.

Whoever may see the event may write its record and attach photos or scanned pages (the secretary,
or the recorder sitting at the secretary's account). The secretary then signs it off and locks it
(签发并锁定): from then on the text and the attachments are as signed, and every attempt to change
them is refused with ``minutes_locked``. Every change is audited; the sign-off entry carries a
digest of what was signed (the text and each attachment's SHA-256), so a later copy can be checked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select

from server.audit.service import record
from server.caller import Caller
from server.errors import (
    AttachmentNotFound,
    InvalidInput,
    MinutesIncomplete,
    MinutesLocked,
    SignOffForbidden,
    TooManyAttachments,
)
from server.events.service import require_visible_event
from server.inputs import check_text
from server.meetings.attachments import MAX_ATTACHMENTS, checked_upload
from server.records.events import Event
from server.records.meetings import MeetingAttachment, MeetingAttachmentContent, MeetingRecord
from server.vocabulary import UserRole

MAX_AGENDA_LENGTH = 2000
MAX_MINUTES_LENGTH = 20000
MAX_RESOLUTIONS_LENGTH = 5000

SIGN_OFF_ROLES = (UserRole.SECRETARY, UserRole.ADMIN)


@dataclass(frozen=True)
class Minutes:
    """An event's record as the page shows it; ``record`` is None before anything was written."""

    event: Event
    record: MeetingRecord | None
    attachments: list[MeetingAttachment]

    @property
    def locked(self) -> bool:
        return self.record is not None and self.record.locked_at is not None


def read_minutes(session: Session, *, event_id: int, caller: Caller) -> Minutes:
    """The event's 会议记录 and its attachments (oldest first).

    Raises:
        EventNotFound: no such event, or outside the caller's scope.
    """
    event = require_visible_event(session, event_id, caller=caller)
    found = _record_of(session, event_id)
    attachments: list[MeetingAttachment] = []
    if found is not None:
        attachments = list(
            session.exec(
                select(MeetingAttachment)
                .where(MeetingAttachment.record_id == found.id)
                .order_by(col(MeetingAttachment.id))
            ).all()
        )
    return Minutes(event=event, record=found, attachments=attachments)


def save_minutes(
    session: Session,
    *,
    event_id: int,
    agenda: str,
    minutes: str,
    resolutions: str,
    now: datetime,
    caller: Caller,
) -> MeetingRecord:
    """Write the record's text (creating the record on first save). Audited (``minutes.save``).

    Raises:
        EventNotFound (also outside the caller's scope); MinutesLocked once signed off;
        InvalidInput/InvalidText for text too long or holding refused characters.
    """
    event = require_visible_event(session, event_id, caller=caller)
    found = _writable_record(session, event, now=now, caller=caller)
    found.agenda = _clean_block(agenda, field="议程", max_length=MAX_AGENDA_LENGTH)
    found.minutes = _clean_block(minutes, field="会议内容", max_length=MAX_MINUTES_LENGTH)
    found.resolutions = _clean_block(resolutions, field="决议", max_length=MAX_RESOLUTIONS_LENGTH)
    found.updated_at = now
    found.updated_by = caller.actor.ref
    found.updated_by_name = caller.actor.name
    session.add(found)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="minutes.save",
        object_type="event",
        object_id=event_id,
        org_id=event.org_id,
        at=now,
        detail={
            "agenda_chars": len(found.agenda),
            "minutes_chars": len(found.minutes),
            "resolutions_chars": len(found.resolutions),
        },
    )
    return found


def add_attachment(
    session: Session,
    *,
    event_id: int,
    file_name: str,
    data: bytes,
    now: datetime,
    caller: Caller,
) -> MeetingAttachment:
    """Attach a photo or scanned page (JPEG, PNG or PDF by content, see
    :mod:`server.meetings.attachments`). Audited (``minutes.attach``, with the file's SHA-256).

    Raises:
        EventNotFound (also outside the caller's scope); MinutesLocked once signed off;
        AttachmentTooLarge, AttachmentTypeRefused; TooManyAttachments past the limit.
    """
    event = require_visible_event(session, event_id, caller=caller)
    name, kind = checked_upload(file_name, data)
    found = _writable_record(session, event, now=now, caller=caller)
    count = session.exec(
        select(func.count()).select_from(MeetingAttachment).where(MeetingAttachment.record_id == found.id)
    ).one()
    if count >= MAX_ATTACHMENTS:
        raise TooManyAttachments(f"每份会议记录最多{MAX_ATTACHMENTS}个附件，请先删除不需要的附件")
    assert found.id is not None
    digest = hashlib.sha256(data).hexdigest()
    attachment = MeetingAttachment(
        record_id=found.id,
        file_name=name,
        media_type=kind.media_type,
        size_bytes=len(data),
        sha256=digest,
        uploaded_at=now,
        uploaded_by=caller.actor.ref,
        uploaded_by_name=caller.actor.name,
    )
    session.add(attachment)
    session.flush()
    assert attachment.id is not None
    session.add(MeetingAttachmentContent(attachment_id=attachment.id, data=data))
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="minutes.attach",
        object_type="event",
        object_id=event_id,
        org_id=event.org_id,
        at=now,
        detail={"attachment_id": attachment.id, "file_name": name, "size_bytes": len(data), "sha256": digest},
    )
    return attachment


def remove_attachment(
    session: Session, *, event_id: int, attachment_id: int, now: datetime, caller: Caller
) -> None:
    """Delete an attachment of a record not yet signed off. Audited (``minutes.detach``).

    Raises:
        EventNotFound, AttachmentNotFound (also another event's); MinutesLocked once signed off.
    """
    event = require_visible_event(session, event_id, caller=caller)
    attachment, found = _attachment_of(session, event_id, attachment_id)
    if found.locked_at is not None:
        raise MinutesLocked()
    content = session.get(MeetingAttachmentContent, attachment_id)
    if content is not None:
        session.delete(content)
        session.flush()
    session.delete(attachment)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="minutes.detach",
        object_type="event",
        object_id=event_id,
        org_id=event.org_id,
        at=now,
        detail={
            "attachment_id": attachment_id,
            "file_name": attachment.file_name,
            "sha256": attachment.sha256,
        },
    )


def read_attachment(
    session: Session, *, event_id: int, attachment_id: int, caller: Caller
) -> tuple[MeetingAttachment, bytes]:
    """An attachment and its bytes.

    Raises:
        EventNotFound (also outside the caller's scope), AttachmentNotFound (also another event's).
    """
    require_visible_event(session, event_id, caller=caller)
    attachment, _ = _attachment_of(session, event_id, attachment_id)
    content = session.get(MeetingAttachmentContent, attachment_id)
    if content is None:
        raise AttachmentNotFound()
    return attachment, content.data


def sign_off_minutes(session: Session, *, event_id: int, now: datetime, caller: Caller) -> MeetingRecord:
    """签发并锁定: the secretary signs the record off; nothing in it changes afterwards.
    Audited (``minutes.lock``, with the digest of what was signed).

    Raises:
        EventNotFound (also outside the caller's scope); SignOffForbidden for anyone but a
        secretary (or an administrator); MinutesIncomplete before the meeting has started or
        without minutes text; MinutesLocked when already signed off.
    """
    event = require_visible_event(session, event_id, caller=caller)
    if not caller.has_role(*SIGN_OFF_ROLES):
        raise SignOffForbidden()
    found = _record_of(session, event_id, for_update=True)
    if found is not None and found.locked_at is not None:
        raise MinutesLocked("会议记录已经签发锁定")
    if now < event.start_at:
        raise MinutesIncomplete("会议还没有开始，不能签发会议记录")
    if found is None or not found.minutes.strip():
        raise MinutesIncomplete()
    attachments = session.exec(
        select(MeetingAttachment)
        .where(MeetingAttachment.record_id == found.id)
        .order_by(col(MeetingAttachment.id))
    ).all()
    signed = json.dumps(
        [found.agenda, found.minutes, found.resolutions, [a.sha256 for a in attachments]],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    found.locked_at = now
    found.locked_by = caller.actor.ref
    found.locked_by_name = caller.actor.name
    session.add(found)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="minutes.lock",
        object_type="event",
        object_id=event_id,
        org_id=event.org_id,
        at=now,
        detail={"sha256": hashlib.sha256(signed).hexdigest(), "attachments": len(attachments)},
    )
    return found


def _record_of(session: Session, event_id: int, *, for_update: bool = False) -> MeetingRecord | None:
    query = select(MeetingRecord).where(MeetingRecord.event_id == event_id)
    if for_update:
        query = query.with_for_update()  # a save racing the sign-off waits for it, then sees the lock
    return session.exec(query).first()


def _writable_record(session: Session, event: Event, *, now: datetime, caller: Caller) -> MeetingRecord:
    assert event.id is not None
    found = _record_of(session, event.id, for_update=True)
    if found is None:
        found = MeetingRecord(
            event_id=event.id, updated_at=now, updated_by=caller.actor.ref, updated_by_name=caller.actor.name
        )
        session.add(found)
        session.flush()
    elif found.locked_at is not None:
        raise MinutesLocked()
    return found


def _attachment_of(
    session: Session, event_id: int, attachment_id: int
) -> tuple[MeetingAttachment, MeetingRecord]:
    attachment = session.get(MeetingAttachment, attachment_id)
    found = _record_of(session, event_id)
    if attachment is None or found is None or attachment.record_id != found.id:
        raise AttachmentNotFound()
    return attachment, found


def _clean_block(value: str, *, field: str, max_length: int) -> str:
    """Multi-line text as typed: line breaks kept (CRLF made LF), trailing spaces and blank edges gone."""
    text = check_text(value, field=field).replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")
    if len(text) > max_length:
        raise InvalidInput(f"{field}最长{max_length}个字符，现在有{len(text)}个")
    return text
