"""Kiosk authentication: is a signed message really from an active kiosk, and may it still be heard?

Taps, heartbeats and key rotations all arrive as a :class:`~schemas.messages.SignedEnvelope`
(``{kid, payload, sig}``) and pass the same checks in the same order; the first that fails
decides. A tap gets the code in its receipt; a heartbeat or a key rotation is refused with the
matching domain error (:func:`refusal`). The envelope itself already has its contract's shape
(``kid`` in its exact format, a payload of bounded size, a signature of the right length): a
heartbeat's is checked by FastAPI, each envelope of a tap batch by ``server.taps.service``.

1. ``kid`` names a kiosk key, current or rotated out (:func:`find_signing_key`) .. else ``unknown_kiosk``
2. the Ed25519 signature verifies over the exact payload bytes (:func:`signed_bytes`)
   ................ else ``bad_signature`` (``malformed`` when the payload is not even base64url);
   from here on the kiosk counts as seen, whatever the later checks say. Until here nothing is
   known about the sender, so nothing it sent may cost a row.
3. the bytes parse as the message's payload model, every field within its bounds (the caller's
   ``read``; for a tap :func:`read_tap_payload`) ........ else ``malformed``, naming the field
4. the payload names the key's kiosk (:func:`check_kiosk_match`) ..... else ``kiosk_mismatch``
5. the kiosk is not revoked (:func:`check_not_revoked`) ............. else ``revoked_kiosk``
6. the key may still sign this message:
   a tap (:func:`claim_seq`): (kiosk, seq) seen with the same bytes .. ``duplicate`` (the stored answer)
   (kiosk, seq) seen with other bytes ........................... ``seq_conflict``
   a rotated-out key, seq after its rotation .................... ``retired_key``
   a heartbeat (:func:`check_key_current`): a rotated-out key ... ``retired_key``
   a key rotation: decided by ``server.kiosks.service.rotate_kiosk_key`` once the new key is
   checked, because a rotation sent again after it happened is answered again, not refused
7. a tap is not from the future, beyond the allowed skew (:func:`check_clock`) .. else ``clock_skew``
   (its seq stays claimed: the kiosk spent it)

:func:`authenticate` runs steps 1–6 for any message; :func:`authenticate_tap` runs 1–7 for a tap.
The kiosk row is locked at step 1: one kiosk's messages are then decided one at a time on
PostgreSQL, which keeps the seq checks, ``last_seq`` and heartbeat ordering honest when requests
overlap.

A batch of taps reads what these checks need once for the whole batch: each kiosk key (and its
kiosk's lock) once (:class:`SigningKeys`), and the stored rows that decide step 6 for all its
taps in one statement of index seeks (:class:`SeqClaims`, in the unique (kiosk, claimed_seq) index
and the payload-digest index, so the cost does not grow with a kiosk's history, even for a kiosk
the statistics do not know; see :func:`server.db.key_probes`).

Step 2 may also be done ahead, outside the transaction and off its thread (:class:`PublicKeys`,
:class:`SignatureCheck`): a kid is a digest of its public key, so the key a process once read for
a kid is that kid's key for ever, and the signature can be checked with it while an earlier batch
is still being decided (``cryptography`` verifies without holding the GIL). A check done ahead is
used only when the key found at step 1 is the key it was done with; otherwise step 2 runs as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Generic, Protocol, TypeVar, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError
from sqlalchemy import Dialect, Executable, union_all
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from schemas.messages import SignedEnvelope, TapPayload, b64url_decode
from server.db import in_chunks, in_values, key_probe_params, key_probes
from server.errors import (
    BadSignature,
    DomainError,
    KeyRetired,
    KioskMismatch,
    KioskRevoked,
    MalformedMessage,
    UnknownKioskKey,
)
from server.records.kiosks import Kiosk, KioskKey
from server.records.taps import TAP_TABLE, NewTap, Tap
from server.vocabulary import KioskStatus, RejectionCode


class KioskPayload(Protocol):
    """What authentication reads of any signed kiosk message: the kiosk it says it comes from."""

    @property
    def kiosk_id(self) -> str: ...


P = TypeVar("P", bound=KioskPayload)


@dataclass(frozen=True)
class SigningKey:
    """A kiosk key found by its kid, with its kiosk (locked for the rest of the transaction)."""

    kiosk: Kiosk
    key: KioskKey


@dataclass(frozen=True)
class Signed(Generic[P]):
    """A message that passed authentication: its kiosk (locked), the key that signed it, the
    parsed payload and the exact bytes that were signed."""

    kiosk: Kiosk
    key: KioskKey
    payload: P
    raw: bytes


SignedTap = Signed[TapPayload]


@dataclass(frozen=True)
class Rejection(Generic[P]):
    """The first check that failed, with what was learnt before it: the kiosk from step 2 on, the
    payload from step 4 on, and for a tap refused at step 7 the seq it claimed at step 6. A
    ``malformed`` message names where its first problem is (``field``). ``verified`` is whether
    the signature had verified (step 2): before that, the message could be anyone's."""

    code: RejectionCode
    kiosk: Kiosk | None = None
    payload: P | None = None
    claimed_seq: int | None = None
    field: str | None = None
    verified: bool = False


