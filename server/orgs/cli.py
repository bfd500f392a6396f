"""``ecard admin org`` and ``ecard admin member``: organisations, committees, members."""

from __future__ import annotations

from typing import Annotated

import typer

from server.cli_support import (
    AdminContext,
    AtOption,
    DbOption,
    JsonOption,
    Outcome,
    ReasonOption,
    effective_time,
    iso,
    parse_time,
    run_admin,
)
from server.vocabulary import CommitteeRole, ExemptionReason, MemberCategory, MemberStatus, OrgKind

org_app = typer.Typer(no_args_is_help=True, help="Organisations (党组织).")
member_app = typer.Typer(no_args_is_help=True, help="Members (党员).")


@org_app.command("add")
def org_add(
    name: str,
    parent: Annotated[int | None, typer.Option("--parent", help="Parent organisation id.")] = None,
    kind: Annotated[OrgKind, typer.Option("--kind", help="Kind of organisation.")] = OrgKind.BRANCH,
    founded: Annotated[
        str | None,
        typer.Option(
            "--founded",
            help="When it was set up (ISO 8601 date), for one entered after the fact: its required"
            " meetings (三会一课) run from then. Default: now.",
        ),
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Add an organisation, optionally under a parent."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.service import add_organisation

        founded_at = parse_time(founded, "--founded", ctx.settings.tz) if founded else None
        org = add_organisation(
            ctx.session, name=name, kind=kind, parent_id=parent, now=ctx.now, founded_at=founded_at
        )
        data: dict[str, object] = {
            "id": org.id,
            "name": org.name,
            "kind": org.kind.value,
            "parent_id": org.parent_id,
        }
        if org.founded_at is not None:
            data["founded_at"] = iso(org.founded_at, ctx.settings.tz)
        return Outcome(data, f"organisation {org.id} added: {org.name} ({org.kind.value})")

    run_admin(action, db=db, json_output=json_output)


@org_app.command("committee")
def org_committee(
    org_id: int,
    member: Annotated[int, typer.Option("--member", help="Member id.")],
    role: Annotated[CommitteeRole, typer.Option("--role")] = CommitteeRole.MEMBER,
    at: AtOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Seat a member on the organisation's committee (支委会: who is expected, and its quorum)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import appoint_committee_member

        seat = appoint_committee_member(
            ctx.session,
            org_id=org_id,
            member_id=member,
            role=role,
            at=effective_time(ctx, at),
            caller=ctx.caller,
        )
        data = {"id": seat.id, "org_id": org_id, "member_id": member, "role": role.value}
        return Outcome(data, f"committee seat {seat.id}: member {member} as {role.value}")

    run_admin(action, db=db, json_output=json_output)


@org_app.command("committee-end")
def org_committee_end(
    seat_id: int, at: AtOption = None, json_output: JsonOption = False, db: DbOption = None
) -> None:
    """End a committee seat (换届, resignation)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import end_committee_seat

        seat = end_committee_seat(ctx.session, seat_id=seat_id, at=effective_time(ctx, at), caller=ctx.caller)
        return Outcome({"id": seat.id, "ended": True}, f"committee seat {seat.id} ended")

    run_admin(action, db=db, json_output=json_output)


@member_app.command("add")
def member_add(
    name: str,
    org: Annotated[int, typer.Option("--org", help="Organisation id.")],
    category: Annotated[MemberCategory, typer.Option("--category")] = MemberCategory.FULL,
    joined: Annotated[
        str | None, typer.Option("--joined", help="When they joined the organisation (ISO 8601).")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Add a member to an organisation."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.service import add_member

        joined_at = parse_time(joined, "--joined", ctx.settings.tz) if joined else None
        member = add_member(
            ctx.session, name=name, org_id=org, category=category, joined_org_at=joined_at, now=ctx.now
        )
        data = {
            "id": member.id,
            "name": member.name,
            "org_id": member.org_id,
            "category": member.category.value,
        }
        return Outcome(data, f"member {member.id} added: {member.name} ({member.category.value})")

    run_admin(action, db=db, json_output=json_output)


@member_app.command("category")
def member_category(
    member_id: int,
    category: Annotated[MemberCategory, typer.Option("--category", help="full (转正) or probationary.")],
    at: AtOption = None,
    reason: ReasonOption = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Record 转正 (or a correction) from a date; earlier ledgers keep the old category."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import change_member_category

        member = change_member_category(
            ctx.session,
            member_id=member_id,
            category=category,
            at=effective_time(ctx, at),
            caller=ctx.caller,
            reason=reason,
        )
        return Outcome(
            {"id": member.id, "category": member.category.value},
            f"member {member.id} is now {member.category.value}",
        )

    run_admin(action, db=db, json_output=json_output)


@member_app.command("status")
def member_status(
    member_id: int,
    status: Annotated[MemberStatus, typer.Option("--status")],
    at: AtOption = None,
    reason: ReasonOption = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Change a member's status (a decision taken elsewhere; reminders never do this)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import change_member_status

        member = change_member_status(
            ctx.session,
            member_id=member_id,
            status=status,
            at=effective_time(ctx, at),
            caller=ctx.caller,
            reason=reason,
        )
        return Outcome(
            {"id": member.id, "status": member.status.value},
            f"member {member.id} is now {member.status.value}",
        )

    run_admin(action, db=db, json_output=json_output)


@member_app.command("move")
def member_move(
    member_id: int,
    org: Annotated[int, typer.Option("--org", help="New organisation id.")],
    at: AtOption = None,
    reason: ReasonOption = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Move a member to another organisation from a date (their history stays)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import move_member

        member = move_member(
            ctx.session,
            member_id=member_id,
            to_org_id=org,
            at=effective_time(ctx, at),
            caller=ctx.caller,
            reason=reason,
        )
        return Outcome(
            {"id": member.id, "org_id": member.org_id}, f"member {member.id} moved to {member.org_id}"
        )

    run_admin(action, db=db, json_output=json_output)


@member_app.command("exempt")
def member_exempt(
    member_id: int,
    reason: Annotated[ExemptionReason, typer.Option("--reason", help="One of the approved categories.")],
    since: Annotated[str | None, typer.Option("--from", help="Start (ISO 8601; default: now).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="End (ISO 8601; default: open).")] = None,
    note: Annotated[str, typer.Option("--note", help="Approval reference, details.")] = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Exempt a member from organisational life for a period (not in 应到, nor the vote basis)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import add_exemption

        tz = ctx.settings.tz
        exemption = add_exemption(
            ctx.session,
            member_id=member_id,
            reason=reason,
            starts_at=parse_time(since, "--from", tz) if since else ctx.now,
            ends_at=parse_time(until, "--until", tz) if until else None,
            note=note,
            caller=ctx.caller,
            now=ctx.now,
        )
        data = {
            "id": exemption.id,
            "member_id": member_id,
            "reason": exemption.reason.value,
            "starts_at": iso(exemption.starts_at, tz),
            "ends_at": iso(exemption.ends_at, tz) if exemption.ends_at else None,
        }
        return Outcome(data, f"exemption {exemption.id} for member {member_id} ({exemption.reason.value})")

    run_admin(action, db=db, json_output=json_output)


@member_app.command("exempt-end")
def member_exempt_end(
    exemption_id: int, at: AtOption = None, json_output: JsonOption = False, db: DbOption = None
) -> None:
    """End an exemption (the member is back)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.orgs.membership import end_exemption

        exemption = end_exemption(
            ctx.session, exemption_id=exemption_id, at=effective_time(ctx, at), caller=ctx.caller
        )
        return Outcome({"id": exemption.id, "ended": True}, f"exemption {exemption.id} ended")

    run_admin(action, db=db, json_output=json_output)
