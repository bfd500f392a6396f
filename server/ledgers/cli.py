"""``ecard admin ledger``: sign-in sheets, organisation ledgers and members' histories,
printed or exported (json, csv, xlsx, pdf)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, effective_time, run_admin

if TYPE_CHECKING:
    from server.attendance.schemas import AttendanceSheet


ledger_app = typer.Typer(no_args_is_help=True, help="Ledgers (电子台账): print or export.")


class ExportChoice(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"
    PDF = "pdf"


FormatOption = Annotated[
    ExportChoice | None,
    typer.Option(
        "--format", help="Write the ledger as json, csv, xlsx or pdf (with --out; json also to stdout)."
    ),
]
OutOption = Annotated[Path | None, typer.Option("--out", help="File to write the export to.")]


def event_sheet(
    event_id: int,
    fmt: FormatOption = None,
    out: OutOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """An event's sign-in sheet (签到表): print it, or export with --format/--out."""

    def action(ctx: AdminContext) -> Outcome:
        from server.attendance.service import build_attendance_sheet

        sheet = build_attendance_sheet(ctx.session, event_id=event_id, caller=ctx.caller, tz=ctx.settings.tz)
        return _ledger_outcome(sheet, fmt, out, _sheet_table(sheet))

    run_admin(action, db=db, json_output=json_output)


# ``ecard admin event attendance`` is the same verb; operators' scripts use both names.
ledger_app.command("event")(event_sheet)


@ledger_app.command("org")
def ledger_org(
    org_id: int,
    period: Annotated[str, typer.Option("--period", help="2026, 2026-Q3 or 2026-07.")],
    fmt: FormatOption = None,
    out: OutOption = None,
    at: Annotated[str | None, typer.Option("--at", help="As of this time (default: now).")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """An organisation's ledger for a period: events, 三会一课 compliance, participation."""

    def action(ctx: AdminContext) -> Outcome:
        from server.ledgers.cadence import CadencePolicy
        from server.ledgers.periods import parse_period
        from server.ledgers.render import to_document
        from server.ledgers.service import build_org_ledger

        tz = ctx.settings.tz
        ledger = build_org_ledger(
            ctx.session,
            org_id=org_id,
            period=parse_period(period, tz),
            caller=ctx.caller,
            now=effective_time(ctx, at),
            tz=tz,
            policy=CadencePolicy(lecture=ctx.settings.lecture_cadence),
        )
        document = to_document(ledger)
        lines = [document.title, *(f"{name}：{value}" for name, value in document.facts)]
        lines += [
            f"{row.start_at:%m-%d %H:%M}  {row.title}（{row.kinds_label}）"
            f"应到{row.expected} 实到{row.present} 请假{row.on_leave} 缺席{row.absent}"
            for row in ledger.events
        ]
        lines += [
            f"{row.organisation.name} {row.period_label} {row.kind_label}：{row.status_label}"
            for row in ledger.cadence
        ]
        return _ledger_outcome(ledger, fmt, out, "\n".join(lines))

    run_admin(action, db=db, json_output=json_output)


def member_history(
    member_id: int,
    period: Annotated[
        str | None, typer.Option("--period", help="2026, 2026-Q3 or 2026-07; default: all.")
    ] = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """A member's record of organisational life (print, or export with --format/--out)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.ledgers.periods import parse_period
        from server.ledgers.service import build_member_history

        tz = ctx.settings.tz
        history = build_member_history(
            ctx.session,
            member_id=member_id,
            period=parse_period(period, tz) if period else None,
            caller=ctx.caller,
            now=ctx.now,
            tz=tz,
        )
        lines = [f"{history.name}（{history.category_label}，{history.organisation.name}）"]
        lines += [
            f"{row.start_at:%Y-%m-%d %H:%M}  {row.outcome_label:<4} {row.title}（{row.kinds_label}）"
            for row in history.events
        ]
        summary = history.summary
        lines.append(
            f"应参加 {summary.expected}  出席 {summary.present}  请假 {summary.on_leave}"
            f"  缺席 {summary.absent}  列席 {summary.guest}"
        )
        return _ledger_outcome(history, fmt, out, "\n".join(lines))

    run_admin(action, db=db, json_output=json_output)


# ``ecard admin member history`` is the same verb.
ledger_app.command("member", help="A member's history (same as ``member history``).")(member_history)


def _ledger_outcome(ledger: Any, fmt: ExportChoice | None, out: Path | None, text: str) -> Outcome:
    """Print the ledger (text or --json), or write it as a file with --format/--out."""
    from server.ledgers.render import ExportFormat, render_ledger

    if fmt is None and out is None:
        return Outcome(ledger.model_dump(mode="json"), text)
    chosen = ExportFormat((fmt or ExportChoice(out.suffix.lstrip(".").lower() if out else "json")).value)
    if out is None:
        if chosen != ExportFormat.JSON:
            raise typer.BadParameter("binary formats need --out FILE", param_hint="--out")
        return Outcome(ledger.model_dump(mode="json"), ledger.model_dump_json(indent=2))
    rendered = render_ledger(ledger, chosen)
    out.write_bytes(rendered.content)
    data = {"path": str(out), "format": chosen.value, "bytes": len(rendered.content)}
    return Outcome(data, f"wrote {out} ({chosen.value}, {len(rendered.content)} bytes)")


def _sheet_table(sheet: AttendanceSheet) -> str:
    from server.labels import CATEGORY_LABELS

    event, counts = sheet.event, sheet.counts
    lines = [
        f"签到表  {event.title}  (活动 {event.id}, {event.organisation.name}, {event.venue.name})",
        f"时间 {event.start_at:%Y-%m-%d %H:%M} – {event.end_at:%H:%M}   "
        f"应到 {counts.expected}  实到 {counts.present}  缺席 {counts.absent}"
        f"  (正式 {counts.present_full}, 预备 {counts.present_probationary}; 列席 {counts.guests})",
        "",
        _row("状态", "姓名", "类别", "首次刷卡", "最后刷卡", "次数"),
    ]
    for p in sheet.present:
        status = "已到" if p.expected else "列席"
        lines.append(
            _row(
                status,
                p.name,
                CATEGORY_LABELS[p.category],
                f"{p.first_tap_at:%H:%M:%S}",
                f"{p.last_tap_at:%H:%M:%S}",
                str(p.tap_count),
            )
        )
    lines.extend(_row("缺席", m.name, CATEGORY_LABELS[m.category], "", "", "") for m in sheet.absent)
    return "\n".join(line.rstrip() for line in lines)


_COLUMN_WIDTHS = (6, 12, 6, 10, 10, 4)


def _row(*cells: str) -> str:
    return "".join(_pad(cell, width) for cell, width in zip(cells, _COLUMN_WIDTHS, strict=True))


def _pad(text: str, width: int) -> str:
    # Chinese characters take two terminal columns; str.ljust counts them as one.
    from server.ledgers.render import display_width

    return text + " " * max(1, width - display_width(text))