@dataclass(frozen=True)
class Duplicate:
    """A tap whose exact bytes were decided before at this (kiosk, seq): ``earlier`` is that row
    (stored, or decided earlier in the same batch)."""

    earlier: Tap | NewTap


class SigningKeys:
    """Step 1 for many messages in one transaction: each kid is looked up, and its kiosk locked,
    once (the objects stay the session's, so later changes to the kiosk are seen)."""

    def __init__(self, session: Session, *, remember: PublicKeys | None = None) -> None:
        self._session = session
        self._found: dict[str, SigningKey | None] = {}
        self._remember = remember

    def find(self, kid: str) -> SigningKey | None:
        self.read_ahead([kid])
        return self._found[kid]

    def read_ahead(self, kids: Iterable[str]) -> None:
        """Look *kids* up in one query (at most ``MAX_BATCH_SIZE`` × a few: a run of uploads),
        locking their kiosks in id order: two transactions locking some of the same kiosks then
        queue behind each other instead of deadlocking (each would otherwise lock in its own
        envelopes' order, and a run holds many kiosks' envelopes)."""
        wanted = sorted({kid for kid in kids if kid not in self._found})
        if not wanted:
            return
        rows = self._session.exec(
            select(KioskKey, Kiosk)
            .join(Kiosk, col(Kiosk.id) == col(KioskKey.kiosk_id))
            .where(in_values(col(KioskKey.kid), wanted))
            .order_by(col(Kiosk.id))
            .with_for_update(of=Kiosk)
        ).all()
        found = {key.kid: SigningKey(kiosk=kiosk, key=key) for key, kiosk in rows}
        for kid in wanted:
            self._found[kid] = found.get(kid)
        if self._remember is not None:
            for signing in found.values():
                self._remember.remember(signing.key)


class SeqClaims:
    """What step 6 needs to know about stored taps, for a set of (kiosk, seq, digest): the rows
    that claimed those seqs and the rows stored with those digests, read at once, then kept up
    to date with the rows the same transaction adds (:meth:`note`)."""

    def __init__(self, rows: Iterable[Tap | NewTap], covered: Iterable[tuple[str, int, str]]) -> None:
        self._covered = set(covered)
        self._by_slot: dict[tuple[str, int], list[Tap | NewTap]] = {}
        for row in sorted(rows, key=lambda r: r.id or 0):
            self.note(row)

    @classmethod
    def load(cls, session: Session, wanted: Iterable[tuple[str, int, str]]) -> SeqClaims:
        """The rows deciding step 6 for each wanted (kiosk id, seq, payload digest), in one
        statement."""
        wanted = set(wanted)
        if not wanted:
            return cls([], wanted)
        connection = session.connection()
        statement, params = cls.query(connection.dialect, wanted)
        # Plain rows, not ORM objects: a duplicate's receipt only reads them. A row can answer
        # both a seq and a digest: once by id.
        found = connection.execute(statement, params)
        rows = {values.id: NewTap(**values._mapping) for values in found}
        return cls(rows.values(), wanted)

    @staticmethod
    def query(dialect: Dialect, wanted: set[tuple[str, int, str]]) -> tuple[Executable, dict[str, Any]]:
        """What :meth:`load` reads (and its parameters), as one statement (``UNION ALL``): the
        rows holding the wanted (kiosk, seq) slots, each a seek in the unique (kiosk_id,
        claimed_seq) index, and the rows with the wanted digests, on their index.

        On PostgreSQL the slots and digests travel as arrays in a statement built once
        (:func:`server.db.key_probes`); SQLite has no arrays, and its planner takes the
        unique index for ``kiosk_id = ? AND claimed_seq IN (...)``, one branch per kiosk."""
        digests = sorted({digest for _kiosk, _seq, digest in wanted})
        if dialect.name == "postgresql":
            slots = sorted({(kiosk_id, seq) for kiosk_id, seq, _digest in wanted})
            params = {
                **key_probe_params(SLOT_KEY, slots),
                **key_probe_params(SAME_BYTES, [(d,) for d in digests]),
            }
            return _seq_claims_query(), params
        seqs_by_kiosk: dict[str, set[int]] = {}
        for kiosk_id, seq, _digest in wanted:
            seqs_by_kiosk.setdefault(kiosk_id, set()).add(seq)
        columns = TAP_TABLE.c
        queries = [
            sa_select(TAP_TABLE).where(columns.kiosk_id == kiosk_id, in_values(columns.claimed_seq, chunk))
            for kiosk_id, seqs in sorted(seqs_by_kiosk.items())
            for chunk in in_chunks(sorted(seqs))
        ]
        queries.extend(
            sa_select(TAP_TABLE).where(in_values(columns.payload_digest, chunk))
            for chunk in in_chunks(digests)
        )
        return union_all(*queries), {}

    def covers(self, kiosk_id: str, seq: int, digest: str) -> bool:
        return (kiosk_id, seq, digest) in self._covered

    def note(self, row: Tap | NewTap) -> None:
        """Count *row* (stored or about to be) if it holds a slot or answers a conflict."""
        if row.kiosk_id is None or row.seq is None:
            return
        if row.claimed_seq is None and row.code != RejectionCode.SEQ_CONFLICT:
            return
        self._by_slot.setdefault((row.kiosk_id, row.seq), []).append(row)

    def earlier_answer(self, kiosk_id: str, seq: int, digest: str) -> Tap | NewTap | None:
        """The first row for these exact bytes at this (kiosk, seq): the original, or an earlier conflict."""
        rows = self._by_slot.get((kiosk_id, seq), [])
        return next((row for row in rows if row.payload_digest == digest), None)

    def taken(self, kiosk_id: str, seq: int) -> bool:
        return any(row.claimed_seq == seq for row in self._by_slot.get((kiosk_id, seq), []))


