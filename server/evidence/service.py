"""Keep and check the evidence behind the ledgers.

At ingest (:func:`keep_batch_evidence`), every stored tap row (each passed the kiosk signature
check) gets an evidence row: the signed payload sealed under the evidence key, the signature, and
its link in the kiosk's hash chain. The kiosk row is locked for the whole decision
(``server.kiosks.authentication``), so a kiosk's rows are chained one at a time, in id order.

:func:`verify_evidence` (``ecard admin audit verify``) checks, within a scope:

1. each kiosk's tap chain: every row links to the previous one (``chain_broken``: a row before it
   was deleted or inserted) and its immutable fields still hash to its link
   (``chain_hash_mismatch``); a tap without evidence after its kiosk's chain began is
   ``evidence_missing``;
2. each tap's signature again: the sealed bytes open (``sealed_unreadable``: the blob, its nonce or
   its row was altered), the kiosk key that made it verifies them (``unknown_key``,
   ``signature_invalid``), and the row says what they say (``payload_mismatch``: seq, time, mode,
   kiosk, digests; ``member_mismatch``: the card is not the member's). A purged tap (unmatched,
   after the retention period) has no sealed bytes any more: it is counted, its chain link still
   checked;
3. the audit chain (``prev_hash_mismatch``, ``entry_altered``);
4. each attendance row rests on its taps (they exist, count for this member and event, are
   verified, and give its times) or on an audited manual entry (``tap_missing``,
   ``tap_not_counted``, ``tap_unverified``, ``time_mismatch``, ``manual_not_audited``,
   ``manual_audit_altered``, ``no_basis``);
5. the chain heads recorded with each ledger export are still on their chains (``anchor_lost``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import bindparam
from sqlalchemy.orm import aliased
from sqlmodel import Session, SQLModel, col, func, select
from sqlmodel.sql.expression import Select

from schemas.messages import SignedEnvelope, TapPayload
from server.audit.service import chain_breaks, chain_head
from server.caller import Caller
from server.cards.service import card_digests
from server.db import bulk_insert
from server.errors import EventNotFound, OrganisationNotFound
from server.evidence.sealing import GENESIS_HASH, EvidenceSealer, seal_binding, tap_chain_hash
from server.keyring import Keyring, Purpose
from server.kiosks.authentication import verify_signature
from server.orgs.tree import subtrees
from server.records.attendance import Attendance
from server.records.audit import AuditEntry
from server.records.cards import CardBinding
from server.records.events import Event
from server.records.evidence import LedgerExport, TapEvidence
from server.records.kiosks import Kiosk, KioskKey
from server.records.orgs import Organisation
from server.records.taps import NewTap, Tap
from server.records.venues import Venue
from server.vocabulary import AttendanceSource, TapOutcome

TAP_EVIDENCE_TABLE = SQLModel.metadata.tables[TapEvidence.__tablename__]

# --- keeping ---------------------------------------------------------------------------------


def keep_batch_evidence(
    session: Session, stored: Sequence[tuple[NewTap, SignedEnvelope]], *, sealer: EvidenceSealer | None
) -> int:
    """The evidence rows of tap rows just written (each with its kiosk, whose row is locked):
    sealed bytes (when a sealer is given), signature and chain link, linked in the order given
    (the order of their ids), with one chain-head query per kiosk and one INSERT. Returns how
    many rows were kept. A tap refused before its kiosk is known has no row, so no evidence."""
    kept: list[dict[str, object]] = []
    kiosk_ids = {tap.kiosk_id for tap, _envelope in stored if tap.kiosk_id is not None}
    heads = dict.fromkeys(kiosk_ids, GENESIS_HASH)
    heads.update((kiosk, digest) for kiosk, _tap_id, digest in _tap_chain_heads(session, kiosk_ids))
    for tap, envelope in stored:
        if tap.id is None or tap.kiosk_id is None:
            continue
        prev_hash = heads[tap.kiosk_id]
        chain_hash = _chain_hash_of(prev_hash, tap, envelope.sig)
        nonce = sealed = None
        if sealer is not None:
            seal = sealer.seal(envelope.payload_bytes(), binding=_binding(tap))
            nonce, sealed = seal.nonce, seal.sealed
        heads[tap.kiosk_id] = chain_hash
        kept.append(
            {
                "tap_id": tap.id,
                "kiosk_id": tap.kiosk_id,
                "signature": envelope.sig,
                "nonce": nonce,
                "sealed": sealed,
                "purged_at": None,
                "prev_hash": prev_hash,
                "chain_hash": chain_hash,
            }
        )
    bulk_insert(session, TAP_EVIDENCE_TABLE, kept)
    return len(kept)


def _chain_hash_of(prev_hash: str, tap: Tap | NewTap, signature: str) -> str:
    assert tap.id is not None
    assert tap.kiosk_id is not None
    return tap_chain_hash(
        prev_hash,
        tap_id=tap.id,
        received_at=tap.received_at,
        kiosk_id=tap.kiosk_id,
        seq=tap.seq,
        kid=tap.kid,
        payload_digest=tap.payload_digest,
        signature=signature,
    )


def _binding(tap: Tap | NewTap) -> bytes:
    assert tap.id is not None
    assert tap.kiosk_id is not None
    return seal_binding(
        tap_id=tap.id, kiosk_id=tap.kiosk_id, seq=tap.seq, kid=tap.kid, payload_digest=tap.payload_digest
    )


KIOSK_IDS = "kiosk_ids"  # the parameter of head_rows_query(some_kiosks=True)


def _tap_chain_heads(
    session: Session, kiosk_ids: Collection[str] | None = None
) -> list[tuple[str, int, str]]:
    """(kiosk, tap id, hash) of the last evidence row of every kiosk, or of *kiosk_ids*' (one
    statement however many kiosks; a kiosk with no row yet is left out).

    Each kiosk's head is a correlated ``max(tap_id)``, which both databases answer with one seek
    in the (kiosk_id, tap_id) index; a ``GROUP BY kiosk_id`` would read every row of the kiosk's
    history (the plan is checked in ``tests/server/taps/test_ingest_plans.py``)."""
    if kiosk_ids is not None and not kiosk_ids:
        return []
    if kiosk_ids is None:
        rows = session.exec(head_rows_query(some_kiosks=False)).all()
    else:
        rows = session.exec(head_rows_query(some_kiosks=True), params={KIOSK_IDS: sorted(kiosk_ids)}).all()
    return [(kiosk, tap_id, digest) for kiosk, tap_id, digest in rows]


@cache
def head_rows_query(some_kiosks: bool) -> Select[str, int, str]:
    """The statement behind :func:`_tap_chain_heads`, built once: with *some_kiosks*, for the
    kiosks in its ``kiosk_ids`` parameter."""
    earlier = aliased(TapEvidence)
    last_tap = (
        select(func.max(earlier.tap_id)).where(col(earlier.kiosk_id) == col(Kiosk.id)).scalar_subquery()
    )
    kiosks: Select[str, int] = select(col(Kiosk.id).label("kiosk_id"), last_tap.label("tap_id"))
    if some_kiosks:
        kiosks = kiosks.where(col(Kiosk.id).in_(bindparam(KIOSK_IDS, expanding=True)))
    heads = kiosks.subquery()
    return select(TapEvidence.kiosk_id, TapEvidence.tap_id, TapEvidence.chain_hash).join(
        heads, col(TapEvidence.tap_id) == heads.c.tap_id
    )


def chain_heads(session: Session) -> dict[str, Any]:
    """The head of every kiosk's tap chain and of the audit chain, now (JSON-ready)."""
    rows = _tap_chain_heads(session)
    audit = chain_head(session)
    return {
        "taps": {kiosk: {"tap_id": tap_id, "hash": digest} for kiosk, tap_id, digest in sorted(rows)},
        "audit": None if audit is None else {"id": audit[0], "hash": audit[1]},
    }


