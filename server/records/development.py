"""Member development (发展党员): a person's way from 入党申请人 to 正式党员, with the date of each step."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum


class DevelopmentStage(StrEnum):
    """The stages of 《中国共产党发展党员工作细则》, in order."""

    APPLICANT = "applicant"  # 入党申请人
    ACTIVIST = "activist"  # 入党积极分子
    CANDIDATE = "candidate"  # 发展对象
    PROBATIONARY = "probationary"  # 预备党员
    FULL = "full"  # 正式党员


DEVELOPMENT_STAGE_ORDER: tuple[DevelopmentStage, ...] = tuple(DevelopmentStage)

DEVELOPMENT_STAGE_LABELS: dict[DevelopmentStage, str] = {
    DevelopmentStage.APPLICANT: "入党申请人",
    DevelopmentStage.ACTIVIST: "入党积极分子",
    DevelopmentStage.CANDIDATE: "发展对象",
    DevelopmentStage.PROBATIONARY: "预备党员",
    DevelopmentStage.FULL: "正式党员",
}


class DevelopmentRecord(SQLModel, table=True):
    """One person's development record, kept by the organisation that develops them.

    ``stage`` is the latest stage reached; each stage's date is kept (``applied_on`` …
    ``full_on``), and ``talked_on`` is the 谈话 after the application. ``member_id`` links the
    member created (or named) when they are admitted as 预备党员.
    """

    __tablename__ = "development_record"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    stage: DevelopmentStage = Field(sa_type=string_enum(DevelopmentStage), index=True)
    applied_on: date  # 申请日期 (入党申请书 received)
    talked_on: date | None = Field(default=None)  # 谈话日期
    activist_on: date | None = Field(default=None)  # 确定为入党积极分子
    candidate_on: date | None = Field(default=None)  # 确定为发展对象
    admitted_on: date | None = Field(default=None)  # 接收为预备党员 (支部大会)
    full_on: date | None = Field(default=None)  # 转正
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)
