"""Card checks: how strongly a tapped card is shown to be the member's bound card.

Levels (:class:`~server.vocabulary.CardCheckLevel`), weakest first, and what defeats each:

* ``uid`` — the UID matches the binding. A "magic" card or an emulator copies a UID, so this is
  low assurance; the level is stored on the tap and shown on the sign-in sheet (核验等级).
* ``card-number`` — the T-Union card number matches the binding, *and* the UID too when the
  binding recorded one. An emulator can replay both (docs/card-protocols.md §6.1), but a cloned UID with
  another number, or a copied number on a card with another UID, is refused: ``card_mismatch``.
* ``issuer-mac`` — and the card answered the kiosk's fresh challenge with a MAC under its
  issuer-diversified key, which the issuer confirmed (:mod:`server.cards.issuer`). A copy of the
  card's data without its key cannot answer: ``issuer_mac_invalid``; an old answer presented
  again: ``issuer_mac_replayed``.

A tap is checked at the strongest level both its binding and its card support:

1. The binding is the active one with the tap's card number, else the one with its UID; none is
   ``unknown_card``.
2. A UID-only binding, or a UID-only read (serial reader, card without the application), is
   checked at ``uid``. Otherwise number and UID must both fit (``card-number``).
3. If the card answered the challenge, the issuer is asked, and a wrong answer is a clone
   whatever the binding says. If the card refused and its binding knows it can answer
   (``issuer_mac_since``: declared at binding with ``--issuer-mac``, or learned from its first
   verified answer), it is a clone too. A kiosk that did not ask (serial readers, older agents)
   caps the tap at ``card-number`` (for a card known to answer, see 4).
4. No downgrade: each binding keeps the strongest level its card has been verified at
   (``verified_level``: ``card-number`` when bound with its number, ``issuer-mac`` with
   ``--issuer-mac``; raised by a tap that checked higher). A read below it is ``card_downgrade``
   when the kiosk could have done better: a UID-only read (a magic-UID card has no T-Union
   application, so it reads as UID-only) from a pcsc or nfc kiosk, or from any other kiosk
   (serial) unless its venue accepts UID-only reads (``accept_uid_only_reads``, default off); a
   card-number read of an ``issuer-mac`` card from a pcsc or nfc kiosk that did not challenge it.
   The reader is the one the signed payload names (``reader.backend``). An issuer outage, or a
   deployment without an issuer, is not the card's doing and is no downgrade.
5. A tap below the deployment's minimum (``ECARD_MIN_CARD_CHECK``) is ``weak_card_check``.

Replay: the challenge is derived from the kiosk id and the kiosk's random nonce
(:func:`schemas.card_auth_challenge`), and each challenge the issuer confirmed is stored on its
tap under a unique index; a second tap with it is refused. A byte-identical re-upload never gets
here: it is answered as a duplicate by (kiosk, seq).

Issuer unavailable (timeout, refused connection, 5xx): the tap is not lost and not called a
clone. It is decided at ``card-number`` (both identifiers still must match) and flagged with
note ``issuer_unavailable``; if the deployment's minimum is ``issuer-mac`` it is refused as
``issuer_unavailable`` and the member taps again later. We chose this over refusing every tap
during an outage because the minimum already states what the deployment accepts; the flag lets
an auditor find the taps that were never MAC-checked.

Limits, stated plainly: a clone tapped at a kiosk that does not challenge (a serial kiosk, or
any kiosk during an issuer outage) passes at ``card-number`` when the minimum allows it; a magic-UID
copy of a card bound by UID only passes at ``uid`` (bind with the number to refuse it); and at a
venue that accepts UID-only reads, a magic-UID copy passes at its serial kiosks. A compromised kiosk key can
harvest answers from a genuine card in front of it and spend them later, once each; only an
online, server-issued challenge would stop that.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, or_, select

from schemas.messages import CardFacts, ReaderBackend, card_auth_challenge
from server.cards.issuer import IssuerMacCheck, IssuerUnavailable, IssuerVerifier, OutageMemo
from server.db import bulk_update, in_values
from server.records.cards import CardBinding
from server.records.orgs import Member
from server.records.taps import Tap
from server.records.venues import Venue
from server.vocabulary import BindingStatus, CardCheckLevel, CardCheckNote, MemberStatus, RejectionCode

BINDING_TABLE = SQLModel.metadata.tables[CardBinding.__tablename__]

log = logging.getLogger(__name__)

SW_OK = "9000"

CHALLENGING_READERS = frozenset({ReaderBackend.PCSC, ReaderBackend.NFC})
"""Readers that read a card's T-Union application and put the kiosk's challenge to it."""


@dataclass(frozen=True)
class CardCheckPolicy:
    """The deployment's card-check rules: its minimum level and its issuer (None: no issuer-mac)."""

    minimum: CardCheckLevel = CardCheckLevel.UID
    issuer: IssuerVerifier | None = None

    def for_batch(self) -> CardCheckPolicy:
        """This policy for one upload: an issuer outage is noticed once, not once per tap."""
        if self.issuer is None:
            return self
        return replace(self, issuer=OutageMemo(self.issuer))


