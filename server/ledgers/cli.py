"""``ecard admin ledger``: sign-in sheets, organisation ledgers and members' histories,
printed or exported (json, csv, xlsx, pdf)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, effective_time, run_admin

if TYPE_CHECKING:
    from datetime import datetime, tzinfo

    from server.attendance.schemas import AttendanceSheet
    from server.ledgers.exports import ExportVerification


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
        return _ledger_outcome(ctx, sheet, fmt, out, _sheet_table(sheet))

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
        as_of = effective_time(ctx, at)
        ledger = build_org_ledger(
            ctx.session,
            org_id=org_id,
            period=parse_period(period, tz),
            caller=ctx.caller,
            now=as_of,
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
        return _ledger_outcome(ctx, ledger, fmt, out, "\n".join(lines), as_of=as_of)

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
            f"  缺席 {summary.absent}  列席 {summary.guest}  免于参加期间到会 {summary.exempt_present}"
        )
        lines.append(history.counting_rule)
        return _ledger_outcome(ctx, history, fmt, out, "\n".join(lines))

    run_admin(action, db=db, json_output=json_output)


# ``ecard admin member history`` is the same verb.
ledger_app.command("member", help="A member's history (same as ``member history``).")(member_history)


def _ledger_outcome(
    ctx: AdminContext,
    ledger: Any,
    fmt: ExportChoice | None,
    out: Path | None,
    text: str,
    *,
    as_of: datetime | None = None,
) -> Outcome:
    """Print the ledger (text or --json), or write it as a file with --format/--out (a CSV, XLSX
    or PDF file is recorded and carries its verification code)."""
    from server.ledgers.exports import ExportContext, export_ledger
    from server.ledgers.render import ExportFormat

    if fmt is None and out is None:
        return Outcome(ledger.model_dump(mode="json"), text)
    chosen = ExportFormat((fmt or ExportChoice(out.suffix.lstrip(".").lower() if out else "json")).value)
    if out is None:
        if chosen != ExportFormat.JSON:
            raise typer.BadParameter("binary formats need --out FILE", param_hint="--out")
        return Outcome(ledger.model_dump(mode="json"), ledger.model_dump_json(indent=2))
    context = ExportContext(
        keyring=ctx.keyring,
        caller=ctx.caller,
        now=ctx.now,
        tz=ctx.settings.tz,
        lecture_cadence=ctx.settings.lecture_cadence,
    )
    rendered = export_ledger(ctx.session, ledger, chosen, context=context, as_of=as_of)
    out.write_bytes(rendered.content)
    data = {"path": str(out), "format": chosen.value, "bytes": len(rendered.content), "code": rendered.code}
    code = f", 核验码 {rendered.code}" if rendered.code else ""
    return Outcome(data, f"wrote {out} ({chosen.value}, {len(rendered.content)} bytes{code})")


@ledger_app.command("verify")
def ledger_verify(
    file: Annotated[
        Path | None, typer.Argument(help="An exported ledger (PDF, XLSX or CSV) whose code to check.")
    ] = None,
    code: Annotated[
        str | None, typer.Option("--code", help="The code as printed, instead of a file.")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Check an exported ledger: does it still match the records? (核验码; exit 1 if it changed)."""
    from server.cli_support import EXIT_REFUSED, admin_context, emit, refusals_reported

    if (file is None) == (code is None):
        raise typer.BadParameter("give an exported FILE or --code CODE (one of them)")
    with refusals_reported(json_output):
        from server.ledgers.exports import read_code, verify_export

        typed = code if code is not None else read_code(_read_file(file))
        with admin_context(db, json_output) as ctx:
            result = verify_export(ctx.session, typed, caller=ctx.caller)
    emit(Outcome(result.model_dump(mode="json"), _verification_text(result, ctx.settings.tz)), json_output)
    if not result.matches:
        raise typer.Exit(EXIT_REFUSED)


def _read_file(file: Path | None) -> bytes:
    assert file is not None
    try:
        return file.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc.strerror}", param_hint="FILE") from exc


def _verification_text(result: ExportVerification, tz: tzinfo) -> str:
    exported = result.exported_at.astimezone(tz)
    head = (
        f"核验码 {result.code}：{result.title}（{result.fmt}，{exported:%Y-%m-%d %H:%M} "
        f"由 {result.exported_by_name or result.exported_by} 导出）"
    )
    if result.matches:
        return f"{head}\n一致 MATCH：与系统记录相符 / the ledger matches the records"
    lines = [
        head,
        f"已变化 CHANGED：导出后有 {len(result.changes) + result.more_changes} 处变化 / changed since export",
    ]
    for change in result.changes:
        label = {"changed": "改", "added": "增", "removed": "删"}[change.change]
        before = " | ".join("" if c is None else str(c) for c in change.before or [])
        after = " | ".join("" if c is None else str(c) for c in change.after or [])
        lines.append(f"  [{label}] {change.section}: {before}{' → ' if before and after else ''}{after}")
    if result.more_changes:
        lines.append(f"  …… 另有 {result.more_changes} 处")
    return "\n".join(lines)


def _sheet_table(sheet: AttendanceSheet) -> str:
    from server.labels import CATEGORY_LABELS

    event, counts = sheet.event, sheet.counts
    lines = [
        f"签到表  {event.title}  (活动 {event.id}, {event.organisation.name}, {event.venue.name})",
        f"时间 {event.start_at:%Y-%m-%d %H:%M} – {event.end_at:%H:%M}   "
        f"应到 {counts.expected}  实到 {counts.present}  请假 {counts.on_leave}  缺席 {counts.absent}"
        f"  (正式 {counts.present_full}, 预备 {counts.present_probationary}; 列席 {counts.guests};"
        f" 免于参加者到会 {counts.exempt_present})",
        sheet.counting_rule,
        "",
        _row("状态", "姓名", "类别", "首次刷卡", "最后刷卡", "次数"),
    ]
    for p in sheet.present:
        status = "已到" if p.expected else p.role_label
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
