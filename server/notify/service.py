"""Reminders that reach people: who is reached where, the outbox, and the messages queued into it.

Queueing happens in the caller's transaction (add and flush, never commit, never send): a daily
sweep that rolls back queues nothing. :func:`deliver_due` sends later, in a transaction of its
own; on PostgreSQL it locks the rows it sends (``FOR UPDATE SKIP LOCKED``), so two processes never
send the same message, and a row is marked sent in the same transaction that sent it. If that
transaction is lost after the network call, the message goes again: delivery is at least once.

A message's identity is its ``dedupe_key``: ``digest:<recipient>:<channel>:<local date>`` for a
day's digest, ``meeting:<event>:<recipient>:<start>:<venue>`` for a meeting notice, so a run that
decides the same thing again queues nothing, and a meeting whose time or place changes is
announced again.

Recipients are ``org:<id>`` (an organisation's group robot) and ``user:<id>`` (a web user's e-mail).
A web user receives the digest of every organisation inside their scope (their organisation's
subtree); an administrator without an organisation would receive the whole city's and gets none.
"""

from __future__ import annotations

import re
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Table, delete, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from server.audit.service import record
from server.caller import Caller
from server.config import ServerSettings
from server.dates import date_text
from server.db import bulk_insert, in_chunks
from server.errors import InvalidNotifyAddress, NotifyTargetNotFound, OrganisationNotFound, UserNotFound
from server.labels import EVENT_KIND_LABELS
from server.notify.channels import EMAIL_DISABLED_REASON, ChannelError, Channels
from server.records.events import Event, EventOrganisation
from server.records.notify import (
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryKind,
    NotifyOptOut,
    NotifyTarget,
)
from server.records.orgs import Organisation
from server.records.users import User
from server.records.venues import Venue
from server.vocabulary import DeliveryState, NotifyChannel

MAX_ATTEMPTS = 6
"""Attempts before a delivery is failed: with the backoff below, about half an hour of retries."""
FIRST_RETRY_DELAY = timedelta(minutes=1)
MAX_RETRY_DELAY = timedelta(hours=1)
DELIVERY_BATCH = 200
MAX_DIGEST_ITEMS = 50
"""Items listed in one digest; the rest are counted, to be read in the web app."""
WEBHOOK_MAX_BYTES = 4000
"""企业微信 refuses markdown over 4096 bytes, 钉钉 over 5000."""
MAX_BODY_CHARS = 20_000
MAX_KEY_CHARS = 255
DELIVERY_TABLE: Table = SQLModel.metadata.tables[Delivery.__tablename__]

_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
_LINE_BREAKS = re.compile(r"[\r\n\t]+")


@dataclass(frozen=True)
class DigestItem:
    """One open reminder to list in a digest: the organisation it concerns, its level label
    (提示 / 警示 / 严重), a short title, the message and, if there is one, a link to follow."""

    org_id: int
    level: str
    title: str
    message: str
    link: str | None = None


@dataclass(frozen=True)
class Queued:
    """What a queueing run did: messages queued, already queued by an earlier run (same identity),
    and left out because the recipient opted out of the channel."""

    queued: int = 0
    duplicates: int = 0
    opted_out: int = 0


