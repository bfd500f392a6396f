"""``ecard admin audit``: check the evidence behind the ledgers (``server.evidence.service``).

Its own floor above the ledgers, because a ``--period`` is a ledger period
(``server.ledgers.periods``) and the ledgers stand on the evidence domain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from server.cli_support import DbOption, JsonOption

if TYPE_CHECKING:
    from server.evidence.service import EvidenceReport

audit_app = typer.Typer(no_args_is_help=True, help="Audit log and evidence (审计与存证).")


@audit_app.command("verify")
def audit_verify(
    org: Annotated[
        int | None, typer.Option("--org", help="Only this organisation and those below it.")
    ] = None,
    period: Annotated[str | None, typer.Option("--period", help="Only 2026, 2026-Q3 or 2026-07.")] = None,
    event: Annotated[
        int | None, typer.Option("--event", help="Only this event (its attendance and taps).")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Re-check every kept kiosk signature, the tap chains, the audit chain, and that every
    attendance row rests on its taps or on an audited manual entry. Exit 1 naming each broken row."""
    from server.cli_support import EXIT_REFUSED, Outcome, admin_context, emit, refusals_reported

    with refusals_reported(json_output):
        from server.evidence.sealing import EvidenceSealer, load_evidence_key
        from server.evidence.service import EvidenceScope, verify_evidence
        from server.ledgers.periods import parse_period

        with admin_context(db, json_output) as ctx:
            chosen = parse_period(period, ctx.settings.tz) if period else None
            scope = EvidenceScope(
                org_id=org,
                since=chosen.start if chosen else None,
                until=chosen.end if chosen else None,
                event_id=event,
            )
            sealer = EvidenceSealer(load_evidence_key(ctx.settings))
            report = verify_evidence(
                ctx.session, scope=scope, caller=ctx.caller, sealer=sealer, keyring=ctx.keyring
            )
    emit(Outcome(report.model_dump(mode="json"), report_text(report)), json_output)
    if not report.ok:
        raise typer.Exit(EXIT_REFUSED)


def report_text(report: EvidenceReport) -> str:
    """The report for people, in Chinese and English."""
    c = report.counts
    verdict = "通过 PASSED" if report.ok else f"未通过 FAILED：{len(report.problems)} 处问题 problems"
    lines = [
        f"存证核验 Evidence check: {verdict}",
        f"  刷卡 taps         {c.taps} 条在链上 on chains（{c.kiosk_chains} 台终端 kiosks），"
        f"{c.signatures_verified} 个签名复核通过 signatures verified，{c.purged} 条已按期清除 purged，"
        f"{c.before_chain} 条早于存证 before the chain",
        f"  出勤 attendance   {c.attendance} 条 rows：{c.attendance_on_taps} 条有刷卡依据 on taps，"
        f"{c.attendance_manual} 条为审计过的补录 audited manual entries",
        f"  审计 audit log    {c.audit_entries} 条 entries（SM3 链 chain）",
        f"  导出 exports      {c.exports} 份台账导出的链头 export anchors",
    ]
    for problem in report.problems:
        lines.append(f"  ✗ {problem.table} #{problem.row_id}  {problem.code}  {problem.detail}")
    return "\n".join(lines)
