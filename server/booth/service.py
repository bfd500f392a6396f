"""留言亭: a member taps their card at a kiosk in message mode and gets a one-time link for their
own phone; there they write to a 党代表, and see the status and replies of their messages.

* **Links.** :func:`issue_link` answers an accepted message-mode tap (``server.taps``) with a
  random token; only its SHA-256 is stored, bound to the tap, the member and the card. It must be
  opened within ``link_ttl`` and opens once (:func:`open_link`): opening it starts a member
  session (a second random token, for a cookie) that lasts ``session_ttl`` and can be ended.
  Reused, expired and unknown links are refused with their own codes.
* **Limits.** Links per card and messages per card, each over the last 24 hours
  (:class:`BoothPolicy`).
* **Anonymity.** A member may ask that the representative not see their name: the inbox shows
  「匿名党员」, while the message still names the member (and the audit entry records it).
* **Inbox.** A representative (web role ``representative``, linked to their
  :class:`~server.records.booth.Representative`) sees the messages addressed to them; a
  secretary, organiser or admin sees the messages forwarded to an organisation in their scope.
  Either may reply, forward (within what they see) and close with an outcome; each step is audited.
* **Retention.** :func:`purge_closed` deletes messages closed longer ago than the retention.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func
from sqlmodel import Session, col, delete, select

from server.audit.service import record
from server.caller import Actor, Caller
from server.config import ServerSettings
from server.errors import (
    BoothLinkExpired,
    BoothLinkInvalid,
    BoothLinkUsed,
    BoothMessageClosed,
    BoothMessageLimit,
    BoothMessageNotFound,
    BoothPhotoNotFound,
    BoothSessionEnded,
    InvalidInput,
    OrganisationNotFound,
    RepresentativeNotFound,
    UserNotFound,
)
from server.inputs import check_text, clean_text
from server.orgs.service import organisation_subtree_ids, require_organisation
from server.records.booth import BoothLink, BoothMessage, BoothPhoto, BoothReply, Representative
from server.records.orgs import Member, Organisation
from server.records.users import User
from server.uploads import PHOTO_KINDS, checked_file
from server.vocabulary import BoothMessageStatus, BoothTopic, UserRole

MAX_MESSAGE_CHARS = 500
MAX_REPLY_CHARS = 500
MAX_OUTCOME_CHARS = 200
ANONYMOUS_NAME = "匿名党员"
LINK_PATH = "/web/m/open/"  # + token; the member pages live in server.web.pages.booth_member
MAX_PHOTO_BYTES = 5 * 1024 * 1024
"""A phone photo is 2–5 MB; a larger one is refused rather than resized on the server."""
_TOKEN_BYTES = 24
_DAY = timedelta(hours=24)


@dataclass(frozen=True)
class BoothPolicy:
    """The deployment's 留言亭 settings (``ECARD_BOOTH_*``); limits count the last 24 hours."""

    link_ttl: timedelta = timedelta(minutes=5)
    session_ttl: timedelta = timedelta(minutes=15)
    links_per_card_per_day: int = 10
    messages_per_card_per_day: int = 3
    retention: timedelta = timedelta(days=1095)
    base_url: str = ""  # the server as phones reach it; links are absolute

    def link_for(self, token: str) -> str:
        return f"{self.base_url.rstrip('/')}{LINK_PATH}{token}"


def booth_policy(settings: ServerSettings, *, base_url: str) -> BoothPolicy:
    """The policy from the settings; ``base_url``: where this request came in, used when no
    ``ECARD_PUBLIC_URL`` is set."""
    return BoothPolicy(
        link_ttl=timedelta(minutes=settings.booth_link_minutes),
        session_ttl=timedelta(minutes=settings.booth_session_minutes),
        links_per_card_per_day=settings.booth_links_per_card_per_day,
        messages_per_card_per_day=settings.booth_messages_per_card_per_day,
        retention=timedelta(days=settings.booth_retention_days),
        base_url=settings.public_url or base_url,
    )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _member_actor(member: Member) -> Actor:
    return Actor(f"member:{member.id}", member.name)


# --- photos --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoUpload:
    """A chosen file as it came in: its name (as the browser or the command line gave it) and bytes."""

    file_name: str
    data: bytes


