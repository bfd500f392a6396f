"""Recording a person's development (发展党员), stage by stage.

Rules (《中国共产党发展党员工作细则》; docs/supervision.md, 发展党员):

* Stages follow one another: 入党申请人 → 入党积极分子 → 发展对象 → 预备党员 → 正式党员; a stage
  can only be the next one (``development_stage_out_of_order``).
* A stage's date is not in the future (``development_date_in_future``) and not before the
  previous stage's (``development_date_before_previous``); the 谈话 is not before the application.
* The timing rules (talk within a month, a year as 积极分子, 转正 after a year) are *not* refused
  here: the branch may have had its reasons, and the record must say what happened. The
  supervision sweep reports them (``server/supervision/development_rules.py``).
* Admitted as 预备党员, the person becomes a member of the record's organisation (or is linked to
  an existing member); at 转正 that member becomes a 正式党员 from the 转正 date.
* Every change is audited; the service never commits.
"""

from __future__ import annotations

from datetime import date, datetime, time, tzinfo

from sqlmodel import Session

from server.audit.service import record
from server.caller import Caller
from server.errors import (
    DevelopmentDateBeforePrevious,
    DevelopmentDateInFuture,
    DevelopmentRecordNotFound,
    DevelopmentStageOutOfOrder,
    InvalidInput,
    MemberNotActive,
)
from server.inputs import clean_text
from server.orgs.membership import change_member_category
from server.orgs.service import add_member, require_visible_member, require_visible_organisation
from server.records.development import (
    DEVELOPMENT_STAGE_LABELS,
    DEVELOPMENT_STAGE_ORDER,
    DevelopmentRecord,
    DevelopmentStage,
)
from server.vocabulary import MemberCategory, MemberStatus

EARLIEST = date(1949, 10, 1)

STAGE_DATE_FIELD: dict[DevelopmentStage, str] = {
    DevelopmentStage.APPLICANT: "applied_on",
    DevelopmentStage.ACTIVIST: "activist_on",
    DevelopmentStage.CANDIDATE: "candidate_on",
    DevelopmentStage.PROBATIONARY: "admitted_on",
    DevelopmentStage.FULL: "full_on",
}

DATE_LABELS: dict[str, str] = {
    "applied_on": "申请日期",
    "talked_on": "谈话日期",
    "activist_on": "确定为入党积极分子日期",
    "candidate_on": "确定为发展对象日期",
    "admitted_on": "接收为预备党员日期",
    "full_on": "转正日期",
}


def stage_date(entry: DevelopmentRecord, stage: DevelopmentStage) -> date | None:
    value = getattr(entry, STAGE_DATE_FIELD[stage])
    assert value is None or isinstance(value, date)
    return value


def _check_date(on: date, *, today: date, field: str) -> None:
    if on > today:
        raise DevelopmentDateInFuture(f"{DATE_LABELS[field]}不能晚于今天")
    if on < EARLIEST:
        raise InvalidInput(f"{DATE_LABELS[field]}不能早于1949年10月1日")


def add_applicant(
    session: Session,
    *,
    name: str,
    org_id: int,
    applied_on: date,
    caller: Caller,
    now: datetime,
    tz: tzinfo,
) -> DevelopmentRecord:
    """Open a record for a person whose 入党申请书 the organisation received on ``applied_on``.

    Raises OrganisationNotFound (also outside the caller's scope), DevelopmentDateInFuture,
    InvalidInput (name empty or too long, date before 1949-10-01).
    """
    require_visible_organisation(session, org_id, caller=caller)
    clean_name = clean_text(name, field="姓名", max_length=100)
    _check_date(applied_on, today=now.astimezone(tz).date(), field="applied_on")
    entry = DevelopmentRecord(
        name=clean_name,
        org_id=org_id,
        stage=DevelopmentStage.APPLICANT,
        applied_on=applied_on,
        created_at=now,
        updated_at=now,
    )
    session.add(entry)
    session.flush()
    assert entry.id is not None
    record(
        session,
        actor=caller.actor,
        action="development.add",
        object_type="development_record",
        object_id=entry.id,
        org_id=org_id,
        at=now,
        detail={"applied_on": applied_on.isoformat()},
    )
    return entry