# --- export codes ----------------------------------------------------------------------------

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_CHARS = 16


def format_code(raw: bytes) -> str:
    """16 base32 characters from the first 10 bytes, in groups of four: ``7K3M-Q9XA-…``."""
    number = int.from_bytes(raw[:10], "big")
    chars = [CODE_ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(CODE_CHARS))]
    text = "".join(chars)
    return "-".join(text[i : i + 4] for i in range(0, CODE_CHARS, 4))


def normalise_code(text: str) -> str | None:
    """A typed code in its canonical form (case, spaces, dashes, O→0 and I/L→1 forgiven), or None."""
    cleaned = "".join(ch for ch in text.upper() if ch.isalnum())
    cleaned = cleaned.translate(str.maketrans("OIL", "011"))
    if len(cleaned) != CODE_CHARS or any(ch not in CODE_ALPHABET for ch in cleaned):
        return None
    return "-".join(cleaned[i : i + 4] for i in range(0, CODE_CHARS, 4))


def content_digest(content: Any) -> str:
    """SHA-256 of a document's canonical JSON (what the ledger shows, not the file's bytes)."""
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class ExportRequest:
    """A ledger about to be exported: how to build it again, and what it shows."""

    kind: str
    fmt: str
    org_id: int | None
    parameters: dict[str, Any]
    content: Any