@dataclass(frozen=True)
class DeliveryRun:
    """What a delivery run did: sent; failed but retried later; failed for good (last attempt);
    held (e-mail while no SMTP server is configured: still queued)."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    held: int = 0


@dataclass(frozen=True)
class DeliveryView:
    """A delivery as an operator may see it: the address masked, never a secret."""

    id: int
    channel: NotifyChannel
    kind: DeliveryKind
    recipient: str
    address: str
    subject: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime
    last_error: str
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class TargetView:
    recipient: str
    channel: NotifyChannel
    address: str  # masked
    has_secret: bool
    opted_out: bool


@dataclass(frozen=True)
class _Draft:
    target: NotifyTarget
    kind: DeliveryKind
    org_id: int | None
    subject: str
    body: str
    dedupe_key: str


# --- recipients, masking --------------------------------------------------------------------


def org_recipient(org_id: int) -> str:
    return f"org:{org_id}"


def user_recipient(user_id: int) -> str:
    return f"user:{user_id}"


def mask_address(address: str) -> str:
    """z***@example.com for an e-mail; scheme and host only for a URL (robot keys hide in paths and
    queries)."""
    if "://" in address:
        scheme, _, rest = address.partition("://")
        host = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
        return f"{scheme}://{host}/***"
    local, at, domain = address.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


# --- targets and opt-outs -------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookSet:
    target: NotifyTarget
    generated_secret: str | None  # shown once, when the server made the secret up


def set_org_webhook(
    session: Session, *, org_id: int, url: str, secret: str | None, caller: Caller, now: datetime
) -> WebhookSet:
    """Point an organisation's group robot at ``url``, signing with ``secret`` (one is generated
    when None). Replaces an earlier robot; queued messages go to the new one."""
    organisation = session.get(Organisation, org_id)
    if organisation is None or not caller.sees_org(org_id):
        raise OrganisationNotFound(f"党组织 {org_id} 不存在")
    url = _check_url(url)
    generated = None
    if secret is None:
        secret = generated = secrets.token_urlsafe(32)
    secret = secret.strip()
    if not 16 <= len(secret) <= 200 or _LINE_BREAKS.search(secret) or " " in secret:
        raise InvalidNotifyAddress("签名密钥须为16至200个字符，且不含空白")
    target = _upsert_target(
        session,
        recipient=org_recipient(org_id),
        channel=NotifyChannel.WEBHOOK,
        address=url,
        now=now,
        org_id=org_id,
    )
    target.secret = secret
    session.add(target)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="notify.webhook_set",
        object_type="organisation",
        object_id=org_id,
        org_id=org_id,
        at=now,
        detail={"url": mask_address(url)},
    )
    return WebhookSet(target=target, generated_secret=generated)


def remove_org_webhook(session: Session, *, org_id: int, caller: Caller, now: datetime) -> int:
    """Remove an organisation's group robot; returns how many queued messages were given up."""
    if not caller.sees_org(org_id):
        raise OrganisationNotFound(f"党组织 {org_id} 不存在")
    dropped = _remove_target(session, recipient=org_recipient(org_id), channel=NotifyChannel.WEBHOOK, now=now)
    record(
        session,
        actor=caller.actor,
        action="notify.webhook_removed",
        object_type="organisation",
        object_id=org_id,
        org_id=org_id,
        at=now,
        detail={"dropped": dropped},
    )
    return dropped


def set_user_email(
    session: Session, *, user_id: int, address: str, caller: Caller, now: datetime
) -> NotifyTarget:
    """Set the e-mail address a web user's digests go to."""
    user = _visible_user(session, user_id, caller)
    address = address.strip()
    local, _, domain = address.rpartition("@")
    address = f"{local}@{domain.lower()}"
    if len(address) > 254 or not _EMAIL.match(address):
        raise InvalidNotifyAddress("邮箱地址不正确，须形如 name@example.com")
    target = _upsert_target(
        session,
        recipient=user_recipient(user_id),
        channel=NotifyChannel.EMAIL,
        address=address,
        now=now,
        user_id=user_id,
    )
    record(
        session,
        actor=caller.actor,
        action="notify.email_set",
        object_type="web_user",
        object_id=user_id,
        org_id=user.org_id,
        at=now,
        detail={"address": mask_address(address)},
    )
    return target


def remove_user_email(session: Session, *, user_id: int, caller: Caller, now: datetime) -> int:
    """Remove a web user's e-mail address; returns how many queued messages were given up."""
    user = _visible_user(session, user_id, caller)
    dropped = _remove_target(session, recipient=user_recipient(user_id), channel=NotifyChannel.EMAIL, now=now)
    record(
        session,
        actor=caller.actor,
        action="notify.email_removed",
        object_type="web_user",
        object_id=user_id,
        org_id=user.org_id,
        at=now,
        detail={"dropped": dropped},
    )
    return dropped


def set_opt_out(
    session: Session,
    *,
    recipient: str,
    channel: NotifyChannel,
    opted_out: bool,
    caller: Caller,
    now: datetime,
) -> bool:
    """Stop (or resume) messages to ``recipient`` on ``channel``; returns whether anything changed.
    Messages already queued there are given up when opting out."""
    org_id = _recipient_org(session, recipient, caller)
    existing = session.get(NotifyOptOut, (recipient, channel))
    if opted_out == (existing is not None):
        return False
    if opted_out:
        session.add(NotifyOptOut(recipient=recipient, channel=channel, created_at=now))
        _give_up_queued(session, recipient=recipient, channel=channel, reason="接收方已退订该渠道", now=now)
    else:
        session.delete(existing)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="notify.opt_out" if opted_out else "notify.opt_in",
        object_type="notify_recipient",
        object_id=recipient,
        org_id=org_id,
        at=now,
        detail={"channel": channel.value},
    )
    return True