def _store_photo(session: Session, upload: PhotoUpload, *, now: datetime) -> BoothPhoto:
    """Check the file (JPEG or PNG by signature, at most :data:`MAX_PHOTO_BYTES`) and keep it.
    Raises AttachmentTooLarge, AttachmentTypeRefused, InvalidInput before anything is stored."""
    _, kind = checked_file(
        upload.file_name,
        upload.data,
        kinds=PHOTO_KINDS,
        max_bytes=MAX_PHOTO_BYTES,
        what="JPEG、PNG 照片",
        too_large=f"照片不能超过{MAX_PHOTO_BYTES // (1024 * 1024)} MB，请换一张较小的照片或压缩后再上传",
    )
    photo = BoothPhoto(
        media_type=kind.media_type, size_bytes=len(upload.data), data=upload.data, uploaded_at=now
    )
    session.add(photo)
    session.flush()
    return photo


def _photo_detail(photo: BoothPhoto | None) -> dict[str, object] | None:
    return None if photo is None else {"media_type": photo.media_type, "size_bytes": photo.size_bytes}


def _photo(session: Session, photo_id: int | None) -> BoothPhoto:
    photo = session.get(BoothPhoto, photo_id) if photo_id is not None else None
    if photo is None:
        raise BoothPhotoNotFound()
    return photo


# --- representatives -----------------------------------------------------------------------------


def add_representative(
    session: Session,
    *,
    org_id: int,
    name: str,
    constituency: str,
    username: str | None,
    now: datetime,
    caller: Caller,
    photo: PhotoUpload | None = None,
) -> Representative:
    """Configure a 党代表 for the members of ``org_id``'s subtree; ``username``: their web account
    (role ``representative``); ``photo``: shown to members choosing whom to write to. Raises
    OrganisationNotFound, UserNotFound, InvalidInput, AttachmentTooLarge, AttachmentTypeRefused."""
    require_organisation(session, org_id)
    if not caller.sees_org(org_id):
        raise OrganisationNotFound(f"党组织 {org_id} 不存在")
    user_id: int | None = None
    if username:
        user = session.exec(select(User).where(User.username == username.strip().lower())).first()
        if user is None or user.id is None or not caller.sees_org(user.org_id):
            raise UserNotFound()
        if user.role != UserRole.REPRESENTATIVE:
            raise InvalidInput("该账号的角色不是党代表")
        if session.exec(select(Representative.id).where(Representative.user_id == user.id)).first():
            raise InvalidInput("该账号已关联其他党代表")
        user_id = user.id
    name = clean_text(name, field="姓名", max_length=100)
    constituency = clean_text(constituency, field="选区", max_length=200) if constituency.strip() else ""
    stored = _store_photo(session, photo, now=now) if photo is not None else None
    representative = Representative(
        org_id=org_id,
        name=name,
        constituency=constituency,
        user_id=user_id,
        created_at=now,
        photo_id=stored.id if stored is not None else None,
    )
    session.add(representative)
    session.flush()
    assert representative.id is not None
    record(
        session,
        actor=caller.actor,
        action="booth.representative.add",
        object_type="representative",
        object_id=representative.id,
        org_id=org_id,
        at=now,
        detail={"name": representative.name, "user_id": user_id, "photo": _photo_detail(stored)},
    )
    return representative


def set_representative_photo(
    session: Session, *, representative_id: int, photo: PhotoUpload, now: datetime, caller: Caller
) -> Representative:
    """Replace the representative's photo (the old one is deleted). Raises RepresentativeNotFound,
    AttachmentTooLarge, AttachmentTypeRefused."""
    representative = session.get(Representative, representative_id)
    if representative is None or not caller.sees_org(representative.org_id):
        raise RepresentativeNotFound()
    stored = _store_photo(session, photo, now=now)
    old = session.get(BoothPhoto, representative.photo_id) if representative.photo_id is not None else None
    representative.photo_id = stored.id
    session.add(representative)
    if old is not None:
        session.flush()
        session.delete(old)
    record(
        session,
        actor=caller.actor,
        action="booth.representative.photo",
        object_type="representative",
        object_id=representative_id,
        org_id=representative.org_id,
        at=now,
        detail={"photo": _photo_detail(stored)},
    )
    return representative


