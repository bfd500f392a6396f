"""审计日志: who did what, newest first, limited to the viewer's organisations."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from server.audit.service import list_entries
from server.caller import CLI_ACTOR, Caller
from server.errors import NotFound
from server.events.service import require_visible_event
from server.inputs import RowId
from server.labels import CATEGORY_LABELS, EVENT_KIND_LABELS, EXEMPTION_LABELS, STATUS_LABELS
from server.orgs.service import members_by_id, organisation_names
from server.records.audit import AuditEntry
from server.records.transfers import DocumentKind, TransferSource, TransferState
from server.transfers.kinds import DOCUMENT_LABELS, SOURCE_LABELS
from server.transfers.states import ACTION_LABELS as TRANSFER_ACTION_LABELS
from server.transfers.states import STATE_LABELS
from server.venues.service import venue_names
from server.vocabulary import (
    BindingStatus,
    EventKind,
    ExemptionReason,
    MemberCategory,
    MemberStatus,
    UserRole,
)
from server.web.deps import PageDep
from server.web.templating import ROLE_LABELS, date_text, render

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
    "transfer.member_confirm": "转入申请：本人刷卡确认",
    "transfer.document_tick": "转入申请：核对材料",
    "transfer.document_untick": "转入申请：取消核对材料",
    "transfer.letter": "转入申请：录入介绍信",
    "transfer.letter_reissued": "转入申请：录入重新开具的介绍信",
    **{f"transfer.{action.value}": f"转入申请：{label}" for action, label in TRANSFER_ACTION_LABELS.items()},
    "kiosk.enroll_refused": "签到机登记被拒绝",
    "member.status": "变更党员状态",
    "member.move": "党员调动",
    "member.category": "变更党员类别",
    "member.exemption.add": "登记免于参加组织生活",
    "member.exemption.end": "结束免于参加组织生活",
    "leave.request": "请假",
    "leave.withdraw": "撤回请假",
    "leave.approve": "准假",
    "leave.reject": "不予准假",
    "tap.assign": "刷卡归入活动",
    "tap.redecide": "重新归入活动",
    "token.create": "创建接口令牌",
    "token.revoke": "吊销接口令牌",
    "venue.uid_only_reads": "修改场地读卡设置",
    "minutes.save": "保存会议记录",
    "minutes.attach": "上传会议记录附件",
    "minutes.detach": "删除会议记录附件",
    "minutes.lock": "会议记录签字锁定",
    "event.series": "新建周期活动",
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
    "leave_request": "请假",
    "tap": "刷卡记录",
    "venue": "场地",
    "api_token": "接口令牌",
    "token": "接口令牌",
}
# Refusal reasons recorded by sign-in (server.users.service), shown to people.
LOGIN_REASONS = {
    "wrong_password": "密码错误",
    "unknown_user": "用户名不存在",
    "rate_limited": "失败次数过多，已暂时锁定",
}


@dataclass(frozen=True)
class DetailNames:
    """Names for the ids an entry's details mention, looked up once per page (and only what the
    viewer may see: a member or event outside the viewer's organisations stays unnamed)."""

    orgs: Mapping[int, str]
    members: Mapping[int, str]
    events: Mapping[int, str]
    venues: Mapping[int, str]
    tz: tzinfo


def _enum_label(labels: Mapping[Any, str], kind: Callable[[str], Any]) -> Callable[[object], str]:
    def label(value: object) -> str:
        try:
            return labels[kind(str(value))]
        except (KeyError, ValueError):
            return str(value)

    return label


