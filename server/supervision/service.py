"""Stored reminders (督查督办): the daily sweep keeps one reminder per finding, people handle them.

A reminder's life (docs/supervision.md §5):

* The sweep turns each rule family's findings into reminders by identity ``(rule, subject,
  period)``: a new identity opens a reminder; one found again is updated (level and message; a
  level change is recorded); an open or acknowledged reminder whose identity is no longer found
  is **resolved by itself**; a resolved one found again is reopened. Only the families the sweep
  evaluated are resolved, so a family left out of a run never clears its reminders.
* The branch **acknowledges** it (已知悉，整改中); that stops escalation, not the rule: it stays
  until its condition clears.
* An open reminder nobody acknowledged within ``escalate_after`` working days (counted from when
  it opened, or was last sent down) is **escalated**: it appears in the 督办 queue of the
  organisation above the one responsible. The superior may **send it down** again with a note,
  which restarts the clock.

Every change appends to the reminder's history; what people do is also in the audit log. The
sweep runs as the system and writes no audit entries (its history rows are its trace).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import TypeVar

from sqlalchemy import ColumnElement, bindparam, insert, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from server.audit.service import record as audit
from server.caller import Caller
from server.errors import InvalidInput, ReminderNotEscalated, ReminderNotFound, ReminderNotOpen
from server.labels import REMINDER_LEVEL_LABELS, RULE_FAMILY_LABELS
from server.notify.service import DigestItem
from server.orgs.service import require_visible_organisation
from server.orgs.tree import subtree_cte
from server.records.idlists import one_of
from server.records.orgs import Organisation
from server.records.supervision import Reminder, ReminderHistory
from server.supervision.findings import Finding
from server.transfers.calendar import WorkCalendar
from server.vocabulary import ReminderAction, ReminderLevel, ReminderState, RuleFamily

T = TypeVar("T")

SYSTEM_ACTOR = "system"
MAX_MESSAGE = 500
MAX_NOTE = 500
FLUSH_EVERY = 2000
DIGEST_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class EscalationPolicy:
    """When an unacknowledged reminder goes up: after ``after_working_days`` working days."""

    calendar: WorkCalendar
    after_working_days: int = 5


@dataclass
class SweepResult:
    found: int = 0
    opened: int = 0
    updated: int = 0
    reopened: int = 0
    resolved: int = 0
    escalated: int = 0
    digests: int = 0

    def summary(self) -> str:
        return (
            f"发现{self.found}项：新增{self.opened}，更新{self.updated}，再次出现{self.reopened}，"
            f"自动解决{self.resolved}，上报督办{self.escalated}；每日汇总{self.digests}份"
        )


@dataclass
class _Live:
    """What the sweep needs of a stored reminder (plain columns: the city has ~10⁵ of them)."""

    id: int
    identity: tuple[str, str, str]
    level: ReminderLevel
    message: str
    due_on: date | None
    org_id: int
    state: ReminderState
    clock_from: datetime
    escalated_to: int | None


LIVE_COLUMNS = (
    col(Reminder.id),
    col(Reminder.rule),
    col(Reminder.subject),
    col(Reminder.period),
    col(Reminder.level),
    col(Reminder.message),
    col(Reminder.due_on),
    col(Reminder.org_id),
    col(Reminder.state),
    col(Reminder.clock_from),
    col(Reminder.escalated_to),
)


def apply_findings(
    session: Session,
    findings: Iterable[Finding],
    *,
    families: Collection[RuleFamily],
    now: datetime,
    escalation: EscalationPolicy,
    tz: tzinfo,
) -> SweepResult:
    """Bring the stored reminders of ``families`` in line with ``findings`` (found as of ``now``),
    then escalate what waited too long. Writes with bulk statements; the caller commits."""
    result = SweepResult()
    wanted: dict[tuple[str, str, str], Finding] = {}
    for finding in findings:
        if finding.family in families:
            wanted[finding.identity] = finding
    result.found = len(wanted)
    live = {
        row.identity: row
        for row in _live_rows(
            session,
            col(Reminder.family).in_(list(families)),
            col(Reminder.state) != ReminderState.RESOLVED,
        )
    }
    history: list[dict[str, object]] = []
    resolved_ids: list[int] = []
    seen_ids: list[int] = []
    changes: list[dict[str, object]] = []
    for identity, row in live.items():
        again = wanted.get(identity)
        if again is None:
            resolved_ids.append(row.id)
            history.append(_history(row.id, ReminderAction.RESOLVED, "情况已消除，系统自动解决"))
            row.state = ReminderState.RESOLVED
            continue
        seen_ids.append(row.id)
        if row.level != again.level:
            history.append(
                _history(row.id, ReminderAction.LEVEL_CHANGED, f"{row.level.value} → {again.level.value}")
            )
        if (row.level, row.message, row.due_on, row.org_id) != _content(again):
            changes.append({"rid": row.id, **_content_values(again)})
    result.resolved, result.updated = len(resolved_ids), len(changes)
    fresh = [finding for identity, finding in wanted.items() if identity not in live]
    back = {row.identity: row for row in _resolved_rows(session, fresh)}
    reopened: list[dict[str, object]] = []
    new_rows: list[dict[str, object]] = []
    for finding in fresh:
        earlier = back.get(finding.identity)
        if earlier is not None:
            reopened.append({"rid": earlier.id, **_content_values(finding)})
            history.append(_history(earlier.id, ReminderAction.REOPENED, ""))
        else:
            new_rows.append(
                {
                    "rule": finding.rule,
                    "family": finding.family,
                    "subject": finding.subject,
                    "period": finding.period,
                    **_content_values(finding),
                    "state": ReminderState.OPEN,
                    "opened_at": now,
                    "last_found_at": now,
                    "clock_from": now,
                    "acknowledged_by": "",
                }
            )
    result.reopened, result.opened = len(reopened), len(new_rows)
    for ids in _chunks(resolved_ids):
        session.execute(
            update(Reminder)
            .where(col(Reminder.id).in_(ids))
            .values(state=ReminderState.RESOLVED, resolved_at=now)
        )
    for ids in _chunks(seen_ids):
        session.execute(update(Reminder).where(col(Reminder.id).in_(ids)).values(last_found_at=now))
    _update_each(session, changes, {})
    _update_each(
        session,
        reopened,
        {
            "state": ReminderState.OPEN,
            "resolved_at": None,
            "clock_from": now,
            "last_found_at": now,
            "acknowledged_at": None,
            "acknowledged_by": "",
            "escalated_to": None,
            "escalated_at": None,
        },
    )
    for rows in _chunks(new_rows):
        inserted = session.execute(
            insert(Reminder).returning(col(Reminder.id), sort_by_parameter_order=True), rows
        )
        history.extend(_history(rid, ReminderAction.OPENED, "") for rid in inserted.scalars())
    open_rows = [row for row in live.values() if row.state == ReminderState.OPEN]
    escalations = _escalations(session, open_rows, now=now, escalation=escalation, tz=tz)
    _update_each(
        session, [{"rid": rid, "escalated_to": to} for rid, to in escalations], {"escalated_at": now}
    )
    note = f"超过{escalation.after_working_days}个工作日未处理"
    history.extend(_history(rid, ReminderAction.ESCALATED, note) for rid, _ in escalations)
    result.escalated = len(escalations)
    _write_history(session, history, now=now, actor=SYSTEM_ACTOR)
    session.expire_all()  # reminders loaded earlier in this session see the new columns
    return result


def digest_items(session: Session, *, now: datetime) -> list[DigestItem]:
    """What today's digests list: every open reminder at 警示 or 严重, and whatever opened or was
    escalated today (notices included). Acknowledged reminders are being handled: left out."""
    since = now - DIGEST_WINDOW
    rows = session.connection().execute(
        sa_select(
            col(Reminder.org_id),
            col(Reminder.family),
            col(Reminder.level),
            col(Reminder.message),
            col(Reminder.escalated_to),
        )
        .where(
            col(Reminder.state) == ReminderState.OPEN,
            or_(
                col(Reminder.level).in_((ReminderLevel.WARNING, ReminderLevel.ALERT)),
                col(Reminder.opened_at) >= since,
                col(Reminder.escalated_at) >= since,
            ),
        )
        .order_by(col(Reminder.org_id), col(Reminder.id))
    )
    items: list[DigestItem] = []
    for org_id, family, level, message, escalated_to in rows:
        title = RULE_FAMILY_LABELS[RuleFamily(family)] + (
            "（已上报督办）" if escalated_to is not None else ""
        )
        items.append(
            DigestItem(
                org_id=org_id, level=REMINDER_LEVEL_LABELS[ReminderLevel(level)], title=title, message=message
            )
        )
    return items


def acknowledge(
    session: Session, reminder_id: int, *, caller: Caller, now: datetime, note: str = ""
) -> Reminder:
    """The responsible organisation says it is on it: no more escalation.

    Raises:
        ReminderNotFound: no such reminder, or not the caller's to see.
        ReminderNotOpen: already acknowledged or resolved.
    """
    row = _visible(session, reminder_id, caller=caller)
    if row.state != ReminderState.OPEN:
        raise ReminderNotOpen()
    note = _bounded_note(note, required=False)
    row.state, row.acknowledged_at, row.acknowledged_by = ReminderState.ACKNOWLEDGED, now, caller.actor.ref
    session.add(row)
    _write_history(
        session, [_history(reminder_id, ReminderAction.ACKNOWLEDGED, note)], now=now, actor=caller.actor.ref
    )
    audit(
        session,
        actor=caller.actor,
        action="reminder.acknowledge",
        object_type="reminder",
        object_id=row.id or 0,
        org_id=row.org_id,
        at=now,
        reason=note,
        detail={"rule": row.rule},
    )
    return row


def send_down(session: Session, reminder_id: int, *, caller: Caller, now: datetime, note: str) -> Reminder:
    """The superior hands an escalated reminder back to the organisation responsible, with a note;
    its escalation clock starts again.

    Raises:
        ReminderNotFound: no such reminder, or its 督办 queue is not the caller's.
        ReminderNotEscalated: it is not in a 督办 queue (never escalated, sent down or resolved).
        InvalidInput: no note, or a note over 500 characters.
    """
    row = session.get(Reminder, reminder_id)
    if row is None or not caller.sees_org(row.escalated_to if row.escalated_to is not None else row.org_id):
        raise ReminderNotFound()
    if row.escalated_to is None or row.state == ReminderState.RESOLVED:
        raise ReminderNotEscalated()
    note = _bounded_note(note, required=True)
    superior = row.escalated_to
    row.escalated_to, row.escalated_at, row.clock_from = None, None, now
    session.add(row)
    _write_history(
        session, [_history(reminder_id, ReminderAction.SENT_DOWN, note)], now=now, actor=caller.actor.ref
    )
    audit(
        session,
        actor=caller.actor,
        action="reminder.send_down",
        object_type="reminder",
        object_id=row.id or 0,
        org_id=superior,
        at=now,
        reason=note,
        detail={"rule": row.rule, "org_id": row.org_id},
    )
    return row


def reminders_of(
    session: Session,
    *,
    org_id: int,
    caller: Caller,
    states: Collection[ReminderState] = (ReminderState.OPEN, ReminderState.ACKNOWLEDGED),
    family: RuleFamily | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[Reminder]:
    """The reminders of ``org_id``'s subtree, worst and oldest first.

    Raises:
        OrganisationNotFound: ``org_id`` is not the caller's to see.
    """
    _require_visible_org(session, org_id, caller=caller)
    tree = subtree_cte([org_id])
    query = select(Reminder).where(
        col(Reminder.org_id).in_(select(tree.c.org_id)), col(Reminder.state).in_(states)
    )
    if family is not None:
        query = query.where(Reminder.family == family)
    query = query.order_by(col(Reminder.opened_at), col(Reminder.id)).offset(offset).limit(limit)
    return list(session.exec(query))


def supervision_queue(session: Session, *, org_id: int, caller: Caller) -> list[Reminder]:
    """The 督办 queue of ``org_id`` and the committees below it: escalated, not yet resolved.

    Raises:
        OrganisationNotFound: ``org_id`` is not the caller's to see.
    """
    _require_visible_org(session, org_id, caller=caller)
    tree = subtree_cte([org_id])
    return list(
        session.exec(
            select(Reminder)
            .where(
                col(Reminder.escalated_to).in_(select(tree.c.org_id)),
                Reminder.state != ReminderState.RESOLVED,
            )
            .order_by(col(Reminder.escalated_at), col(Reminder.id))
        )
    )


def history_of(session: Session, reminder_id: int, *, caller: Caller) -> list[ReminderHistory]:
    """A reminder's history, oldest first.

    Raises:
        ReminderNotFound: no such reminder, or not the caller's to see.
    """
    _visible(session, reminder_id, caller=caller)
    return list(
        session.exec(
            select(ReminderHistory)
            .where(ReminderHistory.reminder_id == reminder_id)
            .order_by(col(ReminderHistory.id))
        )
    )


def _content(finding: Finding) -> tuple[ReminderLevel, str, date | None, int]:
    return (finding.level, finding.message[:MAX_MESSAGE], finding.due_on, finding.org_id)


def _content_values(finding: Finding) -> dict[str, object]:
    level, message, due_on, org_id = _content(finding)
    return {"level": level, "message": message, "due_on": due_on, "org_id": org_id}


def _history(reminder_id: int, action: ReminderAction, note: str) -> dict[str, object]:
    return {"reminder_id": reminder_id, "action": action, "note": note}


def _live_rows(session: Session, *conditions: ColumnElement[bool]) -> list[_Live]:
    rows = session.connection().execute(sa_select(*LIVE_COLUMNS).where(*conditions))
    return [
        _Live(
            id=rid or 0,
            identity=(rule, subject, period),
            level=ReminderLevel(level),
            message=message,
            due_on=due_on,
            org_id=org_id,
            state=ReminderState(state),
            clock_from=clock_from,
            escalated_to=escalated_to,
        )
        for (
            rid,
            rule,
            subject,
            period,
            level,
            message,
            due_on,
            org_id,
            state,
            clock_from,
            escalated_to,
        ) in rows
    ]


def _resolved_rows(session: Session, findings: Sequence[Finding]) -> list[_Live]:
    wanted = {finding.identity for finding in findings}
    found: list[_Live] = []
    for condition in one_of(session, col(Reminder.subject), {finding.subject for finding in findings}):
        found += [
            row
            for row in _live_rows(session, condition, col(Reminder.state) == ReminderState.RESOLVED)
            if row.identity in wanted
        ]
    return found


def _update_each(session: Session, rows: list[dict[str, object]], same: dict[str, object]) -> None:
    """One UPDATE per row, sent as executemany: ``rid`` names the row, the rest are its values."""
    if not rows:
        return
    names = [name for name in rows[0] if name != "rid"]
    statement = (
        update(Reminder)
        .where(col(Reminder.id) == bindparam("rid"))
        .values({**{name: bindparam(f"new_{name}") for name in names}, **same})
    )
    for chunk in _chunks(rows):
        session.connection().execute(
            statement, [{"rid": row["rid"], **{f"new_{name}": row[name] for name in names}} for row in chunk]
        )


def _chunks(items: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), FLUSH_EVERY):
        yield items[start : start + FLUSH_EVERY]


def _escalations(
    session: Session, candidates: Sequence[_Live], *, now: datetime, escalation: EscalationPolicy, tz: tzinfo
) -> list[tuple[int, int]]:
    """(reminder id, superior organisation) for each open reminder that waited too long."""
    today = now.astimezone(tz).date()
    due = [
        row
        for row in candidates
        if row.escalated_to is None
        and escalation.calendar.working_days_between(row.clock_from.astimezone(tz).date(), today)
        >= escalation.after_working_days
    ]
    if not due:
        return []
    parents = _parents(session, {row.org_id for row in due})
    # The top of the tree has nobody to escalate to.
    return [(row.id, parents[row.org_id]) for row in due if row.org_id in parents]


def _parents(session: Session, org_ids: set[int]) -> dict[int, int]:
    parents: dict[int, int] = {}
    for condition in one_of(session, col(Organisation.id), org_ids):
        for org_id, parent_id in session.exec(
            select(Organisation.id, Organisation.parent_id).where(condition)
        ):
            if org_id is not None and parent_id is not None:
                parents[org_id] = parent_id
    return parents


def _write_history(session: Session, entries: list[dict[str, object]], *, now: datetime, actor: str) -> None:
    """Append ``entries`` (:func:`_history`) to the reminders' history, in bulk."""
    for chunk in _chunks(entries):
        session.execute(insert(ReminderHistory), [{**entry, "at": now, "actor": actor} for entry in chunk])


def _visible(session: Session, reminder_id: int, *, caller: Caller) -> Reminder:
    row = session.get(Reminder, reminder_id)
    if row is None or not (caller.sees_org(row.org_id) or caller.sees_org(row.escalated_to)):
        raise ReminderNotFound()
    return row


def _require_visible_org(session: Session, org_id: int, *, caller: Caller) -> None:
    require_visible_organisation(session, org_id, caller=caller)


def _bounded_note(note: str, *, required: bool) -> str:
    note = note.strip()
    if required and not note:
        raise InvalidInput("请填写督办意见")
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"说明不能超过{MAX_NOTE}个字")
    return note
