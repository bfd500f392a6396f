"""Reminders endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from server.deps import ClockDep, PrincipalDep, SessionDep, SettingsDep
from server.errors import OrgRequired
from server.ledgers.cadence import CadencePolicy
from server.reminders.models import ReminderReport
from server.reminders.service import build_reminders

router = APIRouter(prefix="/api/v1", tags=["reminders"])


@router.get("/reminders")
def reminders(
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    clock: ClockDep,
    org: Annotated[int | None, Query(description="Organisation id; default: the token's")] = None,
) -> ReminderReport:
    """Cadence gaps and the six-month rule for the organisation and everything below it."""
    org_id = org if org is not None else principal.org_id
    if org_id is None:
        raise OrgRequired("请指定党组织：?org=ID")
    return build_reminders(
        session,
        org_id=org_id,
        viewer=principal,
        now=clock(),
        tz=settings.tz,
        policy=CadencePolicy(lecture=settings.lecture_cadence),
    )
