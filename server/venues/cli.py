"""``ecard admin venue``."""

from __future__ import annotations

from typing import Annotated

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, run_admin

venue_app = typer.Typer(no_args_is_help=True, help="Venues.")


@venue_app.command("add")
def venue_add(
    name: str,
    org: Annotated[int, typer.Option("--org", help="Owning organisation id.")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Add a venue."""

    def action(ctx: AdminContext) -> Outcome:
        from server.venues.service import add_venue

        venue = add_venue(ctx.session, name=name, org_id=org, now=ctx.now)
        return Outcome(
            {"id": venue.id, "name": venue.name, "org_id": venue.org_id},
            f"venue {venue.id} added: {venue.name}",
        )

    run_admin(action, db=db, json_output=json_output)