def list_targets(session: Session, *, caller: Caller) -> list[TargetView]:
    """Every robot and e-mail address in the caller's scope, masked."""
    opted = {(o.recipient, o.channel) for o in session.exec(select(NotifyOptOut))}
    targets = session.exec(select(NotifyTarget).order_by(col(NotifyTarget.recipient))).all()
    user_ids = [t.user_id for t in targets if t.user_id is not None]
    users = {u.id: u for u in session.exec(select(User).where(col(User.id).in_(user_ids)))}
    views = []
    for target in targets:
        org_id = target.org_id if target.user_id is None else _user_org(users.get(target.user_id))
        if target.user_id is None and not caller.sees_org(org_id):
            continue
        if target.user_id is not None and not _caller_sees_user(caller, users.get(target.user_id)):
            continue
        views.append(
            TargetView(
                recipient=target.recipient,
                channel=target.channel,
                address=mask_address(target.address),
                has_secret=bool(target.secret),
                opted_out=(target.recipient, target.channel) in opted,
            )
        )
    return views


def _user_org(user: User | None) -> int | None:
    return user.org_id if user is not None else None


def _caller_sees_user(caller: Caller, user: User | None) -> bool:
    if user is None:
        return False
    return caller.scope.org_ids is None or caller.sees_org(user.org_id)


def _visible_user(session: Session, user_id: int, caller: Caller) -> User:
    user = session.get(User, user_id)
    if user is None or not _caller_sees_user(caller, user):
        raise UserNotFound(f"用户 {user_id} 不存在")
    return user


def _recipient_org(session: Session, recipient: str, caller: Caller) -> int | None:
    kind, _, number = recipient.partition(":")
    if not number.isdigit():
        raise InvalidNotifyAddress("接收方须为 org:<党组织编号> 或 user:<用户编号>")
    if kind == "org":
        org_id = int(number)
        if session.get(Organisation, org_id) is None or not caller.sees_org(org_id):
            raise OrganisationNotFound(f"党组织 {org_id} 不存在")
        return org_id
    if kind == "user":
        return _visible_user(session, int(number), caller).org_id
    raise InvalidNotifyAddress("接收方须为 org:<党组织编号> 或 user:<用户编号>")


def _check_url(url: str) -> str:
    import httpx

    url = url.strip()
    if len(url) > 500 or not url.startswith(("https://", "http://")) or re.search(r"\s", url):
        raise InvalidNotifyAddress("群机器人地址须以 https:// 或 http:// 开头，不超过500个字符")
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL:
        host = ""
    if not host:
        raise InvalidNotifyAddress("群机器人地址不正确")
    return url


def _upsert_target(
    session: Session,
    *,
    recipient: str,
    channel: NotifyChannel,
    address: str,
    now: datetime,
    org_id: int | None = None,
    user_id: int | None = None,
) -> NotifyTarget:
    target = session.exec(
        select(NotifyTarget).where(NotifyTarget.recipient == recipient, NotifyTarget.channel == channel)
    ).first()
    if target is None:
        target = NotifyTarget(
            recipient=recipient,
            channel=channel,
            org_id=org_id,
            user_id=user_id,
            address=address,
            created_at=now,
            updated_at=now,
        )
    target.address = address
    target.updated_at = now
    session.add(target)
    session.flush()
    return target


def _remove_target(session: Session, *, recipient: str, channel: NotifyChannel, now: datetime) -> int:
    target = session.exec(
        select(NotifyTarget).where(NotifyTarget.recipient == recipient, NotifyTarget.channel == channel)
    ).first()
    if target is None:
        raise NotifyTargetNotFound()
    dropped = _give_up_queued(session, recipient=recipient, channel=channel, reason="通知渠道已移除", now=now)
    session.execute(update(Delivery).where(col(Delivery.target_id) == target.id).values(target_id=None))
    session.delete(target)
    session.flush()
    return dropped


