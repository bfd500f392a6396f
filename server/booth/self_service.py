"""Member self-service through the same 留言亭 link: my organisational life this year (from the
ledgers), my upcoming meetings and 请假 for one of them (into the secretary's queue), the state of
my 组织关系转入 request, and my dues this year.

The member acts as a :class:`~server.caller.Caller` of their own: role ``member``, scoped to their
organisation and the ones above it (the organisations whose meetings they are invited to), named
``member:<id>`` in the audit log. The ledgers and the leave service decide everything as they do
for secretaries; this module only reads what concerns the member and hands the 请假 on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlmodel import Session, col, or_, select

from server.booth.service import Visitor
from server.caller import Actor, Caller, Scope
from server.leave.service import request_leave
from server.ledgers.periods import period_containing
from server.ledgers.schemas import HistoryEventRow
from server.ledgers.service import build_member_history
from server.orgs.tree import ancestor_ids
from server.records.dues import DuesMonth
from server.records.transfers import TransferRequest
from server.transfers.states import STATE_LABELS
from server.vocabulary import Cadence, LeaveStatus, UserRole

UPCOMING_SHOWN = 5
PAST_SHOWN = 12


def member_caller(session: Session, visitor: Visitor) -> Caller:
    """The member as a caller: their organisation and its ancestors, nothing else."""
    return Caller(
        actor=Actor(f"member:{visitor.member_id}", visitor.member_name),
        role=UserRole.MEMBER,
        org_id=visitor.org_id,
        scope=Scope(frozenset(ancestor_ids(session, visitor.org_id))),
        may_approve=False,
    )


@dataclass(frozen=True)
class UpcomingMeeting:
    row: HistoryEventRow
    leave_status: LeaveStatus | None  # a pending or approved 请假 already asked


@dataclass(frozen=True)
class DuesLine:
    month: str  # YYYY-MM
    standard_fen: int | None
    paid_fen: int

    @property
    def settled(self) -> bool:
        return self.standard_fen == 0 or (self.paid_fen > 0 and self.paid_fen >= (self.standard_fen or 0))


@dataclass(frozen=True)
class SelfService:
    year: int
    expected: int
    present: int
    on_leave: int
    absent: int
    past: list[HistoryEventRow]  # this year's meetings so far, newest first
    upcoming: list[UpcomingMeeting]
    transfer_state: str  # the label of the latest 转入 request, or ""
    dues: list[DuesLine]


def my_self_service(session: Session, *, visitor: Visitor, now: datetime, tz: tzinfo) -> SelfService:
    year = period_containing(now, Cadence.YEARLY, tz)
    history = build_member_history(
        session,
        member_id=visitor.member_id,
        period=year,
        caller=member_caller(session, visitor),
        now=now,
        tz=tz,
    )
    past = [r for r in history.events if r.outcome != "upcoming" and r.start_at <= now]
    asked = {
        leave.event_id: leave.status
        for leave in history.leave
        if leave.status in (LeaveStatus.PENDING, LeaveStatus.APPROVED)
    }
    upcoming = sorted(
        (r for r in history.events if r.start_at > now and (r.expected or r.event_id in asked)),
        key=lambda r: r.start_at,
    )[:UPCOMING_SHOWN]
    transfer = session.exec(
        select(TransferRequest)
        .where(
            or_(
                col(TransferRequest.member_id) == visitor.member_id,
                col(TransferRequest.uid_hmac) == visitor.uid_hmac,
            )
        )
        .order_by(col(TransferRequest.id).desc())
        .limit(1)
    ).first()
    dues = session.exec(
        select(DuesMonth)
        .where(DuesMonth.member_id == visitor.member_id, col(DuesMonth.month).startswith(f"{year.year}-"))
        .order_by(col(DuesMonth.month))
    ).all()
    return SelfService(
        year=year.year,
        expected=sum(r.outcome in ("present", "on_leave", "absent") for r in past),
        present=sum(r.outcome == "present" for r in past),
        on_leave=sum(r.outcome == "on_leave" for r in past),
        absent=sum(r.outcome == "absent" for r in past),
        past=sorted(past, key=lambda r: r.start_at, reverse=True)[:PAST_SHOWN],
        upcoming=[UpcomingMeeting(r, asked.get(r.event_id)) for r in upcoming],
        transfer_state=STATE_LABELS[transfer.state] if transfer is not None else "",
        dues=[DuesLine(d.month, d.standard_fen, d.paid_fen) for d in dues],
    )


def ask_leave(session: Session, *, visitor: Visitor, event_id: int, reason: str, now: datetime) -> None:
    """请假 for one of the member's meetings: a pending request in the secretary's queue (the leave
    service checks the event, the invitation and the time, and audits it in the member's name)."""
    request_leave(
        session,
        event_id=event_id,
        member_id=visitor.member_id,
        reason=reason,
        caller=member_caller(session, visitor),
        now=now,
    )