def representative_photo_for_member(
    session: Session, *, visitor: Visitor, representative_id: int
) -> BoothPhoto:
    """The photo of a representative the member may write to. Raises BoothPhotoNotFound."""
    member = session.get(Member, visitor.member_id)
    assert member is not None
    representative = next(
        (r for r in representatives_for_member(session, member) if r.id == representative_id), None
    )
    return _photo(session, representative.photo_id if representative is not None else None)


def list_representatives(session: Session, *, caller: Caller) -> list[Representative]:
    rows = session.exec(
        select(Representative)
        .where(caller.scope.condition(Representative.org_id))
        .order_by(col(Representative.org_id), col(Representative.id))
    ).all()
    return list(rows)


def _ancestor_ids(session: Session, org_id: int) -> list[int]:
    found: list[int] = []
    current: int | None = org_id
    while current is not None and current not in found:
        found.append(current)
        organisation = session.get(Organisation, current)
        current = organisation.parent_id if organisation is not None else None
    return found


def representatives_for_member(session: Session, member: Member) -> list[Representative]:
    """The active representatives of the member's organisation and the ones above it, nearest first."""
    chain = _ancestor_ids(session, member.org_id)
    rows = session.exec(
        select(Representative).where(col(Representative.org_id).in_(chain), col(Representative.active))
    ).all()
    return sorted(rows, key=lambda r: (chain.index(r.org_id), r.id or 0))


# --- links and member sessions -------------------------------------------------------------------


def links_today(session: Session, *, uid_hmac: str, now: datetime) -> int:
    count: int = session.exec(
        select(func.count())
        .select_from(BoothLink)
        .where(BoothLink.uid_hmac == uid_hmac, col(BoothLink.issued_at) > now - _DAY)
    ).one()
    return count


def has_unread_reply(session: Session, *, member_id: int) -> bool:
    """Whether a message of the member's has a reply they have not seen on their page yet."""
    unread = session.exec(
        select(BoothMessage.id).where(
            BoothMessage.member_id == member_id,
            col(BoothMessage.replied_at).is_not(None),
            (col(BoothMessage.reply_seen_at).is_(None))
            | (col(BoothMessage.reply_seen_at) < col(BoothMessage.replied_at)),
        )
    ).first()
    return unread is not None


def issue_link(
    session: Session,
    *,
    member: Member,
    tap_id: int,
    uid_hmac: str,
    card_masked: str,
    now: datetime,
    policy: BoothPolicy,
) -> str:
    """A new one-time link for an accepted message-mode tap (the caller checked the daily limit)."""
    assert member.id is not None
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    session.add(
        BoothLink(
            token_hash=_digest(token),
            member_id=member.id,
            tap_id=tap_id,
            uid_hmac=uid_hmac,
            card_masked=card_masked[:32],
            issued_at=now,
            expires_at=now + policy.link_ttl,
        )
    )
    session.flush()
    return policy.link_for(token)


@dataclass(frozen=True)
class OpenedLink:
    session_token: str  # for the member's cookie; only its digest is stored
    expires_at: datetime


def open_link(session: Session, *, token: str, now: datetime, policy: BoothPolicy) -> OpenedLink:
    """Open a link once: start the member's short session. Raises BoothLinkInvalid (unknown),
    BoothLinkUsed (opened before), BoothLinkExpired."""
    link = session.exec(
        select(BoothLink).where(BoothLink.token_hash == _digest(token[:100])).with_for_update()
    ).first()
    # Locked: two phones opening the same link at once cannot both get a session.
    if link is None:
        raise BoothLinkInvalid()
    if link.opened_at is not None:
        raise BoothLinkUsed()
    if now >= link.expires_at:
        raise BoothLinkExpired()
    session_token = secrets.token_urlsafe(_TOKEN_BYTES)
    link.opened_at = now
    link.session_hash = _digest(session_token)
    link.csrf_token = secrets.token_urlsafe(24)
    link.session_expires_at = now + policy.session_ttl
    session.add(link)
    member = session.get(Member, link.member_id)
    assert member is not None
    record(
        session,
        actor=_member_actor(member),
        action="booth.link.open",
        object_type="booth_link",
        object_id=link.id or 0,
        org_id=member.org_id,
        at=now,
        detail={"card": link.card_masked, "tap_id": link.tap_id},
    )
    return OpenedLink(session_token=session_token, expires_at=link.session_expires_at)