def record_export(
    session: Session, export: ExportRequest, *, keyring: Keyring, caller: Caller, now: datetime
) -> LedgerExport:
    """Record an export and mint its verification code: an HMAC (under a sub-key of the server
    secret) over the content digest, the chain heads now, the parameters and a random salt."""
    heads = chain_heads(session)
    digest = content_digest(export.content)
    salt = secrets.token_hex(8)
    material = canonical_json([export.kind, export.parameters, digest, heads, now.isoformat(), salt])
    raw = bytes.fromhex(keyring.digest(Purpose.LEDGER_EXPORT, material.encode()))
    row = LedgerExport(
        code=format_code(raw),
        kind=export.kind,
        fmt=export.fmt,
        org_id=export.org_id,
        parameters=canonical_json({**export.parameters, "salt": salt}),
        content_digest=digest,
        content=canonical_json(export.content),
        chain_heads=canonical_json(heads),
        exported_at=now,
        exported_by=caller.actor.ref,
        exported_by_name=caller.actor.name,
    )
    session.add(row)
    session.flush()
    return row


def find_export(session: Session, code: str, *, caller: Caller) -> LedgerExport | None:
    """The export with this code, if the caller may see its organisation (else None, as if unknown)."""
    normal = normalise_code(code)
    if normal is None:
        return None
    row = session.exec(select(LedgerExport).where(LedgerExport.code == normal)).first()
    if row is None or not (caller.scope.org_ids is None or caller.sees_org(row.org_id)):
        return None
    return row


# --- verification ----------------------------------------------------------------------------


class Problem(BaseModel):
    table: str
    row_id: str
    code: str
    detail: str


class EvidenceCounts(BaseModel):
    kiosk_chains: int = 0
    taps: int = 0
    signatures_verified: int = 0
    purged: int = 0
    before_chain: int = 0
    attendance: int = 0
    attendance_on_taps: int = 0
    attendance_manual: int = 0
    audit_entries: int = 0
    exports: int = 0


class EvidenceReport(BaseModel):
    ok: bool
    scope: dict[str, Any]
    counts: EvidenceCounts
    problems: list[Problem]


@dataclass(frozen=True)
class EvidenceScope:
    """What to check: the organisations (None: all), a time window, one event."""

    org_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    event_id: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "event_id": self.event_id,
        }

    def covers_time(self, at: datetime | None) -> bool:
        if at is None:
            return self.since is None and self.until is None
        return (self.since is None or at >= self.since) and (self.until is None or at < self.until)


