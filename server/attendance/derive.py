"""Attendance as a function of the records, not of the order taps arrive in.

What a check-in tap counts as is decided by one rule (:func:`choose_event`): an event at the
kiosk's venue whose check-in window holds the tap (``server.events.service.find_event_for_tap``),
else, up to ``SIGN_OUT_GRACE`` after its end, an event the member is present at by another
record (a tap inside its window, a manual entry, a tap a secretary assigned): the 签退 on the way
out. A member's row for an event (:func:`rebuild_attendance`) is then the earliest and latest of
the taps that count for it, and the recorder's manual arrival: 签到, 签退 (10-minute rule),
lateness and duration follow from those alone.

Ingest applies the rule as taps arrive. Because a tap can match nothing when it arrives and
something later, it is decided again (:func:`settle_taps`) when something that could match it
appears, and the rows it touches are recomputed:

* an earlier tap of the same card arriving late: a tap inside a window makes the member's
  unmatched taps in that event's sign-out grace their 签退 (:func:`settle_sign_outs`);
* an event created or changed afterwards: the check-in taps at its venue in its window and grace
  (:func:`schedule_event`, :func:`revise_event`);
* a card bound after it was tapped (``unknown_card``, while its digests are kept, see
  :mod:`server.attendance.unmatched`): :func:`settle_card_taps`.

The kiosk's receipt stays what it was (the row's outcome, code and display fields); the tap's
``event_id``/``member_id`` say what it counts as now, ``redecision``/``redecided_at`` that the
system changed it, and each change is audited (``tap.redecide``). A tap a secretary assigned is a
person's decision and is never moved. A tap that still matches nothing keeps no member (a tap
outside a meeting is not filed against anyone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from schemas.messages import TapMode
from server.attendance.service import lock_attendance
from server.audit.service import record
from server.caller import Actor, Caller
from server.cards.lifecycle import member_id_for_card_at
from server.cards.service import bind_member_card
from server.events.service import (
    SIGN_OUT_GRACE,
    EventWindows,
    add_event,
    find_event_for_tap,
    update_event_details,
)
from server.keyring import Keyring
from server.records.attendance import Attendance
from server.records.cards import CardBinding
from server.records.events import Event
from server.records.kiosks import Kiosk
from server.records.orgs import Member
from server.records.taps import Tap
from server.vocabulary import EventKind, RejectionCode, TapRedecision

SYSTEM_ACTOR = Actor("system", "系统")

UNMATCHED_CODES = (RejectionCode.NO_EVENT, RejectionCode.UNKNOWN_CARD)
"""Rejections a later record can turn into attendance: the tap was genuine, nothing matched it yet."""

Pair = tuple[int, int]  # (event_id, member_id)


# --- the rule ------------------------------------------------------------------------------------


def choose_event(
    session: Session,
    *,
    venue_id: int,
    at: datetime,
    member_id: int,
    member_org_id: int,
    windows: EventWindows | None = None,
    before_late_lookup: Callable[[Session], None] | None = None,
) -> Event | None:
    """The event a check-in tap of the member (``member_id``, of ``member_org_id``) at
    ``venue_id`` at ``at`` counts for, or None. ``windows``: the events read for a whole batch of
    taps; ``before_late_lookup`` is called before the stored records are searched for a meeting
    the tap would sign the member out of (a batch writes its taps then)."""
    event = find_event_for_tap(
        session, venue_id=venue_id, at=at, member_id=member_id, member_org_id=member_org_id, windows=windows
    )
    if event is not None:
        return event
    if before_late_lookup is not None:
        before_late_lookup(session)
    return _event_to_sign_out_of(session, venue_id=venue_id, at=at, member_id=member_id)


def _event_to_sign_out_of(session: Session, *, venue_id: int, at: datetime, member_id: int) -> Event | None:
    """Just after a meeting ends: an event whose window closed, ended less than the grace ago, and
    which the member is present at by a record other than such a late tap."""
    candidates = session.exec(
        select(Event)
        .where(
            Event.venue_id == venue_id,
            col(Event.checkin_closes_at) <= at,
            col(Event.end_at) > at - SIGN_OUT_GRACE,
            col(Event.start_at) <= at,
        )
        .order_by(col(Event.end_at).desc(), col(Event.id))
    ).all()
    for event in candidates:
        if _present_by_other_record(session, event, member_id):
            return event
    return None


def _present_by_other_record(session: Session, event: Event, member_id: int) -> bool:
    counted = session.exec(
        select(Tap.id).where(
            Tap.event_id == event.id,
            Tap.member_id == member_id,
            Tap.mode == TapMode.CHECKIN,
            or_(
                col(Tap.occurred_at) < event.checkin_closes_at,
                col(Tap.redecision) == TapRedecision.ASSIGNED,
            ),
        )
    ).first()
    if counted is not None:
        return True
    manual = session.exec(
        select(Attendance.id).where(
            Attendance.event_id == event.id,
            Attendance.member_id == member_id,
            col(Attendance.manual_at).is_not(None),
        )
    ).first()
    return manual is not None


def rebuild_attendance(session: Session, *, event_id: int, member_id: int) -> Attendance | None:
    """Recompute the member's row for the event from the taps that count for it and the manual
    arrival; remove a row nothing supports any more. Returns the row, or None."""
    taps = session.exec(
        select(Tap).where(Tap.event_id == event_id, Tap.member_id == member_id, Tap.mode == TapMode.CHECKIN)
    ).all()
    row = lock_attendance(session, event_id=event_id, member_id=member_id)
    manual_at = row.manual_at if row is not None else None
    if not taps and manual_at is None:
        if row is not None:
            session.delete(row)
            session.flush()
        return None
    times = sorted((tap.occurred_at, tap.id) for tap in taps if tap.occurred_at is not None and tap.id)
    # Ties: the earlier stored tap is 签到 and the later stored one the last, as merging did. A
    # manual arrival bounds the row like a tap, without a tap id.
    first: tuple[datetime, int | None] | None = times[0] if times else None
    last: tuple[datetime, int | None] | None = times[-1] if times else None
    if manual_at is not None and (first is None or manual_at <= first[0]):
        first = (manual_at, None)
    if manual_at is not None and (last is None or manual_at > last[0]):
        last = (manual_at, None)
    assert first is not None
    assert last is not None
    if row is None:
        row = Attendance(
            event_id=event_id, member_id=member_id, first_tap_at=first[0], last_tap_at=last[0], tap_count=0
        )
    row.first_tap_at, row.first_tap_id = first
    row.last_tap_at, row.last_tap_id = last
    row.tap_count = len(times)
    session.add(row)
    session.flush()
    return row


# --- deciding again ------------------------------------------------------------------------------


def settle_taps(
    session: Session, taps: Iterable[Tap], *, now: datetime, card_holder: int | None = None
) -> int:
    """Decide each check-in tap again by :func:`choose_event`, record what changed (audited as the
    system's ``tap.redecide``) and recompute the rows it touched. ``card_holder`` is the member
    whose new binding the ``unknown_card`` taps are decided for. Returns how many taps changed.

    Taps inside a window are decided first, then the late ones (签退), so that a late tap sees
    every record that makes the member present; a row that gains or loses its basis has its late
    taps decided again too.
    """
    seen: set[int] = set()
    pending: list[tuple[Tap, Member, int]] = []
    for tap in taps:
        candidate = _candidate(session, tap, card_holder=card_holder)
        if candidate is not None and tap.id not in seen:
            assert tap.id is not None
            seen.add(tap.id)
            pending.append(candidate)
    changed: set[Pair] = set()
    late: list[tuple[Tap, Member, int]] = []
    count = 0
    for tap, member, venue_id in sorted(pending, key=_tap_order):
        assert tap.occurred_at is not None
        event = find_event_for_tap(
            session, venue_id=venue_id, at=tap.occurred_at, member_id=member.id, member_org_id=member.org_id
        )
        if event is None:
            late.append((tap, member, venue_id))
            continue
        count += _apply(session, tap, member, event, now=now, changed=changed)
    for event_id, member_id in sorted(changed):
        for tap in _late_taps(session, event_id=event_id, member_id=member_id):
            candidate = _candidate(session, tap, card_holder=None)
            if candidate is not None and tap.id not in seen:
                assert tap.id is not None
                seen.add(tap.id)
                late.append(candidate)
    for tap, member, venue_id in sorted(late, key=_tap_order):
        assert tap.occurred_at is not None
        assert member.id is not None
        event = choose_event(
            session, venue_id=venue_id, at=tap.occurred_at, member_id=member.id, member_org_id=member.org_id
        )
        count += _apply(session, tap, member, event, now=now, changed=changed)
    for event_id, member_id in sorted(changed):
        rebuild_attendance(session, event_id=event_id, member_id=member_id)
    return count


def settle_sign_outs(session: Session, *, event: Event, member_id: int, now: datetime) -> int:
    """A tap inside the event's window was accepted: the member's unmatched taps in its sign-out
    grace (an 11:10 签退 that arrived before the 09:20 签到) are decided again."""
    assert event.id is not None
    return settle_taps(session, _late_taps(session, event_id=event.id, member_id=member_id), now=now)


def settle_event_taps(session: Session, event: Event, *, now: datetime) -> int:
    """The check-in taps at the event's venue from its window's opening to the end of its sign-out
    grace are decided again."""
    taps = _checkin_taps_at(
        session, venue_id=event.venue_id, since=event.checkin_opens_at, until=event.end_at + SIGN_OUT_GRACE
    )
    return settle_taps(session, taps, now=now)


def settle_card_taps(session: Session, binding: CardBinding, *, now: datetime) -> int:
    """A card was bound: its taps refused as ``unknown_card`` (digests still kept) are decided again."""
    matches = []
    if binding.card_no_hmac is not None:
        matches.append(col(Tap.card_no_hmac) == binding.card_no_hmac)
    if binding.uid_hmac is not None:
        matches.append(col(Tap.uid_hmac) == binding.uid_hmac)
    if not matches:
        return 0
    taps = session.exec(
        select(Tap).where(
            Tap.code == RejectionCode.UNKNOWN_CARD,
            Tap.mode == TapMode.CHECKIN,
            col(Tap.event_id).is_(None),
            or_(*matches),
        )
    ).all()
    return settle_taps(session, taps, now=now, card_holder=binding.member_id)


def _tap_order(candidate: tuple[Tap, Member, int]) -> tuple[datetime, int]:
    tap = candidate[0]
    assert tap.occurred_at is not None
    return tap.occurred_at, tap.id or 0


def _candidate(session: Session, tap: Tap, *, card_holder: int | None) -> tuple[Tap, Member, int] | None:
    """The tap with its member and venue, when it is a check-in tap the rule may decide again."""
    if tap.mode != TapMode.CHECKIN or tap.occurred_at is None or tap.kiosk_id is None:
        return None
    if tap.redecision == TapRedecision.ASSIGNED:
        return None  # a person decided it
    kiosk = session.get(Kiosk, tap.kiosk_id)
    if kiosk is None:
        return None
    member_id: int | None
    if tap.code is None:
        member_id = tap.member_id  # accepted at ingest: its card check passed for this member
    elif tap.code == RejectionCode.NO_EVENT:
        # Its card check passed then; the member is whoever held the card at the tap.
        member_id = tap.member_id or member_id_for_card_at(
            session, card_no_hmac=tap.card_no_hmac, uid_hmac=tap.uid_hmac, at=tap.occurred_at
        )
    elif tap.code == RejectionCode.UNKNOWN_CARD:
        member_id = tap.member_id or _holder_bound_since(session, tap, card_holder=card_holder)
    else:
        return None
    member = session.get(Member, member_id) if member_id is not None else None
    if member is None:
        return None
    return tap, member, kiosk.venue_id


def _holder_bound_since(session: Session, tap: Tap, *, card_holder: int | None) -> int | None:
    """The member a card unknown at its tap was bound to since (the binding still active, or
    ended after the tap; ``card_holder``'s when given).

    The tap never passed a card check, so only what its digests prove counts: a binding that
    records a card number by that number, a UID-only binding by the UID; never a binding whose
    card must answer the issuer's challenge (the tap cannot show it did)."""
    if tap.card_no_hmac is None and tap.uid_hmac is None:
        return None  # purged: past the retention period, nobody's any more
    assert tap.occurred_at is not None
    if tap.card_no_hmac is not None:
        match = or_(
            col(CardBinding.card_no_hmac) == tap.card_no_hmac,
            and_(col(CardBinding.card_no_hmac).is_(None), col(CardBinding.uid_hmac) == tap.uid_hmac),
        )
    else:
        match = and_(col(CardBinding.card_no_hmac).is_(None), col(CardBinding.uid_hmac) == tap.uid_hmac)
    query = select(CardBinding).where(
        match,
        col(CardBinding.issuer_mac_since).is_(None),
        or_(col(CardBinding.ended_at).is_(None), col(CardBinding.ended_at) > tap.occurred_at),
    )
    if card_holder is not None:
        query = query.where(CardBinding.member_id == card_holder)
    binding = session.exec(query.order_by(col(CardBinding.bound_at), col(CardBinding.id))).first()
    return binding.member_id if binding is not None else None


def _apply(
    session: Session, tap: Tap, member: Member, event: Event | None, *, now: datetime, changed: set[Pair]
) -> int:
    """Record what the tap counts as now; 1 if that changed."""
    new_event_id = event.id if event is not None else None
    if tap.event_id == new_event_id and (new_event_id is None or tap.member_id == member.id):
        return 0
    assert member.id is not None
    if tap.event_id is not None and tap.member_id is not None:
        changed.add((tap.event_id, tap.member_id))
    was = tap.event_id
    tap.event_id = new_event_id
    if new_event_id is not None:
        changed.add((new_event_id, member.id))
        tap.member_id = member.id
    elif tap.code is not None:
        tap.member_id = None  # matched nothing: not filed against the member
    tap.redecision, tap.redecided_at = TapRedecision.SYSTEM, now
    session.add(tap)
    session.flush()
    assert tap.id is not None
    record(
        session,
        actor=SYSTEM_ACTOR,
        action="tap.redecide",
        object_type="tap",
        object_id=tap.id,
        org_id=event.org_id if event is not None else member.org_id,
        at=now,
        reason="按全部记录重新判定刷卡所属活动",
        detail={"event_id": new_event_id, "was_event_id": was, "member_id": member.id},
    )
    return 1


def sign_out_grace_holds_taps(session: Session, event: Event) -> bool:
    """Whether any check-in tap that could settle is stored in the event's sign-out grace: if
    none is, a 签到 to it has no early 签退 to settle (the common case during the arrivals)."""
    since, until = event.checkin_closes_at, event.end_at + SIGN_OUT_GRACE
    # Only whether there is one: no Tap object is built for the answer.
    query = _checkin_taps_query(venue_id=event.venue_id, since=since, until=until)
    return session.connection().execute(query.with_only_columns(col(Tap.id)).limit(1)).first() is not None


def _late_taps(session: Session, *, event_id: int, member_id: int) -> list[Tap]:
    """The member's check-in taps at the event's venue in its sign-out grace (counting or not)."""
    event = session.get(Event, event_id)
    if event is None:
        return []
    return _checkin_taps_at(
        session,
        venue_id=event.venue_id,
        since=event.checkin_closes_at,
        until=event.end_at + SIGN_OUT_GRACE,
        member_id=member_id,
    )


def _checkin_taps_at(
    session: Session, *, venue_id: int, since: datetime, until: datetime, member_id: int | None = None
) -> list[Tap]:
    """Check-in taps at the venue's kiosks in [since, until) that count or may come to count
    (accepted ones, and unmatched ones whose digests are kept); with ``member_id``, only those
    filed against that member or against nobody."""
    query = _checkin_taps_query(venue_id=venue_id, since=since, until=until)
    if member_id is not None:
        query = query.where(or_(col(Tap.member_id) == member_id, col(Tap.member_id).is_(None)))
    return list(session.exec(query.order_by(col(Tap.occurred_at), col(Tap.id))).all())


def _checkin_taps_query(*, venue_id: int, since: datetime, until: datetime) -> SelectOfScalar[Tap]:
    digests_kept = or_(col(Tap.card_no_hmac).is_not(None), col(Tap.uid_hmac).is_not(None))
    return (
        select(Tap)
        .join(Kiosk, col(Kiosk.id) == col(Tap.kiosk_id))
        .where(
            Kiosk.venue_id == venue_id,
            Tap.mode == TapMode.CHECKIN,
            col(Tap.occurred_at) >= since,
            col(Tap.occurred_at) < until,
            or_(
                col(Tap.code).is_(None),
                col(Tap.event_id).is_not(None),
                and_(col(Tap.code).in_(UNMATCHED_CODES), digests_kept),
            ),
        )
    )


# --- the triggers, for the faces that schedule events and bind cards ----------------------------


def schedule_event(
    session: Session,
    *,
    title: str,
    org_id: int,
    venue_id: int,
    kind: EventKind,
    start_at: datetime,
    end_at: datetime,
    checkin_opens_at: datetime | None = None,
    checkin_closes_at: datetime | None = None,
    also_counts_as: Sequence[EventKind] = (),
    joint_org_ids: Sequence[int] = (),
    late_after: datetime | None = None,
    chair_member_id: int | None = None,
    recorder_member_id: int | None = None,
    topic: str = "",
    now: datetime,
    caller: Caller,
) -> Event:
    """``server.events.service.add_event``, then the taps already made at its venue in its window
    are decided again: a secretary who enters yesterday's 主题党日 gets its taps. Raises as
    ``add_event``."""
    event = add_event(
        session,
        title=title,
        org_id=org_id,
        venue_id=venue_id,
        kind=kind,
        start_at=start_at,
        end_at=end_at,
        checkin_opens_at=checkin_opens_at,
        checkin_closes_at=checkin_closes_at,
        also_counts_as=also_counts_as,
        joint_org_ids=joint_org_ids,
        late_after=late_after,
        chair_member_id=chair_member_id,
        recorder_member_id=recorder_member_id,
        topic=topic,
        now=now,
        caller=caller,
    )
    settle_event_taps(session, event, now=now)
    return event


def revise_event(
    session: Session,
    *,
    event_id: int,
    title: str | None = None,
    topic: str | None = None,
    chair_member_id: int | None = None,
    recorder_member_id: int | None = None,
    also_counts_as: Sequence[EventKind] | None = None,
    now: datetime,
    caller: Caller,
) -> Event:
    """``server.events.service.update_event_details``, then the taps at its venue in its window are
    decided again (its kinds decide whose meeting it is, e.g. a 支委会's). Raises as it does."""
    event = update_event_details(
        session,
        event_id=event_id,
        title=title,
        topic=topic,
        chair_member_id=chair_member_id,
        recorder_member_id=recorder_member_id,
        also_counts_as=also_counts_as,
        now=now,
        caller=caller,
    )
    if also_counts_as is not None:
        settle_event_taps(session, event, now=now)
    return event


def bind_member_card_counting(
    session: Session,
    *,
    keyring: Keyring,
    member_id: int,
    card_no: str | None,
    uid: str | None,
    now: datetime,
    caller: Caller,
    issuer_mac: bool = False,
) -> CardBinding:
    """``server.cards.service.bind_member_card``, then the card's earlier ``unknown_card`` taps are
    decided again for the member. Raises as it does."""
    binding = bind_member_card(
        session,
        keyring=keyring,
        member_id=member_id,
        card_no=card_no,
        uid=uid,
        now=now,
        caller=caller,
        issuer_mac=issuer_mac,
    )
    settle_card_taps(session, binding, now=now)
    return binding
