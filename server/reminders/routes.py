"""Reminders endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from server.deps import ReadRequestDep
from server.errors import OrgRequired
from server.inputs import RowId
from server.ledgers.cadence import CadencePolicy
from server.reminders.schemas import ReminderReport
from server.reminders.service import build_reminders

router = APIRouter(prefix="/api/v1", tags=["reminders"])


@router.get("/reminders")
def reminders(
    ctx: ReadRequestDep,
    org: Annotated[RowId | None, Query(description="Organisation id; default: the token's")] = None,
) -> ReminderReport:
    """Cadence gaps and the six-month rule for the organisation and everything below it."""
    org_id = org if org is not None else ctx.caller.org_id
    if org_id is None:
        raise OrgRequired("请指定党组织：?org=ID")
    return build_reminders(
        ctx.session,
        org_id=org_id,
        caller=ctx.caller,
        now=ctx.now,
        tz=ctx.tz,
        policy=CadencePolicy(lecture=ctx.settings.lecture_cadence),
    )