def _when(value: object, tz: tzinfo) -> str:
    """An ISO date or time recorded in the details, as every page writes dates."""
    text = str(value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if "T" not in text and " " not in text:
        return date_text(moment.date())
    if moment.tzinfo is not None:
        moment = moment.astimezone(tz)
    return f"{date_text(moment)} {moment:%H:%M}"


def _yes_no(value: object) -> str:
    return (
        "是"
        if value is True or value == "True"
        else "否"
        if value is False or value == "False"
        else str(value)
    )


_BINDING_STATES = {
    BindingStatus.ACTIVE: "在用",
    BindingStatus.LOST: "已挂失",
    BindingStatus.REPLACED: "已补换",
    BindingStatus.REVOKED: "已注销",
}
_TRANSFER_SOURCES: Mapping[Any, str] = SOURCE_LABELS
_KIOSK_REFUSALS = {"invalid": "登记码无效", "used": "登记码已用过", "expired": "登记码已过期"}

# How each detail key reads, and how its value is written. Keys not listed (internal ids such as
# a key's number or a session's) are not shown: they mean nothing to a secretary.
_PLAIN: dict[str, tuple[str, Callable[[object], str]]] = {
    "title": ("活动名称", str),
    "kind": ("活动类型", _enum_label(EVENT_KIND_LABELS, EventKind)),
    "username": ("用户名", str),
    "role": ("角色", _enum_label(ROLE_LABELS, UserRole)),
    "label": ("说明", str),
    "ip": ("登录地址", str),
    "name": ("名称", str),
    "agent_version": ("签到程序版本", str),
    "card": ("卡号", str),
    "old_status": ("原卡状态", _enum_label(_BINDING_STATES, BindingStatus)),
    "to_state": ("办理后状态", _enum_label(STATE_LABELS, TransferState)),
    "from_state": ("办理前状态", _enum_label(STATE_LABELS, TransferState)),
    "document": ("材料", _enum_label(DOCUMENT_LABELS, DocumentKind)),
    "letter_no": ("介绍信编号", str),
    "issuer_name": ("开具单位", str),
    "valid_days": ("有效期（天）", str),
    "claimed_name": ("姓名", str),
    "note": ("备注", str),
    "category": ("党员类别", _enum_label(CATEGORY_LABELS, MemberCategory)),
    "accept_uid_only_reads": ("接受仅凭芯片号读卡", _yes_no),
    "before": ("修改前", _yes_no),
    "created": ("新建", str),
    "updated": ("更新", str),
    "unchanged": ("未变", str),
    "cards_bound": ("绑定卡", str),
    "rows": ("行数", str),
    "sheets": ("工作表", str),
    "new_member": ("新建党员档案", _yes_no),
    "exemption": ("免于参加原因", _enum_label(EXEMPTION_LABELS, ExemptionReason)),
}


_DATE_KEYS = {
    "expires_at": "有效期至",
    "valid_until": "有效期至",
    "arrived_at": "到会时间",
    "starts_at": "开始",
    "ends_at": "结束",
    "issued_on": "开具日期",
    "probation_due_on": "预备期满",
}
_ORG_KEYS = {"to_org_id": "转入组织", "from_org_id": "原组织", "placement_org_id": "编入党支部"}


def _value_of(key: str, value: object, names: DetailNames) -> tuple[str, str] | None:
    if value is None or value == "" or value == [] or value == {}:
        return None
    if key in ("from", "to"):
        as_status = _enum_label(STATUS_LABELS, MemberStatus)(value)
        text = as_status if as_status != str(value) else _enum_label(CATEGORY_LABELS, MemberCategory)(value)
        return ("原为" if key == "from" else "改为", text)
    if key in _DATE_KEYS:
        return (_DATE_KEYS[key], _when(value, names.tz))
    if key.endswith("org_id") and isinstance(value, int):
        label = {"to_org_id": "转入组织", "from_org_id": "原组织", "placement_org_id": "编入党支部"}.get(
            key, "党组织"
        )
        return (label, names.orgs.get(value, "其他党组织"))
    if key == "member_id" and isinstance(value, int):
        return ("党员", names.members.get(value, "其他组织的党员"))
    if key in ("event_id", "was_event_id") and isinstance(value, int):
        return ("活动" if key == "event_id" else "原活动", names.events.get(value, "其他组织的活动"))
    if key == "venue_id" and isinstance(value, int):
        return ("场地", names.venues.get(value, "—"))
    if key == "source" and isinstance(value, str):
        try:
            return ("来源", _TRANSFER_SOURCES[TransferSource(value)])
        except ValueError:
            return None  # a kiosk's refused enrolment: the source address means nothing here
    if key == "reason" and isinstance(value, str):
        return ("原因", _KIOSK_REFUSALS.get(value, value))
    plain = _PLAIN.get(key)
    if plain is None:
        return None
    label, write = plain
    return (label, write(value))


def _details(raw: str) -> dict[str, Any]:
    try:
        detail = json.loads(raw)
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _names(ctx_session: Session, caller: Caller, entries: Sequence[AuditEntry], tz: tzinfo) -> DetailNames:
    details = [_details(e.detail) for e in entries]
    org_ids = {e.org_id for e in entries if e.org_id is not None}
    member_ids: set[int] = set()
    event_ids: set[int] = set()
    venue_ids: set[int] = set()
    for detail in details:
        for key, value in detail.items():
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            if key.endswith("org_id"):
                org_ids.add(value)
            elif key == "member_id":
                member_ids.add(value)
            elif key in ("event_id", "was_event_id"):
                event_ids.add(value)
            elif key == "venue_id":
                venue_ids.add(value)
    members = {
        member_id: member.name
        for member_id, member in members_by_id(ctx_session, member_ids).items()
        if caller.scope.sees(member.org_id)
    }
    events: dict[int, str] = {}
    for event_id in sorted(event_ids):
        try:
            events[event_id] = require_visible_event(ctx_session, event_id, caller=caller).title
        except NotFound:
            continue
    return DetailNames(
        orgs=organisation_names(ctx_session, org_ids),
        members=members,
        events=events,
        venues=venue_names(ctx_session, venue_ids),
        tz=tz,
    )


@router.get("")
def audit_log(request: Request, ctx: PageDep, before: RowId | None = None) -> HTMLResponse:
    session = ctx.session
    entries = list_entries(session, scope=ctx.caller.scope, limit=PAGE_SIZE, before_id=before)
    names = _names(session, ctx.caller, entries, ctx.settings.tz)
    return render(
        request,
        "audit/list.html",
        {
            "nav": "audit",
            "entries": [_row(entry, names) for entry in entries],
            "org_names": names.orgs,
            "older": entries[-1].id if len(entries) == PAGE_SIZE else None,
        },
    )


def _row(entry: AuditEntry, names: DetailNames) -> dict[str, Any]:
    prefix, _, _verb = entry.action.partition(".")
    object_label = OBJECT_LABELS.get(entry.object_type, "")
    label = ACTION_LABELS.get(entry.action) or (f"{object_label}：其他操作" if object_label else "其他操作")
    reason = LOGIN_REASONS.get(entry.reason, entry.reason) if prefix == "user" else entry.reason
    details = [
        shown
        for key, value in sorted(_details(entry.detail).items())
        if (shown := _value_of(key, value, names)) is not None
    ]
    return {
        "entry": entry,
        "actor": "系统管理员（后台）" if entry.actor == CLI_ACTOR.ref else entry.actor_name or "系统",
        "label": label,
        "object_label": object_label,
        "failed": entry.action.endswith("_failed") or entry.action.endswith("_refused"),
        "reason": reason,
        "details": details,
    }