@dataclass
class _Checker:
    session: Session
    sealer: EvidenceSealer | None
    keyring: Keyring
    problems: list[Problem] = field(default_factory=list)
    counts: EvidenceCounts = field(default_factory=EvidenceCounts)
    tap_verdicts: dict[int, bool] = field(default_factory=dict)
    broken_audit: set[int] = field(default_factory=set)
    bindings: dict[int, list[CardBinding]] = field(default_factory=dict)

    def problem(self, table: str, row_id: object, code: str, detail: str) -> None:
        self.problems.append(Problem(table=table, row_id=str(row_id), code=code, detail=detail))


def verify_evidence(
    session: Session, *, scope: EvidenceScope, caller: Caller, sealer: EvidenceSealer | None, keyring: Keyring
) -> EvidenceReport:
    """Check the evidence within *scope* (see the module docstring); nothing is written.

    Raises:
        OrganisationNotFound, EventNotFound: the scope names one the caller cannot see.
    """
    org_ids = _org_ids(session, scope, caller)
    event = None
    if scope.event_id is not None:
        event = session.get(Event, scope.event_id)
        if event is None or not (caller.sees_org(event.org_id) or caller.scope.org_ids is None):
            raise EventNotFound()
    checker = _Checker(session=session, sealer=sealer, keyring=keyring)
    attendance = _attendance_in_scope(session, scope, org_ids)
    attendance_taps = {
        tap_id for row in attendance for tap_id in (row.first_tap_id, row.last_tap_id) if tap_id
    }
    for kiosk_id in _kiosks_in_scope(session, org_ids, event):
        _check_kiosk_chain(checker, kiosk_id, scope, attendance_taps)
    _check_orphans(checker)
    _check_audit_chain(checker)
    for row in attendance:
        _check_attendance(checker, row)
    _check_export_anchors(checker, org_ids)
    return EvidenceReport(
        ok=not checker.problems, scope=scope.describe(), counts=checker.counts, problems=checker.problems
    )


def _org_ids(session: Session, scope: EvidenceScope, caller: Caller) -> frozenset[int] | None:
    if scope.org_id is None:
        return caller.scope.org_ids
    if session.get(Organisation, scope.org_id) is None or not caller.sees_org(scope.org_id):
        raise OrganisationNotFound()
    return frozenset(subtrees(session, [scope.org_id])[scope.org_id])


def _kiosks_in_scope(session: Session, org_ids: frozenset[int] | None, event: Event | None) -> list[str]:
    query = select(Kiosk.id).join(Venue, col(Venue.id) == col(Kiosk.venue_id)).order_by(col(Kiosk.id))
    if org_ids is not None:
        query = query.where(col(Venue.org_id).in_(sorted(org_ids)))
    if event is not None:
        query = query.where(Kiosk.venue_id == event.venue_id)
    return list(session.exec(query).all())


def _attendance_in_scope(
    session: Session, scope: EvidenceScope, org_ids: frozenset[int] | None
) -> list[Attendance]:
    query = (
        select(Attendance).join(Event, col(Event.id) == col(Attendance.event_id)).order_by(col(Attendance.id))
    )
    if org_ids is not None:
        query = query.where(col(Event.org_id).in_(sorted(org_ids)))
    if scope.event_id is not None:
        query = query.where(Attendance.event_id == scope.event_id)
    if scope.since is not None:
        query = query.where(col(Event.start_at) >= scope.since)
    if scope.until is not None:
        query = query.where(col(Event.start_at) < scope.until)
    return list(session.exec(query).all())


def _tap_in_scope(tap: Tap, scope: EvidenceScope, attendance_taps: set[int]) -> bool:
    if tap.id in attendance_taps:
        return True
    if scope.event_id is not None:
        return tap.event_id == scope.event_id
    return scope.covers_time(tap.occurred_at or tap.received_at)