@dataclass(frozen=True)
class CardCheck:
    """What checking one tapped card found.

    ``member`` is set only when the card passed. ``level`` is the level the card passed, kept
    even when it is below the minimum; ``auth_challenge`` is the issuer challenge it answered
    (store it on the tap so it cannot be used again).
    """

    member: CardHolder | None
    level: CardCheckLevel | None
    rejection: RejectionCode | None = None
    note: CardCheckNote | None = None
    auth_challenge: str | None = None


class CardHolder(NamedTuple):
    """The member a card is bound to, as a check-in needs them: plain values read with the
    binding (a batch reads hundreds; ORM objects cost more to load than the rest of the check)."""

    id: int
    name: str
    org_id: int
    status: MemberStatus


_HOLDER_COLUMNS = (col(Member.id), col(Member.name), col(Member.org_id), col(Member.status))


@dataclass
class ActiveBinding:
    """What a card check reads of an active binding, as plain values: a batch reads hundreds, and
    ORM objects cost more to load and to flush. A level or issuer-MAC date a check learns is noted
    on its :class:`ActiveBindings` and written, for all of a batch at once, by
    :meth:`ActiveBindings.write`."""

    id: int
    member_id: int
    card_no_hmac: str | None
    uid_hmac: str | None
    verified_level: CardCheckLevel
    issuer_mac_since: datetime | None


_BINDING_COLUMNS = ("id", "member_id", "card_no_hmac", "uid_hmac", "verified_level", "issuer_mac_since")
_LEARNED_COLUMNS = ("id", "verified_level", "issuer_mac_since")  # the key, and what a check learns