def _give_up_queued(
    session: Session, *, recipient: str, channel: NotifyChannel, reason: str, now: datetime
) -> int:
    result = session.execute(
        update(Delivery)
        .where(
            col(Delivery.recipient) == recipient,
            col(Delivery.channel) == channel,
            col(Delivery.state) == DeliveryState.QUEUED,
        )
        .values(state=DeliveryState.FAILED, failed_at=now, last_error=reason)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- the outbox -----------------------------------------------------------------------------


def queue_message(
    session: Session,
    *,
    target: NotifyTarget,
    subject: str,
    body: str,
    dedupe_key: str,
    now: datetime,
    kind: DeliveryKind = DeliveryKind.MESSAGE,
    org_id: int | None = None,
) -> Delivery | None:
    """Queue one message to ``target``, in the caller's transaction (flushed, not committed).

    Returns None, queueing nothing, when a message with ``dedupe_key`` exists already (whatever
    its state) or the recipient opted out of the channel.
    """
    draft = _Draft(target=target, kind=kind, org_id=org_id, subject=subject, body=body, dedupe_key=dedupe_key)
    if session.get(NotifyOptOut, (target.recipient, target.channel)) is not None:
        return None
    if session.exec(
        select(Delivery.id).where(Delivery.dedupe_key == draft.dedupe_key[:MAX_KEY_CHARS])
    ).first():
        return None
    delivery = _new_delivery(draft, now)
    try:
        with session.begin_nested():
            session.add(delivery)
            session.flush()
    except IntegrityError:  # queued by a concurrent transaction meanwhile
        return None
    return delivery


def _queue_many(session: Session, drafts: Sequence[_Draft], *, now: datetime) -> Queued:
    """Queue the drafts not opted out and not queued before, with one existence query per chunk."""
    opted = {(o.recipient, o.channel) for o in session.exec(select(NotifyOptOut))}
    wanted = [d for d in drafts if (d.target.recipient, d.target.channel) not in opted]
    keys = [d.dedupe_key[:MAX_KEY_CHARS] for d in wanted]
    existing: set[str] = set()
    for chunk in in_chunks(keys):
        existing.update(session.exec(select(Delivery.dedupe_key).where(col(Delivery.dedupe_key).in_(chunk))))
    fresh: dict[str, _Draft] = {}
    for draft in wanted:
        key = draft.dedupe_key[:MAX_KEY_CHARS]
        if key not in existing:
            fresh.setdefault(key, draft)
    rows = [_delivery_values(d, now) for d in fresh.values()]
    try:
        with session.begin_nested():
            # Core rows (COPY on PostgreSQL): a city's digests are tens of thousands of messages.
            bulk_insert(session, DELIVERY_TABLE, rows)
        queued = len(rows)
    except IntegrityError:  # a concurrent run queued some of them: go one by one
        queued = 0
        for draft in fresh.values():
            queued += (
                queue_message(
                    session,
                    target=draft.target,
                    subject=draft.subject,
                    body=draft.body,
                    dedupe_key=draft.dedupe_key,
                    now=now,
                    kind=draft.kind,
                    org_id=draft.org_id,
                )
                is not None
            )
    return Queued(queued=queued, duplicates=len(wanted) - queued, opted_out=len(drafts) - len(wanted))


def _new_delivery(draft: _Draft, now: datetime) -> Delivery:
    return Delivery(**_delivery_values(draft, now))


def _delivery_values(draft: _Draft, now: datetime) -> dict[str, Any]:
    body = draft.body[:MAX_BODY_CHARS]
    if draft.target.channel == NotifyChannel.WEBHOOK:
        body = _cut_to_bytes(body, WEBHOOK_MAX_BYTES)
    assert draft.target.id is not None
    return {
        "channel": draft.target.channel,
        "kind": draft.kind,
        "recipient": draft.target.recipient,
        "target_id": draft.target.id,
        "org_id": draft.org_id,
        "address": draft.target.address,
        "subject": _LINE_BREAKS.sub(" ", draft.subject).strip()[:200],
        "body": body,
        "dedupe_key": draft.dedupe_key[:MAX_KEY_CHARS],
        "state": DeliveryState.QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": "",
        "created_at": now,
        "sent_at": None,
        "failed_at": None,
    }


def _cut_to_bytes(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode())].decode(errors="ignore") + "…"


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt: 1, 2, 4 … minutes, at most an hour."""
    doublings: int = min(max(attempts - 1, 0), 20)
    delay: timedelta = FIRST_RETRY_DELAY * (2**doublings)
    return min(delay, MAX_RETRY_DELAY)


def deliver_due(
    session: Session,
    *,
    now: datetime,
    channels: Channels | ServerSettings,
    max_attempts: int = MAX_ATTEMPTS,
    limit: int | None = None,
) -> DeliveryRun:
    """Send every queued delivery whose time has come (at most ``limit``), recording each attempt.

    A failure schedules the next attempt after :func:`retry_delay`; the ``max_attempts``-th failure
    marks the delivery failed. Without an SMTP server, e-mail deliveries stay queued with the reason
    as their last error. Sending happens inside the caller's transaction, which should commit soon
    after (the rows stay locked until then on PostgreSQL).
    """
    own = isinstance(channels, ServerSettings)
    active = Channels.from_settings(channels) if isinstance(channels, ServerSettings) else channels
    try:
        return _deliver(session, now=now, channels=active, max_attempts=max_attempts, limit=limit)
    finally:
        if own:
            active.close()


def _deliver(
    session: Session, *, now: datetime, channels: Channels, max_attempts: int, limit: int | None
) -> DeliveryRun:
    sent = retried = failed = 0
    held = _hold_email(session, now) if channels.email is None else 0
    done = 0
    while limit is None or done < limit:
        size = DELIVERY_BATCH if limit is None else min(DELIVERY_BATCH, limit - done)
        query = select(Delivery).where(
            col(Delivery.state) == DeliveryState.QUEUED, col(Delivery.next_attempt_at) <= now
        )
        if channels.email is None:
            query = query.where(col(Delivery.channel) != NotifyChannel.EMAIL)
        rows = session.exec(
            query.order_by(col(Delivery.next_attempt_at), col(Delivery.id))
            .limit(size)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            break
        target_ids = {r.target_id for r in rows if r.target_id is not None}
        targets = {
            t.id: t for t in session.exec(select(NotifyTarget).where(col(NotifyTarget.id).in_(target_ids)))
        }
        for row in rows:
            outcome = _attempt(
                session, row, targets.get(row.target_id), channels, now=now, max_attempts=max_attempts
            )
            sent += outcome == AttemptOutcome.SENT
            retried += outcome == AttemptOutcome.RETRY
            failed += outcome == AttemptOutcome.FAILED
        session.flush()
        done += len(rows)
        if len(rows) < size:
            break
    return DeliveryRun(sent=sent, retried=retried, failed=failed, held=held)


def _hold_email(session: Session, now: datetime) -> int:
    due = (
        col(Delivery.state) == DeliveryState.QUEUED,
        col(Delivery.channel) == NotifyChannel.EMAIL,
        col(Delivery.next_attempt_at) <= now,
    )
    session.execute(
        update(Delivery)
        .where(*due, col(Delivery.last_error) != EMAIL_DISABLED_REASON)
        .values(last_error=EMAIL_DISABLED_REASON)
    )
    return session.exec(select(func.count()).select_from(Delivery).where(*due)).one()


def _attempt(
    session: Session,
    row: Delivery,
    target: NotifyTarget | None,
    channels: Channels,
    *,
    now: datetime,
    max_attempts: int,
) -> AttemptOutcome:
    assert row.id is not None
    row.attempts += 1
    status: int | None = None
    try:
        if target is None:
            raise ChannelError("通知渠道已移除")
        row.address = target.address
        if row.channel == NotifyChannel.EMAIL:
            assert channels.email is not None
            channels.email.send(to=target.address, subject=row.subject, body=row.body, now=now)
        else:
            payload: dict[str, object] = {"msgtype": "markdown", "markdown": {"content": row.body}}
            status = channels.webhook.send(url=target.address, secret=target.secret, payload=payload, now=now)
    except ChannelError as exc:
        last = target is None or row.attempts >= max_attempts
        outcome = AttemptOutcome.FAILED if last else AttemptOutcome.RETRY
        row.last_error = exc.message[:500]
        if last:
            row.state = DeliveryState.FAILED
            row.failed_at = now
        else:
            row.next_attempt_at = now + retry_delay(row.attempts)
        status, error = exc.http_status, exc.message
    else:
        outcome = AttemptOutcome.SENT
        row.state = DeliveryState.SENT
        row.sent_at = now
        row.last_error = ""
        error = ""
    session.add(row)
    session.add(
        DeliveryAttempt(delivery_id=row.id, at=now, outcome=outcome, http_status=status, error=error[:500])
    )
    return outcome


def list_deliveries(
    session: Session,
    *,
    caller: Caller,
    state: DeliveryState | None = None,
    recipient: str | None = None,
    limit: int = 50,
) -> list[DeliveryView]:
    """The latest deliveries in the caller's scope (by the organisation they concern), masked."""
    query = select(Delivery).where(caller.scope.condition(Delivery.org_id))
    if state is not None:
        query = query.where(col(Delivery.state) == state)
    if recipient is not None:
        query = query.where(col(Delivery.recipient) == recipient)
    rows = session.exec(query.order_by(col(Delivery.id).desc()).limit(max(1, min(limit, 1000)))).all()
    return [
        DeliveryView(
            id=r.id or 0,
            channel=r.channel,
            kind=r.kind,
            recipient=r.recipient,
            address=mask_address(r.address),
            subject=r.subject,
            state=r.state,
            attempts=r.attempts,
            next_attempt_at=r.next_attempt_at,
            last_error=r.last_error,
            created_at=r.created_at,
            sent_at=r.sent_at,
        )
        for r in rows
    ]