@dataclass(frozen=True)
class Visitor:
    """A member on their phone, through an opened link."""

    link_id: int
    member_id: int
    member_name: str
    org_id: int
    card_masked: str
    csrf_token: str
    expires_at: datetime
    uid_hmac: str


def resolve_visitor(session: Session, *, session_token: str | None, now: datetime) -> Visitor:
    """The member behind a session cookie. Raises BoothSessionEnded (none, ended, timed out)."""
    if not session_token:
        raise BoothSessionEnded()
    link = session.exec(
        select(BoothLink).where(BoothLink.session_hash == _digest(session_token[:100]))
    ).first()
    if (
        link is None
        or link.id is None
        or link.ended_at is not None
        or link.session_expires_at is None
        or now >= link.session_expires_at
    ):
        raise BoothSessionEnded()
    member = session.get(Member, link.member_id)
    if member is None:
        raise BoothSessionEnded()
    return Visitor(
        link_id=link.id,
        member_id=link.member_id,
        member_name=member.name,
        org_id=member.org_id,
        card_masked=link.card_masked,
        csrf_token=link.csrf_token,
        expires_at=link.session_expires_at,
        uid_hmac=link.uid_hmac,
    )


def end_visit(session: Session, *, visitor: Visitor, now: datetime) -> None:
    link = session.get(BoothLink, visitor.link_id)
    if link is not None and link.ended_at is None:
        link.ended_at = now
        session.add(link)


# --- the member's side ---------------------------------------------------------------------------


def leave_message(
    session: Session,
    *,
    visitor: Visitor,
    representative_id: int,
    body: str,
    anonymous: bool,
    now: datetime,
    policy: BoothPolicy,
    topic: BoothTopic = BoothTopic.OTHER,
    photo: PhotoUpload | None = None,
) -> BoothMessage:
    """Write to a representative of the member's organisation or one above it, with an optional
    photo. Raises RepresentativeNotFound, InvalidInput (empty, too long), BoothMessageLimit,
    AttachmentTooLarge, AttachmentTypeRefused (nothing is stored then)."""
    member = session.get(Member, visitor.member_id)
    assert member is not None
    representative = next(
        (r for r in representatives_for_member(session, member) if r.id == representative_id), None
    )
    if representative is None:
        raise RepresentativeNotFound()
    text = _message_text(body, field="留言内容", max_length=MAX_MESSAGE_CHARS)
    sent_today: int = session.exec(
        select(func.count())
        .select_from(BoothMessage)
        .where(BoothMessage.uid_hmac == visitor.uid_hmac, col(BoothMessage.created_at) > now - _DAY)
    ).one()
    if sent_today >= policy.messages_per_card_per_day:
        raise BoothMessageLimit()
    stored = _store_photo(session, photo, now=now) if photo is not None else None
    message = BoothMessage(
        member_id=visitor.member_id,
        org_id=member.org_id,
        representative_id=representative_id,
        link_id=visitor.link_id,
        uid_hmac=visitor.uid_hmac,
        topic=topic,
        body=text,
        anonymous=anonymous,
        status=BoothMessageStatus.NEW,
        created_at=now,
        photo_id=stored.id if stored is not None else None,
    )
    session.add(message)
    session.flush()
    assert message.id is not None
    record(
        session,
        actor=_member_actor(member),
        action="booth.message.create",
        object_type="booth_message",
        object_id=message.id,
        org_id=member.org_id,
        at=now,
        detail={
            "representative_id": representative_id,
            "anonymous": anonymous,
            "topic": topic.value,
            "member_id": member.id,
            "length": len(text),
            "photo": _photo_detail(stored),
        },
    )
    return message


@dataclass(frozen=True)
class ReplyView:
    body: str
    author_name: str
    at: datetime


