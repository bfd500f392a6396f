"""Ledgers as printable documents: a title, facts, tables and signature lines.

Each ledger model is turned into one :class:`LedgerDocument`; ``server.ledgers.render`` writes a
document as CSV, XLSX or PDF, so the three formats always carry the same content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from server.attendance.schemas import AttendanceSheet, SheetMember
from server.labels import CATEGORY_LABELS, SOURCE_LABELS, kinds_label
from server.ledgers.schemas import MemberHistory, OrgLedger, ParticipationRow

Cell = str | int | float | None


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    # Relative column widths for print (characters); None: sized from the content.
    widths: list[int] | None = None


@dataclass
class LedgerDocument:
    title: str
    filename_stem: str  # ASCII, for Content-Disposition and --out defaults
    facts: list[tuple[str, str]]
    sections: list[Section]
    signatures: list[str] = field(default_factory=list)  # e.g. "主持人（张三明）"
    landscape: bool = False


UID_ONLY_VENUE_NOTE = "（串口签到机接受仅UID读卡）"


def numbered(section: Section) -> Section:
    """The section with a 编号 column first: 1, 2, 3 … in the order of its rows (never a
    database id, which has gaps)."""
    return Section(
        section.title,
        ["编号", *section.columns],
        [[number, *row] for number, row in enumerate(section.rows, start=1)],
        [5, *section.widths] if section.widths is not None else None,
    )


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def rate(value: float | None) -> str:
    return f"{value * 100:.1f}%" if value is not None else "—"


def sheet_document(sheet: AttendanceSheet) -> LedgerDocument:
    """签到表 of one event."""
    event, counts = sheet.event, sheet.counts
    facts = [
        ("活动", event.title),
        ("类型", kinds_label(event.kinds)),
        ("主办", "、".join(org.name for org in event.organisations)),
        ("地点", event.venue.name + (UID_ONLY_VENUE_NOTE if event.venue_accepts_uid_only_reads else "")),
        ("时间", f"{event.start_at:%Y-%m-%d %H:%M} 至 {event.end_at:%H:%M}"),
        (
            "签到时间",
            f"{event.checkin_opens_at:%H:%M} 至 {event.checkin_closes_at:%H:%M}"
            f"（{event.late_after:%H:%M} 后为迟到）",
        ),
        ("主持人", event.chair.name if event.chair else ""),
        ("记录人", event.recorder.name if event.recorder else ""),
        ("议题", event.topic),
        (
            "应到",
            f"{counts.expected}人（正式{counts.expected_full}人，预备{counts.expected_probationary}人）",
        ),
        ("实到", f"{counts.present}人（正式{counts.present_full}人，预备{counts.present_probationary}人）"),
        (
            "请假",
            f"{counts.on_leave}人（正式{counts.on_leave_full}人，预备{counts.on_leave_probationary}人）",
        ),
        ("缺席", f"{counts.absent}人（正式{counts.absent_full}人，预备{counts.absent_probationary}人）"),
        ("列席", f"{counts.guests}人"),
        ("免于参加", f"{counts.exempt}人（其中到会{counts.exempt_present}人）"),
        ("迟到", f"{counts.late}人"),
        ("出席率", rate(counts.attendance_rate)),
        ("计算方法", sheet.counting_rule),
    ]
    facts += [("法定人数", quorum.message) for quorum in sheet.quorums]

    def person(row: SheetMember) -> list[Cell]:
        moved = f"（{row.moved_in_at:%Y-%m-%d}调入）" if row.moved_in_at else ""
        return [row.name, row.organisation.name + moved, CATEGORY_LABELS[row.category]]

    present_rows: list[list[Cell]] = []
    for p in sheet.present:
        present_rows.append(
            [
                *person(p),
                p.role_label,
                when(p.first_tap_at),
                when(p.checkout_at),
                p.duration_minutes,
                "是" if p.late else "",
                SOURCE_LABELS[p.source],
                p.card_check_label,
                p.note,
            ]
        )
    sections = [
        Section(
            "出席",
            [
                *["姓名", "所在组织", "类别", "身份", "签到", "签退"],
                *["时长(分钟)", "迟到", "方式", "核验等级", "说明"],
            ],
            present_rows,
            [8, 11, 5, 6, 14, 14, 5, 4, 7, 11, 8],  # with 编号: as wide as before; 类别 fits 「正式」
        ),
        Section(
            "请假", ["姓名", "所在组织", "类别", "请假理由"], [[*person(r), r.reason] for r in sheet.on_leave]
        ),
        Section("缺席", ["姓名", "所在组织", "类别"], [person(r) for r in sheet.absent]),
        Section(
            "免于参加",
            ["姓名", "所在组织", "类别", "原因"],
            [[*person(r), r.reason_label] for r in sheet.exempt],
        ),
    ]
    return LedgerDocument(
        title=f"签到表：{event.title}",
        filename_stem=f"attendance-event-{event.id}",
        facts=facts,
        sections=[numbered(section) for section in sections],
        signatures=[
            _signer("主持人", event.chair.name if event.chair else None),
            _signer("记录人", event.recorder.name if event.recorder else None),
        ],
    )


def org_ledger_document(ledger: OrgLedger) -> LedgerDocument:
    """An organisation's ledger for a period."""
    totals = ledger.totals
    facts = [
        ("党组织", f"{ledger.organisation.name}（{ledger.organisation.kind_label}）"),
        (
            "期间",
            f"{ledger.period.label}（{ledger.period.start:%Y-%m-%d} 至 {ledger.period.end:%Y-%m-%d} 前）",
        ),
        ("活动", f"{totals.events}次"),
        ("应到人次", str(totals.expected)),
        ("实到人次", str(totals.present)),
        ("请假人次", str(totals.on_leave)),
        ("缺席人次", str(totals.absent)),
        ("出席率", rate(totals.attendance_rate)),
        ("计算方法", ledger.counting_rule),
        (
            "三会一课",
            f"已召开{totals.cadence_met}项，未召开{totals.cadence_missed}项，进行中{totals.cadence_open}项",
        ),
        ("生成时间", when(ledger.generated_at)),
    ]
    events: list[list[Cell]] = []
    # 编号 of each listed event, for the 三会一课 section to point at.
    number_of = {row.event_id: number for number, row in enumerate(ledger.events, start=1)}
    for row in ledger.events:
        events.append(
            [
                when(row.start_at),
                f"{row.title}（未开始）" if row.upcoming else row.title,
                row.kinds_label,
                "、".join(org.name for org in row.organisations),
                row.venue,
                row.chair or "",
                row.recorder or "",
                row.expected,
                row.present,
                row.present_full,
                row.present_probationary,
                row.on_leave,
                row.absent,
                row.guests,
                row.exempt_present,
                rate(row.attendance_rate),
                "；".join(q.message for q in row.quorums),
            ]
        )
    cadence: list[list[Cell]] = [
        [
            row.organisation.name,
            row.kind_label,
            row.cadence_label,
            row.period_label,
            row.status_label,
            _event_numbers(row.held_event_ids or row.planned_event_ids, number_of),
        ]
        for row in ledger.cadence
    ]
    members: list[list[Cell]] = [
        [
            row.name,
            row.organisation.name,
            CATEGORY_LABELS[row.category],
            row.expected,
            row.present,
            row.on_leave,
            row.absent,
            row.exempt,
            row.exempt_present,
            row.guest_at,
            row.elsewhere,
            rate(row.attendance_rate),
            when(row.last_org_life_at),
            move_note(row),
        ]
        for row in ledger.members
    ]
    return LedgerDocument(
        title=f"{ledger.organisation.name} 组织生活台账（{ledger.period.label}）",
        filename_stem=f"ledger-org-{ledger.organisation.id}-{ledger.period.key}",
        facts=facts,
        sections=_numbered_all(
            Section(
                "活动一览",
                [
                    "时间",
                    "活动",
                    "类型",
                    "主办",
                    "地点",
                    "主持人",
                    "记录人",
                    "应到",
                    "实到",
                    "正式",
                    "预备",
                    "请假",
                    "缺席",
                    "列席",
                    "免于参加者到会",
                    "出席率",
                    "法定人数",
                ],
                events,
                [11, 12, 9, 10, 8, 5, 5, 4, 4, 4, 4, 4, 4, 4, 5, 6, 16],
            ),
            Section(
                "三会一课执行情况",
                ["组织", "会议", "频次", "期间", "情况", "活动编号"],
                cadence,
                [14, 10, 6, 14, 7, 10],
            ),
            Section(
                "党员参加情况",
                [
                    "姓名",
                    "所在组织",
                    "类别",
                    "应参加",
                    "出席",
                    "请假",
                    "缺席",
                    "免于参加",
                    "免于参加者到会",
                    "列席",
                    "参加其他组织活动",
                    "出席率",
                    "最近参加组织生活",
                    "组织关系变动",
                ],
                members,
                [7, 12, 4, 5, 4, 4, 4, 5, 5, 4, 7, 6, 12, 12],
            ),
        ),
        signatures=[_signer("书记（主持人）", None), _signer("组织委员（记录人）", None)],
        landscape=True,
    )


