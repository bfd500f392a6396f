"""``ecard admin development``: 发展党员 records, stage by stage."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, run_admin

development_app = typer.Typer(no_args_is_help=True, help="Member development (发展党员).")

DateOption = Annotated[str, typer.Option("--on", help="The date (YYYY-MM-DD).")]


def _date(text: str, option: str = "--on") -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not a date (YYYY-MM-DD): {text!r}", param_hint=option) from exc


def _data(entry: Any) -> dict[str, Any]:
    dates = ("applied_on", "talked_on", "activist_on", "candidate_on", "admitted_on", "full_on")
    return {
        "id": entry.id,
        "name": entry.name,
        "org_id": entry.org_id,
        "member_id": entry.member_id,
        "stage": entry.stage.value,
        **{name: (value.isoformat() if (value := getattr(entry, name)) else None) for name in dates},
    }


@development_app.command("add")
def development_add(
    name: Annotated[str, typer.Option("--name", help="The applicant's name.")],
    org: Annotated[int, typer.Option("--org", help="The organisation that received the application.")],
    applied_on: Annotated[str, typer.Option("--applied-on", help="申请日期 (YYYY-MM-DD).")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Open a development record for a 入党申请人."""
    applied = _date(applied_on, "--applied-on")

    def action(ctx: AdminContext) -> Outcome:
        from server.development.service import add_applicant

        entry = add_applicant(
            ctx.session,
            name=name,
            org_id=org,
            applied_on=applied,
            caller=ctx.caller,
            now=ctx.now,
            tz=ctx.settings.tz,
        )
        return Outcome(_data(entry), f"development record {entry.id}: {entry.name}, 入党申请人")

    run_admin(action, db=db, json_output=json_output)


@development_app.command("talk")
def development_talk(
    record_id: int, on: DateOption, json_output: JsonOption = False, db: DbOption = None
) -> None:
    """Record the talk (谈话) with the applicant."""
    day = _date(on)

    def action(ctx: AdminContext) -> Outcome:
        from server.development.service import record_talk

        entry = record_talk(
            ctx.session, record_id=record_id, on=day, caller=ctx.caller, now=ctx.now, tz=ctx.settings.tz
        )
        return Outcome(_data(entry), f"development record {entry.id}: talk on {day.isoformat()}")

    run_admin(action, db=db, json_output=json_output)


@development_app.command("stage")
def development_stage(
    record_id: int,
    stage: Annotated[str, typer.Argument(help="activist | candidate | probationary | full")],
    on: DateOption,
    member: Annotated[
        int | None,
        typer.Option("--member", help="For probationary: link this existing member instead of adding one."),
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Move a record to its next stage as of a date (预备党员 adds the member; 正式党员 is 转正)."""
    from server.records.development import DevelopmentStage

    try:
        wanted = DevelopmentStage(stage)
    except ValueError as exc:
        choices = ", ".join(s.value for s in DevelopmentStage)
        raise typer.BadParameter(f"one of {choices}", param_hint="STAGE") from exc
    day = _date(on)

    def action(ctx: AdminContext) -> Outcome:
        from server.development.service import record_stage

        entry = record_stage(
            ctx.session,
            record_id=record_id,
            stage=wanted,
            on=day,
            member_id=member,
            caller=ctx.caller,
            now=ctx.now,
            tz=ctx.settings.tz,
        )
        return Outcome(_data(entry), f"development record {entry.id}: {wanted.value} on {day.isoformat()}")

    run_admin(action, db=db, json_output=json_output)