@dataclass(frozen=True)
class MessageView:
    id: int
    representative_name: str
    representative_constituency: str
    sender_name: str  # 「匿名党员」 for the inbox when the member asked
    org_name: str
    body: str
    topic: BoothTopic
    anonymous: bool
    status: BoothMessageStatus
    created_at: datetime
    forwarded_org_name: str
    outcome: str
    replies: list[ReplyView] = field(default_factory=list)
    new_reply: bool = False
    has_photo: bool = False


def _views(session: Session, messages: Sequence[BoothMessage], *, for_member: bool) -> list[MessageView]:
    ids = [m.id for m in messages if m.id is not None]
    replies: dict[int, list[ReplyView]] = {}
    for reply in session.exec(
        select(BoothReply).where(col(BoothReply.message_id).in_(ids)).order_by(col(BoothReply.at))
    ).all():
        replies.setdefault(reply.message_id, []).append(ReplyView(reply.body, reply.author_name, reply.at))
    views: list[MessageView] = []
    for message in messages:
        assert message.id is not None
        representative = session.get(Representative, message.representative_id)
        member = session.get(Member, message.member_id)
        organisation = session.get(Organisation, message.org_id)
        forwarded = session.get(Organisation, message.forwarded_org_id) if message.forwarded_org_id else None
        sender = member.name if member is not None else ""
        views.append(
            MessageView(
                id=message.id,
                representative_name=representative.name if representative is not None else "",
                representative_constituency=representative.constituency if representative is not None else "",
                sender_name=sender if for_member or not message.anonymous else ANONYMOUS_NAME,
                org_name=""
                if (message.anonymous and not for_member) or organisation is None
                else organisation.name,
                body=message.body,
                topic=message.topic,
                anonymous=message.anonymous,
                status=message.status,
                created_at=message.created_at,
                forwarded_org_name=forwarded.name if forwarded is not None else "",
                outcome=message.outcome,
                replies=replies.get(message.id, []),
                new_reply=message.replied_at is not None
                and (message.reply_seen_at is None or message.reply_seen_at < message.replied_at),
                has_photo=message.photo_id is not None,
            )
        )
    return views


def member_messages(session: Session, *, visitor: Visitor, now: datetime) -> list[MessageView]:
    """The member's own messages, newest first, with replies; their replies count as seen now."""
    messages = session.exec(
        select(BoothMessage)
        .where(BoothMessage.member_id == visitor.member_id)
        .order_by(col(BoothMessage.created_at).desc())
        .limit(50)
    ).all()
    views = _views(session, messages, for_member=True)
    for message in messages:
        if message.replied_at is not None and (
            message.reply_seen_at is None or message.reply_seen_at < message.replied_at
        ):
            message.reply_seen_at = now
            session.add(message)
    return views


# --- the inbox -----------------------------------------------------------------------------------


def member_message_photo(session: Session, *, visitor: Visitor, message_id: int) -> BoothPhoto:
    """The photo of one of the member's own messages. Raises BoothPhotoNotFound."""
    message = session.get(BoothMessage, message_id)
    if message is None or message.member_id != visitor.member_id:
        raise BoothPhotoNotFound()
    return _photo(session, message.photo_id)


def _own_representative_ids(session: Session, user_id: int) -> list[int]:
    return [
        r for r in session.exec(select(Representative.id).where(Representative.user_id == user_id)).all() if r
    ]


def _visible(session: Session, *, caller: Caller, user_id: int) -> ColumnElement[bool]:
    if caller.has_role(UserRole.REPRESENTATIVE):
        return col(BoothMessage.representative_id).in_(_own_representative_ids(session, user_id))
    return col(BoothMessage.forwarded_org_id).is_not(None) & caller.scope.condition(
        BoothMessage.forwarded_org_id
    )


def inbox(session: Session, *, caller: Caller, user_id: int, open_only: bool = False) -> list[MessageView]:
    """The messages the user may handle (see the module docstring), newest first."""
    query = select(BoothMessage).where(_visible(session, caller=caller, user_id=user_id))
    if open_only:
        query = query.where(BoothMessage.status != BoothMessageStatus.CLOSED)
    messages = session.exec(query.order_by(col(BoothMessage.created_at).desc()).limit(500)).all()
    return _views(session, messages, for_member=False)