class ActiveBindings:
    """The active bindings, and their members, for a set of card digests, read at once: a batch
    of taps looks its cards up in one query instead of two per tap."""

    def __init__(self, bindings: Iterable[ActiveBinding]) -> None:
        self._by_number: dict[str, ActiveBinding] = {}
        self._by_uid: dict[str, ActiveBinding] = {}
        self._holders: dict[int, CardHolder] = {}
        self._changed: dict[int, ActiveBinding] = {}
        for binding in sorted(bindings, key=lambda b: b.id):
            if binding.card_no_hmac is not None:
                self._by_number.setdefault(binding.card_no_hmac, binding)
            if binding.uid_hmac is not None:
                self._by_uid.setdefault(binding.uid_hmac, binding)

    @classmethod
    def load(cls, session: Session, digests: Iterable[tuple[str | None, str]]) -> ActiveBindings:
        """The active bindings of each (number digest, UID digest), with their members, in one
        query (a batch's digests, at most 2 × ``MAX_BATCH_SIZE``, fit one statement)."""
        numbers = sorted({number for number, _uid in digests if number is not None})
        uids = sorted({uid for _number, uid in digests})
        columns = BINDING_TABLE.c
        matches = [in_values(columns.card_no_hmac, numbers)] if numbers else []
        matches += [in_values(columns.uid_hmac, uids)] if uids else []
        if not matches:
            return cls([])
        holder_width = len(_HOLDER_COLUMNS)
        found = session.connection().execute(
            sa_select(*_HOLDER_COLUMNS, *(columns[name] for name in _BINDING_COLUMNS))
            .join(BINDING_TABLE, col(Member.id) == columns.member_id)
            .where(columns.status == BindingStatus.ACTIVE, or_(*matches))
        )
        rows = [(CardHolder(*row[:holder_width]), ActiveBinding(*row[holder_width:])) for row in found]
        bindings = cls(binding for _holder, binding in rows)
        bindings._holders.update((holder.id, holder) for holder, _binding in rows)
        return bindings

    def member_ids(self) -> set[int]:
        return {binding.member_id for binding in (*self._by_number.values(), *self._by_uid.values())}

    def holder(self, member_id: int) -> CardHolder | None:
        """The member read with their binding, or None when it was not read."""
        return self._holders.get(member_id)

    def find(self, *, number_hmac: str | None, uid_hmac: str) -> ActiveBinding | None:
        """The binding the tap claims: by card number when the card reported one, else by UID."""
        if number_hmac is not None and number_hmac in self._by_number:
            return self._by_number[number_hmac]
        return self._by_uid.get(uid_hmac)

    def learned(self, binding: ActiveBinding) -> None:
        """*binding*'s level or issuer-MAC date changed: write it with the others."""
        self._changed[binding.id] = binding

    def write(self, session: Session) -> None:
        """Write the levels and dates learned since the last write (one statement)."""
        if not self._changed:
            return
        changed, self._changed = list(self._changed.values()), {}
        bulk_update(
            session,
            BINDING_TABLE,
            ["id"],
            [{name: getattr(binding, name) for name in _LEARNED_COLUMNS} for binding in changed],
        )


def check_card(
    session: Session,
    card: CardFacts,
    *,
    kiosk_id: str,
    venue_id: int,
    reader: ReaderBackend,
    number_hmac: str | None,
    uid_hmac: str,
    policy: CardCheckPolicy,
    now: datetime,
    bindings: ActiveBindings,
) -> CardCheck:
    """Check a tapped card against its binding (see the module docstring for the rules).

    ``number_hmac`` and ``uid_hmac`` are the card's digests (:func:`server.cards.service.card_digests`).
    ``venue_id`` and ``reader`` are the kiosk's venue and the reader its payload names (for the
    downgrade rule). May ask the issuer (a network call) and, when a card is verified at a level
    above its binding's, raises the binding's ``verified_level``. Never raises for anything about
    the card: every outcome, including an unreachable issuer, is a :class:`CardCheck`.
    *bindings*: the bindings read for the whole batch; what a check learns about a binding waits
    there to be written with :meth:`ActiveBindings.write`.
    """
    binding = bindings.find(number_hmac=number_hmac, uid_hmac=uid_hmac)
    if binding is None:
        return CardCheck(member=None, level=None, rejection=RejectionCode.UNKNOWN_CARD)
    level = _identifier_level(binding, number_hmac=number_hmac, uid_hmac=uid_hmac)
    if level is None:
        return CardCheck(member=None, level=None, rejection=RejectionCode.CARD_MISMATCH)

    check = CardCheck(member=None, level=level)
    if level == CardCheckLevel.CARD_NUMBER:
        check = _issuer_step(session, card, binding, bindings, kiosk_id=kiosk_id, policy=policy, now=now)
        if check.rejection is not None:
            return check
    assert check.level is not None
    if _downgraded(session, binding, check, card, reader=reader, venue_id=venue_id):
        log.warning(
            "binding %s: read at %s by a %s kiosk, verified at %s before: refused as a downgrade",
            binding.id,
            check.level.value,
            reader.value,
            binding.verified_level.value,
        )
        return replace(check, rejection=RejectionCode.CARD_DOWNGRADE)
    if check.level.rank > binding.verified_level.rank:
        binding.verified_level = check.level
        bindings.learned(binding)
    if check.level.rank < policy.minimum.rank:
        outage = check.note == CardCheckNote.ISSUER_UNAVAILABLE
        code = (
            RejectionCode.ISSUER_UNAVAILABLE
            if outage and policy.minimum == CardCheckLevel.ISSUER_MAC
            else RejectionCode.WEAK_CARD_CHECK
        )
        return replace(check, rejection=code)
    holder = bindings.holder(binding.member_id)
    if holder is None:  # read with its binding, so impossible; a binding alone proves nothing
        return CardCheck(member=None, level=None, rejection=RejectionCode.UNKNOWN_CARD)
    return replace(check, member=holder)