def member_history_document(history: MemberHistory) -> LedgerDocument:
    """A member's record of organisational life."""
    summary = history.summary
    period = history.period.label if history.period else "全部"
    facts = [
        ("姓名", history.name),
        ("类别", history.category_label),
        ("状态", history.status_label),
        ("所在组织", history.organisation.name),
        ("期间", period),
        ("应参加", f"{summary.expected}次"),
        ("出席", f"{summary.present}次"),
        ("请假", f"{summary.on_leave}次"),
        ("缺席", f"{summary.absent}次"),
        ("列席其他组织活动", f"{summary.guest}次"),
        ("免于参加期间到会", f"{summary.exempt_present}次"),
        ("出席率", rate(summary.attendance_rate)),
        ("计算方法", history.counting_rule),
        ("最近参加组织生活", when(summary.last_org_life_at)),
    ]
    return LedgerDocument(
        title=f"{history.name} 参加组织生活记录（{period}）",
        filename_stem=f"history-member-{history.member_id}"
        + (f"-{history.period.key}" if history.period else ""),
        facts=facts,
        sections=_numbered_all(
            Section(
                "参加活动",
                [
                    "时间",
                    "活动",
                    "类型",
                    "主办",
                    "情况",
                    "签到",
                    "签退",
                    "时长(分钟)",
                    "迟到",
                    "方式",
                    "核验等级",
                    "说明",
                ],
                [
                    [
                        when(row.start_at),
                        row.title,
                        row.kinds_label,
                        row.host.name,
                        row.outcome_label,
                        when(row.first_tap_at),
                        when(row.checkout_at),
                        row.duration_minutes,
                        "是" if row.late else "",
                        SOURCE_LABELS[row.source] if row.source else "",
                        row.card_check_label,
                        row.note,
                    ]
                    for row in history.events
                ],
                [11, 12, 8, 10, 5, 11, 11, 5, 4, 6, 9, 10],
            ),
            Section(
                "请假",
                ["活动", "理由", "状态", "申请时间", "审批时间", "审批意见"],
                [
                    [
                        r.title,
                        r.reason,
                        r.status_label,
                        when(r.requested_at),
                        when(r.decided_at),
                        r.decision_note,
                    ]
                    for r in history.leave
                ],
            ),
            Section(
                "免于参加组织生活",
                ["原因", "说明", "开始", "结束"],
                [[r.reason_label, r.note, when(r.starts_at), when(r.ends_at)] for r in history.exemptions],
            ),
            Section(
                "组织关系",
                ["组织", "类别", "开始", "结束"],
                [
                    [m.organisation.name, CATEGORY_LABELS[m.category], when(m.started_at), when(m.ended_at)]
                    for m in history.memberships
                ],
            ),
            Section(
                "卡片",
                ["卡号/UID（部分隐藏）", "状态", "核验等级", "绑定时间", "停用时间"],
                [
                    [c.card, c.status_label, c.verified_level_label, when(c.bound_at), when(c.ended_at)]
                    for c in history.cards
                ],
            ),
        ),
        signatures=[_signer("支部书记", None), _signer("组织委员", None)],
    )


def _numbered_all(*sections: Section) -> list[Section]:
    return [numbered(section) for section in sections]


def move_note(row: ParticipationRow) -> str:
    """调入/调出 with the date, for a member who moved during the period."""
    notes = []
    if row.moved_in_at is not None:
        notes.append(f"{row.moved_in_at:%Y-%m-%d}调入")
    if row.moved_out_at is not None:
        notes.append(f"{row.moved_out_at:%Y-%m-%d}调出")
    return "；".join(notes)


def _event_numbers(event_ids: list[int], number_of: dict[int, int]) -> str:
    """The events' 编号 in 活动一览; events outside the ledger's period (a quarter's meeting on a
    monthly ledger) are counted, not numbered."""
    listed = [str(number_of[event_id]) for event_id in event_ids if event_id in number_of]
    outside = sum(event_id not in number_of for event_id in event_ids)
    return "、".join([*listed, *([f"本期外{outside}次"] if outside else [])])


def _signer(role: str, name: str | None) -> str:
    return f"{role}（{name}）" if name else role