SLOT_KEY = ("kiosk_id", "claimed_seq")  # the unique index deciding step 6
SAME_BYTES = ("payload_digest",)  # and the index deciding whether bytes were seen


@cache
def _seq_claims_query() -> Executable:
    """PostgreSQL's statement behind :meth:`SeqClaims.load`, built once."""
    slots = key_probes(TAP_TABLE, SLOT_KEY, unique=True)
    same_bytes = key_probes(TAP_TABLE, SAME_BYTES, unique=False)
    return union_all(slots, same_bytes)


def authenticate(
    session: Session,
    envelope: SignedEnvelope,
    read: Callable[[bytes], P],
    *,
    now: datetime,
    refuse_retired_key: bool,
    keys: SigningKeys | None = None,
    checked: SignatureCheck | None = None,
) -> Signed[P] | Rejection[P]:
    """Steps 1–6 of the module docstring for any kiosk message.

    *read* is step 3: it turns the signed bytes into the payload, raising ValueError (pydantic's
    ValidationError is one) for bytes that are not that message. *now* is when the message
    arrived: the kiosk is seen then. *refuse_retired_key* is step 6 for a message without a seq
    (a heartbeat); taps (:func:`authenticate_tap`) and key rotations judge a rotated-out key
    themselves. *keys* remembers the keys already found in this transaction; *checked* is step 2
    done ahead (used when it was done with the key found now).
    """
    found = keys.find(envelope.kid) if keys is not None else find_signing_key(session, envelope.kid)
    if found is None:
        return Rejection(RejectionCode.UNKNOWN_KIOSK)
    kiosk, key = found.kiosk, found.key
    if checked is None or checked.public_key != key.public_key:
        checked = None
        raw = signed_bytes(envelope, key.public_key)
    else:
        raw = checked.outcome
    if isinstance(raw, RejectionCode):
        return Rejection(raw, kiosk=kiosk, field="payload" if raw == RejectionCode.MALFORMED else None)
    # A verified signature is the kiosk speaking, even when what it says is refused below.
    kiosk.last_seen_at = now
    _keep(session, kiosk)
    try:
        payload = _read_payload(read, raw, checked)
    except ValueError as exc:
        field = problem_field(exc, prefix="payload")
        return Rejection(RejectionCode.MALFORMED, kiosk=kiosk, field=field, verified=True)
    refused = check_kiosk_match(kiosk, payload)
    if refused is None:
        refused = check_not_revoked(kiosk)
    if refused is None and refuse_retired_key:
        refused = check_key_current(key)
    if refused is not None:
        return Rejection(refused, kiosk=kiosk, payload=payload, verified=True)
    return Signed(kiosk=kiosk, key=key, payload=payload, raw=raw)