def delivery_attempts(session: Session, delivery_id: int) -> list[DeliveryAttempt]:
    return list(
        session.exec(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery_id)
            .order_by(col(DeliveryAttempt.id))
        )
    )


# --- daily digest ---------------------------------------------------------------------------


def queue_digests(session: Session, items: Sequence[DigestItem], *, now: datetime, tz: tzinfo) -> Queued:
    """Queue today's digest for every recipient of ``items``: one message per recipient and channel
    per local day, listing their items. An organisation's group robot lists that organisation's
    items; a web user with an e-mail address lists those of every organisation in their scope.
    A second run on the same day queues nothing new (even with more items: tomorrow's digest
    carries them)."""
    if not items:
        return Queued()
    day = now.astimezone(tz).date()
    day_label = date_text(day)
    tree = _org_tree(session)
    by_org: dict[int, list[DigestItem]] = defaultdict(list)
    for item in items:
        by_org[item.org_id].append(item)

    drafts: list[_Draft] = []
    robots = _targets(session, NotifyChannel.WEBHOOK, org_ids=by_org)
    for target in robots:
        assert target.org_id is not None
        org_items = by_org[target.org_id]
        name = tree.names.get(target.org_id, "")
        drafts.append(
            _Draft(
                target=target,
                kind=DeliveryKind.DIGEST,
                org_id=target.org_id,
                subject=f"{name} 每日提醒（{day_label}）",
                body=_digest_markdown(name, day_label, org_items),
                dedupe_key=_digest_key(target, day.isoformat()),
            )
        )

    covered: dict[int, list[int]] = defaultdict(list)  # scope root -> item organisations under it
    for org_id in by_org:
        for ancestor in tree.lineage(org_id):
            covered[ancestor].append(org_id)
    for target, user in _user_emails(session, roots=covered):
        assert user.org_id is not None
        orgs = sorted(covered[user.org_id], key=lambda o: (tree.names.get(o, ""), o))
        user_items = [(tree.names.get(o, ""), item) for o in orgs for item in by_org[o]]
        drafts.append(
            _Draft(
                target=target,
                kind=DeliveryKind.DIGEST,
                org_id=user.org_id,
                subject=f"党组织工作提醒：{len(user_items)}条待办（{day_label}）",
                body=_digest_email(user.display_name, day_label, user_items),
                dedupe_key=_digest_key(target, day.isoformat()),
            )
        )
    return _queue_many(session, drafts, now=now)


