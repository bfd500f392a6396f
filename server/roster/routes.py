"""Roster upload endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, UploadFile

from server.deps import KeyringDep, RequestDep
from server.errors import RosterTooLarge
from server.roster.schemas import RosterReport
from server.roster.service import import_roster

router = APIRouter(prefix="/api/v1/imports", tags=["imports"])

MAX_ROSTER_BYTES = 32 * 1024 * 1024  # a 250,000-member city roster is about 10 MB


@router.post("/roster")
def upload_roster(
    file: UploadFile,
    ctx: RequestDep,
    keyring: KeyringDep,
    dry_run: Annotated[bool, Query(description="Check and report, write nothing.")] = False,
) -> RosterReport:
    """Import a 花名册 (.xlsx): every row or none; the same file again changes nothing."""
    data = file.file.read(MAX_ROSTER_BYTES + 1)
    if len(data) > MAX_ROSTER_BYTES:
        raise RosterTooLarge(f"花名册文件不能超过{MAX_ROSTER_BYTES // (1024 * 1024)} MB")
    return import_roster(
        ctx.session,
        keyring=keyring,
        data=data,
        caller=ctx.caller,
        org_id=None,
        now=ctx.now,
        dry_run=dry_run,
    )
