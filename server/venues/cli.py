"""``ecard admin venue``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, run_admin

venue_app = typer.Typer(no_args_is_help=True, help="Venues.")

UID_ONLY_HELP = (
    "Serial kiosks here may check a card bound with its number by UID alone "
    "(a magic-UID copy then passes here; default: refused as card_downgrade)."
)


def _venue_data(venue: Any) -> dict[str, Any]:
    return {
        "id": venue.id,
        "name": venue.name,
        "org_id": venue.org_id,
        "accept_uid_only_reads": venue.accept_uid_only_reads,
    }


def _uid_only_note(venue: Any) -> str:
    return " (accepts UID-only reads)" if venue.accept_uid_only_reads else ""


@venue_app.command("add")
def venue_add(
    name: str,
    org: Annotated[int, typer.Option("--org", help="Owning organisation id.")],
    accept_uid_only_reads: Annotated[
        bool, typer.Option("--accept-uid-only-reads", help=UID_ONLY_HELP)
    ] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Add a venue."""

    def action(ctx: AdminContext) -> Outcome:
        from server.venues.service import add_venue

        venue = add_venue(
            ctx.session, name=name, org_id=org, now=ctx.now, accept_uid_only_reads=accept_uid_only_reads
        )
        return Outcome(_venue_data(venue), f"venue {venue.id} added: {venue.name}{_uid_only_note(venue)}")

    run_admin(action, db=db, json_output=json_output)


@venue_app.command("set")
def venue_set(
    venue_id: int,
    accept_uid_only_reads: Annotated[
        bool,
        typer.Option("--accept-uid-only-reads/--refuse-uid-only-reads", help=UID_ONLY_HELP),
    ],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Change a venue's card-check option (audited)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.venues.service import set_uid_only_reads

        venue = set_uid_only_reads(
            ctx.session, venue_id=venue_id, accept=accept_uid_only_reads, caller=ctx.caller, now=ctx.now
        )
        shown = "accepts" if venue.accept_uid_only_reads else "refuses"
        return Outcome(_venue_data(venue), f"venue {venue.id} {shown} UID-only reads of number-bound cards")

    run_admin(action, db=db, json_output=json_output)


@venue_app.command("list")
def venue_list(json_output: JsonOption = False, db: DbOption = None) -> None:
    """Every venue, with its card-check option."""

    def action(ctx: AdminContext) -> Outcome:
        from server.venues.service import list_venues

        rows = [_venue_data(v) for v in list_venues(ctx.session, caller=ctx.caller)]
        lines = [
            f"{r['id']}  {r['name']}  org {r['org_id']}"
            + ("  accepts UID-only reads" if r["accept_uid_only_reads"] else "")
            for r in rows
        ]
        return Outcome({"venues": rows}, "\n".join(lines) or "no venues")

    run_admin(action, db=db, json_output=json_output)