def _digest_key(target: NotifyTarget, day: str) -> str:
    return f"digest:{target.recipient}:{target.channel.value}:{day}"


def _digest_markdown(org_name: str, day_label: str, items: Sequence[DigestItem]) -> str:
    lines = [f"**{_one_line(org_name)} 每日提醒（{day_label}）**", f"> 共 {len(items)} 条待办"]
    shown = 0
    for item in items[:MAX_DIGEST_ITEMS]:
        text = f"- 【{_one_line(item.level)}】{_one_line(item.title)}：{_one_line(item.message)}"
        if item.link:
            text += f" [查看]({_one_line(item.link)})"
        candidate = "\n".join([*lines, text])
        if len(candidate.encode()) > WEBHOOK_MAX_BYTES - 120:
            break
        lines.append(text)
        shown += 1
    if shown < len(items):
        lines.append(f"另有 {len(items) - shown} 条未列出，请登录党建e家查看。")
    return "\n".join(lines)


def _digest_email(display_name: str, day_label: str, items: Sequence[tuple[str, DigestItem]]) -> str:
    lines = [
        f"{_one_line(display_name)} 同志：",
        "",
        f"截至{day_label}，您负责的党组织有 {len(items)} 条待办提醒：",
    ]
    current = None
    for number, (org_name, item) in enumerate(items[:MAX_DIGEST_ITEMS], start=1):
        if org_name != current:
            lines += ["", f"{_one_line(org_name)}"]
            current = org_name
        lines.append(f"  {number}. 【{_one_line(item.level)}】{_one_line(item.title)}")
        lines.append(f"     {_one_line(item.message)}")
        if item.link:
            lines.append(f"     查看：{_one_line(item.link)}")
    if len(items) > MAX_DIGEST_ITEMS:
        lines += ["", f"另有 {len(items) - MAX_DIGEST_ITEMS} 条未列出，请登录党建e家查看。"]
    lines += ["", "此邮件由党建e家自动发送，每天最多一封。如不需要，请联系管理员退订。"]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text).strip()


