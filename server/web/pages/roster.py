"""导入花名册: upload an XLSX roster, see the row-by-row report, then import it.

Two steps on one form. 检查 runs the import service as a dry run and shows what it would do (the
rows it adds and updates) or, row by row, why the file is refused; the report then offers
确认导入, which sends the same file again with the digest of the checked one. If the file was
swapped in between, it is only checked again: what is imported is always what was shown.

The rules are the service's (``server.roster.service``): all or nothing, branches must exist in
the caller's subtree, the same file twice changes nothing, audited.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse

from server.deps import KeyringDep, RequestContext
from server.errors import RosterInvalid, RosterUnreadable
from server.keyring import Keyring
from server.labels import CATEGORY_LABELS
from server.roster.routes import MAX_ROSTER_BYTES
from server.roster.service import import_roster
from server.web.deps import CurrentUser, PageDep
from server.web.templating import is_htmx, render

router = APIRouter(prefix="/roster")

CHANGE_LABELS = {"gender": "性别", "category": "党员类别", "card": "绑定易通卡"}


@router.get("")
def roster_page(request: Request, _viewer: CurrentUser) -> HTMLResponse:
    return render(request, "roster/upload.html", {"nav": "members", "outcome": None})


@router.post("")
def roster_upload(
    request: Request,
    ctx: PageDep,
    keyring: KeyringDep,
    file: Annotated[UploadFile, File()],
    step: Annotated[str, Form(max_length=10)] = "check",
    checked: Annotated[str, Form(max_length=64)] = "",
) -> HTMLResponse:
    outcome = _run(ctx, keyring, file, step=step, checked=checked)
    if is_htmx(request):
        return render(request, "roster/_report.html", {"outcome": outcome, **_labels()})
    return render(request, "roster/upload.html", {"nav": "members", "outcome": outcome, **_labels()})


def _run(
    ctx: RequestContext, keyring: Keyring, file: UploadFile, *, step: str, checked: str
) -> dict[str, Any]:
    filename = (file.filename or "")[:200]
    data = file.file.read(MAX_ROSTER_BYTES + 1)
    if len(data) > MAX_ROSTER_BYTES:
        return {"filename": filename, "error": f"花名册文件不能超过{MAX_ROSTER_BYTES // (1024 * 1024)} MB"}
    digest = hashlib.sha256(data).hexdigest()
    apply = step == "apply" and checked == digest
    try:
        report = import_roster(
            ctx.session,
            keyring=keyring,
            data=data,
            caller=ctx.caller,
            org_id=None,
            now=ctx.now,
            dry_run=not apply,
        )
    except RosterInvalid as refusal:
        return {"filename": filename, "error": refusal.message, "problems": refusal.problems}
    except RosterUnreadable as unreadable:
        return {"filename": filename, "error": unreadable.message}
    return {
        "filename": filename,
        "report": report,
        "digest": digest,
        "swapped": step == "apply" and not apply,
    }


def _labels() -> dict[str, Any]:
    return {"category_labels": CATEGORY_LABELS, "change_labels": CHANGE_LABELS}
