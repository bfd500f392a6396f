"""Roster upload endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, UploadFile

from server.deps import ClockDep, KeyringDep, PrincipalDep, SessionDep
from server.errors import RosterTooLarge
from server.ledgers.http import token_actor
from server.roster.models import RosterReport
from server.roster.service import import_roster

router = APIRouter(prefix="/api/v1/imports", tags=["imports"])

MAX_ROSTER_BYTES = 32 * 1024 * 1024  # a 250,000-member city roster is about 10 MB


@router.post("/roster")
def upload_roster(
    file: UploadFile,
    session: SessionDep,
    keyring: KeyringDep,
    principal: PrincipalDep,
    clock: ClockDep,
    dry_run: Annotated[bool, Query(description="Check and report, write nothing.")] = False,
) -> RosterReport:
    """Import a 花名册 (.xlsx): every row or none; the same file again changes nothing."""
    data = file.file.read(MAX_ROSTER_BYTES + 1)
    if len(data) > MAX_ROSTER_BYTES:
        raise RosterTooLarge(f"花名册文件不能超过{MAX_ROSTER_BYTES // (1024 * 1024)} MB")
    return import_roster(
        session,
        keyring=keyring,
        data=data,
        scope_org_id=principal.org_id,
        actor=token_actor(principal),
        now=clock(),
        dry_run=dry_run,
    )