def _require_message(session: Session, *, message_id: int, caller: Caller, user_id: int) -> BoothMessage:
    message = session.exec(
        select(BoothMessage).where(
            BoothMessage.id == message_id,
            _visible(session, caller=caller, user_id=user_id),
        )
    ).first()
    if message is None:
        raise BoothMessageNotFound()
    return message


def read_message(
    session: Session, *, message_id: int, caller: Caller, user_id: int, now: datetime
) -> MessageView:
    """One message of the inbox; the first reading marks it 已阅."""
    message = _require_message(session, message_id=message_id, caller=caller, user_id=user_id)
    if message.status == BoothMessageStatus.NEW:
        message.status = BoothMessageStatus.READ
        message.read_at = now
        session.add(message)
    return _views(session, [message], for_member=False)[0]


def message_photo(session: Session, *, message_id: int, caller: Caller, user_id: int) -> BoothPhoto:
    """The photo of a message the user may see (see :func:`inbox`). Raises BoothMessageNotFound,
    BoothPhotoNotFound."""
    message = _require_message(session, message_id=message_id, caller=caller, user_id=user_id)
    return _photo(session, message.photo_id)


def _open_message(session: Session, *, message_id: int, caller: Caller, user_id: int) -> BoothMessage:
    message = _require_message(session, message_id=message_id, caller=caller, user_id=user_id)
    if message.status == BoothMessageStatus.CLOSED:
        raise BoothMessageClosed()
    return message


def reply_to_message(
    session: Session, *, message_id: int, body: str, caller: Caller, user_id: int, now: datetime
) -> None:
    message = _open_message(session, message_id=message_id, caller=caller, user_id=user_id)
    text = _message_text(body, field="回复内容", max_length=MAX_REPLY_CHARS)
    session.add(
        BoothReply(
            message_id=message_id,
            body=text,
            author_name=caller.actor.name[:100],
            author_ref=caller.actor.ref,
            at=now,
        )
    )
    message.status = BoothMessageStatus.ANSWERED
    message.replied_at = now
    message.read_at = message.read_at or now
    session.add(message)
    record(
        session,
        actor=caller.actor,
        action="booth.message.reply",
        object_type="booth_message",
        object_id=message_id,
        org_id=message.org_id,
        at=now,
        detail={"length": len(text)},
    )


def forward_options(session: Session, *, caller: Caller, user_id: int) -> list[Organisation]:
    """Where the user may forward a message: their representatives' subtrees (a representative),
    or their own scope."""
    if caller.has_role(UserRole.REPRESENTATIVE):
        ids: set[int] = set()
        for representative in session.exec(
            select(Representative).where(Representative.user_id == user_id)
        ).all():
            ids |= organisation_subtree_ids(session, representative.org_id)
        condition: ColumnElement[bool] = col(Organisation.id).in_(sorted(ids))
    else:
        condition = caller.scope.condition(Organisation.id)
    return list(session.exec(select(Organisation).where(condition).order_by(col(Organisation.id))).all())


def forward_message(
    session: Session, *, message_id: int, org_id: int, caller: Caller, user_id: int, now: datetime
) -> None:
    message = _open_message(session, message_id=message_id, caller=caller, user_id=user_id)
    if org_id not in {o.id for o in forward_options(session, caller=caller, user_id=user_id)}:
        raise OrganisationNotFound(f"党组织 {org_id} 不存在")
    message.forwarded_org_id = org_id
    message.status = BoothMessageStatus.FORWARDED
    message.read_at = message.read_at or now
    session.add(message)
    record(
        session,
        actor=caller.actor,
        action="booth.message.forward",
        object_type="booth_message",
        object_id=message_id,
        org_id=org_id,
        at=now,
    )


def close_message(
    session: Session, *, message_id: int, outcome: str, caller: Caller, user_id: int, now: datetime
) -> None:
    message = _open_message(session, message_id=message_id, caller=caller, user_id=user_id)
    message.outcome = clean_text(outcome, field="办理结果", max_length=MAX_OUTCOME_CHARS)
    message.status = BoothMessageStatus.CLOSED
    message.closed_at = now
    session.add(message)
    record(
        session,
        actor=caller.actor,
        action="booth.message.close",
        object_type="booth_message",
        object_id=message_id,
        org_id=message.org_id,
        at=now,
        detail={"outcome": message.outcome},
    )