def _check_kiosk_chain(
    checker: _Checker, kiosk_id: str, scope: EvidenceScope, attendance_taps: set[int]
) -> None:
    rows = checker.session.exec(
        select(Tap, TapEvidence)
        .join(TapEvidence, col(TapEvidence.tap_id) == col(Tap.id), isouter=True)
        .where(Tap.kiosk_id == kiosk_id)
        .order_by(col(Tap.id))
    ).all()
    # Evidence rows of this kiosk whose tap row is gone also count as links (their hash is the
    # previous one for the next row), so a deleted tap is named once, as missing, not twice.
    prev_hash, started, seen = GENESIS_HASH, False, False
    for tap, evidence in rows:
        in_scope = _tap_in_scope(tap, scope, attendance_taps)
        if evidence is None:
            if started:
                if in_scope:
                    checker.problem(
                        "tap",
                        tap.id,
                        "evidence_missing",
                        "该刷卡记录没有存证（无签名、不在终端链上） / no evidence row",
                    )
                checker.tap_verdicts[tap.id or 0] = False
            elif in_scope:
                checker.counts.before_chain += 1
            continue
        started = seen = True
        if in_scope:
            checker.counts.taps += 1
            problems_before = len(checker.problems)  # those below are all this tap's
            if evidence.prev_hash != prev_hash:
                checker.problem(
                    "tap",
                    tap.id,
                    "chain_broken",
                    f"与终端 {kiosk_id} 的上一条记录不衔接：其前有记录被删除、插入或改动"
                    " / does not link to the previous row",
                )
            if evidence.chain_hash != _chain_hash_of(evidence.prev_hash, tap, evidence.signature):
                checker.problem(
                    "tap",
                    tap.id,
                    "chain_hash_mismatch",
                    "记录的不可变字段（接收时间、终端、序号、密钥、载荷摘要、签名）已被改动"
                    " / immutable fields changed",
                )
            checker.tap_verdicts[tap.id or 0] = (
                _check_signature(checker, tap, evidence) and len(checker.problems) == problems_before
            )
        prev_hash = evidence.chain_hash
    if seen:
        checker.counts.kiosk_chains += 1


def _check_signature(checker: _Checker, tap: Tap, evidence: TapEvidence) -> bool:
    """Step 2 of the module docstring for one tap; True when its signature was checked and holds."""
    if evidence.sealed is None or evidence.nonce is None:
        if evidence.purged_at is not None:
            checker.counts.purged += 1
            return True
        checker.problem(
            "tap", tap.id, "sealed_missing", "签名数据未保存，无法复核签名 / signed bytes not kept"
        )
        return False
    if checker.sealer is None:
        checker.problem(
            "tap", tap.id, "evidence_key_missing", "没有存证密钥，无法打开签名数据 / no evidence key"
        )
        return False
    raw = checker.sealer.open(evidence.nonce, evidence.sealed, binding=_binding(tap))
    if raw is None:
        checker.problem(
            "tap",
            tap.id,
            "sealed_unreadable",
            "密封的签名数据无法打开：数据或其所属记录被改动，或存证密钥不符 / sealed bytes do not open",
        )
        return False
    key = checker.session.get(KioskKey, tap.kid)
    if key is None or key.kiosk_id != tap.kiosk_id:
        checker.problem("tap", tap.id, "unknown_key", f"签名密钥 {tap.kid} 不属于该终端 / unknown kiosk key")
        return False
    if not verify_signature(key.public_key, raw, evidence.signature):
        checker.problem(
            "tap", tap.id, "signature_invalid", "终端签名不符 / the kiosk signature does not verify"
        )
        return False
    checker.counts.signatures_verified += 1
    differences = _payload_differences(checker, tap, raw)
    if differences:
        checker.problem(
            "tap",
            tap.id,
            "payload_mismatch",
            f"记录与终端签名的内容不符：{'、'.join(differences)} / row differs from the signed payload",
        )
        return False
    return _check_member(checker, tap, raw)


