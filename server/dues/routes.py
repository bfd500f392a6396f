"""Dues upload endpoint: a 收缴表 (.xlsx) or a bank statement (.csv), row by row."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, UploadFile

from server.deps import RequestDep
from server.dues.schemas import DuesImportReport
from server.dues.service import import_dues
from server.errors import DuesFileTooLarge
from server.inputs import RowId

router = APIRouter(prefix="/api/v1/imports", tags=["imports"])

DUES_UPLOAD_PATH = "/api/v1/imports/dues"
MAX_DUES_BYTES = 16 * 1024 * 1024  # a city's month in one statement: 250,000 lines, about 15 MB


@router.post("/dues")
def upload_dues(
    file: UploadFile,
    ctx: RequestDep,
    file_format: Annotated[
        Literal["xlsx", "bank"], Query(alias="format", description="xlsx: 收缴表; bank: bank statement CSV.")
    ] = "xlsx",
    org_id: Annotated[
        RowId | None, Query(description="Match names only in this organisation's subtree.")
    ] = None,
    dry_run: Annotated[bool, Query(description="Check and report, write nothing.")] = False,
) -> DuesImportReport:
    """Import dues: good rows are written, each rejected row is reported with a stable code."""
    data = file.file.read(MAX_DUES_BYTES + 1)
    if len(data) > MAX_DUES_BYTES:
        raise DuesFileTooLarge(f"党费文件不能超过{MAX_DUES_BYTES // (1024 * 1024)} MB")
    return import_dues(
        ctx.session,
        data=data,
        kind=file_format,
        caller=ctx.caller,
        org_id=org_id,
        now=ctx.now,
        tz=ctx.tz,
        dry_run=dry_run,
    )
