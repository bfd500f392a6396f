"""Ingest of signed tap batches.

Each envelope is decided on its own and always gets a receipt, in the batch's order; only a body
that is not a batch at all is an HTTP error (a 4xx, never a 5xx). The checks run in this order,
and the first that fails decides. Step 0 is the envelope's shape; steps 1–7 authenticate the tap
(``authenticate_tap`` in ``server.kiosks.authentication``, the same checks heartbeats and key
rotations pass); step 8 picks the mode's handler from :data:`MODE_HANDLERS`; steps 9 and 10 are
the handlers' own.

0. the item is a ``SignedEnvelope`` within its bounds (``kid`` in its exact format, the payload at
   most ``MAX_SIGNED_PAYLOAD_BYTES``, a signature's length; :func:`_read_envelope`)
   ............................................. else ``malformed``, the receipt naming the field
1. ``kid`` names a kiosk key, current or rotated out (``find_signing_key``) .. else ``unknown_kiosk``
2. the Ed25519 signature verifies over the exact payload bytes (``signed_bytes``)
   ......... else ``bad_signature`` (``malformed``, field ``payload``, when the bytes do not decode)
   Steps 0–2 refuse what could be anyone's: no row is stored for it (else anyone could grow the
   database); it is counted per source address in bounded memory and logged, rate-limited
   (:class:`~server.taps.strangers.StrangerTally`).
3. the bytes parse as a ``TapPayload``, every field within its wire bounds (times in 2000–2100,
   seq at most ``MAX_SEQ``; ``read_tap_payload``) ...... else ``malformed``, naming the field
4. the payload names the key's kiosk (``check_kiosk_match``) ........ else ``kiosk_mismatch``
5. the kiosk is not revoked (``check_not_revoked``) ................. else ``revoked_kiosk``
6. (kiosk, seq) seen with the same bytes (``claim_seq``) ...... ``duplicate``: the stored receipt
   (kiosk, seq) seen with other bytes ........................... ``seq_conflict``
   a rotated-out key, seq after its rotation .................... ``retired_key``
7. the tap is not from the future, beyond the allowed skew (``check_clock``) .. else ``clock_skew``
8. the mode has a handler (:data:`MODE_HANDLERS`) ............... else ``unsupported_mode``
   enrol (:func:`_bind_card`): the card is bound for the secretary waiting at this kiosk (never
   attendance; see ``server.cards.tap_binding``) ......... else ``no_enrol_session``,
   ``enrol_ambiguous``, ``card_already_bound``; the receipt says 「已绑定到 张*明」
   transfer-in (:func:`_transfer_in`): after the card check (9; a clone is refused, an unknown
   card is not), files or refers to a 组织关系转入 request at the venue's organisation
   (``server.transfers``; never attendance) ..................... else ``already_member``
   message (:func:`_open_booth`): after the card check (9), an active member gets a one-time
   留言亭 link for their phone in the receipt (``server.booth``; never attendance)
   ................................................ else ``member_inactive``, ``booth_limit``
   check-in (:func:`_check_in`): steps 9 and 10
9. the card is bound to a member and passes its card check (:func:`_check_card`, with
   ``server.cards.checks``: the strongest of uid / card-number / issuer-mac its binding and card
   support, at least ``ECARD_MIN_CARD_CHECK``, and never below the level the binding was already
   verified at when this kiosk's reader could do better) ........ else ``unknown_card``,
   ``card_mismatch``, ``card_downgrade``, ``issuer_mac_invalid``, ``issuer_mac_replayed``,
   ``issuer_unavailable``, ``weak_card_check``;
   a card whose binding was retired (:func:`_retired_or`): ``card_lost``, ``card_replaced``,
   ``card_revoked``
10. an event at the kiosk's venue has its check-in window open (:func:`_find_event`) .. else
    ``no_event`` (several open windows: the member's own meeting first, then the nearest start;
    just after the end, a member present by another record still signs out:
    ``server.attendance.derive.choose_event``). The first tap is 签到, one at least 10 minutes
    later 签退 (:func:`_accept_checkin`, with ``server.attendance.service``). A tap inside a window
    also settles the member's unmatched taps in that event's sign-out grace (their 签退 arrived
    first), and an enrol tap the card's ``unknown_card`` taps (``server.attendance.derive``): what a
    tap counts as never depends on arrival order; its receipt stays what the kiosk was told.

Every envelope that passed step 2, except a duplicate, is stored as an immutable
:class:`~server.records.taps.Tap` row, with its evidence (``server.evidence``: the signed bytes
sealed under the evidence key, the signature, and its link in the kiosk's hash chain).

A batch is decided together, in order, as if its envelopes came one by one (the same receipts,
rows and attendance; ``tests/server/taps/test_batch_equivalence.py``), at a cost per batch rather
than per envelope (:class:`BatchRun`): steps 0–5 for every envelope first (they change nothing
another envelope could see), then one read for all of them of what steps 6, 9 and 10 look up,
then steps 6–10 in memory. The rows are plain :class:`~server.records.taps.NewTap` objects with
ids taken up front, written together at the end (``COPY`` on PostgreSQL) with their evidence;
they are written earlier only where something is about to query or refer to them (a card bound,
a transfer filed, an early 签退 to settle, a late tap looking for the meeting it ends).

Several uploads (:class:`Upload`, one per request) can be decided in one run
(:func:`ingest_uploads`; ``server.taps.intake`` gathers those that arrive together): their envelopes
in arrival order, each receipt indexed within its own upload, each refusal before authentication
counted against its own sender, each 留言亭 link made for the address its own request used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from schemas.messages import (
    BatchReceipt,
    SignedEnvelope,
    TapBatch,
    TapDisplay,
    TapMode,
    TapPayload,
    TapReceipt,
    TapStatus,
    UncheckedTapBatch,
)
from server.attendance.derive import (
    choose_event,
    settle_card_taps,
    settle_sign_outs,
    sign_out_grace_holds_taps,
)
from server.attendance.service import AttendanceRows, CheckinResult, checkin_result, record_checkin
from server.booth.service import BoothPolicy, has_unread_reply, issue_link, links_today
from server.cards.checks import ActiveBindings, CardCheck, CardCheckPolicy, CardHolder, check_card
from server.cards.lifecycle import retired_card_rejection
from server.cards.service import card_digests
from server.cards.tap_binding import bind_card_from_tap
from server.events.service import SIGN_OUT_GRACE, EventWindows
from server.evidence.sealing import EvidenceSealer
from server.evidence.service import keep_batch_evidence
from server.keyring import Keyring, Purpose
from server.kiosks.authentication import (
    Duplicate,
    PublicKeys,
    Rejection,
    SeqClaims,
    SignatureCheck,
    Signed,
    SignedTap,
    SigningKeys,
    admit_tap,
    authenticate,
    problem_field,
    read_tap_payload,
)
from server.live import AcceptedTap, announce_after_commit
from server.masking import mask_card_no, mask_name, mask_uid
from server.records.cards import CardBinding
from server.records.events import Event
from server.records.kiosks import Kiosk
from server.records.orgs import Member
from server.records.taps import NewTap, Tap, allocate_tap_ids, insert_new_taps
from server.taps.strangers import StrangerTally
from server.transfers.service import TapFiling, check_tap_filing, confirm_from_tap, file_from_tap
from server.venues.service import venue_org_id
from server.vocabulary import MemberStatus, RejectionCode, TapOutcome

log = logging.getLogger(__name__)

CHECKED_IN_MESSAGE = "签到成功"
CHECKED_IN_AGAIN_MESSAGE = "已签到，无需重复刷卡"
SIGNED_OUT_MESSAGE = "签退成功"
CHECKIN_MESSAGES = {
    CheckinResult.CHECKED_IN: CHECKED_IN_MESSAGE,
    CheckinResult.ALREADY_CHECKED_IN: CHECKED_IN_AGAIN_MESSAGE,
    CheckinResult.SIGNED_OUT: SIGNED_OUT_MESSAGE,
}
TRANSFER_FILED_MESSAGE = "已提交组织关系转入申请，请等待组织委员联系"
TRANSFER_PENDING_MESSAGE = "您的转入申请正在办理中，请等待组织委员联系"
BOOTH_LINK_MESSAGE = "请用手机扫码留言"
BOOTH_REPLY_MESSAGE = "您的留言有新回复"
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
    RejectionCode.CARD_DOWNGRADE: "此卡须以更高等级验证，疑似复制卡，请联系组织委员",
    RejectionCode.BOOTH_LIMIT: "今天的留言次数已用完，请明天再来",
    RejectionCode.MEMBER_INACTIVE: "您的党籍状态不能使用留言亭，请联系组织委员",
}


@dataclass(frozen=True)
class IngestContext:
    keyring: Keyring
    received_at: datetime
    max_clock_skew: timedelta
    # Told about each accepted check-in after the commit (the web app's live boards).
    on_accepted: Callable[[AcceptedTap], None] | None = None
    card_policy: CardCheckPolicy = field(default_factory=CardCheckPolicy)
    # The tally, per source, of envelopes refused before authentication.
    strangers: StrangerTally | None = None
    # Seals each stored tap's signed bytes (server.evidence); None: only signature and chain kept.
    sealer: EvidenceSealer | None = None
    # Learns the public keys found at step 1, for checking signatures ahead (check_ahead).
    public_keys: PublicKeys | None = None


@dataclass(frozen=True)
class Upload:
    """One request's batch as it reached the server. Uploads arriving together are decided in
    one run (``server.taps.intake``), each keeping what belongs to its request."""

    envelopes: Sequence[object]
    # The sender's address (the strangers' tally counts per source).
    source: str = "unknown"
    # Message mode: the 留言亭 links' lifetime, daily limit and the address this request used.
    booth: BoothPolicy = field(default_factory=BoothPolicy)
    # Step 2 done ahead, by envelope (check_ahead); empty: none was.
    checks: Sequence[SignatureCheck | None] = ()


def check_ahead(upload: Upload, keys: PublicKeys) -> Upload:
    """*upload* with steps 0 and 2 done ahead, outside any transaction (no database; any thread):
    each envelope read as a ``SignedEnvelope`` once, and its signature checked when this process
    knows its kid's key (:class:`~server.kiosks.authentication.PublicKeys`). Deciding the result
    gives the receipts deciding *upload* gives; what is left undone is done in the run."""
    envelopes: list[object] = []
    checks: list[SignatureCheck | None] = []
    for item in upload.envelopes:
        envelope = _read_envelope(item)
        if isinstance(envelope, str):
            envelopes.append(item)  # the run finds the same problem and names its field
            checks.append(None)
        else:
            envelopes.append(envelope)
            checks.append(keys.check(envelope))
    return replace(upload, envelopes=envelopes, checks=checks)


@dataclass(frozen=True)
class Item:
    """A batch item on its way through a run: its place in the run, its index in its own upload
    (the receipt's ``index``) and the upload it came with."""

    position: int
    index: int
    envelope: object
    upload: Upload
    check: SignatureCheck | None = None


@dataclass(frozen=True)
class Deciding:
    """An authenticated tap on its way through steps 8–10: the row that will store it (filled in
    as the checks go), its receipt index, and what authentication established."""

    row: NewTap
    index: int
    kiosk: Kiosk
    payload: TapPayload
    upload: Upload

    @property
    def card_no_hmac(self) -> str | None:
        return self.row.card_no_hmac

    @property
    def uid_hmac(self) -> str:
        assert self.row.uid_hmac is not None  # every parsed payload has a UID
        return self.row.uid_hmac


@dataclass
class Verified:
    """An envelope past step 2 (steps 3–5 decided too): its row and what authentication found."""

    item: Item
    row: NewTap
    envelope: SignedEnvelope
    authenticated: SignedTap | Rejection[TapPayload]


class BatchRun:
    """One attempt at deciding envelopes of a batch together, inside one savepoint.

    It reads what the checks need once for all of them (kiosk keys, the seq slots, card bindings
    and their members, the events open at the venues, the attendance rows) and collects what is
    only told after the commit (live-board notices, the tally of strangers): an attempt that rolls
    back leaves nothing behind.
    """

    def __init__(self, session: Session, context: IngestContext) -> None:
        self.context = context
        self.keys = SigningKeys(session, remember=context.public_keys)
        self.claims = SeqClaims([], [])
        self.windows = EventWindows([], {})
        self.attendance = AttendanceRows([], event_ids=[], member_ids=[])
        self._bindings: ActiveBindings | None = None
        self._card_digests: list[tuple[str | None, str]] = []
        self._grace_holds_taps: dict[int, bool] = {}
        self._grace_looked_at: dict[int, int] = {}  # per event: how many stored rows were looked at
        self.stored: list[tuple[NewTap, SignedEnvelope]] = []  # decided, in order
        self._written: set[int] = set()
        self.accepted: list[tuple[NewTap, bool]] = []  # each accepted check-in, and whether a repeat
        self.refused_unattributed: list[tuple[str, RejectionCode]] = []  # (source, code)

    def read_ahead(self, session: Session, verified: list[Verified]) -> None:
        """Number every verified tap's row, and read for all of them at once what steps 6, 9 and
        10 will look up."""
        for checked, tap_id in zip(verified, allocate_tap_ids(session, len(verified)), strict=True):
            checked.row.id = tap_id
        signed = [(v.row, v.authenticated) for v in verified if isinstance(v.authenticated, Signed)]
        self.claims = SeqClaims.load(
            session, [(tap.kiosk.id, tap.payload.seq, row.payload_digest) for row, tap in signed]
        )
        checkins = [(row, tap) for row, tap in signed if tap.payload.mode != TapMode.ENROL]
        self._card_digests = [(row.card_no_hmac, row.uid_hmac or "") for row, _tap in checkins]
        spans: dict[int, tuple[datetime, datetime]] = {}
        for _row, tap in checkins:
            venue_id, at = tap.kiosk.venue_id, tap.payload.occurred_at
            earliest, latest = spans.get(venue_id, (at, at))
            spans[venue_id] = (min(earliest, at), max(latest, at))
        self.windows = EventWindows.load(session, spans)
        members = self.bindings(session).member_ids()
        self.attendance = AttendanceRows.load(session, event_ids=self.windows.event_ids, member_ids=members)

    def write(self, session: Session, current: NewTap | None = None) -> None:
        """Write the rows decided so far (and *current*, the row being decided, once it is
        complete), then what refers to them (the session's changes, such as the kiosks'
        ``last_seq``, and the attendance rows): before anything that queries them or refers to
        them."""
        rows = [row for row, _envelope in self.stored if row.id not in self._written]
        if current is not None and current.id not in self._written:
            rows.append(current)
        insert_new_taps(session, rows)
        self._written.update(row.id for row in rows if row.id is not None)
        session.flush()
        if self._bindings is not None:
            self._bindings.write(session)
        self.attendance.write(session)

    def bindings(self, session: Session) -> ActiveBindings:
        if self._bindings is None:
            self._bindings = ActiveBindings.load(session, self._card_digests)
        return self._bindings

    def forget_bindings(self, session: Session) -> None:
        """A card was bound: read the bindings again when next needed (what was learned about
        the ones read so far is written first)."""
        if self._bindings is not None:
            self._bindings.write(session)
        self._bindings = None

    def sign_out_grace_may_hold_taps(self, session: Session, event: Event) -> bool:
        """Whether a 签到 to *event* could settle a 签退 that arrived first: a check-in tap at its
        venue is stored in its sign-out grace, or a tap of this run (at any venue: not written
        yet, and cheaper to over-count) falls in that time."""
        assert event.id is not None
        if event.id not in self._grace_holds_taps:
            self._grace_holds_taps[event.id] = sign_out_grace_holds_taps(session, event)
        if self._grace_holds_taps[event.id]:
            return True
        # The run's rows only grow and never change their mode or time: each is looked at once
        # per event, and once one falls in the grace the answer stays yes.
        since, until = event.checkin_closes_at, event.end_at + SIGN_OUT_GRACE
        stored, start = self.stored, self._grace_looked_at.get(event.id, 0)
        self._grace_looked_at[event.id] = len(stored)
        for index in range(start, len(stored)):
            at = stored[index][0].occurred_at
            if stored[index][0].mode == TapMode.CHECKIN and at is not None and since <= at < until:
                self._grace_holds_taps[event.id] = True
                return True
        return False


ModeHandler = Callable[[Session, Deciding, BatchRun], TapReceipt]


def ingest_batch(
    session: Session,
    batch: TapBatch | UncheckedTapBatch,
    *,
    keyring: Keyring,
    received_at: datetime,
    max_clock_skew: timedelta,
    on_accepted: Callable[[AcceptedTap], None] | None = None,
    card_policy: CardCheckPolicy | None = None,
    source: str = "unknown",
    strangers: StrangerTally | None = None,
    sealer: EvidenceSealer | None = None,
    booth: BoothPolicy | None = None,
) -> BatchReceipt:
    """Decide, store and answer every envelope of one batch: :func:`ingest_uploads` for a single
    upload from *source* (the sender's address), whose 留言亭 links follow *booth*."""
    upload = Upload(envelopes=batch.envelopes, source=source, booth=booth or BoothPolicy())
    (receipt,) = ingest_uploads(
        session,
        [upload],
        keyring=keyring,
        received_at=received_at,
        max_clock_skew=max_clock_skew,
        on_accepted=on_accepted,
        card_policy=card_policy,
        strangers=strangers,
        sealer=sealer,
    )
    return receipt


def ingest_uploads(
    session: Session,
    uploads: Sequence[Upload],
    *,
    keyring: Keyring,
    received_at: datetime,
    max_clock_skew: timedelta,
    on_accepted: Callable[[AcceptedTap], None] | None = None,
    card_policy: CardCheckPolicy | None = None,
    strangers: StrangerTally | None = None,
    sealer: EvidenceSealer | None = None,
    public_keys: PublicKeys | None = None,
) -> list[BatchReceipt]:
    """Decide, store and answer every envelope of some uploads, one receipt per upload (see the
    module docstring for the rules). The uploads' envelopes are decided in one run, in order, as
    if the uploads had come one after another.

    ``on_accepted`` is called once per accepted check-in, after ``session`` commits.
    ``card_policy`` is the deployment's card-check minimum and issuer (default: ``uid``, none).
    ``strangers`` counts, per source, the envelopes refused before authentication (steps 0–2);
    ``sealer`` seals each stored tap's signed bytes; ``public_keys`` learns the keys found, for
    :func:`check_ahead`.

    The envelopes are decided together (:class:`BatchRun`), in one savepoint. Two uploads of the
    same (kiosk, seq), or one member's first taps at two kiosks, can race on PostgreSQL; the loser
    hits a unique key, its savepoint rolls back, and only then is each envelope decided alone in
    its own savepoint (and once more if it loses again), now seeing the winner's rows. Either way
    every envelope gets the receipt it would get if the envelopes came one by one.

    When the run is the first thing in the session's transaction (the tap intake's runs are), the
    transaction itself stands for the run's savepoint: a lost race rolls it back whole. That saves
    two round trips a run, which at the 1 July peak's one-tap uploads is a good part of a run.
    """
    context = IngestContext(
        keyring=keyring,
        received_at=received_at,
        max_clock_skew=max_clock_skew,
        on_accepted=on_accepted,
        card_policy=(card_policy or CardCheckPolicy()).for_batch(),
        strangers=strangers,
        sealer=sealer,
        public_keys=public_keys,
    )
    items: list[Item] = []
    for upload in uploads:
        offset = len(items)
        checks = upload.checks or [None] * len(upload.envelopes)
        items.extend(
            Item(position=offset + index, index=index, envelope=envelope, upload=upload, check=check)
            for index, (envelope, check) in enumerate(zip(upload.envelopes, checks, strict=True))
        )
    first_in_transaction = not session.in_transaction() and not (
        session.new or session.dirty or session.deleted
    )
    try:
        with nullcontext() if first_in_transaction else session.begin_nested():
            runs = [_decide_together(session, items, context)]
    except IntegrityError:
        if first_in_transaction:
            session.rollback()
        log.info("a run of %d lost a race on a unique key; deciding its envelopes one by one", len(items))
        runs = [_decide_alone(session, item, context) for item in items]
    receipts: list[TapReceipt] = []
    for run, run_receipts in runs:
        receipts.extend(run_receipts)
        _tell_after_commit(session, run)
    answers, start = [], 0
    for upload in uploads:
        end = start + len(upload.envelopes)
        answers.append(BatchReceipt(server_time=received_at, receipts=receipts[start:end]))
        start = end
    return answers


def _decide_alone(session: Session, item: Item, context: IngestContext) -> tuple[BatchRun, list[TapReceipt]]:
    try:
        with session.begin_nested():
            return _decide_together(session, [item], context)
    except IntegrityError:
        log.info("tap %d lost a race on a unique key; deciding it again", item.index)
    with session.begin_nested():
        return _decide_together(session, [item], context)


def _decide_together(
    session: Session, items: Sequence[Item], context: IngestContext
) -> tuple[BatchRun, list[TapReceipt]]:
    """Steps 0–10 for *items* in one run: authenticate each (0–5), read ahead
    for all, then decide each in order (6–10), store the rows and their evidence."""
    run = BatchRun(session, context)
    receipts: dict[int, TapReceipt] = {}
    verified: list[Verified] = []
    # Nothing read here depends on rows this run has not flushed, except where it flushes first.
    with session.no_autoflush:
        envelopes: list[tuple[Item, SignedEnvelope]] = []
        for item in items:
            envelope = _read_envelope(item.envelope)  # step 0
            if isinstance(envelope, str):
                receipts[item.position] = _refuse_unattributed(
                    item, RejectionCode.MALFORMED, run, field=envelope
                )
            else:
                envelopes.append((item, envelope))
        run.keys.read_ahead(envelope.kid for _item, envelope in envelopes)
        for item, envelope in envelopes:
            row = _new_row(envelope, context)
            authenticated = authenticate(  # steps 1–5
                session,
                envelope,
                read_tap_payload,
                now=context.received_at,
                refuse_retired_key=False,
                keys=run.keys,
                checked=item.check,
            )
            if isinstance(authenticated, Rejection) and not authenticated.verified:
                # steps 1–2: could be anyone's, so it costs no row
                code, problem = authenticated.code, authenticated.field
                receipts[item.position] = _refuse_unattributed(item, code, run, field=problem)
                continue
            _note_authenticated(row, authenticated, context.keyring)
            verified.append(Verified(item, row, envelope, authenticated))
        run.read_ahead(session, verified)
        for tap in verified:
            receipts[tap.item.position] = _decide_verified(session, tap, run)
        run.write(session)
        # Every stored row passed the signature check: its signed bytes are kept, sealed, on the
        # kiosk's chain (the kiosk rows are still locked), so the signature can be checked again.
        keep_batch_evidence(session, run.stored, sealer=context.sealer)
    return run, [receipts[item.position] for item in items]


def _decide_verified(session: Session, tap: Verified, run: BatchRun) -> TapReceipt:
    context, row = run.context, tap.row
    authenticated: SignedTap | Duplicate | Rejection[TapPayload] = tap.authenticated
    if isinstance(authenticated, Signed):
        authenticated = admit_tap(  # steps 6–7
            session,
            authenticated,
            digest=row.payload_digest,
            now=context.received_at,
            max_clock_skew=context.max_clock_skew,
            claims=run.claims,
        )
    if isinstance(authenticated, Duplicate):
        return _duplicate_receipt(authenticated.earlier, tap.item.index)
    if isinstance(authenticated, Signed) and authenticated.payload.mode != TapMode.CHECKIN:
        run.write(session)  # binding a card or filing a transfer flushes: what is pending goes first
    receipt = _decide(session, row, tap.item, authenticated, run)
    run.stored.append((row, tap.envelope))
    run.claims.note(row)
    return receipt


def _tell_after_commit(session: Session, run: BatchRun) -> None:
    context = run.context
    if context.on_accepted is not None:
        for row, repeat in run.accepted:
            assert row.id is not None
            assert row.event_id is not None
            assert row.member_id is not None
            assert row.occurred_at is not None
            assert row.display_member_name is not None
            notice = AcceptedTap(
                event_id=row.event_id,
                member_id=row.member_id,
                tap_id=row.id,
                member_name=row.display_member_name,
                occurred_at=row.occurred_at,
                repeat=repeat,
            )
            announce_after_commit(session, context.on_accepted, notice)
    if context.strangers is not None:
        for source, code in run.refused_unattributed:
            context.strangers.note(source, code=code.value, now=context.received_at)


def _read_envelope(item: object) -> SignedEnvelope | str:
    """Step 0: the batch item as a SignedEnvelope, or where it breaks the contract."""
    if isinstance(item, SignedEnvelope):
        return item
    try:
        return SignedEnvelope.model_validate(item)
    except ValidationError as exc:
        return problem_field(exc, prefix="envelope").removeprefix("envelope.")


def _decide(
    session: Session,
    row: NewTap,
    item: Item,
    authenticated: SignedTap | Rejection[TapPayload],
    run: BatchRun,
) -> TapReceipt:
    if isinstance(authenticated, Rejection):
        row.claimed_seq = authenticated.claimed_seq
        return _reject(row, item.index, authenticated.code, field=authenticated.field)
    row.claimed_seq = authenticated.payload.seq
    tap = Deciding(
        row=row,
        index=item.index,
        kiosk=authenticated.kiosk,
        payload=authenticated.payload,
        upload=item.upload,
    )
    handler = MODE_HANDLERS.get(tap.payload.mode)  # step 8
    if handler is None:
        return _reject(row, item.index, RejectionCode.UNSUPPORTED_MODE)
    return handler(session, tap, run)


def _new_row(envelope: SignedEnvelope, context: IngestContext) -> NewTap:
    # Bytes that are not base64url are digested as sent, so that they too are stored and answered.
    try:
        raw = envelope.payload_bytes()
    except ValueError:
        raw = envelope.payload.encode()
    return NewTap(
        received_at=context.received_at,
        kid=envelope.kid,
        payload_digest=context.keyring.digest(Purpose.TAP_PAYLOAD, raw),
        outcome=TapOutcome.REJECTED,
        display_message="",
    )


def _note_authenticated(
    row: NewTap, authenticated: SignedTap | Rejection[TapPayload], keyring: Keyring
) -> None:
    # The row keeps whatever authentication learnt: its kiosk, and once the payload parsed, the
    # tap's facts. Its seq is claimed only later (step 6), if at all.
    row.kiosk_id = authenticated.kiosk.id if authenticated.kiosk is not None else None
    payload = authenticated.payload
    if payload is None:
        return
    card_no_hmac, uid_hmac = card_digests(keyring, payload.card)
    row.seq = payload.seq
    row.occurred_at = payload.occurred_at
    row.mode = payload.mode
    row.card_no_hmac, row.uid_hmac = card_no_hmac, uid_hmac
    row.reader_backend = payload.reader.backend.value


# --- step 8: one handler per mode -----------------------------------------------------------


def _check_in(session: Session, tap: Deciding, run: BatchRun) -> TapReceipt:
    checked = _check_card(session, tap, run)  # step 9
    if checked.rejection is not None:
        rejection = _retired_or(session, tap, checked.rejection)
        return _reject(tap.row, tap.index, rejection, card=_masked_card(tap.payload))
    member = checked.member
    assert member is not None
    event = _find_event(session, tap, member, run)  # step 10
    if event is None:
        # Outside any meeting a tap is not filed against the member (privacy): no member_id.
        member_name = mask_name(member.name)
        return _reject(tap.row, tap.index, RejectionCode.NO_EVENT, member_name=member_name)
    return _accept_checkin(session, tap, member, event, run)


def _transfer_in(session: Session, tap: Deciding, run: BatchRun) -> TapReceipt:
    # A transfer-in tap is the member's application, so it is filed against them (member_id), but
    # it is never attendance (no event_id). An unknown card is a person we do not know yet: the
    # request is keyed by the card's digests. Any other card-check failure (a clone) is refused.
    checked = _check_card(session, tap, run)  # step 9
    row, card = tap.row, _masked_card(tap.payload)
    if checked.rejection is not None and checked.rejection != RejectionCode.UNKNOWN_CARD:
        return _reject(row, tap.index, checked.rejection, card=card)
    member = session.get(Member, checked.member.id) if checked.member is not None else None
    org_id = venue_org_id(session, tap.kiosk.venue_id)
    member_name = mask_name(member.name) if member is not None else None
    filing = check_tap_filing(
        session, org_id=org_id, member=member, card_no_hmac=row.card_no_hmac, uid_hmac=row.uid_hmac
    )
    if filing == TapFiling.ALREADY_MEMBER:
        return _reject(row, tap.index, RejectionCode.ALREADY_MEMBER, member_name=member_name)
    row.outcome = TapOutcome.ACCEPTED
    row.member_id = member.id if member is not None else None
    row.display_member_name = member_name
    row.display_message = TRANSFER_FILED_MESSAGE if filing == TapFiling.FILED else TRANSFER_PENDING_MESSAGE

    run.write(session, row)  # the request refers to its tap
    assert row.id is not None
    if filing == TapFiling.FILED:
        file_from_tap(
            session,
            org_id=org_id,
            member=member,
            card_no_hmac=row.card_no_hmac,
            uid_hmac=row.uid_hmac,
            card_masked=card,
            tap_id=row.id,
            kiosk_id=tap.kiosk.id,
            now=row.received_at,
        )
    else:  # the member's own confirmation of their pending request (docs/transfers.md)
        confirm_from_tap(
            session,
            org_id=org_id,
            member=member,
            card_no_hmac=row.card_no_hmac,
            uid_hmac=row.uid_hmac,
            tap_id=row.id,
            kiosk_id=tap.kiosk.id,
            now=row.received_at,
        )
    log.debug("transfer-in tap %s: kiosk=%s seq=%d card=%s", filing, tap.kiosk.id, tap.payload.seq, card)
    return _receipt(row, tap.index, TapStatus.ACCEPTED)


def _bind_card(session: Session, tap: Deciding, run: BatchRun) -> TapReceipt:
    # An enrol tap binds a card for a secretary's waiting request; it is never attendance, so it
    # carries no member_id or event_id (the binding and its audit entry record who got the card).
    row, payload, context = tap.row, tap.payload, run.context
    outcome = bind_card_from_tap(
        session,
        keyring=context.keyring,
        kiosk=tap.kiosk,
        card=payload.card,
        occurred_at=payload.occurred_at,
        received_at=context.received_at,
        max_clock_skew=context.max_clock_skew,
    )
    if outcome.rejection is not None:
        return _reject(row, tap.index, outcome.rejection, card=_masked_card(payload))
    row.outcome = TapOutcome.ACCEPTED
    row.display_member_name = outcome.member_name
    row.display_message = f"已绑定到 {outcome.member_name}"

    run.write(session, row)  # the card's earlier taps are looked up, and this one must not be missed
    run.forget_bindings(session)
    binding = session.get(CardBinding, outcome.binding_id)
    # The card's taps from before it was bound count from here on.
    if binding is not None and settle_card_taps(session, binding, now=context.received_at):
        run.attendance.forget_all()
    log.debug(
        "enrol tap bound a card: kiosk=%s seq=%d card=%s", tap.kiosk.id, payload.seq, _masked_card(payload)
    )
    return _receipt(row, tap.index, TapStatus.ACCEPTED)


def _open_booth(session: Session, tap: Deciding, run: BatchRun) -> TapReceipt:
    # A message tap answers the member with a one-time link to the 留言亭 on their phone
    # (server.booth); it is the member's own request, filed against them, never attendance.
    checked = _check_card(session, tap, run)  # step 9
    row, card = tap.row, _masked_card(tap.payload)
    if checked.rejection is not None:
        return _reject(row, tap.index, _retired_or(session, tap, checked.rejection), card=card)
    holder = checked.member
    assert holder is not None
    member_name = mask_name(holder.name)
    if holder.status != MemberStatus.ACTIVE:
        return _reject(row, tap.index, RejectionCode.MEMBER_INACTIVE, member_name=member_name)
    policy = tap.upload.booth
    if (
        links_today(session, uid_hmac=tap.uid_hmac, now=run.context.received_at)
        >= policy.links_per_card_per_day
    ):
        return _reject(row, tap.index, RejectionCode.BOOTH_LIMIT, member_name=member_name)
    row.outcome = TapOutcome.ACCEPTED
    row.member_id = holder.id
    row.display_member_name = member_name
    replied = has_unread_reply(session, member_id=holder.id)
    row.display_message = BOOTH_REPLY_MESSAGE if replied else BOOTH_LINK_MESSAGE
    run.write(session, row)  # the link refers to its tap
    assert row.id is not None
    link = issue_link(
        session,
        member=session.get_one(Member, holder.id),
        tap_id=row.id,
        uid_hmac=tap.uid_hmac,
        card_masked=card,
        now=run.context.received_at,
        policy=policy,
    )
    receipt = _receipt(row, tap.index, TapStatus.ACCEPTED)
    # Only this answer carries the link (the stored row keeps no token): a replayed upload gets
    # the message without it, and the member taps again for a new one.
    return receipt.model_copy(update={"display": receipt.display.model_copy(update={"link": link})})


MODE_HANDLERS: dict[TapMode, ModeHandler] = {
    TapMode.CHECKIN: _check_in,
    TapMode.TRANSFER_IN: _transfer_in,
    TapMode.ENROL: _bind_card,
    TapMode.MESSAGE: _open_booth,
}
"""Step 8: what each tap mode does once the tap is authenticated; a mode not here is refused."""


# --- steps 9 and 10 --------------------------------------------------------------------------


def _check_card(session: Session, tap: Deciding, run: BatchRun) -> CardCheck:
    """Step 9: the card's binding and how strongly the card proved it is that card (kept on the row)."""
    checked = check_card(
        session,
        tap.payload.card,
        kiosk_id=tap.kiosk.id,
        venue_id=tap.kiosk.venue_id,
        reader=tap.payload.reader.backend,
        number_hmac=tap.card_no_hmac,
        uid_hmac=tap.uid_hmac,
        policy=run.context.card_policy,
        now=run.context.received_at,
        bindings=run.bindings(session),
    )
    tap.row.card_check, tap.row.card_check_note = checked.level, checked.note
    tap.row.auth_challenge = checked.auth_challenge
    return checked


def _retired_or(session: Session, tap: Deciding, rejection: RejectionCode) -> RejectionCode:
    # A lost, replaced or revoked card is not unknown: say which, so its holder is told what to do
    # and a found-again lost card shows up as such.
    if rejection != RejectionCode.UNKNOWN_CARD:
        return rejection
    retired = retired_card_rejection(session, card_no_hmac=tap.card_no_hmac, uid_hmac=tap.uid_hmac)
    return retired or rejection


def _find_event(session: Session, tap: Deciding, member: CardHolder, run: BatchRun) -> Event | None:
    """Step 10: the event at the kiosk's venue this tap checks the member in to (or out of)."""
    venue_id, at = tap.kiosk.venue_id, tap.payload.occurred_at
    # Outside every window, a 签退 just after a meeting counts if the member is present by another
    # record, which may be a tap of this run: the run's taps are written before that is looked up.
    return choose_event(
        session,
        venue_id=venue_id,
        at=at,
        member_id=member.id,
        member_org_id=member.org_id,
        windows=run.windows,
        before_late_lookup=run.write,
    )


def _accept_checkin(
    session: Session, tap: Deciding, member: CardHolder, event: Event, run: BatchRun
) -> TapReceipt:
    row, payload, at = tap.row, tap.payload, tap.payload.occurred_at
    assert event.id is not None
    member_name = mask_name(member.name)
    # What the tap counts as is known before its row is stored, so the row is written once.
    _row, result = checkin_result(
        session, event_id=event.id, member_id=member.id, at=at, known=run.attendance
    )
    row.member_id, row.event_id = member.id, event.id
    row.outcome = TapOutcome.ACCEPTED
    row.display_member_name, row.display_event_title = member_name, event.title
    row.display_message = CHECKIN_MESSAGES[result]
    assert row.id is not None
    # Written with the run's next write: the taps first, then the attendance rows that refer to them.
    record_checkin(
        session, event_id=event.id, member_id=member.id, tap_id=row.id, at=at, known=run.attendance
    )
    if (
        result == CheckinResult.CHECKED_IN
        and at < event.checkin_closes_at
        and run.sign_out_grace_may_hold_taps(session, event)
    ):
        # The member is present from now on: a 签退 of theirs that arrived earlier counts.
        run.write(session, row)
        if settle_sign_outs(session, event=event, member_id=member.id, now=run.context.received_at):
            run.attendance.forget_all()  # a re-decided tap may have moved between rows
    run.accepted.append((row, result != CheckinResult.CHECKED_IN))
    log.debug(
        "tap accepted: kiosk=%s seq=%d event=%d card=%s",
        tap.kiosk.id,
        payload.seq,
        event.id,
        _masked_card(payload),
    )
    return _receipt(row, tap.index, TapStatus.ACCEPTED)


# --- receipts ----------------------------------------------------------------------------------


def _refuse_unattributed(
    item: Item, code: RejectionCode, run: BatchRun, *, field: str | None = None
) -> TapReceipt:
    """Steps 0–2: a receipt, but no row; the source's tally goes up after the commit (and maybe a
    log line)."""
    run.refused_unattributed.append((item.upload.source, code))
    return TapReceipt(
        index=item.index,
        status=TapStatus.REJECTED,
        code=code.value,
        field=field,
        display=TapDisplay(message=REJECTION_MESSAGES[code]),
    )


def _reject(
    row: NewTap,
    index: int,
    code: RejectionCode,
    *,
    member_name: str | None = None,
    card: str | None = None,
    field: str | None = None,
) -> TapReceipt:
    row.outcome = TapOutcome.REJECTED
    row.code = code
    row.display_member_name = member_name
    row.display_message = REJECTION_MESSAGES[code]

    log.debug(
        "tap rejected: code=%s kiosk=%s seq=%s%s",
        code.value,
        row.kiosk_id,
        row.seq,
        f" card={card}" if card else "",
    )
    return _receipt(row, index, TapStatus.REJECTED, field=field)


def _receipt(row: Tap | NewTap, index: int, status: TapStatus, *, field: str | None = None) -> TapReceipt:
    return TapReceipt(
        index=index,
        seq=row.seq,
        status=status,
        code=row.code.value if row.code else None,
        field=field,
        display=TapDisplay(
            member_name=row.display_member_name,
            event_title=row.display_event_title,
            message=row.display_message,
        ),
    )


def _duplicate_receipt(original: Tap | NewTap, index: int) -> TapReceipt:
    # The agent may have lost our first answer; it gets that same answer again, marked duplicate.
    return _receipt(original, index, TapStatus.DUPLICATE)


def _masked_card(payload: TapPayload) -> str:
    return mask_card_no(payload.card.card_no) if payload.card.card_no else mask_uid(payload.card.uid)