def _payload_differences(checker: _Checker, tap: Tap, raw: bytes) -> list[str]:
    if checker.keyring.digest(Purpose.TAP_PAYLOAD, raw) != tap.payload_digest:
        return ["payload_digest"]
    try:
        payload = TapPayload.model_validate_json(raw)
    except ValidationError:
        return []  # stored as malformed: the digest above is all there is to compare
    number, uid = card_digests(checker.keyring, payload.card)
    differences = []
    if tap.kiosk_id != payload.kiosk_id:
        differences.append("kiosk_id")
    if tap.seq != payload.seq:
        differences.append("seq")
    if tap.occurred_at is None or tap.occurred_at != payload.occurred_at:
        differences.append("occurred_at")
    if tap.mode != payload.mode:
        differences.append("mode")
    if tap.card_no_hmac != number:
        differences.append("card_no_hmac")
    if tap.uid_hmac != uid:
        differences.append("uid_hmac")
    return differences


def _check_member(checker: _Checker, tap: Tap, raw: bytes) -> bool:
    if tap.member_id is None:
        return True
    payload = TapPayload.model_validate_json(raw)
    number, uid = card_digests(checker.keyring, payload.card)
    bindings = checker.bindings.get(tap.member_id)
    if bindings is None:
        query = select(CardBinding).where(CardBinding.member_id == tap.member_id)
        bindings = checker.bindings[tap.member_id] = list(checker.session.exec(query).all())
    if any((b.card_no_hmac is not None and b.card_no_hmac == number) or b.uid_hmac == uid for b in bindings):
        return True
    checker.problem(
        "tap",
        tap.id,
        "member_mismatch",
        f"刷卡记录所记党员（{tap.member_id}）不是所刷卡片的持卡人 / the card is not this member's",
    )
    return False


def _check_orphans(checker: _Checker) -> None:
    orphans = checker.session.exec(
        select(TapEvidence.tap_id).where(~col(TapEvidence.tap_id).in_(select(Tap.id)))
    ).all()
    for tap_id in orphans:
        checker.problem("tap", tap_id, "tap_missing", "存证仍在，刷卡记录已被删除 / the tap row was deleted")


def _check_audit_chain(checker: _Checker) -> None:
    checker.counts.audit_entries = checker.session.exec(select(func.count()).select_from(AuditEntry)).one()
    for entry_id, code in chain_breaks(checker.session):
        checker.broken_audit.add(entry_id)
        detail = (
            "与上一条审计记录不衔接：其前有记录被删除、插入或改写 / does not link to the previous entry"
            if code == "prev_hash_mismatch"
            else "审计记录内容已被改动 / the entry's content changed"
        )
        checker.problem("audit_entry", entry_id, code, detail)


def _audited_times(checker: _Checker, attendance: Attendance) -> list[datetime] | None:
    """When an audited manual entry says the member arrived (None: no such entry)."""
    entries = checker.session.exec(
        select(AuditEntry).where(
            AuditEntry.action == "attendance.manual",
            AuditEntry.object_type == "attendance",
            AuditEntry.object_id == str(attendance.id),
        )
    ).all()
    if not entries:
        return None
    times: list[datetime] = []
    for entry in entries:
        if entry.id in checker.broken_audit:
            checker.problem(
                "attendance",
                attendance.id,
                "manual_audit_altered",
                f"补录所依据的审计记录 {entry.id} 已被改动 / its audit entry was altered",
            )
        detail = json.loads(entry.detail or "{}")
        if detail.get("event_id") != attendance.event_id or detail.get("member_id") != attendance.member_id:
            continue
        try:
            times.append(datetime.fromisoformat(str(detail.get("arrived_at"))))
        except ValueError:
            continue
    return times