def _downgraded(
    session: Session,
    binding: ActiveBinding,
    check: CardCheck,
    card: CardFacts,
    *,
    reader: ReaderBackend,
    venue_id: int,
) -> bool:
    """Whether this read is below its binding's verified level from a kiosk that could do better."""
    assert check.level is not None
    if check.level.rank >= binding.verified_level.rank:
        return False
    if check.level == CardCheckLevel.UID:
        # The binding knows the card's number; this read saw no T-Union application.
        if reader in CHALLENGING_READERS:
            return True
        venue = session.get(Venue, venue_id)
        return venue is None or not venue.accept_uid_only_reads
    # card-number, below a card known to answer the issuer: did the kiosk fail to ask?
    if check.note == CardCheckNote.ISSUER_UNAVAILABLE:
        return False  # the card answered; the issuer could not be asked
    return reader in CHALLENGING_READERS and card.auth is None


def _identifier_level(
    binding: ActiveBinding, *, number_hmac: str | None, uid_hmac: str
) -> CardCheckLevel | None:
    """The level the identifiers reach against *binding*; None when they contradict it."""
    if binding.card_no_hmac is None or number_hmac is None:
        # A UID-only binding, or a read that saw no application: it was found by its UID.
        return CardCheckLevel.UID
    if number_hmac != binding.card_no_hmac:
        return None  # found by UID, but the card carries another number
    if binding.uid_hmac is not None and binding.uid_hmac != uid_hmac:
        return None  # the number is right, the chip is not
    return CardCheckLevel.CARD_NUMBER


def _issuer_step(
    session: Session,
    card: CardFacts,
    binding: ActiveBinding,
    bindings: ActiveBindings,
    *,
    kiosk_id: str,
    policy: CardCheckPolicy,
    now: datetime,
) -> CardCheck:
    """Raise a card-number match to issuer-mac, or find the clone; identifiers already match."""
    at_card_number = CardCheck(member=None, level=CardCheckLevel.CARD_NUMBER)
    auth = card.auth
    answers_challenges = binding.issuer_mac_since is not None
    if auth is None:
        return at_card_number  # the kiosk did not ask
    if auth.response is None or auth.status != SW_OK:
        if answers_challenges:
            log.warning("binding %s: the card refused the challenge (SW %s)", binding.id, auth.status)
            return CardCheck(member=None, level=None, rejection=RejectionCode.ISSUER_MAC_INVALID)
        return at_card_number
    if policy.issuer is None:
        return at_card_number  # this deployment has no issuer to ask
    assert card.card_no is not None
    challenge = card_auth_challenge(kiosk_id, bytes.fromhex(auth.nonce))
    challenge_hex = challenge.hex().upper()
    if _challenge_used(session, challenge_hex):
        return CardCheck(member=None, level=None, rejection=RejectionCode.ISSUER_MAC_REPLAYED)
    try:
        valid = policy.issuer.verify(
            IssuerMacCheck(
                card_no=card.card_no,
                key_id=auth.key_id,
                algorithm=auth.algorithm,
                challenge=challenge,
                response=bytes.fromhex(auth.response),
            )
        )
    except IssuerUnavailable:
        return replace(at_card_number, note=CardCheckNote.ISSUER_UNAVAILABLE)
    if not valid:
        log.warning("binding %s: the issuer rejected the card's answer", binding.id)
        return CardCheck(member=None, level=None, rejection=RejectionCode.ISSUER_MAC_INVALID)
    if not answers_challenges:
        binding.issuer_mac_since = now  # its verified_level is raised by check_card
        bindings.learned(binding)
    return CardCheck(member=None, level=CardCheckLevel.ISSUER_MAC, auth_challenge=challenge_hex)


def _challenge_used(session: Session, challenge_hex: str) -> bool:
    return session.exec(select(Tap.id).where(Tap.auth_challenge == challenge_hex)).first() is not None