@dataclass(frozen=True)
class RepresentativeYear:
    """One representative's year for the 联合党委: how many messages, by topic, and how fast they
    were answered (the first reply, or closing it with an outcome, is the answer)."""

    representative_id: int
    name: str
    constituency: str
    total: int
    by_topic: dict[BoothTopic, int]
    answered: int
    closed: int
    average_hours_to_answer: float | None


def yearly_summary(
    session: Session, *, caller: Caller, user_id: int, start: datetime, end: datetime
) -> list[RepresentativeYear]:
    """Counts only (no message text or sender): the representatives a representative is, or those
    configured in the caller's scope."""
    if caller.has_role(UserRole.REPRESENTATIVE):
        condition = col(Representative.user_id) == user_id
    else:
        condition = caller.scope.condition(Representative.org_id)
    representatives = session.exec(
        select(Representative).where(condition).order_by(col(Representative.id))
    ).all()
    summaries: list[RepresentativeYear] = []
    for representative in representatives:
        messages = session.exec(
            select(BoothMessage).where(
                BoothMessage.representative_id == representative.id,
                col(BoothMessage.created_at) >= start,
                col(BoothMessage.created_at) < end,
            )
        ).all()
        waits = [
            (answered_at - m.created_at).total_seconds() / 3600
            for m in messages
            if (answered_at := _first_answer(session, m)) is not None
        ]
        by_topic = dict.fromkeys(BoothTopic, 0)
        for message in messages:
            by_topic[message.topic] += 1
        assert representative.id is not None
        summaries.append(
            RepresentativeYear(
                representative_id=representative.id,
                name=representative.name,
                constituency=representative.constituency,
                total=len(messages),
                by_topic=by_topic,
                answered=len(waits),
                closed=sum(m.status == BoothMessageStatus.CLOSED for m in messages),
                average_hours_to_answer=round(sum(waits) / len(waits), 3) if waits else None,
            )
        )
    return summaries


def _first_answer(session: Session, message: BoothMessage) -> datetime | None:
    first_reply = session.exec(
        select(func.min(BoothReply.at)).where(BoothReply.message_id == message.id)
    ).one()
    answers = [at for at in (first_reply, message.closed_at) if at is not None]
    return min(answers) if answers else None


def purge_closed(session: Session, *, now: datetime, retention: timedelta, caller: Caller) -> int:
    """Delete messages (and replies) closed before ``now - retention``; the audit log keeps that
    they existed. Returns how many were deleted."""
    cutoff = now - retention
    ids = list(session.exec(select(BoothMessage.id).where(col(BoothMessage.closed_at) < cutoff)).all())
    if not ids:
        return 0
    photo_ids = [
        p for p in session.exec(select(BoothMessage.photo_id).where(col(BoothMessage.id).in_(ids))).all() if p
    ]
    session.exec(delete(BoothReply).where(col(BoothReply.message_id).in_(ids)))
    session.exec(delete(BoothMessage).where(col(BoothMessage.id).in_(ids)))
    if photo_ids:
        session.exec(delete(BoothPhoto).where(col(BoothPhoto.id).in_(photo_ids)))
    record(
        session,
        actor=caller.actor,
        action="booth.message.purge",
        object_type="booth_message",
        object_id="closed",
        org_id=None,
        at=now,
        detail={"count": len(ids), "closed_before": cutoff.isoformat()},
    )
    return len(ids)


def _message_text(value: str, *, field: str, max_length: int) -> str:
    # Line breaks are the member's own paragraphs: kept, while each line is cleaned like any text.
    check_text(value.replace("\r\n", "\n").replace("\n", " "), field=field)
    lines = [" ".join(line.split()) for line in value.replace("\r\n", "\n").split("\n")]
    text = "\n".join(lines).strip()
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    if not text:
        raise InvalidInput(f"{field}不能为空")
    if len(text) > max_length:
        raise InvalidInput(f"{field}最长{max_length}个字")
    return text