def require_visible_record(session: Session, record_id: int, *, caller: Caller) -> DevelopmentRecord:
    entry = session.get(DevelopmentRecord, record_id)
    if entry is None or not caller.sees_org(entry.org_id):
        raise DevelopmentRecordNotFound(f"发展党员记录 {record_id} 不存在")
    return entry


def record_talk(
    session: Session, *, record_id: int, on: date, caller: Caller, now: datetime, tz: tzinfo
) -> DevelopmentRecord:
    """Record the 谈话 with the applicant (the organisation's talk after the application).

    Raises DevelopmentRecordNotFound, DevelopmentDateInFuture, DevelopmentDateBeforePrevious.
    """
    entry = require_visible_record(session, record_id, caller=caller)
    _check_date(on, today=now.astimezone(tz).date(), field="talked_on")
    if on < entry.applied_on:
        raise DevelopmentDateBeforePrevious("谈话日期不能早于申请日期")
    before = entry.talked_on
    entry.talked_on = on
    entry.updated_at = now
    session.add(entry)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="development.talk",
        object_type="development_record",
        object_id=record_id,
        org_id=entry.org_id,
        at=now,
        detail={"from": before.isoformat() if before else None, "to": on.isoformat()},
    )
    return entry


def record_stage(
    session: Session,
    *,
    record_id: int,
    stage: DevelopmentStage,
    on: date,
    caller: Caller,
    now: datetime,
    tz: tzinfo,
    member_id: int | None = None,
) -> DevelopmentRecord:
    """Move the record to ``stage`` (the next one) as of ``on``.

    For 预备党员, ``member_id`` names an existing active member of the caller's scope to link;
    without it, a 预备党员 member is added to the record's organisation, in it from ``on``.
    For 正式党员, the linked member becomes a full member from ``on``.

    Raises DevelopmentRecordNotFound, DevelopmentStageOutOfOrder, DevelopmentDateInFuture,
    DevelopmentDateBeforePrevious; MemberNotFound / MemberNotActive for ``member_id``.
    """
    entry = require_visible_record(session, record_id, caller=caller)
    current = DEVELOPMENT_STAGE_ORDER.index(entry.stage)
    wanted = DEVELOPMENT_STAGE_ORDER.index(stage)
    if wanted != current + 1:
        raise DevelopmentStageOutOfOrder(
            f"当前阶段为“{DEVELOPMENT_STAGE_LABELS[entry.stage]}”，"
            + (
                f"下一阶段应为“{DEVELOPMENT_STAGE_LABELS[DEVELOPMENT_STAGE_ORDER[current + 1]]}”"
                if current + 1 < len(DEVELOPMENT_STAGE_ORDER)
                else "已是最后阶段"
            )
        )
    field = STAGE_DATE_FIELD[stage]
    _check_date(on, today=now.astimezone(tz).date(), field=field)
    previous = stage_date(entry, entry.stage)
    if previous is not None and on < previous:
        raise DevelopmentDateBeforePrevious(
            f"{DATE_LABELS[field]}不能早于{DATE_LABELS[STAGE_DATE_FIELD[entry.stage]]}（{previous.isoformat()}）"
        )
    effective = datetime.combine(on, time(), tzinfo=tz)
    if stage == DevelopmentStage.PROBATIONARY:
        if member_id is not None:
            member = require_visible_member(session, member_id, caller=caller)
            if member.status != MemberStatus.ACTIVE:
                raise MemberNotActive()
        else:
            member = add_member(
                session,
                name=entry.name,
                org_id=entry.org_id,
                category=MemberCategory.PROBATIONARY,
                joined_org_at=effective,
                now=now,
            )
        entry.member_id = member.id
    elif stage == DevelopmentStage.FULL and entry.member_id is not None:
        change_member_category(
            session,
            member_id=entry.member_id,
            category=MemberCategory.FULL,
            at=effective,
            caller=caller,
            reason=f"发展党员记录 {record_id} 转正",
        )
    setattr(entry, field, on)
    entry.stage = stage
    entry.updated_at = now
    session.add(entry)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="development.stage",
        object_type="development_record",
        object_id=record_id,
        org_id=entry.org_id,
        at=now,
        detail={"stage": stage.value, "on": on.isoformat(), "member_id": entry.member_id},
    )
    return entry
