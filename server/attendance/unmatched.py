"""Taps outside every check-in window (``no_event``): kept under the card digest only, purged
after a retention period unless a secretary assigns them to an event.

A tap outside a meeting is whereabouts (行踪轨迹, sensitive under PIPL 第二十八条) and not
organisational life, so it is never filed against the member: the row holds the keyed card
digests, and after ``ECARD_UNMATCHED_RETENTION_DAYS`` :func:`purge_unmatched_taps` erases them
(and the masked name shown at the kiosk). The row itself stays, because it holds the kiosk's
sequence number. Taps of unknown cards are purged the same way: they are nobody's attendance.
Assigning a tap makes it attendance (audited) and exempts it from the purge.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, tzinfo

from pydantic import BaseModel
from sqlalchemy import and_, exists, or_, update
from sqlmodel import Session, col, select

from server.attendance.schemas import NamedRef
from server.attendance.service import lock_attendance, merge_tap
from server.audit.service import record
from server.caller import Caller
from server.cards.lifecycle import member_id_for_card_at
from server.errors import (
    TapCardUnbound,
    TapNotFound,
    TapNotUnmatched,
    TapPurged,
)
from server.events.service import require_visible_event
from server.inputs import required_reason
from server.orgs.tree import subtree_cte
from server.records.attendance import Attendance
from server.records.evidence import TapEvidence
from server.records.kiosks import Kiosk
from server.records.taps import Tap
from server.records.venues import Venue
from server.vocabulary import AttendanceSource, RejectionCode, TapRedecision

log = logging.getLogger(__name__)

PURGE_JOB = "purge_unmatched_taps"

PURGED_CODES = (RejectionCode.NO_EVENT, RejectionCode.UNKNOWN_CARD)
"""Rejected taps whose card digests are erased after the retention period. Other rejections
(a lost card turning up, a clone) are evidence and keep theirs."""


class UnmatchedTap(BaseModel):
    tap_id: int
    occurred_at: datetime
    received_at: datetime
    kiosk_id: str
    venue: NamedRef
    member_name: str | None  # masked, as the kiosk showed it
    card_ref: str  # the first characters of the keyed card digest: tells taps of one card apart
    purge_after: datetime


def list_unmatched_taps(
    session: Session,
    *,
    caller: Caller,
    org_id: int | None,
    since: datetime,
    until: datetime,
    retention: timedelta,
    tz: tzinfo,
    limit: int = 500,
) -> list[UnmatchedTap]:
    """Unmatched taps of bound cards at venues of ``org_id``'s subtree (None: everywhere, for an
    unscoped caller only), newest first: the taps a secretary may assign. An organisation outside
    the caller's scope has none."""
    root = org_id
    if root is None and caller.scope.org_ids is not None:
        return []
    query = (
        select(Tap, Venue)
        .join(Kiosk, col(Kiosk.id) == col(Tap.kiosk_id))
        .join(Venue, col(Venue.id) == col(Kiosk.venue_id))
        .where(
            Tap.code == RejectionCode.NO_EVENT,
            col(Tap.event_id).is_(None),  # one decided again since counts already
            col(Tap.occurred_at) >= since,
            col(Tap.occurred_at) < until,
            or_(col(Tap.card_no_hmac).is_not(None), col(Tap.uid_hmac).is_not(None)),
        )
        .order_by(col(Tap.occurred_at).desc(), col(Tap.id).desc())
        .limit(limit)
    )
    if root is not None:
        if not caller.sees_org(root):
            return []
        tree = subtree_cte([root])
        query = query.where(col(Venue.org_id).in_(select(tree.c.org_id)))
    rows = []
    for tap, venue in session.exec(query).all():
        assert tap.id is not None
        assert tap.occurred_at is not None
        assert tap.kiosk_id is not None
        assert venue.id is not None
        rows.append(
            UnmatchedTap(
                tap_id=tap.id,
                occurred_at=tap.occurred_at.astimezone(tz),
                received_at=tap.received_at.astimezone(tz),
                kiosk_id=tap.kiosk_id,
                venue=NamedRef(id=venue.id, name=venue.name),
                member_name=tap.display_member_name,
                card_ref=(tap.card_no_hmac or tap.uid_hmac or "")[:8],
                purge_after=(tap.received_at + retention).astimezone(tz),
            )
        )
    return rows