def _check_attendance(checker: _Checker, row: Attendance) -> None:
    checker.counts.attendance += 1
    session = checker.session
    tap_times: dict[str, datetime] = {}
    on_taps = True
    for end, tap_id in (("first", row.first_tap_id), ("last", row.last_tap_id)):
        if tap_id is None:
            continue
        if end == "last" and tap_id == row.first_tap_id:  # one tap: checked once, gives both times
            if "first" in tap_times:
                tap_times["last"] = tap_times["first"]
            continue
        tap = session.get(Tap, tap_id)
        if tap is None:
            checker.problem(
                "attendance",
                row.id,
                "tap_missing",
                f"{'签到' if end == 'first' else '最后'}刷卡记录 {tap_id} 不存在 / tap missing",
            )
            on_taps = False
            continue
        if tap.event_id != row.event_id or tap.member_id != row.member_id:
            checker.problem(
                "attendance",
                row.id,
                "tap_not_counted",
                f"刷卡记录 {tap_id} 不属于该党员或该活动 / tap {tap_id} is another member's or event's",
            )
            on_taps = False
        elif tap.outcome != TapOutcome.ACCEPTED and getattr(tap, "redecision", None) is None:
            checker.problem(
                "attendance",
                row.id,
                "tap_not_counted",
                f"刷卡记录 {tap_id} 未被接受 / tap {tap_id} was not accepted",
            )
            on_taps = False
        if checker.tap_verdicts.get(tap_id) is False:
            checker.problem(
                "attendance",
                row.id,
                "tap_unverified",
                f"所依据的刷卡记录 {tap_id} 未通过核验 / rests on an unverified tap",
            )
            on_taps = False
        if tap.occurred_at is not None:
            tap_times[end] = tap.occurred_at
    audited = _audited_times(checker, row)
    manual = row.source == AttendanceSource.MANUAL
    if manual and audited is None:
        checker.problem(
            "attendance",
            row.id,
            "manual_not_audited",
            "补录没有对应的审计记录 / manual entry without audit entry",
        )
    if not tap_times and not audited:
        if not manual:
            checker.problem(
                "attendance",
                row.id,
                "no_basis",
                "既无刷卡记录，也无审计过的补录 / rests on no tap and no audited entry",
            )
        return
    allowed_first = [t for t in (tap_times.get("first"), *(audited or [])) if t is not None]
    allowed_last = [t for t in (tap_times.get("last"), *(audited or [])) if t is not None]
    if row.first_tap_at not in allowed_first:
        checker.problem(
            "attendance",
            row.id,
            "time_mismatch",
            "签到时间与刷卡记录或补录审计不符 / first time differs from its evidence",
        )
    if row.last_tap_at not in allowed_last:
        checker.problem(
            "attendance",
            row.id,
            "time_mismatch",
            "最后刷卡时间与刷卡记录或补录审计不符 / last time differs from its evidence",
        )
    if tap_times and on_taps:
        checker.counts.attendance_on_taps += 1
    elif audited:
        checker.counts.attendance_manual += 1


def _check_export_anchors(checker: _Checker, org_ids: frozenset[int] | None) -> None:
    query = select(LedgerExport).order_by(col(LedgerExport.id))
    if org_ids is not None:
        query = query.where(col(LedgerExport.org_id).in_(sorted(org_ids)))
    hashes: dict[int, str] = dict(
        checker.session.exec(select(TapEvidence.tap_id, TapEvidence.chain_hash)).all()
    )
    for export in checker.session.exec(query):
        checker.counts.exports += 1
        heads = json.loads(export.chain_heads)
        lost = [
            kiosk
            for kiosk, head in (heads.get("taps") or {}).items()
            if hashes.get(head["tap_id"]) != head["hash"]
        ]
        audit = heads.get("audit")
        if audit is not None:
            entry = checker.session.get(AuditEntry, audit["id"])
            if entry is None or entry.entry_hash != audit["hash"]:
                lost.append("audit")
        if lost:
            checker.problem(
                "ledger_export",
                export.id,
                "anchor_lost",
                f"导出 {export.code} 时记下的链头已不在链上（{', '.join(lost)}）：其后记录被改写"
                " / chain head gone",
            )