@dataclass(frozen=True)
class _OrgTree:
    parents: dict[int, int | None]
    names: dict[int, str]

    def lineage(self, org_id: int) -> list[int]:
        """The organisation and its ancestors, up to the root."""
        chain: list[int] = []
        current: int | None = org_id
        while current is not None and current not in chain:
            chain.append(current)
            current = self.parents.get(current)
        return chain


def _org_tree(session: Session) -> _OrgTree:
    parents: dict[int, int | None] = {}
    names: dict[int, str] = {}
    for org_id, parent_id, name in session.exec(
        select(Organisation.id, Organisation.parent_id, Organisation.name)
    ):
        assert org_id is not None
        parents[org_id] = parent_id
        names[org_id] = name
    return _OrgTree(parents=parents, names=names)


def _targets(session: Session, channel: NotifyChannel, *, org_ids: Iterable[int]) -> list[NotifyTarget]:
    found: list[NotifyTarget] = []
    for chunk in in_chunks(sorted(org_ids)):
        found.extend(
            session.exec(
                select(NotifyTarget)
                .where(col(NotifyTarget.channel) == channel, col(NotifyTarget.org_id).in_(chunk))
                .order_by(col(NotifyTarget.org_id))
            )
        )
    return found


def _user_emails(session: Session, *, roots: Iterable[int]) -> list[tuple[NotifyTarget, User]]:
    """The e-mail targets of enabled web users placed at one of ``roots``."""
    found: list[tuple[NotifyTarget, User]] = []
    for chunk in in_chunks(sorted(roots)):
        found.extend(
            session.exec(
                select(NotifyTarget, User)
                .join(User, col(User.id) == col(NotifyTarget.user_id))
                .where(
                    col(NotifyTarget.channel) == NotifyChannel.EMAIL,
                    col(User.disabled_at).is_(None),
                    col(User.org_id).in_(chunk),
                )
                .order_by(col(User.id))
            ).all()
        )
    return found


# --- 会议通知 -------------------------------------------------------------------------------


