"""Ingest of signed tap batches.

Each envelope is decided on its own and always gets a receipt; only a batch that does not parse
at all is an HTTP error. The checks run in this order, and the first that fails decides:

1. ``kid`` names a kiosk key, current or rotated out ............. else ``unknown_kiosk``
2. the Ed25519 signature verifies over the exact payload bytes .. else ``bad_signature``
3. the bytes parse as a ``TapPayload`` .......................... else ``malformed``
4. the payload names the key's kiosk ............................ else ``kiosk_mismatch``
5. the kiosk is not revoked ..................................... else ``revoked_kiosk``
6. (kiosk, seq) seen with the same bytes ........................ ``duplicate``: the stored receipt
   (kiosk, seq) seen with other bytes ........................... ``seq_conflict``
   a rotated-out key, seq after its rotation .................... ``retired_key``
7. the tap is not from the future (beyond the allowed skew) ..... else ``clock_skew``
8. enrol mode: the card is bound for the secretary waiting at this kiosk (never attendance;
   see ``server.kiosks.enrol``) ......... else ``no_enrol_session``, ``enrol_ambiguous``,
   ``card_already_bound``; the receipt says 「已绑定到 张*明」
   transfer-in mode: after the card check below (a clone is refused; an unknown card is not),
   files or refers to a 组织关系转入 request at the venue's organisation (``server.transfers``;
   never attendance) ........................................... else ``already_member``
   the mode is check-in ......................................... else ``unsupported_mode``
9. the card is bound to a member and passes its card check (``server.cards.checks``: the
   strongest of uid / card-number / issuer-mac its binding and card support, at least
   ``ECARD_MIN_CARD_CHECK``) ........ else ``unknown_card``, ``card_mismatch``,
   ``issuer_mac_invalid``, ``issuer_mac_replayed``, ``issuer_unavailable``, ``weak_card_check``;
   a card whose binding was retired: ``card_lost``, ``card_replaced``, ``card_revoked``
10. an event at the kiosk's venue has its check-in window open ... else ``no_event``
    (several open windows: the member's own meeting first, then the nearest start; just after
    the end, a member who checked in still signs out: ``server.events.service``). The first
    tap is 签到, one at least 10 minutes later 签退 (``server.attendance.service``).

Every envelope except a duplicate is stored as an immutable :class:`~server.taps.models.Tap` row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
from server.attendance.service import CheckinResult, record_checkin
from server.cards.checks import CardCheckPolicy, check_card
from server.cards.lifecycle import retired_card_rejection
from server.cards.service import card_digests
from server.events.service import find_event_for_sign_out, find_event_for_tap
from server.keyring import Keyring, Purpose
from server.kiosks.enrol import bind_card_from_tap
from server.kiosks.models import Kiosk
from server.kiosks.service import find_signing_key, verify_signature
from server.live import AcceptedTap, announce_after_commit
from server.masking import mask_card_no, mask_name, mask_uid
from server.orgs.models import Member
from server.taps.models import Tap
from server.transfers.service import TapFiling, check_tap_filing, file_from_tap
from server.venues.models import Venue
from server.vocabulary import KioskStatus, RejectionCode, TapOutcome

log = logging.getLogger(__name__)

MAX_SEQ = 2**63 - 1  # the seq column is a signed 64-bit integer

CHECKED_IN_MESSAGE = "签到成功"
CHECKED_IN_AGAIN_MESSAGE = "已签到，无需重复刷卡"
SIGNED_OUT_MESSAGE = "签退成功"
TRANSFER_FILED_MESSAGE = "已提交组织关系转入申请，请等待组织委员联系"
TRANSFER_PENDING_MESSAGE = "您的转入申请正在办理中，请等待组织委员联系"
REJECTION_MESSAGES: dict[RejectionCode, str] = {
    RejectionCode.UNKNOWN_KIOSK: "终端未登记，请联系管理员",
    RejectionCode.BAD_SIGNATURE: "终端签名无效，请联系管理员",
    RejectionCode.MALFORMED: "刷卡数据无法识别，请联系管理员",
    RejectionCode.KIOSK_MISMATCH: "终端身份不符，请联系管理员",
    RejectionCode.REVOKED_KIOSK: "终端已停用，请联系管理员",
    RejectionCode.SEQ_CONFLICT: "刷卡记录编号冲突，请联系管理员",
    RejectionCode.CLOCK_SKEW: "终端时间不准确，请联系管理员",
    RejectionCode.UNSUPPORTED_MODE: "终端工作模式不受支持，请联系管理员",
    RejectionCode.UNKNOWN_CARD: "未登记的卡，请联系组织委员",
    RejectionCode.NO_EVENT: "当前没有可签到的活动",
    RejectionCode.CARD_LOST: "此卡已挂失，请联系组织委员",
    RejectionCode.CARD_REPLACED: "此卡已换新卡，请使用新卡",
    RejectionCode.CARD_REVOKED: "此卡已注销，请联系组织委员",
    RejectionCode.RETIRED_KEY: "终端密钥已更换，请联系管理员",
    RejectionCode.NO_ENROL_SESSION: "没有待绑定的请求，请先在网页上点击「刷卡绑定」",
    RejectionCode.ENROL_AMBIGUOUS: "有多个绑卡请求同时等待，请在网页上取消多余的请求",
    RejectionCode.CARD_ALREADY_BOUND: "该卡已绑定到其他党员",
    RejectionCode.CARD_MISMATCH: "卡片信息与登记不符，请联系组织委员",
    RejectionCode.ISSUER_MAC_INVALID: "卡片未通过发卡机构认证，请联系组织委员",
    RejectionCode.ISSUER_MAC_REPLAYED: "卡片认证数据已被使用，请重新刷卡",
    RejectionCode.ISSUER_UNAVAILABLE: "暂时无法向发卡机构验证卡片，请稍后重新刷卡",
    RejectionCode.WEAK_CARD_CHECK: "本终端对此卡的验证等级不足，请联系组织委员",
    RejectionCode.ALREADY_MEMBER: "您的组织关系已在本组织，无需转入",
}


@dataclass(frozen=True)
class IngestContext:
    keyring: Keyring
    received_at: datetime
    max_clock_skew: timedelta
    # Told about each accepted check-in after the commit (the web app's live boards).
    on_accepted: Callable[[AcceptedTap], None] | None = None
    card_policy: CardCheckPolicy = field(default_factory=CardCheckPolicy)


def ingest_batch(
    session: Session,
    batch: TapBatch,
    *,
    keyring: Keyring,
    received_at: datetime,
    max_clock_skew: timedelta,
    on_accepted: Callable[[AcceptedTap], None] | None = None,
    card_policy: CardCheckPolicy | None = None,
) -> BatchReceipt:
    """Decide, store and answer every envelope of a batch (see the module docstring for the rules).

    ``on_accepted`` is called once per accepted check-in, after ``session`` commits.
    ``card_policy`` is the deployment's card-check minimum and issuer (default: ``uid``, none).
    """
    context = IngestContext(
        keyring=keyring,
        received_at=received_at,
        max_clock_skew=max_clock_skew,
        on_accepted=on_accepted,
        card_policy=(card_policy or CardCheckPolicy()).for_batch(),
    )
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

    # The kid may name the kiosk's current key or one it rotated out (see server.kiosks.service).
    # The kiosk row is locked: one kiosk's envelopes are then decided one at a time on PostgreSQL,
    # which keeps the (kiosk, seq) checks and last_seq honest when uploads overlap.
    signing_key = find_signing_key(session, envelope.kid)
    if signing_key is None:
        return _reject(session, row, index, RejectionCode.UNKNOWN_KIOSK)
    kiosk = signing_key.kiosk
    row.kiosk_id = kiosk.id
    if raw is None:
        return _reject(session, row, index, RejectionCode.MALFORMED)
    if not verify_signature(signing_key.key.public_key, raw, envelope.sig):
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
    if not signing_key.covers_seq(payload.seq):
        # A rotated-out key signing a seq after the rotation: a stolen old key, not an old tap.
        return _reject(session, row, index, RejectionCode.RETIRED_KEY)

    row.claimed_seq = payload.seq
    kiosk.last_seq = max(kiosk.last_seq or 0, payload.seq)
    if payload.occurred_at > context.received_at + context.max_clock_skew:
        return _reject(session, row, index, RejectionCode.CLOCK_SKEW)
    if payload.mode == TapMode.ENROL:
        return _enrol(session, row, index, kiosk, payload, context)
    if payload.mode not in (TapMode.CHECKIN, TapMode.TRANSFER_IN):
        return _reject(session, row, index, RejectionCode.UNSUPPORTED_MODE)
    checked = check_card(
        session,
        payload.card,
        kiosk_id=kiosk.id,
        number_hmac=card_no_hmac,
        uid_hmac=uid_hmac,
        policy=context.card_policy,
        now=context.received_at,
    )
    row.card_check, row.card_check_note = checked.level, checked.note
    row.auth_challenge = checked.auth_challenge
    if payload.mode == TapMode.TRANSFER_IN:
        return _transfer_in(session, row, index, kiosk, payload, checked.member, checked.rejection)
    if checked.rejection is not None:
        rejection = checked.rejection
        if rejection == RejectionCode.UNKNOWN_CARD:
            # A lost, replaced or revoked card is not unknown: say which, so its holder is told
            # what to do and a found-again lost card shows up as such.
            retired = retired_card_rejection(session, card_no_hmac=card_no_hmac, uid_hmac=uid_hmac)
            rejection = retired or rejection
        return _reject(session, row, index, rejection, card=_masked_card(payload))
    member = checked.member
    assert member is not None
    event = find_event_for_tap(
        session,
        venue_id=kiosk.venue_id,
        at=payload.occurred_at,
        member_id=member.id,
        member_org_id=member.org_id,
    )
    if event is None and member.id is not None:
        # Just after a meeting ends, a member who checked in may still tap out (签退).
        event = find_event_for_sign_out(
            session, venue_id=kiosk.venue_id, at=payload.occurred_at, member_id=member.id
        )
    member_name = mask_name(member.name)
    if event is None:
        # Outside any meeting a tap is not filed against the member (privacy): no member_id.
        return _reject(session, row, index, RejectionCode.NO_EVENT, member_name=member_name)

    assert member.id is not None
    assert event.id is not None
    row.member_id, row.event_id = member.id, event.id
    row.outcome = TapOutcome.ACCEPTED
    row.display_member_name, row.display_event_title = member_name, event.title
    row.display_message = CHECKED_IN_MESSAGE
    session.add(row)
    session.flush()
    assert row.id is not None
    checkin = record_checkin(
        session, event_id=event.id, member_id=member.id, tap_id=row.id, at=payload.occurred_at
    )
    repeat = checkin != CheckinResult.CHECKED_IN
    if repeat:
        signed_out = checkin == CheckinResult.SIGNED_OUT
        row.display_message = SIGNED_OUT_MESSAGE if signed_out else CHECKED_IN_AGAIN_MESSAGE
        session.add(row)
    if context.on_accepted is not None:
        notice = AcceptedTap(
            event_id=event.id,
            member_id=member.id,
            tap_id=row.id,
            member_name=member_name,
            occurred_at=payload.occurred_at,
            repeat=repeat,
        )
        announce_after_commit(session, context.on_accepted, notice)
    log.info(
        "tap accepted: kiosk=%s seq=%d event=%d card=%s",
        kiosk.id,
        payload.seq,
        event.id,
        _masked_card(payload),
    )
    return _receipt(row, index, TapStatus.ACCEPTED)


def _enrol(
    session: Session, row: Tap, index: int, kiosk: Kiosk, payload: TapPayload, context: IngestContext
) -> TapReceipt:
    # An enrol tap binds a card for a secretary's waiting request; it is never attendance, so it
    # carries no member_id or event_id (the binding and its audit entry record who got the card).
    outcome = bind_card_from_tap(
        session,
        keyring=context.keyring,
        kiosk=kiosk,
        card=payload.card,
        occurred_at=payload.occurred_at,
        received_at=context.received_at,
        max_clock_skew=context.max_clock_skew,
    )
    if outcome.rejection is not None:
        return _reject(session, row, index, outcome.rejection, card=_masked_card(payload))
    row.outcome = TapOutcome.ACCEPTED
    row.display_member_name = outcome.member_name
    row.display_message = f"已绑定到 {outcome.member_name}"
    session.add(row)
    session.flush()
    log.info("enrol tap bound a card: kiosk=%s seq=%d card=%s", kiosk.id, payload.seq, _masked_card(payload))
    return _receipt(row, index, TapStatus.ACCEPTED)


def _transfer_in(
    session: Session,
    row: Tap,
    index: int,
    kiosk: Kiosk,
    payload: TapPayload,
    member: Member | None,
    rejection: RejectionCode | None,
) -> TapReceipt:
    # A transfer-in tap is the member's application, so it is filed against them (member_id), but
    # it is never attendance (no event_id). An unknown card is a person we do not know yet: the
    # request is keyed by the card's digests. Any other card-check failure (a clone) is refused.
    card = _masked_card(payload)
    if rejection is not None and rejection != RejectionCode.UNKNOWN_CARD:
        return _reject(session, row, index, rejection, card=card)
    venue = session.get(Venue, kiosk.venue_id)
    assert venue is not None  # a foreign key
    member_name = mask_name(member.name) if member is not None else None
    filing = check_tap_filing(
        session, org_id=venue.org_id, member=member, card_no_hmac=row.card_no_hmac, uid_hmac=row.uid_hmac
    )
    if filing == TapFiling.ALREADY_MEMBER:
        return _reject(session, row, index, RejectionCode.ALREADY_MEMBER, member_name=member_name)
    row.outcome = TapOutcome.ACCEPTED
    row.member_id = member.id if member is not None else None
    row.display_member_name = member_name
    row.display_message = TRANSFER_FILED_MESSAGE if filing == TapFiling.FILED else TRANSFER_PENDING_MESSAGE
    session.add(row)
    session.flush()
    assert row.id is not None
    if filing == TapFiling.FILED:
        file_from_tap(
            session,
            org_id=venue.org_id,
            member=member,
            card_no_hmac=row.card_no_hmac,
            uid_hmac=row.uid_hmac,
            card_masked=card,
            tap_id=row.id,
            kiosk_id=kiosk.id,
            now=row.received_at,
        )
    log.info("transfer-in tap %s: kiosk=%s seq=%d card=%s", filing, kiosk.id, payload.seq, card)
    return _receipt(row, index, TapStatus.ACCEPTED)


def _decode(payload: str) -> bytes | None:
    try:
        return b64url_decode(payload)
    except ValueError:
        return None


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
