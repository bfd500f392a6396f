"""审计日志: who did what, newest first, limited to the viewer's organisations."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from server.audit.service import list_entries
from server.inputs import RowId
from server.orgs.service import organisation_names
from server.records.audit import AuditEntry
from server.web.deps import PageDep
from server.web.templating import render

router = APIRouter(prefix="/audit")

PAGE_SIZE = 50

ACTION_LABELS: dict[str, str] = {
    "user.create": "创建用户",
    "user.login": "登录",
    "user.login_failed": "登录失败",
    "user.logout": "退出登录",
    "event.create": "新建活动",
    "event.update": "修改活动",
    "attendance.manual": "补录签到",
    "card.bind": "绑定易通卡",
    "card.lost": "挂失易通卡",
    "card.replace": "补换易通卡",
    "card.revoke": "注销易通卡",
    "enrol_session.start": "发起刷卡绑定",
    "enrol_session.cancel": "取消刷卡绑定",
    "kiosk.create": "新增签到机",
    "kiosk.enroll": "签到机登记",
    "kiosk.enrollment_code": "生成登记码",
    "kiosk.revoke": "停用签到机",
    "kiosk.rotate_key": "签到机更换密钥",
    "member.transfer_in": "党员转入",
    "roster.import": "导入花名册",
    "committee.appoint": "任命支委",
    "committee.end": "支委卸任",
    "transfer.submit": "提交转入申请",
    "transfer.update": "修改转入申请",
}
OBJECT_LABELS: dict[str, str] = {
    "user": "用户",
    "event": "活动",
    "member": "党员",
    "card_binding": "卡绑定",
    "kiosk": "签到机",
    "transfer": "转入申请",
    "transfer_request": "转入申请",
    "enrol_session": "绑卡请求",
    "organisation": "党组织",
    "attendance": "签到记录",
}
# Refusal reasons recorded by sign-in (server.users.service), shown to people.
LOGIN_REASONS = {
    "wrong_password": "密码错误",
    "unknown_user": "用户名不存在",
    "rate_limited": "失败次数过多，已暂时锁定",
}


@router.get("")
def audit_log(request: Request, ctx: PageDep, before: RowId | None = None) -> HTMLResponse:
    session = ctx.session
    entries = list_entries(session, scope=ctx.caller.scope, limit=PAGE_SIZE, before_id=before)
    org_ids = {e.org_id for e in entries if e.org_id is not None}
    return render(
        request,
        "audit/list.html",
        {
            "nav": "audit",
            "entries": [_row(entry) for entry in entries],
            "org_names": organisation_names(session, org_ids),
            "older": entries[-1].id if len(entries) == PAGE_SIZE else None,
        },
    )


def _row(entry: AuditEntry) -> dict[str, Any]:
    try:
        detail = json.loads(entry.detail)
    except ValueError:
        detail = {}
    prefix, _, verb = entry.action.partition(".")
    label = ACTION_LABELS.get(entry.action) or (f"转入申请：{verb}" if prefix == "transfer" else entry.action)
    reason = LOGIN_REASONS.get(entry.reason, entry.reason) if prefix == "user" else entry.reason
    return {
        "entry": entry,
        "label": label,
        "object_label": OBJECT_LABELS.get(entry.object_type, entry.object_type),
        "failed": entry.action.endswith("_failed"),
        "reason": reason,
        "detail": ", ".join(f"{key}={value}" for key, value in detail.items())
        if isinstance(detail, dict)
        else "",
    }
