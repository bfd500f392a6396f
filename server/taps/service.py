"""Ingest of signed tap batches.

Each envelope is decided on its own and always gets a receipt; only a batch that does not parse
at all is an HTTP error. The checks run in this order, and the first that fails decides:

1. ``kid`` names an enrolled kiosk key .......................... else ``unknown_kiosk``
2. the Ed25519 signature verifies over the exact payload bytes .. else ``bad_signature``
3. the bytes parse as a ``TapPayload`` .......................... else ``malformed``
4. the payload names the key's kiosk ............................ else ``kiosk_mismatch``
5. the kiosk is not revoked ..................................... else ``revoked_kiosk``
6. (kiosk, seq) seen with the same bytes ........................ ``duplicate``: the stored receipt
   (kiosk, seq) seen with other bytes ........................... ``seq_conflict``
7. the tap is not from the future (beyond the allowed skew) ..... else ``clock_skew``
8. the mode is check-in ......................................... else ``unsupported_mode``
9. the card is bound to a member ................................ else ``unknown_card``
10. an event at the kiosk's venue has its check-in window open ... else ``no_event``

Every envelope except a duplicate is stored as an immutable :class:`~server.taps.models.Tap` row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from schemas.messages import (
    BatchReceipt,
    SignedEnvelope,
    TapBatch,
    TapDisplay,
    TapMode,
    TapPayload,
    TapReceipt,
    TapStatus,
    b64url_decode,
)
from server.attendance.service import has_checked_in, record_checkin
from server.cards.service import card_digests, find_bound_member
from server.events.service import find_event_for_tap
from server.keyring import Keyring, Purpose
from server.kiosks.models import Kiosk
from server.kiosks.service import load_public_key
from server.masking import mask_card_no, mask_name, mask_uid
from server.taps.models import Tap
from server.vocabulary import KioskStatus, RejectionCode, TapOutcome

log = logging.getLogger(__name__)

MAX_SEQ = 2**63 - 1  # the seq column is a signed 64-bit integer

CHECKED_IN_MESSAGE = "签到成功"
CHECKED_IN_AGAIN_MESSAGE = "已签到，无需重复刷卡"
REJECTION_MESSAGES: dict[RejectionCode, str] = {
    RejectionCode.UNKNOWN_KIOSK: "终端未登记，请联系管理员",
    RejectionCode.BAD_SIGNATURE: "终端签名无效，请联系管理员",
    RejectionCode.MALFORMED: "刷卡数据无法识别，请联系管理员",
    RejectionCode.KIOSK_MISMATCH: "终端身份不符，请联系管理员",
    RejectionCode.REVOKED_KIOSK: "终端已停用，请联系管理员",
    RejectionCode.SEQ_CONFLICT: "刷卡记录编号冲突，请联系管理员",
    RejectionCode.CLOCK_SKEW: "终端时间不准确，请联系管理员",
    RejectionCode.UNSUPPORTED_MODE: "暂不支持组织关系转入登记",
    RejectionCode.UNKNOWN_CARD: "未登记的卡，请联系组织委员",
    RejectionCode.NO_EVENT: "当前没有可签到的活动",
}


@dataclass(frozen=True)
class IngestContext:
    keyring: Keyring
    received_at: datetime
    max_clock_skew: timedelta


def ingest_batch(
    session: Session, batch: TapBatch, *, keyring: Keyring, received_at: datetime, max_clock_skew: timedelta
) -> BatchReceipt:
    """Decide, store and answer every envelope of a batch (see the module docstring for the rules)."""
    context = IngestContext(keyring=keyring, received_at=received_at, max_clock_skew=max_clock_skew)
    receipts = [
        _ingest_with_retry(session, envelope, index, context)
        for index, envelope in enumerate(batch.envelopes)
    ]
    return BatchReceipt(server_time=received_at, receipts=receipts)


def _ingest_with_retry(
    session: Session, envelope: SignedEnvelope, index: int, context: IngestContext
) -> TapReceipt:
    # Two uploads of the same (kiosk, seq), or one member's first taps at two kiosks, can race on
    # PostgreSQL; the loser hits a unique constraint. Its savepoint rolls back alone and the
    # envelope is decided again, now seeing the winner's row (a duplicate, or a repeat check-in).
    try:
        with session.begin_nested():
            return _ingest_envelope(session, envelope, index, context)
    except IntegrityError:
        log.info("tap %d lost a race on a unique key; deciding it again", index)
    with session.begin_nested():
        return _ingest_envelope(session, envelope, index, context)


def _ingest_envelope(
    session: Session, envelope: SignedEnvelope, index: int, context: IngestContext
) -> TapReceipt:
    raw = _decode(envelope.payload)
    digest = context.keyring.digest(
        Purpose.TAP_PAYLOAD, raw if raw is not None else envelope.payload.encode()
    )
    row = Tap(
        received_at=context.received_at,
        kid=envelope.kid,
        payload_digest=digest,
        outcome=TapOutcome.REJECTED,
        display_message="",
    )

    # Lock the kiosk row: one kiosk's envelopes are then decided one at a time on PostgreSQL, which
    # keeps the (kiosk, seq) checks and last_seq honest when uploads overlap.
    kiosk = session.exec(select(Kiosk).where(Kiosk.kid == envelope.kid).with_for_update()).first()
    if kiosk is None or kiosk.public_key is None:
        return _reject(session, row, index, RejectionCode.UNKNOWN_KIOSK)
    row.kiosk_id = kiosk.id
    if raw is None:
        return _reject(session, row, index, RejectionCode.MALFORMED)
    if not _signature_valid(kiosk, raw, envelope.sig):
        return _reject(session, row, index, RejectionCode.BAD_SIGNATURE)

    kiosk.last_seen_at = context.received_at
    session.add(kiosk)
    try:
        payload = TapPayload.model_validate_json(raw)
    except ValidationError:
        return _reject(session, row, index, RejectionCode.MALFORMED)
    if payload.seq > MAX_SEQ:
        return _reject(session, row, index, RejectionCode.MALFORMED)
    card_no_hmac, uid_hmac = card_digests(context.keyring, payload.card)
    row.seq = payload.seq
    row.occurred_at = payload.occurred_at
    row.mode = payload.mode
    row.card_no_hmac, row.uid_hmac = card_no_hmac, uid_hmac
    row.reader_backend = payload.reader.backend.value

    if payload.kiosk_id != kiosk.id:
        return _reject(session, row, index, RejectionCode.KIOSK_MISMATCH)
    if kiosk.status == KioskStatus.REVOKED:
        return _reject(session, row, index, RejectionCode.REVOKED_KIOSK)
    earlier = _earlier_answer(session, kiosk_id=kiosk.id, seq=payload.seq, digest=digest)
    if earlier is not None:
        return _duplicate_receipt(earlier, index)
    if _seq_taken(session, kiosk_id=kiosk.id, seq=payload.seq):
        return _reject(session, row, index, RejectionCode.SEQ_CONFLICT)

    row.claimed_seq = payload.seq
    kiosk.last_seq = max(kiosk.last_seq or 0, payload.seq)
    if payload.occurred_at > context.received_at + context.max_clock_skew:
        return _reject(session, row, index, RejectionCode.CLOCK_SKEW)
    if payload.mode != TapMode.CHECKIN:
        return _reject(session, row, index, RejectionCode.UNSUPPORTED_MODE)
    member = find_bound_member(session, card_no_hmac=card_no_hmac, uid_hmac=uid_hmac)
    if member is None:
        return _reject(session, row, index, RejectionCode.UNKNOWN_CARD, card=_masked_card(payload))
    event = find_event_for_tap(session, venue_id=kiosk.venue_id, at=payload.occurred_at)
    member_name = mask_name(member.name)
    if event is None:
        # Outside any meeting a tap is not filed against the member (privacy): no member_id.
        return _reject(session, row, index, RejectionCode.NO_EVENT, member_name=member_name)

    assert member.id is not None
    assert event.id is not None
    repeat = has_checked_in(session, event_id=event.id, member_id=member.id)
    row.member_id, row.event_id = member.id, event.id
    row.outcome = TapOutcome.ACCEPTED
    row.display_member_name, row.display_event_title = member_name, event.title
    row.display_message = CHECKED_IN_AGAIN_MESSAGE if repeat else CHECKED_IN_MESSAGE
    session.add(row)
    session.flush()
    assert row.id is not None
    record_checkin(session, event_id=event.id, member_id=member.id, tap_id=row.id, at=payload.occurred_at)
    log.info(
        "tap accepted: kiosk=%s seq=%d event=%d card=%s",
        kiosk.id,
        payload.seq,
        event.id,
        _masked_card(payload),
    )
    return _receipt(row, index, TapStatus.ACCEPTED)


def _decode(payload: str) -> bytes | None:
    try:
        return b64url_decode(payload)
    except ValueError:
        return None


def _signature_valid(kiosk: Kiosk, payload: bytes, signature: str) -> bool:
    try:
        load_public_key(kiosk).verify(b64url_decode(signature), payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def _earlier_answer(session: Session, *, kiosk_id: str, seq: int, digest: str) -> Tap | None:
    """The stored row for these exact bytes at this (kiosk, seq): the original, or an earlier conflict."""
    return session.exec(
        select(Tap)
        .where(
            Tap.kiosk_id == kiosk_id,
            Tap.seq == seq,
            Tap.payload_digest == digest,
            or_(col(Tap.claimed_seq).is_not(None), Tap.code == RejectionCode.SEQ_CONFLICT),
        )
        .order_by(col(Tap.id))
    ).first()


def _seq_taken(session: Session, *, kiosk_id: str, seq: int) -> bool:
    return (
        session.exec(select(Tap.id).where(Tap.kiosk_id == kiosk_id, Tap.claimed_seq == seq)).first()
        is not None
    )


def _reject(
    session: Session,
    row: Tap,
    index: int,
    code: RejectionCode,
    *,
    member_name: str | None = None,
    card: str | None = None,
) -> TapReceipt:
    row.outcome = TapOutcome.REJECTED
    row.code = code
    row.display_member_name = member_name
    row.display_message = REJECTION_MESSAGES[code]
    session.add(row)
    session.flush()
    log.info(
        "tap rejected: code=%s kiosk=%s seq=%s%s",
        code.value,
        row.kiosk_id,
        row.seq,
        f" card={card}" if card else "",
    )
    return _receipt(row, index, TapStatus.REJECTED)


def _receipt(row: Tap, index: int, status: TapStatus) -> TapReceipt:
    return TapReceipt(
        index=index,
        seq=row.seq,
        status=status,
        code=row.code.value if row.code else None,
        display=TapDisplay(
            member_name=row.display_member_name,
            event_title=row.display_event_title,
            message=row.display_message,
        ),
    )


def _duplicate_receipt(original: Tap, index: int) -> TapReceipt:
    # The agent may have lost our first answer; it gets that same answer again, marked duplicate.
    return _receipt(original, index, TapStatus.DUPLICATE)


def _masked_card(payload: TapPayload) -> str:
    return mask_card_no(payload.card.card_no) if payload.card.card_no else mask_uid(payload.card.uid)