def _read_payload(read: Callable[[bytes], P], raw: bytes, checked: SignatureCheck | None) -> P:
    """Step 3, or what it gave when done ahead (only ever for a tap: *read* is then
    :func:`read_tap_payload`). Raises ValueError."""
    if checked is None or checked.payload is None or read is not read_tap_payload:
        return read(raw)
    if isinstance(checked.payload, ValueError):
        raise checked.payload
    return cast(P, checked.payload)


def authenticate_tap(
    session: Session, envelope: SignedEnvelope, *, digest: str, now: datetime, max_clock_skew: timedelta
) -> SignedTap | Duplicate | Rejection[TapPayload]:
    """Steps 1–7 for one tap.

    *digest* is the keyed digest of the envelope's payload (what recognises a tap sent again);
    *now* is when the batch arrived. A tap that passes has claimed its (kiosk, seq).
    """
    signed = authenticate(session, envelope, read_tap_payload, now=now, refuse_retired_key=False)
    if isinstance(signed, Rejection):
        return signed
    return admit_tap(session, signed, digest=digest, now=now, max_clock_skew=max_clock_skew)


def admit_tap(
    session: Session,
    signed: SignedTap,
    *,
    digest: str,
    now: datetime,
    max_clock_skew: timedelta,
    claims: SeqClaims | None = None,
) -> SignedTap | Duplicate | Rejection[TapPayload]:
    """Steps 6–7 for a tap that passed steps 1–5 (:func:`authenticate`); *claims* holds what was
    read for the batch (else it is read now)."""
    claimed = claim_seq(session, signed, digest=digest, claims=claims)
    if isinstance(claimed, Duplicate):
        return claimed
    if claimed is not None:
        return Rejection(claimed, kiosk=signed.kiosk, payload=signed.payload, verified=True)
    refused = check_clock(signed.payload, now=now, max_clock_skew=max_clock_skew)
    if refused is not None:
        seq = signed.payload.seq
        return Rejection(refused, kiosk=signed.kiosk, payload=signed.payload, claimed_seq=seq, verified=True)
    return signed


def find_signing_key(session: Session, kid: str) -> SigningKey | None:
    """Step 1: the kiosk key named *kid* (current or retired) and its kiosk, locked; or None."""
    return SigningKeys(session).find(kid)


def signed_bytes(envelope: SignedEnvelope, public_key: str) -> bytes | RejectionCode:
    """Step 2: the exact payload bytes, once *public_key*'s signature over them verifies."""
    try:
        raw = envelope.payload_bytes()
    except ValueError:
        return RejectionCode.MALFORMED
    if not verify_signature(public_key, raw, envelope.sig):
        return RejectionCode.BAD_SIGNATURE
    return raw


@dataclass(frozen=True)
class SignatureCheck:
    """Steps 2 and 3 done ahead for one envelope: what :func:`signed_bytes` said with
    *public_key*, and, when the signature held, the payload read from the signed bytes (or why it
    could not be: the ValueError step 3 would raise)."""

    public_key: str
    outcome: bytes | RejectionCode
    payload: TapPayload | ValueError | None = None


class PublicKeys:
    """The public keys of the kids this process has found at step 1, so that step 2 can be done
    ahead (see the module docstring). Bounded: past *limit* kids it starts again empty, and a kid
    it has forgotten is checked in the transaction, as before it was known."""

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = limit
        self._by_kid: dict[str, str] = {}

    def remember(self, key: KioskKey) -> None:
        if key.kid not in self._by_kid:
            if len(self._by_kid) >= self._limit:
                self._by_kid = {}
            self._by_kid[key.kid] = key.public_key

    def check(self, envelope: SignedEnvelope) -> SignatureCheck | None:
        """Steps 2 and 3 for a tap's *envelope* with its kid's key, when this process knows it."""
        public_key = self._by_kid.get(envelope.kid)
        if public_key is None:
            return None
        outcome = signed_bytes(envelope, public_key)
        if isinstance(outcome, RejectionCode):
            return SignatureCheck(public_key, outcome)
        try:
            payload: TapPayload | ValueError = read_tap_payload(outcome)
        except ValueError as exc:
            payload = exc
        return SignatureCheck(public_key, outcome, payload)


def read_tap_payload(raw: bytes) -> TapPayload:
    """Step 3 for a tap: a TapPayload, every field within its wire bounds (the seq at most
    ``MAX_SEQ``, so a replacement device's first seq still fits). Raises ValueError."""
    return TapPayload.model_validate_json(raw)