def queue_meeting_notices(session: Session, *, now: datetime, tz: tzinfo, lead: timedelta) -> Queued:
    """Announce each event starting within ``lead`` to the group robot of every organisation
    holding it: once per event, time and place (a later change of either is announced again, as
    a 变更 notice)."""
    events = session.exec(
        select(Event)
        .where(col(Event.start_at) > now, col(Event.start_at) <= now + lead)
        .order_by(col(Event.start_at), col(Event.id))
    ).all()
    if not events:
        return Queued()
    event_ids = [e.id for e in events if e.id is not None]
    holders: dict[int, list[int]] = defaultdict(list)
    for chunk in in_chunks(event_ids):
        for event_id, org_id in session.exec(
            select(EventOrganisation.event_id, EventOrganisation.org_id).where(
                col(EventOrganisation.event_id).in_(chunk)
            )
        ):
            holders[event_id].append(org_id)
    for event in events:
        assert event.id is not None
        if event.org_id not in holders[event.id]:
            holders[event.id].append(event.org_id)
    robots = {
        t.org_id: t
        for t in _targets(session, NotifyChannel.WEBHOOK, org_ids={o for v in holders.values() for o in v})
    }
    if not robots:
        return Queued()
    venue_ids = sorted({e.venue_id for e in events})
    venues = dict(session.exec(select(Venue.id, Venue.name).where(col(Venue.id).in_(venue_ids))).all())
    announced = _announced_events(session, event_ids)
    names = dict(
        session.exec(
            select(Organisation.id, Organisation.name).where(col(Organisation.id).in_(list(robots)))
        ).all()
    )

    drafts = []
    for event in events:
        assert event.id is not None
        for org_id in sorted(holders[event.id]):
            target = robots.get(org_id)
            if target is None:
                continue
            prefix = f"meeting:{event.id}:{target.recipient}:"
            key = prefix + f"{event.start_at.astimezone(UTC):%Y%m%dT%H%MZ}:{event.venue_id}"
            changed = any(k.startswith(prefix) and k != key for k in announced.get(event.id, ()))
            drafts.append(
                _Draft(
                    target=target,
                    kind=DeliveryKind.MEETING_NOTICE,
                    org_id=org_id,
                    subject=f"{'会议变更通知' if changed else '会议通知'}：{_one_line(event.title)}",
                    body=_meeting_markdown(
                        event,
                        venue=venues.get(event.venue_id, ""),
                        org_name=names.get(org_id, ""),
                        tz=tz,
                        changed=changed,
                    ),
                    dedupe_key=key,
                )
            )
    return _queue_many(session, drafts, now=now)


def _announced_events(session: Session, event_ids: Sequence[int]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = defaultdict(set)
    for chunk in in_chunks(event_ids, 200):
        keys = session.exec(
            select(Delivery.dedupe_key).where(
                col(Delivery.kind) == DeliveryKind.MEETING_NOTICE,
                or_(*[col(Delivery.dedupe_key).startswith(f"meeting:{event_id}:") for event_id in chunk]),
            )
        )
        for key in keys:
            found[int(key.split(":")[1])].add(key)
    return found


def format_local_time(at: datetime, tz: tzinfo) -> str:
    """2026年12月6日 09:30"""
    local = at.astimezone(tz)
    return f"{date_text(local.date())} {local:%H:%M}"


def _meeting_markdown(event: Event, *, venue: str, org_name: str, tz: tzinfo, changed: bool) -> str:
    title = "会议变更通知" if changed else "会议通知"
    lines = [
        f"**{title}**",
        f"> 会议：{_one_line(event.title)}",
        f"> 类型：{EVENT_KIND_LABELS.get(event.kind, '活动')}",
    ]
    if event.topic.strip():
        lines.append(f"> 议题：{_one_line(event.topic)}")
    lines += [f"> 时间：{format_local_time(event.start_at, tz)}", f"> 地点：{_one_line(venue)}"]
    if org_name:
        lines.append(f"> 组织：{_one_line(org_name)}")
    if changed:
        lines.append("会议时间或地点有变更，以本通知为准。")
    lines.append("请按时参加；不能参加的，请向支部书记请假。")
    return "\n".join(lines)


def prune_deliveries(session: Session, *, before: datetime) -> int:
    """Delete sent and failed deliveries (and their attempts) created before ``before``."""
    old = select(Delivery.id).where(
        col(Delivery.state) != DeliveryState.QUEUED, col(Delivery.created_at) < before
    )
    ids = list(session.exec(old))
    for chunk in in_chunks(ids):
        session.execute(delete(DeliveryAttempt).where(col(DeliveryAttempt.delivery_id).in_(chunk)))
        session.execute(delete(Delivery).where(col(Delivery.id).in_(chunk)))
    return len(ids)