def _sees_tap(session: Session, tap: Tap, *, caller: Caller) -> bool:
    """Whether the tap was made at a venue of the caller's scope: the same taps the list shows
    (a tap at another organisation's kiosk is theirs to assign, and looks missing here)."""
    kiosk = session.get(Kiosk, tap.kiosk_id) if tap.kiosk_id is not None else None
    venue = session.get(Venue, kiosk.venue_id) if kiosk is not None else None
    return venue is not None and caller.sees_org(venue.org_id)


def assign_unmatched_tap(
    session: Session,
    *,
    tap_id: int,
    event_id: int,
    reason: str,
    caller: Caller,
    now: datetime,
) -> Attendance:
    """A secretary files an out-of-window tap as the card holder's presence at an event (the
    kiosk clock was wrong, the meeting overran). The holder is whoever the card was bound to at
    the tap's time. Audited; the tap is then kept past the retention period.

    Raises:
        TapNotFound, EventNotFound (also outside the caller's scope).
        ReasonRequired.
        TapNotUnmatched: the tap was not rejected as ``no_event``.
        TapPurged: its card digests were already erased.
        TapCardUnbound: no binding held the card at the tap's time.
    """
    tap = session.get(Tap, tap_id)
    if tap is None or not _sees_tap(session, tap, caller=caller):
        raise TapNotFound(f"刷卡记录 {tap_id} 不存在")
    event = require_visible_event(session, event_id, caller=caller)
    text = required_reason(reason, missing="归入活动须说明理由")
    if tap.code != RejectionCode.NO_EVENT or tap.occurred_at is None or tap.event_id is not None:
        raise TapNotUnmatched()
    if tap.card_no_hmac is None and tap.uid_hmac is None:
        raise TapPurged()
    member_id = member_id_for_card_at(
        session, card_no_hmac=tap.card_no_hmac, uid_hmac=tap.uid_hmac, at=tap.occurred_at
    )
    if member_id is None:
        raise TapCardUnbound()
    # The tap now says what it counts as, and that a person decided it (never decided again).
    tap.event_id, tap.member_id = event_id, member_id
    tap.redecision, tap.redecided_at = TapRedecision.ASSIGNED, now
    session.add(tap)
    attendance = lock_attendance(session, event_id=event_id, member_id=member_id)
    if attendance is None:
        attendance = Attendance(
            event_id=event_id,
            member_id=member_id,
            first_tap_at=tap.occurred_at,
            last_tap_at=tap.occurred_at,
            tap_count=1,
            first_tap_id=tap_id,
            last_tap_id=tap_id,
            source=AttendanceSource.ASSIGNED,
            note=text,
            recorded_by=caller.actor.ref,
        )
    else:
        merge_tap(attendance, tap_id=tap_id, at=tap.occurred_at)
    session.add(attendance)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="tap.assign",
        object_type="tap",
        object_id=tap_id,
        org_id=event.org_id,
        at=now,
        reason=text,
        detail={"event_id": event_id, "member_id": member_id, "attendance_id": attendance.id},
    )
    return attendance


def purge_unmatched_taps(session: Session, *, now: datetime, retention: timedelta) -> int:
    """Erase the card digests (and masked name) of unmatched and unknown-card taps received
    before ``now - retention`` that no attendance refers to. Returns how many taps were purged."""
    cutoff = now - retention
    referenced = exists().where(
        or_(col(Attendance.first_tap_id) == col(Tap.id), col(Attendance.last_tap_id) == col(Tap.id))
    )
    statement = (
        update(Tap)
        .where(
            and_(
                col(Tap.code).in_(PURGED_CODES),
                col(Tap.received_at) < cutoff,
                or_(col(Tap.card_no_hmac).is_not(None), col(Tap.uid_hmac).is_not(None)),
                col(Tap.event_id).is_(None),  # it counts for an event (decided again, or assigned)
                ~referenced,
            )
        )
        .values(card_no_hmac=None, uid_hmac=None, display_member_name=None)
        .execution_options(synchronize_session=False)
    )
    result = session.exec(statement)
    # The sealed signed bytes hold the card identifiers too, so they go with the digests; the
    # signature and the chain link stay (``server.evidence`` counts such a tap as purged).
    purged = select(Tap.id).where(
        col(Tap.code).in_(PURGED_CODES), col(Tap.card_no_hmac).is_(None), col(Tap.uid_hmac).is_(None)
    )
    session.exec(
        update(TapEvidence)
        .where(col(TapEvidence.sealed).is_not(None), col(TapEvidence.tap_id).in_(purged))
        .values(sealed=None, nonce=None, purged_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)