def problem_field(error: ValueError, *, prefix: str) -> str:
    """Where a message's first problem is, for a receipt or an error body: ``prefix`` and the
    location pydantic reports (``payload.occurred_at``); never the offending value.

    Keys a sender made up are cut to plain characters and a short length: they are echoed back.
    """
    parts = [prefix]
    if isinstance(error, ValidationError) and error.errors():
        for part in error.errors()[0]["loc"]:
            cleaned = "".join(c for c in str(part) if c.isascii() and (c.isalnum() or c == "_"))[:32]
            parts.append(cleaned or "?")
    return ".".join(parts)[:100]


def check_kiosk_match(kiosk: Kiosk, payload: KioskPayload) -> RejectionCode | None:
    """Step 4: a key signs only for its own kiosk."""
    return RejectionCode.KIOSK_MISMATCH if payload.kiosk_id != kiosk.id else None


def check_not_revoked(kiosk: Kiosk) -> RejectionCode | None:
    """Step 5."""
    return RejectionCode.REVOKED_KIOSK if kiosk.status == KioskStatus.REVOKED else None


def claim_seq(
    session: Session, tap: SignedTap, *, digest: str, claims: SeqClaims | None = None
) -> Duplicate | RejectionCode | None:
    """Step 6 for a tap: take its (kiosk, seq), moving the kiosk's ``last_seq`` up; or say why not.

    A retired key still verifies the taps it signed up to the ``last_seq`` of its rotation, so an
    outbox that was offline across the rotation still uploads. The caller notes the stored row in
    *claims* (:meth:`SeqClaims.note`) when it shares *claims* with later taps.
    """
    kiosk, seq = tap.kiosk, tap.payload.seq
    if claims is None or not claims.covers(kiosk.id, seq, digest):
        claims = SeqClaims.load(session, [(kiosk.id, seq, digest)])
    earlier = claims.earlier_answer(kiosk.id, seq, digest)
    if earlier is not None:
        return Duplicate(earlier)
    if claims.taken(kiosk.id, seq):
        return RejectionCode.SEQ_CONFLICT
    if tap.key.retired_at is not None and seq > (tap.key.last_seq or 0):
        # A rotated-out key signing a seq after the rotation: a stolen old key, not an old tap.
        return RejectionCode.RETIRED_KEY
    kiosk.last_seq = max(kiosk.last_seq or 0, seq)
    _keep(session, kiosk)
    return None


def _keep(session: Session, kiosk: Kiosk) -> None:
    # The kiosk was read in this session, so its changes are flushed anyway; add() would walk its
    # relationships again for every envelope of a batch.
    if kiosk not in session:
        session.add(kiosk)


def check_key_current(key: KioskKey) -> RejectionCode | None:
    """Step 6 for a heartbeat: it has no seq to place before a rotation, so only the current key counts."""
    return RejectionCode.RETIRED_KEY if key.retired_at is not None else None


def check_clock(payload: TapPayload, *, now: datetime, max_clock_skew: timedelta) -> RejectionCode | None:
    """Step 7 for a tap."""
    return RejectionCode.CLOCK_SKEW if payload.occurred_at > now + max_clock_skew else None


def verify_signature(public_key: str, data: bytes, signature: str) -> bool:
    """Whether *signature* (base64url) is the Ed25519 signature of *data* by *public_key* (base64url)."""
    try:
        Ed25519PublicKey.from_public_bytes(b64url_decode(public_key)).verify(b64url_decode(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True


_ERRORS: dict[RejectionCode, type[DomainError]] = {
    RejectionCode.UNKNOWN_KIOSK: UnknownKioskKey,
    RejectionCode.BAD_SIGNATURE: BadSignature,
    RejectionCode.MALFORMED: MalformedMessage,
    RejectionCode.KIOSK_MISMATCH: KioskMismatch,
    RejectionCode.REVOKED_KIOSK: KioskRevoked,
    RejectionCode.RETIRED_KEY: KeyRetired,
}


def refusal(rejection: Rejection[P], *, revoked_message: str) -> DomainError:
    """The error a heartbeat or key rotation is refused with (a tap gets a receipt instead).

    *revoked_message* says what a revoked kiosk may no longer do.
    """
    if rejection.code == RejectionCode.MALFORMED:
        return MalformedMessage(field=rejection.field)
    error = _ERRORS[rejection.code]
    return error(revoked_message if rejection.code == RejectionCode.REVOKED_KIOSK else None)
